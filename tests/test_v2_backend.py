"""``V2Backend`` (the engine's Backend over Comfy API v2) against the real proxy + simulator.

A small recording watcher stands in for the engine's Job, so these tests pin what the backend
promises the engine: events of the watched prompt, queue places, one outcome with fetchable
outputs, cancels, uploads as asset refs, and finding a job again from a fresh backend.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import pytest
from PIL import Image

from comfy_widgets.states import JobState
from comfy_widgets.transport.backend import Backend, PromptOutcome, PromptWatcher
from comfy_widgets.transport.events import (
    Event,
    ExecutionStartEvent,
    PreviewEvent,
    ProgressEvent,
)
from comfy_widgets.transport.v2_backend import V2Backend, V2FileRef
from tests.test_v2_proxy import DEADLINE, runs_with_seed, workflow

pytestmark = pytest.mark.timeout(120)


class Watcher:
    """Records what the backend tells it, as the engine's Job would receive it."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.posted = False
        self.waiting = True
        self.cancel_requested = False
        self.frames_missed = False
        self.events: list[Event] = []
        self.positions: list[int] = []
        self.outcome: PromptOutcome | None = None
        self.state: JobState | None = None
        self.ended = asyncio.Event()

    def done(self) -> bool:
        return self.state is not None

    def handle_event(self, event: Event) -> None:
        self.events.append(event)

    def mark_running(self) -> None:
        self.waiting = False

    def set_queue_position(self, position: int) -> None:
        self.positions.append(position)

    async def apply_outcome(self, outcome: PromptOutcome) -> None:
        self.outcome, self.state = outcome, outcome.state
        self.ended.set()

    async def finish(self, state: JobState, error: Exception | None = None) -> None:
        self.state = state
        self.ended.set()

    async def resubmit(self) -> None:
        raise AssertionError("nothing here loses a prompt")


async def submit(backend: V2Backend, prompt: dict[str, Any]) -> Watcher:
    watcher = Watcher(str(uuid.uuid4()))
    backend.watch(watcher)
    submitted = await backend.submit(prompt, watcher.prompt_id)
    assert submitted.prompt_id == watcher.prompt_id
    watcher.posted = True
    return watcher


async def test_backend_runs_prompts_with_events_and_fetchable_outputs(v2_stack):
    backend = V2Backend(v2_stack.url, api_key=v2_stack.token, poll_interval=0.2)
    assert isinstance(backend, Backend)
    try:
        assert await backend.wait_connected()
        watchers = [await submit(backend, workflow(900 + i, steps=12)) for i in range(3)]
        assert all(isinstance(w, PromptWatcher) for w in watchers)
        await asyncio.wait_for(asyncio.gather(*(w.ended.wait() for w in watchers)), DEADLINE)
        datas = []
        for w in watchers:
            assert w.outcome is not None and w.state is JobState.COMPLETED
            (node,) = w.outcome.outputs
            (ref,) = node.files
            assert isinstance(ref, V2FileRef) and node.node_id == "9"
            datas.append(await backend.fetch_output(ref))
        again = await backend.outcome(watchers[0].prompt_id)
        listed = await backend.outcomes()
    finally:
        await backend.aclose()
    assert all(Image.open(io.BytesIO(d)).size == (512, 512) for d in datas)
    assert again is not None and again.state is JobState.COMPLETED
    assert {w.prompt_id for w in watchers} <= set(listed)
    for w in watchers:
        kinds = {type(e) for e in w.events}
        assert ExecutionStartEvent in kinds and ProgressEvent in kinds, w.events
        assert all(e.prompt_id == w.prompt_id for e in w.events)
    assert any(PreviewEvent in {type(e) for e in w.events} for w in watchers)
    assert any(w.positions for w in watchers[1:])  # the later ones waited in the queue
    history = v2_stack.sim_history()
    assert [runs_with_seed(history, 900 + i) for i in range(3)] == [1, 1, 1]


async def test_backend_cancels_a_running_and_a_queued_prompt(v2_stack):
    backend = V2Backend(v2_stack.url, api_key=v2_stack.token, poll_interval=0.2)
    try:
        running = await submit(backend, workflow(950, steps=400))
        queued = await submit(backend, workflow(951, steps=400))
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not any(isinstance(e, ProgressEvent) for e in running.events):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        for w in (running, queued):
            w.cancel_requested = True
        await backend.delete_queued([queued.prompt_id])
        await backend.interrupt(running.prompt_id)
        await asyncio.wait_for(asyncio.gather(running.ended.wait(), queued.ended.wait()), DEADLINE)
    finally:
        await backend.aclose()
    assert (running.state, queued.state) == (JobState.CANCELLED, JobState.CANCELLED)
    assert runs_with_seed(v2_stack.sim_history(), 951) == 0


async def test_an_uploaded_image_is_sent_as_an_asset_reference(v2_stack):
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (250, 0, 0)).save(buf, format="PNG")
    backend = V2Backend(v2_stack.url, api_key=v2_stack.token, poll_interval=0.2)
    try:
        name = await backend.upload_image("red.png", buf.getvalue())
        prompt = {
            "1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "up"},
            },
        }
        watcher = await submit(backend, prompt)
        await asyncio.wait_for(watcher.ended.wait(), DEADLINE)
    finally:
        await backend.aclose()
    assert watcher.state is JobState.COMPLETED
    assert prompt["1"]["inputs"]["image"] == "red.png"  # the caller's prompt is not changed
    ran = [e["prompt"][2]["1"]["inputs"]["image"] for e in v2_stack.sim_history().values()]
    assert len(ran) == 1 and isinstance(ran[0], str)
    saved = v2_stack.workdir / "sim-data" / "input" / ran[0]
    assert saved.read_bytes() == buf.getvalue()


async def test_a_fresh_backend_finds_the_job_by_its_label(v2_stack):
    first = V2Backend(v2_stack.url, api_key=v2_stack.token, poll_interval=0.2)
    try:
        watcher = await submit(first, workflow(970))
        await asyncio.wait_for(watcher.ended.wait(), DEADLINE)
    finally:
        await first.aclose()
    fresh = V2Backend(v2_stack.url, api_key=v2_stack.token)  # e.g. after a kernel restart
    adopted = Watcher(watcher.prompt_id)
    adopted.posted = True
    try:
        outcome = await fresh.outcome(watcher.prompt_id)
        fresh.watch(adopted)  # resume: follow a prompt the server already has
        await asyncio.wait_for(adopted.ended.wait(), DEADLINE)
        unknown = await fresh.outcome(str(uuid.uuid4()))
    finally:
        await fresh.aclose()
    assert outcome is not None and outcome.state is JobState.COMPLETED
    assert adopted.state is JobState.COMPLETED
    assert unknown is None
    assert runs_with_seed(v2_stack.sim_history(), 970) == 1


async def test_proxy_killed_mid_batch_every_item_completes_once(v2_stack):
    backend = V2Backend(v2_stack.url, api_key=v2_stack.token, poll_interval=0.2)
    seeds = list(range(980, 986))
    try:
        watchers = [await submit(backend, workflow(seed, steps=25)) for seed in seeds]
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not any(w.done() for w in watchers):  # mid-batch: one finished, others wait
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        await asyncio.to_thread(v2_stack.kill_proxy)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(v2_stack.start_proxy)
        await asyncio.wait_for(asyncio.gather(*(w.ended.wait() for w in watchers)), DEADLINE)
    finally:
        await backend.aclose()
    assert [w.state for w in watchers] == [JobState.COMPLETED] * len(seeds)
    history = v2_stack.sim_history()
    assert [runs_with_seed(history, seed) for seed in seeds] == [1] * len(seeds)
