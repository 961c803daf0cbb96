"""A simulated server running in a daemon thread with its own event loop.

This is what `sim.serve()` returns: usable from plain synchronous code, from a notebook cell
(whose loop it does not touch) and from tests.
"""

from __future__ import annotations

import asyncio
import threading

from comfy_widgets.sim.faults import Faults
from comfy_widgets.sim.server import SimServer, SimSettings

START_TIMEOUT = 30.0


class SimHandle:
    """Control of a SimServer that lives on its own thread: url, port, stop, restart, faults."""

    def __init__(self, settings: SimSettings) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.server = SimServer(settings)
        self._thread = threading.Thread(target=self._run, name="comfy-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the simulated ComfyUI server did not start in time")
        if self._error is not None:
            raise RuntimeError("the simulated ComfyUI server failed to start") from self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as ex:  # noqa: BLE001 - reported to the starting thread
            self._error = ex
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return self.server.url

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server.port

    @property
    def settings(self) -> SimSettings:
        """Knobs that may be changed while running (seconds_per_step, previews, models)."""
        return self.server.settings

    @property
    def faults(self) -> Faults:
        """Fault injection (drop_sockets, fail_node, malformed_frames, send_malformed)."""
        return self.server.faults

    def _call(self, coro, timeout: float = 60.0):
        """Run a coroutine on the server's loop and wait for it (not from that loop itself)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("called on the simulator's own thread; await the async method")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def restart(self, keep_state: bool = False, down_for: float = 0.0) -> None:
        """Stop and start on the same port; see SimServer.arestart for keep_state."""
        self._call(self.server.arestart(keep_state=keep_state, down_for=down_for))

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt, like POST /interrupt."""
        self._loop.call_soon_threadsafe(self.server.interrupt, prompt_id)

    def stop(self) -> None:
        """Shut the server down and end its thread (idempotent)."""
        if not self._thread.is_alive():
            return
        self._call(self.server.astop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SimHandle {self.url}>"
