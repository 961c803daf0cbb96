"""What a Job records and how it displays: records in order, a failing recorder, no recorder,
the progress view registered by the facade and its static fallback."""

from __future__ import annotations

import logging
import sys

import pytest

import comfy_widgets as cw
from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.errors import ExecutionError, JobCancelledError
from comfy_widgets.records import GenerationRecord, NullRecorder
from comfy_widgets.records.sqlite import Store
from comfy_widgets.results.recorded import history
from comfy_widgets.states import JobState
from tests.test_client_fakeserver import PROMPT, FakeComfy
from tests.test_client_sim import EMPTY_IMAGE, ksampler, until

ORDER = ["queued", "running", "completed"]


class RecordingStore(NullRecorder):
    """A Recorder that keeps what a Job records (and can be told to fail)."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, str, int]] = []
        self.fail = fail

    def __bool__(self) -> bool:
        return True

    def record_generation(self, generation: GenerationRecord) -> None:
        self.calls.append((generation.state.value, generation.prompt_id, len(generation.outputs)))
        if self.fail:
            raise RuntimeError("disk full")


@pytest.fixture
async def server():
    server = await sim.start(seconds_per_step=0.0)
    yield server
    await server.astop()


async def test_hooks_called_in_order_after_outputs(server):
    store = RecordingStore()
    client = connect(server.url, store=store)
    try:
        job = client.submit(EMPTY_IMAGE)
        await job
        # in order; states a fast job passes within one write's gathering time are written once,
        # in the latest (engine.recording.latest_per_prompt)
        states = [state for state, _, _ in store.calls]
        assert states[-1] == "completed" and states == sorted(states, key=ORDER.index)
        assert len(states) == len(set(states))
        assert store.calls[-1] == ("completed", job.prompt_id, len(job.outputs))
        assert job.outputs
    finally:
        await client.aclose()


async def test_hooks_for_failed_and_cancelled_jobs(server):
    store = RecordingStore()
    client = connect(server.url, store=store)
    try:
        server.faults.fail_node("SaveImage")
        failed = client.submit(EMPTY_IMAGE)
        with pytest.raises(ExecutionError):
            await failed
        running = client.submit(ksampler(steps=10_000))
        server.settings.seconds_per_step = 0.02
        await until(lambda: running.state == "running")
        running.cancel()
        with pytest.raises(JobCancelledError):
            await running
        finished = {pid: state for state, pid, _ in store.calls if JobState(state).terminal}
        assert finished == {failed.prompt_id: "failed", running.prompt_id: "cancelled"}
    finally:
        await client.aclose()


async def test_failing_hook_is_logged_not_fatal(server, caplog):
    client = connect(server.url, store=RecordingStore(fail=True))
    try:
        with caplog.at_level(logging.ERROR, logger="comfy_widgets.engine.job"):
            result = await client.submit(EMPTY_IMAGE)
        assert result.status == "completed"
        assert "recording completed failed" in caplog.text
    finally:
        await client.aclose()


async def test_no_store_means_nothing_recorded(server, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFY_WIDGETS_HOME", str(tmp_path / "home"))
    for store in (None, False):
        client = connect(server.url, store=store)
        try:
            assert isinstance(client.recorder, NullRecorder) and client.store is None
            assert (await client.submit(EMPTY_IMAGE)).status == "completed"
        finally:
            await client.aclose()
    assert not (tmp_path / "home").exists()


async def test_real_store_records_the_generation(server, tmp_path):
    store = Store(tmp_path / "store.sqlite")
    client = connect(server.url, store=store)
    try:
        job = client.submit(EMPTY_IMAGE)
        await job
        df = history(store=store)
        row = df[df["prompt_id"] == job.prompt_id].iloc[0]
        assert row["status"] == "completed"
    finally:
        await client.aclose()


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    assert cw.register_display(shell)
    return shell


async def test_displaying_a_job_shows_the_progress_view(shell):
    """The facade registers the widget display for Job by type name: the engine has only a
    static _repr_html_, IPython shows the live progress view."""
    fake = await FakeComfy().start()
    client = connect(fake.url)
    try:
        job = client.submit(PROMPT)
        assert not hasattr(job, "_repr_mimebundle_") and not hasattr(job, "_ipython_display_")
        bundle = shell.display_formatter.mimebundle_formatter(job)
        data = bundle[0] if isinstance(bundle, tuple) else bundle  # (data, metadata) is allowed
        assert "application/vnd.jupyter.widget-view+json" in data
        assert "text/html" in data
        await job
    finally:
        await client.aclose()
        await fake.stop()


async def test_job_display_falls_back_to_html_without_widgets(shell, monkeypatch):
    fake = await FakeComfy().start()
    client = connect(fake.url)
    try:
        job = client.submit(PROMPT)
        await job
        monkeypatch.setitem(sys.modules, "comfy_widgets.widgets.display", None)
        assert shell.display_formatter.mimebundle_formatter(job) == ({}, {})  # nothing: HTML next
        html = shell.display_formatter.formatters["text/html"](job)
        assert "completed" in html and job.prompt_id[:8] in html
    finally:
        await client.aclose()
        await fake.stop()
