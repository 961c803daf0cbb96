"""Job hooks and display: store calls in order, failing hooks, the progress view and fallback."""

from __future__ import annotations

import logging
import sys

import pytest

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.errors import ExecutionError, JobCancelledError
from comfy_widgets.records.sqlite import Store
from tests.test_client_fakeserver import PROMPT, FakeComfy
from tests.test_client_sim import EMPTY_IMAGE, ksampler, until


class RecordingStore:
    """Records the hook calls a Job makes (and can be told to fail)."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, str, str]] = []
        self.fail = fail

    def _record(self, name: str, job) -> None:
        self.calls.append((name, job.prompt_id, job.state))
        if self.fail:
            raise RuntimeError("disk full")

    def job_queued(self, job) -> None:
        self._record("job_queued", job)

    def job_started(self, job) -> None:
        self._record("job_started", job)

    def job_finished(self, job) -> None:
        self._record("job_finished", job)


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
        assert [name for name, _, _ in store.calls] == ["job_queued", "job_started", "job_finished"]
        assert store.calls[-1] == ("job_finished", job.prompt_id, "completed")
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
        finished = {pid: state for name, pid, state in store.calls if name == "job_finished"}
        assert finished == {failed.prompt_id: "failed", running.prompt_id: "cancelled"}
    finally:
        await client.aclose()


async def test_failing_hook_is_logged_not_fatal(server, caplog):
    client = connect(server.url, store=RecordingStore(fail=True))
    try:
        with caplog.at_level(logging.ERROR, logger="comfy_widgets.engine.job"):
            result = await client.submit(EMPTY_IMAGE)
        assert result.status == "completed"
        assert "store.job_finished failed" in caplog.text
    finally:
        await client.aclose()


async def test_no_store_means_no_hooks(server):
    for store in (None, False):
        client = connect(server.url, store=store)
        try:
            assert (await client.submit(EMPTY_IMAGE)).status == "completed"
        finally:
            await client.aclose()


async def test_real_store_records_the_generation(server, tmp_path):
    store = Store(tmp_path / "store.sqlite")
    client = connect(server.url, store=store)
    try:
        job = client.submit(EMPTY_IMAGE)
        await job
        df = store.generations()
        row = df[df["prompt_id"] == job.prompt_id].iloc[0]
        assert row["status"] == "completed"
    finally:
        await client.aclose()


async def test_repr_mimebundle_uses_the_progress_view():
    fake = await FakeComfy().start()
    client = connect(fake.url)
    try:
        job = client.submit(PROMPT)
        bundle = job._repr_mimebundle_()
        data = bundle[0] if isinstance(bundle, tuple) else bundle  # (data, metadata) is allowed
        assert "application/vnd.jupyter.widget-view+json" in data
        assert "text/html" in data
        await job
    finally:
        await client.aclose()
        await fake.stop()


async def test_repr_mimebundle_falls_back_to_html(monkeypatch):
    fake = await FakeComfy().start()
    client = connect(fake.url)
    try:
        job = client.submit(PROMPT)
        await job
        monkeypatch.setitem(sys.modules, "comfy_widgets.widgets.progress", None)
        bundle = job._repr_mimebundle_()
        assert "completed" in bundle["text/html"] and job.prompt_id[:8] in bundle["text/plain"]
    finally:
        await client.aclose()
        await fake.stop()
