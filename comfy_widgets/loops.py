"""The event loops comfy_widgets runs its I/O on: the caller's running loop (the kernel's, in
Jupyter), else one shared loop on a daemon thread for plain scripts."""

from __future__ import annotations

import asyncio
import threading

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


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
