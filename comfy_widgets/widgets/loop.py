"""Hand work from widget callbacks to the kernel's main event loop.

JupyterLab 4.6 can deliver button clicks on a kernel-subshell thread that runs its own asyncio
loop; anything those callbacks start must run on the loop the notebook's cells use instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


def current_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread (the kernel's, when called from a cell), or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_on(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop`` (now, if this thread already runs it or there is no loop)."""
    if loop is None or loop.is_closed() or current_loop() is loop:
        fn(*args)
    else:
        loop.call_soon_threadsafe(fn, *args)


def spawn_on(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
) -> concurrent.futures.Future[Any]:
    """Start ``coro`` as a task on ``loop`` from any thread; failures are logged, not lost."""
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    future.add_done_callback(_log_failure)
    return future


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("background widget task failed", exc_info=future.exception())
