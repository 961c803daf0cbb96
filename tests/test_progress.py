"""ProgressView: state per job phase, the comm-message bound under a flood, cancel, fallback."""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from comfy_widgets.widgets.fallback import WIDGET_VIEW
from comfy_widgets.widgets.progress import MESSAGE_RATE, ProgressView, job_snapshot
from tests.conftest import png_bytes
from tests.shared_data import WORKFLOWS


@dataclass
class FakeNode:
    title: str
    state: str = "pending"


@dataclass
class FakeOutput:
    data: bytes
    kind: str = "image"
    mime: str = "image/png"


def rgba() -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (300, 600), (0, 0, 255, 100)).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class FakeJob:
    """Just the Job surface ProgressView reads (see contracts: comfy_widgets.engine.job.Job)."""

    prompt_id: str = "p-1"
    state: str = "queued"
    progress: float = 0.0
    current_node: str | None = None
    current_node_title: str | None = None
    queue_position: int | None = 2
    preview: bytes | None = None
    preview_mime: str = "image/jpeg"
    error_message: str | None = None
    error_node: str | None = None
    nodes: dict[str, FakeNode] = field(default_factory=dict)
    outputs: list[FakeOutput] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: int = 0
    callbacks: list[Any] = field(default_factory=list)

    def subscribe(self, cb):
        self.callbacks.append(cb)
        return lambda: self.callbacks.remove(cb)

    def emit(self):
        for cb in list(self.callbacks):
            cb(self)

    def cancel(self):
        self.cancelled += 1


def graph() -> dict[str, FakeNode]:
    return {
        "4": FakeNode("Load Checkpoint", "cached"),
        "6": FakeNode("Positive", "done"),
        "3": FakeNode("KSampler", "running"),
        "8": FakeNode("VAE Decode"),
    }


def browser_sends(view: ProgressView, content: dict) -> None:
    """Deliver a custom message as the front end's ``model.send(content)`` would."""
    view._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def count_comm_messages(view: ProgressView) -> list[dict]:
    """Record every comm message the widget sends to the front end."""
    sent: list[dict] = []
    original = view.comm.publish_msg

    def publish(msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type == "comm_msg":
            sent.append(data)
        return original(msg_type, data=data, metadata=metadata, buffers=buffers, **keys)

    view.comm.publish_msg = publish
    return sent


def test_queued_job_shows_queue_position_and_no_node():
    job = FakeJob(timings={"queued_at": 100.0})
    state = job_snapshot(job, now=103.0)
    assert state["status"] == "queued"
    assert state["queue_position"] == 2
    assert state["current_node"] == ""
    assert state["elapsed"] == 3.0
    assert state["eta"] == -1


def test_running_job_state_has_node_timeline_and_eta():
    job = FakeJob(
        state="running",
        progress=25.0,
        current_node="3",
        current_node_title="KSampler (#3)",
        nodes=graph(),
        timings={"queued_at": 90.0, "started_at": 100.0},
    )
    view = ProgressView(job)
    state = job_snapshot(job, now=110.0)
    assert state["eta"] == 30.0
    assert state["queue_position"] == -1
    assert view.status == "running"
    assert view.current_node == "KSampler (#3)"
    assert [(n["id"], n["state"]) for n in view.nodes] == [
        ("4", "cached"),
        ("6", "done"),
        ("3", "running"),
        ("8", "pending"),
    ]


def test_completed_job_has_thumbnails_and_full_image_on_demand():
    job = FakeJob(
        state="completed",
        progress=100.0,
        outputs=[
            FakeOutput(png_bytes("red", 512)),
            FakeOutput(b"text", kind="text"),
            FakeOutput(rgba()),
        ],
    )
    view = ProgressView(job)
    assert view.status == "completed" and view.progress == 100.0
    assert len(view.thumbnails) == 2
    for data in view.thumbnails:
        with Image.open(io.BytesIO(data)) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) == 256
    sent = count_comm_messages(view)
    browser_sends(view, {"type": "full", "index": 0})
    assert sent[-1]["content"] == {"type": "full", "index": 0, "mime": "image/png"}


def test_failed_job_shows_error_and_failing_node():
    job = FakeJob(
        state="failed",
        progress=40.0,
        nodes=graph(),
        error_message="Saving image outside the output folder is not allowed",
        error_node="8",
    )
    view = ProgressView(job)
    assert view.error == "Saving image outside the output folder is not allowed"
    assert view.error_node == "VAE Decode (#8)"
    assert {n["id"]: n["state"] for n in view.nodes}["3"] == "error"
    html = view._repr_mimebundle_()[0]["text/html"]
    assert "failed" in html and "VAE Decode (#8)" in html and "outside the output" in html


def test_cancel_message_from_browser_calls_job_cancel():
    job = FakeJob(state="running")
    view = ProgressView(job)
    browser_sends(view, {"type": "cancel"})
    assert job.cancelled == 1


def test_static_fallback_has_widget_view_and_html_with_image_data_uri():
    job = FakeJob(state="completed", progress=100.0, outputs=[FakeOutput(png_bytes("blue", 512))])
    data, _ = ProgressView(job)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "completed" in data["text/html"] and "100%" in data["text/html"]
    assert 'src="data:image/jpeg;base64,' in data["text/html"]


async def test_flood_of_1000_progress_events_is_throttled():
    job = FakeJob(state="running", nodes=graph(), timings={"started_at": time.time()})
    view = ProgressView(job)
    sent = count_comm_messages(view)
    start = time.monotonic()
    for i in range(1, 1001):
        job.progress = i / 10
        job.preview = png_bytes("gray", 8) + bytes([i % 256])
        job.emit()
        if i % 50 == 0:
            await asyncio.sleep(0.01)  # let the loop breathe, as the websocket reader would
    job.state = "completed"
    job.emit()
    elapsed = time.monotonic() - start
    while view._throttle.pending or view._preview_throttle.pending:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    total = time.monotonic() - start
    bound = int(total * MESSAGE_RATE) + 2
    previews = [m for m in sent if ["preview"] in m.get("buffer_paths", [])]
    print(f"1000 events in {elapsed:.3f}s -> {len(sent)} comm messages ({len(previews)} previews)")
    assert 1 <= len(sent) <= bound
    assert 1 <= len(previews) <= int(total * 5) + 2
    assert view.status == "completed" and view.progress == 100.0
    assert view.preview == b""  # dropped once the job is over


async def test_a_real_20_step_run_stays_under_the_message_bound():
    from comfy_widgets import sim
    from comfy_widgets.engine.client import connect
    from comfy_widgets.workflow.workflow import Workflow

    server = await sim.start(seconds_per_step=0.01)
    client = connect(server.url)
    try:
        wf = Workflow.load(str(WORKFLOWS / "ui/sd15_txt2img_default.json"))
        start = time.monotonic()
        job = client.run(wf, steps=20)
        view = ProgressView(job)
        sent = count_comm_messages(view)
        await job
        while view._throttle.pending or view.status != "completed":
            await asyncio.sleep(0.02)
        total = time.monotonic() - start
    finally:
        await client.aclose()
        await server.astop()
    previews = [m for m in sent if ["preview"] in m.get("buffer_paths", [])]
    print(f"20-step run in {total:.2f}s: {len(sent)} comm messages, {len(previews)} with a preview")
    assert 1 <= len(sent) <= int(total * MESSAGE_RATE) + 2
    assert view.progress == 100.0 and len(view.thumbnails) == 1


async def test_cancel_from_the_browser_cancels_a_running_simulator_job():
    import pytest

    from comfy_widgets import sim
    from comfy_widgets.engine.client import connect
    from comfy_widgets.errors import JobCancelledError
    from comfy_widgets.workflow.workflow import Workflow

    server = await sim.start(seconds_per_step=0.05)
    client = connect(server.url)
    try:
        job = client.run(Workflow.load(str(WORKFLOWS / "ui/sd15_txt2img_default.json")))
        view = ProgressView(job)
        while job.state != "running" or job.progress <= 0:
            await asyncio.sleep(0.02)
        browser_sends(view, {"type": "cancel"})
        with pytest.raises(JobCancelledError):
            await job
        while view._throttle.pending or view.status == "running":
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
        await server.astop()
    assert view.status == "cancelled" and view.progress < 100
    assert "running" not in {n["state"] for n in view.nodes}


async def test_displayed_twin_is_rewritten_when_the_job_ends(monkeypatch):
    """The widget is shown with a static twin after it (what exports and reopened notebooks
    show); the twin follows the job: a notebook saved after the run shows 'completed'."""
    shown: list[dict] = []
    updates: list[dict] = []

    class Handle:
        def update(self, data, **_):
            updates.append(data)

    def display(data, display_id=None, **_):
        shown.append(data)
        return Handle() if display_id else None

    monkeypatch.setattr("IPython.display.display", display)
    job = FakeJob()
    view = ProgressView(job)
    view._ipython_display_()
    widget, twin = shown
    assert set(widget) == {WIDGET_VIEW, "text/plain"}, "no HTML that would double the twin"
    assert "cw-live" in view._dom_classes
    assert set(twin) == {"text/html", "text/plain"} and "queued" in twin["text/html"]
    assert 'class="cw-twin"' in twin["text/html"] and "<style>" in twin["text/html"]
    job.state, job.progress, job.outputs = "completed", 100.0, [FakeOutput(png_bytes("red", 512))]
    job.emit()
    while view._throttle.pending:
        await asyncio.sleep(0.02)
    assert len(updates) == 1
    final = updates[-1]["text/html"]
    assert 'data-status="completed"' in final and 'src="data:image/jpeg;base64,' in final
