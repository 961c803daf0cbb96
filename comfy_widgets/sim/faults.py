"""Fault knobs for tests: drop sockets, fail nodes, send malformed frames.

Methods are safe to call from any thread; work that touches sockets is handed to the server's
event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfy_widgets.sim.server import SimServer

MALFORMED_TEXT = "{this is not json"
UNKNOWN_EVENT = '{"type": "sim_unknown_event", "data": {"note": "ignore me"}}'
UNKNOWN_BINARY = b"\x00\x00\x00\x63junk"  # event type 99, which ComfyUI never sends


class SimulatedNodeError(Exception):
    """The error a node raises when a test asked it to fail."""


class Faults:
    """Injected failures of one simulated server."""

    def __init__(self, server: SimServer) -> None:
        self._server = server
        self._failing: dict[str, int] = {}
        self.malformed = False
        self.held: set[str] = set()  # node ids whose execution waits (see hold_node)

    def drop_sockets(self) -> None:
        """Close every open WebSocket now (clients see the socket end and must reconnect)."""
        self._server.call_in_loop(self._server.close_sockets)

    def fail_node(self, target: str, times: int = 1) -> None:
        """Make the next `times` executions of a node (class_type or node id) fail."""
        self._failing[str(target)] = self._failing.get(str(target), 0) + times

    def hold_node(self, node_id: str, held: bool = True) -> None:
        """Keep a node of the running prompt working (after its `executing` frame) until
        released with held=False or interrupted, as a slow real node would."""
        if held:
            self.held.add(str(node_id))
        else:
            self.held.discard(str(node_id))

    def malformed_frames(self, enabled: bool = True) -> None:
        """When enabled, every prompt's client gets junk frames right after execution_start."""
        self.malformed = enabled

    def send_malformed(self) -> None:
        """Send junk frames (bad JSON, an unknown type, an unknown binary event) to every socket."""
        self._server.call_in_loop(self._broadcast_junk)

    def clear(self) -> None:
        """Forget every pending fault."""
        self._failing.clear()
        self.malformed = False
        self.held.clear()

    async def _broadcast_junk(self) -> None:
        self.inject(None, force=True)

    def inject_malformed(self, client_id: str | None) -> None:
        """Called by the executor after execution_start; sends junk if enabled."""
        self.inject(client_id, force=False)

    def inject(self, sid: str | None, force: bool) -> None:
        """Queue the junk frames for `sid` (None: every socket)."""
        if not (force or self.malformed):
            return
        for payload in (MALFORMED_TEXT, UNKNOWN_EVENT, UNKNOWN_BINARY):
            self._server.send_raw(payload, sid)

    def check_node(self, node_id: str, class_type: str) -> None:
        """Raise SimulatedNodeError if this node was asked to fail."""
        for target in (node_id, class_type):
            if self._failing.get(target, 0) > 0:
                self._failing[target] -= 1
                if not self._failing[target]:
                    del self._failing[target]
                raise SimulatedNodeError(
                    f"Simulated failure of node {node_id} ({class_type}), injected by a test"
                )
