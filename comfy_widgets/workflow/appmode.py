"""The inputs a workflow's author chose in the frontend's App Mode (``extra.linearData``).

Frontend 1.58 saves App Mode's choices in the root graph's ``extra``::

    "linearData": {"inputs": [[node_id, widget_name, {"height": 120}], ...], "outputs": [node_id]}

(``LinearData`` in ``platform/workflow/management/stores/comfyWorkflow.ts``; written by
``appModeStore.ts``). ``node_id`` is a node of the root graph or of a subgraph definition
(``resolveNode`` looks in both; a promoted widget is stored by its inner node and widget), and
the widget's label is the one the author gave it (``renameWidget`` stores it as the ``label`` of
the node's input for that widget).
"""

from __future__ import annotations

from typing import Any

#: At most this many App Mode entries are read (a hand-made file could list millions).
MAX_ENTRIES = 1000


def app_mode_inputs(ui: dict[str, Any], prompt: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(canonical key ``"<exec id>.<widget>"``, author's label or None) per App Mode input, in
    the author's order; entries whose node is not in the prompt are left out."""
    extra = ui.get("extra")
    linear = extra.get("linearData") if isinstance(extra, dict) else None
    entries = linear.get("inputs") if isinstance(linear, dict) else None
    if not isinstance(entries, list):
        return []
    index = _NodeIndex(ui)
    chosen: list[tuple[str, str | None]] = []
    for entry in entries[:MAX_ENTRIES]:
        if not isinstance(entry, list) or len(entry) < 2 or not isinstance(entry[1], str):
            continue
        node_id, widget = entry[0], entry[1]
        if isinstance(node_id, bool) or not isinstance(node_id, (int, str)):
            continue
        found = index.find(node_id)
        if found is None:
            continue
        exec_ids, raw = found
        exec_id = next((e for e in exec_ids if e in prompt), None)
        if exec_id is not None:
            chosen.append((f"{exec_id}.{widget}", _label(raw, widget)))
    return chosen


def _label(raw: dict[str, Any], widget: str) -> str | None:
    """The label the author gave a widget (stored on the node input that carries it)."""
    for inp in raw.get("inputs") or []:
        if isinstance(inp, dict) and (inp.get("widget") or {}).get("name") == widget:
            label = inp.get("label")
            return label if isinstance(label, str) and label else None
    return None


class _NodeIndex:
    """Where a node id lives: the root graph, else the subgraph definitions (expanded into the
    execution ids of every instance, as the prompt names them)."""

    def __init__(self, ui: dict[str, Any]):
        self.root = ui
        subgraphs = (ui.get("definitions") or {}).get("subgraphs") or []
        self.subgraphs = {
            str(sub.get("id")): sub for sub in subgraphs if isinstance(sub, dict) and sub.get("id")
        }

    def find(self, node_id: Any) -> tuple[list[str], dict[str, Any]] | None:
        for raw in self.root.get("nodes") or []:
            if isinstance(raw, dict) and str(raw.get("id")) == str(node_id):
                return [str(raw.get("id"))], raw
        for sub_id, sub in self.subgraphs.items():
            for raw in sub.get("nodes") or []:
                if isinstance(raw, dict) and str(raw.get("id")) == str(node_id):
                    paths = self._instance_paths(sub_id, self.root, (), 0)
                    return [":".join((*path, str(raw["id"]))) for path in paths], raw
        return None

    def _instance_paths(
        self, sub_id: str, graph: dict[str, Any], path: tuple[str, ...], depth: int
    ) -> list[tuple[str, ...]]:
        """Execution-id paths of every instance of subgraph ``sub_id`` under ``graph``."""
        if depth > 16:
            return []
        found: list[tuple[str, ...]] = []
        for raw in graph.get("nodes") or []:
            if not isinstance(raw, dict):
                continue
            node_type = str(raw.get("type"))
            here = (*path, str(raw.get("id")))
            if node_type == sub_id:
                found.append(here)
            elif node_type in self.subgraphs:
                found += self._instance_paths(sub_id, self.subgraphs[node_type], here, depth + 1)
        return found
