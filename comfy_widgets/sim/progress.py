"""Per-prompt node progress, sent as `progress_state` frames (comfy_execution/progress.py).

Every frame carries all non-pending nodes of the prompt so far. Plain nodes go 0.0/1.0 ->
1.0/1.0 (floats); sampler steps are ints; a node finished without starting (a cached output
node) shows 1/1 (ints), as the real registry's defaults do.
"""

from __future__ import annotations

import json
from collections.abc import Callable


class ProgressRegistry:
    """Node states of one prompt; `send(text)` emits a serialized progress_state frame.

    Each node's JSON is kept and only the changed node is re-serialized, so a frame costs one
    small json.dumps instead of one over every node (the text is what json.dumps of the whole
    frame gives, default separators included).
    """

    def __init__(self, prompt_id: str, send: Callable[[str], None]) -> None:
        self.prompt_id = prompt_id
        self.send = send
        self.nodes: dict[str, dict] = {}
        self._json: dict[str, str] = {}  # node id -> '"id": {...}' of the nodes sent so far
        self._head = (
            '{"type": "progress_state", "data": {"prompt_id": '
            f'{json.dumps(prompt_id)}, "nodes": {{'
        )

    def _entry(self, node_id: str) -> dict:
        return self.nodes.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})

    def start(self, node_id: str) -> None:
        """The node begins: running 0.0/1.0."""
        self._entry(node_id).update(state="running", value=0.0, max=1.0)
        self._emit(node_id)

    def update(self, node_id: str, value: int, maximum: int) -> None:
        """A sampler step: running value/max."""
        self._entry(node_id).update(state="running", value=value, max=maximum)
        self._emit(node_id)

    def finish(self, node_id: str) -> None:
        """The node is done: finished with value = max."""
        entry = self._entry(node_id)
        entry.update(state="finished", value=entry["max"])
        self._emit(node_id)

    def _emit(self, changed: str) -> None:
        e = self.nodes[changed]
        self._json[changed] = (
            json.dumps(changed)
            + ": "
            + json.dumps(
                {
                    "value": e["value"],
                    "max": e["max"],
                    "state": e["state"],
                    "node_id": changed,
                    "prompt_id": self.prompt_id,
                    "display_node_id": changed,
                    "parent_node_id": None,
                    "real_node_id": changed,
                }
            )
        )
        self.send(self._head + ", ".join(self._json.values()) + "}}}")
