"""Loops and threads: plain-script mode, blocking-call detection, calls from other threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from comfy_widgets.engine.client import connect
from comfy_widgets.errors import BlockingCallError, JobCancelledError
from comfy_widgets.loops import background_loop
from tests.test_client_fakeserver import PROMPT, FakeComfy


class ThreadedFake:
    """A FakeComfy on its own loop in a daemon thread (for tests without a running loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = self.call(FakeComfy().start())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def threaded_fake():
    fake = ThreadedFake()
    yield fake
    fake.stop()


def test_plain_script_mode_blocks_on_result(threaded_fake):
    client = connect(threaded_fake.server.url)
    try:
        job = client.submit(PROMPT)
        result = job.result(timeout=10)
        assert result.status == "completed" and result.images
        assert client.loop is background_loop()
        assert client.loop is not threaded_fake.loop
    finally:
        client.close()


def test_result_timeout_while_held(threaded_fake):
    threaded_fake.loop.call_soon_threadsafe(threaded_fake.server.hold.clear)
    client = connect(threaded_fake.server.url)
    try:
        job = client.submit(PROMPT)
        with pytest.raises(TimeoutError):
            job.result(timeout=0.3)
        job.cancel()
        with pytest.raises(JobCancelledError):
            job.result(timeout=10)
    finally:
        client.close()


async def test_result_inside_running_loop_says_await():
    server = await FakeComfy().start()
    client = connect(server.url)
    try:
        job = client.submit(PROMPT)
        with pytest.raises(BlockingCallError, match="await job"):
            job.result()
        assert (await job).status == "completed"
    finally:
        await client.aclose()
        await server.stop()


async def test_calls_from_a_thread_with_its_own_loop_run_on_the_client_loop():
    """Like a widget callback on a JupyterLab subshell thread: hand over, never a second loop."""
    server = await FakeComfy().start()
    client = connect(server.url)
    main_loop = asyncio.get_running_loop()
    jobs = []
    loops_seen = []

    async def callback_on_subshell():
        jobs.append(client.submit(PROMPT))
        loops_seen.append(client.loop)
        return await client.get_queue()

    try:
        thread = threading.Thread(target=lambda: asyncio.run(callback_on_subshell()))
        thread.start()
        await asyncio.to_thread(thread.join)
        result = await jobs[0]
        assert result.status == "completed"
        assert loops_seen == [main_loop]
        assert client.monitor._task.get_loop() is main_loop
    finally:
        await client.aclose()
        await server.stop()


async def test_await_job_from_another_loop():
    server = await FakeComfy().start()
    client = connect(server.url)
    try:
        job = client.submit(PROMPT)
        status = await asyncio.to_thread(lambda: asyncio.run(_await_status(job)))
        assert status == "completed"
    finally:
        await client.aclose()
        await server.stop()


async def _await_status(job):
    return (await job).status
