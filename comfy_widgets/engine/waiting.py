"""Awaiting a Job or a Batch without tying its life to the awaiting task.

``await batch`` in a notebook cell waits on the batch's future through ``asyncio.shield``:
interrupting the kernel cancels the cell, never the batch (whose future would otherwise be
cancelled with it and then fail to take its result). The batch or job keeps running in the
background, and in an IPython cell the interrupt ends the cell with one line saying so and how
to stop it (``WaitInterrupted``) instead of a bare ``CancelledError`` traceback. Anywhere else
the cancellation propagates unchanged (``asyncio.timeout``, task groups).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitInterrupted(asyncio.CancelledError):
    """The wait for a job or batch was interrupted; the work itself goes on.

    A ``CancelledError`` (the interrupted task still ends as cancelled) whose IPython rendering
    is its one-line message rather than a traceback.
    """

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def _in_notebook_cell() -> bool:
    """True when the running task is an IPython cell (``InteractiveShell.run_cell_async``)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    coro = task.get_coro() if task is not None else None
    return getattr(coro, "__qualname__", "").endswith("run_cell_async")


async def wait_detached(future: concurrent.futures.Future[T], notice: Callable[[], str]) -> T:
    """The future's result; a cancelled waiter leaves the future (and its work) alone.

    ``notice()`` gives the line shown when a notebook cell is interrupted while waiting.
    """
    try:
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        if future.done() or not _in_notebook_cell():
            raise
        raise WaitInterrupted(notice()) from None
