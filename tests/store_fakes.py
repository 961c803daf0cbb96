"""Stand-ins for Jobs and Outputs, turned into the typed records a Recorder takes."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from comfy_widgets.records import GenerationRecord, WorkflowRecord
from comfy_widgets.states import JobState
from comfy_widgets.workflow.workflow import Workflow
from comfy_widgets.workflow.writeback import ui_graph_for

API_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {"seed": 7, "steps": 4, "cfg": 7.0, "model": ["4", 0]},
        "_meta": {"title": "KSampler"},
    },
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}, "_meta": {"title": "Save"}},
}


def FakeWorkflow(source: dict, name: str = "fake", format: str = "api") -> WorkflowRecord:  # noqa: N802
    """A recorded workflow (name, source, format and content hash)."""
    return WorkflowRecord(name, source, format)


@dataclass
class FakeClient:
    url: str = "http://127.0.0.1:8188"


@dataclass
class FakeOutput:
    node_id: str
    filename: str
    data: bytes
    subfolder: str = ""
    type: str = "output"
    kind: str = "image"
    mime: str = "image/png"


@dataclass
class FakeJob:
    """What an engine Job knows of a generation; ``to_record`` gives the Recorder's view."""

    workflow: Any = None
    parameters: dict = field(default_factory=lambda: {"seed": 7})
    prompt: dict = field(default_factory=lambda: json.loads(json.dumps(API_PROMPT)))
    client: Any = field(default_factory=FakeClient)
    prompt_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    batch_id: str | None = None
    batch_index: int | None = None
    state: str = "queued"
    outputs: list = field(default_factory=list)
    error_message: str | None = None
    error_node: str | None = None
    timings: dict = field(default_factory=lambda: {"queued_at": 1000.0})

    def to_record(self, state: str | None = None) -> GenerationRecord:
        """This job as a GenerationRecord in ``state`` (default: its own state)."""
        return GenerationRecord(
            prompt_id=self.prompt_id,
            state=JobState(state or self.state),
            server=self.client.url if self.client is not None else None,
            workflow=WorkflowRecord.of(self.workflow) if self.workflow is not None else None,
            parameters=dict(self.parameters or {}),
            prompt=self.prompt,
            ui_graph=(
                ui_graph_for(self.workflow, self.parameters, self.prompt)
                if isinstance(self.workflow, Workflow)
                else None
            ),
            batch_id=self.batch_id,
            batch_index=self.batch_index,
            queued_at=self.timings.get("queued_at"),
            started_at=self.timings.get("started_at"),
            finished_at=self.timings.get("finished_at"),
            error=self.error_message,
            error_node=self.error_node,
            outputs=list(self.outputs),
        )


def record_queued(store, job: FakeJob) -> None:
    """What a Job does once the server accepted it: record it queued and, for a single run,
    remember its values as the workflow's last-used ones."""
    record = job.to_record("queued")
    store.record_generation(record)
    if job.batch_id is None and record.workflow is not None:
        store.set_last_used(record.workflow, dict(job.parameters))


def record_started(store, job: FakeJob) -> None:
    """What a Job records when the server starts it."""
    store.record_generation(job.to_record("running"))


def record_finished(store, job: FakeJob) -> None:
    """What a Job records when it ends (with its outputs)."""
    store.record_generation(job.to_record(job.state or "completed"))


def png_bytes(color: tuple[int, int, int] = (10, 20, 30), size: int = 8) -> bytes:
    """A small PNG image as bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def finish(job: FakeJob, *, images: int = 1, state: str = "completed") -> FakeJob:
    """Give ``job`` outputs and a final state, as the client does before ``job_finished``."""
    job.state = state
    job.outputs = [
        FakeOutput("9", f"ComfyUI_{n:05d}_.png", png_bytes((n * 40 % 255, 0, 0)))
        for n in range(images)
    ]
    job.timings = {**job.timings, "started_at": 1001.0, "finished_at": 1003.5}
    return job
