"""Stand-ins with the attributes the store reads from Jobs, Workflows and Outputs (contracts.md)."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

API_PROMPT = {
    "3": {
        "class_type": "KSampler",
        "inputs": {"seed": 7, "steps": 4, "cfg": 7.0, "model": ["4", 0]},
        "_meta": {"title": "KSampler"},
    },
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}, "_meta": {"title": "Save"}},
}


@dataclass
class FakeWorkflow:
    """Name, source, format and hash, like comfy_widgets.workflow.Workflow."""

    source: dict
    name: str = "fake"
    format: str = "api"

    @property
    def content_hash(self) -> str:
        canonical = json.dumps(self.source, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


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
    """The Job attributes the store hooks read."""

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
