"""Interrupting the wait for a batch or job: the work goes on, the notebook shows one line.

Chosen behaviour (README): the batch keeps running in the background; ``batch.stop()`` stops it.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import time
from pathlib import Path

import pytest

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.waiting import WaitInterrupted
from comfy_widgets.examples import __file__ as examples_init
from comfy_widgets.workflow.workflow import Workflow

WORKFLOW_PATH = Path(examples_init).parent / "sd15_txt2img_api.json"
SMALL = {"width": 64, "height": 64, "steps": 4}


async def test_cancelling_the_awaiting_task_leaves_the_batch_running():
    server = await sim.start(seconds_per_step=0.02, previews=False)
    client = connect(server.url)
    try:
        batch = client.batch(Workflow.load(WORKFLOW_PATH), count=4, seed=("increment", 1), **SMALL)
        waiter = asyncio.ensure_future(_await(batch))
        while batch.completed_count == 0:
            await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError) as caught:
            await waiter
        assert not isinstance(caught.value, WaitInterrupted), "outside a cell: plain cancel"
        assert not batch._future.cancelled(), "the batch's own future is untouched"
        df = await asyncio.wait_for(_await(batch), 30)
    finally:
        await client.aclose()
        await server.astop()
    assert len(df) == 4 and set(df["status"]) == {"completed"}


async def test_cancelling_the_awaiting_task_leaves_the_job_running():
    server = await sim.start(seconds_per_step=0.02, previews=False)
    client = connect(server.url)
    try:
        job = client.run(Workflow.load(WORKFLOW_PATH), **SMALL)
        waiter = asyncio.ensure_future(_await(job))
        while job.state != "running":
            await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        result = await asyncio.wait_for(_await(job), 30)
    finally:
        await client.aclose()
        await server.astop()
    assert result.status == "completed" and len(result.images) == 1


async def _await(awaitable):
    return await awaitable


def test_the_notice_renders_as_one_line_in_ipython():
    notice = WaitInterrupted("Stopped waiting: batch x keeps running; batch.stop() stops it")
    assert isinstance(notice, asyncio.CancelledError)
    assert notice._render_traceback_() == [str(notice)]


CELL_SETUP = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.workflow.workflow import Workflow
server = sim.serve(seconds_per_step=0.05, previews=False)
client = connect(server.url)
batch = client.batch(Workflow.load({str(WORKFLOW_PATH)!r}), count=6, seed=("increment", 1),
                     width=64, height=64, steps=6)
"""


def _run_cell(kc, code: str, *, interrupt_after: float | None, km=None, timeout: float = 60):
    """Execute ``code``; optionally interrupt the kernel after a delay. Returns (reply, outputs)."""
    msg_id = kc.execute(code)
    outputs = []
    deadline = time.monotonic() + timeout
    interrupted = False
    started = time.monotonic()
    while True:
        assert time.monotonic() < deadline, f"cell did not finish in {timeout} s: {code!r}"
        if interrupt_after is not None and not interrupted:
            if time.monotonic() - started >= interrupt_after:
                km.interrupt_kernel()
                interrupted = True
        try:
            msg = kc.get_iopub_msg(timeout=0.1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] in ("stream", "error", "execute_result", "display_data"):
            outputs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=10)
    return reply, outputs


def test_interrupting_a_real_kernel_during_await_batch():
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv[0] = sys.executable
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply, outputs = _run_cell(kc, CELL_SETUP, interrupt_after=None)
        assert reply["content"]["status"] == "ok", outputs
        reply, outputs = _run_cell(kc, "await batch", interrupt_after=1.5, km=km)
        errors = [m["content"] for m in outputs if m["msg_type"] == "error"]
        assert len(errors) == 1, outputs
        shown = "\n".join(errors[0]["traceback"])
        assert "Traceback" not in shown and "CancelledError" not in shown, shown
        assert "keeps running in the background" in shown and "batch.stop()" in shown, shown
        assert len(errors[0]["traceback"]) == 1
        reply, outputs = _run_cell(
            kc,
            "df = await batch\nprint(batch.status, len(df), set(df['status']))",
            interrupt_after=None,
        )
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        assert "completed 6 {'completed'}" in text, outputs
        _run_cell(kc, "client.close(); server.stop()", interrupt_after=None)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
