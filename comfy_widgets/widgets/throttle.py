"""Coalesce a stream of updates into at most N sends per second, with a trailing flush.

Widgets use it so a server that reports progress 1,000 times a second still costs the browser at
most ``rate`` comm messages a second, and the last update is never lost.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class _Handle(Protocol):
    def cancel(self) -> None: ...


Scheduler = Callable[[float, Callable[[], None]], _Handle]


def default_call_later(delay: float, fn: Callable[[], None]) -> _Handle:
    """Run ``fn`` after ``delay`` s on this thread's running loop, else on a timer thread."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        timer = threading.Timer(delay, fn)
        timer.daemon = True
        timer.start()
        return timer
    return loop.call_later(delay, fn)


class Throttle:
    """Merge pushed changes (later values win) and hand them to ``send`` at most ``rate`` times/s.

    A push that comes sooner than ``1/rate`` after the previous send is held back; one trailing
    send delivers everything held back as soon as the interval has passed. Thread-safe.
    """

    def __init__(
        self,
        send: Callable[[dict[Any, Any]], None],  # keys: trait names, or item indexes
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        call_later: Scheduler = default_call_later,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self._send = send
        self.interval = 1.0 / rate
        self._clock = clock
        self._call_later = call_later
        self._lock = threading.Lock()
        self._pending: dict[Any, Any] = {}
        self._last_sent = float("-inf")
        self._timer: _Handle | None = None
        self._closed = False
        self._delivering = 0  # sends taken from _pending but not yet handed over
        self.sends = 0

    def push(self, changes: dict[Any, Any]) -> None:
        """Queue ``changes``; send now if the interval allows, else ensure a trailing send."""
        with self._lock:
            if self._closed:
                return
            self._pending.update(changes)
            if self._timer is not None:
                return
            wait = self._last_sent + self.interval - self._clock()
            if wait > 0:
                self._timer = self._call_later(wait, self._trailing)
                return
            batch = self._take()
        self._deliver(batch)

    def close(self) -> None:
        """Drop anything pending and cancel the trailing send (the owner is going away)."""
        with self._lock:
            self._closed = True
            self._pending = {}
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    @property
    def pending(self) -> bool:
        """True while some pushed change has not been sent yet (or its send is still running)."""
        with self._lock:
            return bool(self._pending) or self._delivering > 0

    def _trailing(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed or not self._pending:
                return
            batch = self._take()
        self._deliver(batch)

    def _take(self) -> dict[Any, Any]:
        batch, self._pending = self._pending, {}
        self._last_sent = self._clock()
        self.sends += 1
        self._delivering += 1
        return batch

    def _deliver(self, batch: dict[Any, Any]) -> None:
        try:
            self._send(batch)
        finally:
            with self._lock:
                self._delivering -= 1
