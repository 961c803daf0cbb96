"""Per-prompt node progress, sent as `progress_state` frames (comfy_execution/progress.py).

Every frame carries all non-pending nodes of the prompt so far. Plain nodes go 0.0/1.0 ->
1.0/1.0 (floats); sampler steps are ints; a node finished without starting (a cached output
node) shows 1/1 (ints), as the real registry's defaults do.
"""

from __future__ import annotations

from collections.abc import Callable


class ProgressRegistry:
    """Node states of one prompt; `send(data)` emits a progress_state frame."""

    def __init__(self, prompt_id: str, send: Callable[[dict], None]) -> None:
        self.prompt_id = prompt_id
        self.send = send
        self.nodes: dict[str, dict] = {}

    def _entry(self, node_id: str) -> dict:
        return self.nodes.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})

    def start(self, node_id: str) -> None:
        """The node begins: running 0.0/1.0."""
        self._entry(node_id).update(state="running", value=0.0, max=1.0)
        self._emit()

    def update(self, node_id: str, value: int, maximum: int) -> None:
        """A sampler step: running value/max."""
        self._entry(node_id).update(state="running", value=value, max=maximum)
        self._emit()

    def finish(self, node_id: str) -> None:
        """The node is done: finished with value = max."""
        entry = self._entry(node_id)
        entry.update(state="finished", value=entry["max"])
        self._emit()

    def _emit(self) -> None:
        nodes = {
            node_id: {"value": e["value"], "max": e["max"], "state": e["state"],
                      "node_id": node_id, "prompt_id": self.prompt_id,
                      "display_node_id": node_id, "parent_node_id": None,
                      "real_node_id": node_id}
            for node_id, e in self.nodes.items() if e["state"] != "pending"
        }
        self.send({"prompt_id": self.prompt_id, "nodes": nodes})
