"""The event loops comfy_widgets runs its I/O on: the caller's running loop (the kernel's, in
Jupyter), else one shared loop on a daemon thread for plain scripts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_background_lock = threading.Lock()
_background: asyncio.AbstractEventLoop | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared event loop on a daemon thread, used when no loop is running (plain scripts)."""
    global _background
    with _background_lock:
        if _background is None or _background.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="comfy_widgets-loop", daemon=True
            )
            thread.start()
            _background = loop
        return _background


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``, cancelled after ``seconds`` with ``asyncio.TimeoutError``: through
    ``asyncio.timeout`` where Python has it (3.11+), which makes no task of its own (a task
    per output fetched is a loop hand-over each), else ``asyncio.wait_for``."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class LoopBound:
    """Base of an object whose I/O runs on one event loop (a backend): the loop running when it
    was made or first used (the kernel's, in Jupyter), else the shared background loop, rebound
    if that loop was closed. Calls from other threads (widget callbacks on subshell threads) are
    handed over to it. Subclasses set ``_lock`` and ``_loop`` and reset loop-bound state in
    ``_rebind``."""

    _lock: threading.Lock
    _loop: asyncio.AbstractEventLoop | None

    async def _aclose_here(self) -> None:
        """Close connections and stop background tasks (on this object's loop)."""

    async def aclose(self) -> None:
        """Close everything this object opened (nothing if its loop is gone)."""
        if self._loop is None or self._loop.is_closed():
            return
        await self._on_loop(self._aclose_here())

    def close(self) -> None:
        """Blocking ``aclose`` for scripts (outside a running loop)."""
        if self._loop is None or self._loop.is_closed():
            return
        if running_loop() is not None:
            self.call_soon(lambda: asyncio.ensure_future(self._aclose_here()))
            return
        self.spawn(self._aclose_here()).result(timeout=10)

    def _rebind(self) -> None:
        """Drop state tied to a previous loop (called, under the lock, before binding anew)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop all of this object's I/O runs on (bound on first use, rebound if closed)."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._rebind()
                self._loop = running_loop() or background_loop()
            return self._loop

    def on_loop_thread(self) -> bool:
        """True when called from code running on this object's loop."""
        return running_loop() is self.loop

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on this object's loop, from any thread."""
        if self.on_loop_thread():
            self.loop.call_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start ``coro`` on this object's loop from any thread; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await ``coro`` on this object's loop, whichever loop the caller runs on."""
        if self.on_loop_thread():
            return await coro
        return await asyncio.wrap_future(self.spawn(coro))
