"""UI (litegraph) workflow -> API prompt, following the rules of ComfyUI frontend 1.58.1.

This mirrors ``graphToPrompt`` in the frontend (``executionUtil.ts`` and ``ExecutableNodeDTO``):
nodes are visited in execution order with subgraph instances expanded into ``"<inst>:<inner>"``
ids; widget values come first in widget order, then resolved links in input-slot order; virtual,
muted and bypassed nodes are dropped, links through bypassed nodes and Reroutes are resolved to
the real source, and inputs left pointing at dropped nodes are removed.
"""

from __future__ import annotations

import copy
import json
import marshal
import math
import re
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_HALF_DOWN, ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from comfy_widgets.errors import UnknownNodeTypeError, WorkflowError
from comfy_widgets.workflow.frontend_text import (
    apply_text_replacements,
    js_string,
    process_dynamic_prompt,
)
from comfy_widgets.workflow.object_info import (
    CUSTOM_COMBO,
    DYNAMIC_COMBO,
    ObjectInfo,
    Widget,
    child_widgets,
    default_option,
    migrate_widget_values,
    option_children,
)

#: Frontend-only node types: never sent to the server.
VIRTUAL_TYPES = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote"})
#: Nodes whose ``filename_prefix`` gets ``%date:…%`` / ``%Node.widget%`` replacement.
SAVE_NODE_TYPES = frozenset(
    {
        "SaveImage",
        "SaveAnimatedWEBP",
        "SaveWEBM",
        "SaveAudio",
        "SaveGLB",
        "SaveAnimatedPNG",
        "CLIPSave",
        "VAESave",
        "ModelSave",
        "LoraSave",
        "SaveLatent",
    }
)
#: Value types that ``_wrap`` returns unchanged.
_JSON_SCALARS = frozenset({str, int, bool, type(None)})
_ANNOTATED = re.compile(r"\[(input|output|temp)\]", re.IGNORECASE)
MODE_MUTED = 2
MODE_BYPASS = 4
_SKIPPED_MODES = (MODE_MUTED, MODE_BYPASS)
SUBGRAPH_INPUT_NODE = -10
SUBGRAPH_OUTPUT_NODE = -20


class _Undefined:
    """JavaScript's ``undefined``: a widget without any value, whose key is left out."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Any = _Undefined()


class Link(NamedTuple):
    """One link of a graph: from an output slot to an input slot."""

    id: Any
    origin_id: Any
    origin_slot: int
    target_id: Any
    target_slot: int
    type: Any


@dataclass
class Graph:
    """The root graph or one subgraph definition, with nodes in their stored order."""

    key: str
    nodes: dict[Any, dict[str, Any]]
    links: dict[Any, Link]
    definition: dict[str, Any] | None = None
    #: Output link lists repaired by the frontend's link fixer: {(node_id, slot): [link ids]}.
    fixed_outputs: dict[tuple[Any, int], list[Any]] = field(default_factory=dict)

    def output_links(self, raw: dict[str, Any], slot: int) -> list[Any]:
        """The link ids leaving one output slot (after the link fixer's repairs); read only."""
        if self.fixed_outputs:
            fixed = self.fixed_outputs.get((raw["id"], slot))
            if fixed is not None:
                return fixed
        outputs = raw.get("outputs") or []
        return (outputs[slot].get("links") or []) if slot < len(outputs) else []


@dataclass
class WidgetState:
    """A node's widgets after load: slots in order and their current values."""

    slots: list[Widget]
    values: list[Any]
    #: For a subgraph instance: per promoted widget, the inner (graph key, node id, widget).
    promoted_targets: list[tuple[str, Any, str]] = field(default_factory=list)

    def index(self, name: str) -> int:
        """Index of the first widget with this name, or -1."""
        for i, slot in enumerate(self.slots):
            if slot.name == name:
                return i
        return -1


@dataclass
class Node:
    """An executable view of one node at one place in the expanded graph (the frontend's DTO)."""

    exec_id: str
    graph: Graph
    raw: dict[str, Any]
    path: tuple[str, ...]
    instance: Node | None
    inputs: list[dict[str, Any]]
    #: The node's type (class name, virtual type, or subgraph definition id).
    type: str
    is_subgraph: bool
    #: 0 active, 2 muted, 4 bypassed.
    mode: int

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The node's output slots as stored."""
        return self.raw.get("outputs") or []


class Resolved(NamedTuple):
    """Where an input's value comes from: a node output, or a literal widget value."""

    origin_id: str = ""
    origin_slot: int = -1
    is_value: bool = False
    value: Any = None


def parse_links(raw_links: Any) -> dict[Any, Link]:
    """Read links stored either as 6-arrays (root graph) or as objects (subgraphs)."""
    links: dict[Any, Link] = {}
    for item in raw_links or []:
        if type(item) is list and len(item) == 6 and type(item[2]) is int and type(item[4]) is int:
            link = Link._make(item)  # the usual root-graph form: no conversion needed
        elif isinstance(item, (list, tuple)) and len(item) >= 5:
            link = Link(
                item[0],
                item[1],
                int(item[2]),
                item[3],
                int(item[4]),
                item[5] if len(item) > 5 else None,
            )
        elif isinstance(item, dict) and "id" in item:
            link = Link(
                item["id"],
                item.get("origin_id"),
                int(item.get("origin_slot") or 0),
                item.get("target_id"),
                int(item.get("target_slot") or 0),
                item.get("type"),
            )
        else:
            continue
        links[link.id] = link
    return links


def _make_graph(key: str, data: dict[str, Any], definition: dict[str, Any] | None) -> Graph:
    """Index one graph's nodes by id (keeping stored order) and its links by id."""
    nodes: dict[Any, dict[str, Any]] = {}
    for node in data.get("nodes") or []:
        if not isinstance(node, dict) or "id" not in node:
            raise WorkflowError(f"a node in graph {key!r} has no id: {str(node)[:80]}")
        nodes[node["id"]] = node
    return Graph(key, nodes, parse_links(data.get("links")), definition)


def dedupe_subgraph_node_ids(ui: dict[str, Any]) -> list[dict[str, Any]]:
    """The subgraph definitions with inner node ids made unique, as frontend 1.58 does on load
    (``deduplicateClonedSubgraphNodeIds`` in subgraphDeduplication.ts).

    Ids already used by a root node or an earlier definition's node get the next free id after
    the graph's last node id, and the definition's links follow; this changes the execution ids
    the prompt uses (``41:43`` becomes ``41:53``). Definitions that need no change are returned
    as they are; changed ones are copies (the workflow itself is never modified).
    """
    subgraphs = [
        sub
        for sub in (ui.get("definitions") or {}).get("subgraphs") or []
        if isinstance(sub, dict) and sub.get("id")
    ]
    if not subgraphs:
        return []
    used = {str(n.get("id")) for n in ui.get("nodes") or [] if isinstance(n, dict)}
    numbers = {int(k) for k in used if _is_array_index(k)}
    state = ui.get("state")
    last = state.get("lastNodeId") if isinstance(state, dict) else ui.get("last_node_id")
    last = last if isinstance(last, int) and not isinstance(last, bool) and last >= 0 else 0
    result = []
    for sub in subgraphs:
        remap: dict[str, int] = {}
        seen: set[str] = set()
        for node in sub.get("nodes") or []:
            if not isinstance(node, dict):
                continue
            key = str(node.get("id"))
            if key in seen:
                continue  # a repeat inside one definition: the first one is kept
            seen.add(key)
            if key in used:
                new_id = last + 1
                while new_id in numbers:
                    new_id += 1
                last = new_id
                remap[key] = new_id
                numbers.add(new_id)
                used.add(str(new_id))
            else:
                used.add(key)
                if _is_array_index(key):
                    numbers.add(int(key))
                    last = max(last, int(key))
        result.append(_one_link_per_input(_renumbered(sub, remap) if remap else sub))
    return result


def _one_link_per_input(sub: dict[str, Any]) -> dict[str, Any]:
    """Keep one link per target slot of a subgraph, as ``normalizeConfiguredTopology`` does
    (linkDeduplication.ts): the first, unless only a later one is held by the target input;
    references to a dropped link move to the one kept."""
    links = sub.get("links")
    if not isinstance(links, list) or len(links) < 2:
        return sub
    held = {
        inp.get("link")
        for node in sub.get("nodes") or []
        if isinstance(node, dict)
        for inp in node.get("inputs") or []
        if isinstance(inp, dict) and inp.get("link") is not None
    }
    kept: list[Any] = []
    at: dict[tuple[str, Any], int] = {}
    moved: dict[Any, Any] = {}
    for link in links:
        fields = _link_fields(link)
        if fields is None:
            kept.append(link)
            continue
        link_id, origin, origin_slot, target, target_slot = fields
        index = at.get((str(target), target_slot))
        if index is None:
            at[(str(target), target_slot)] = len(kept)
            kept.append(link)
            continue
        survivor = _link_fields(kept[index]) or fields
        same = str(survivor[1]) == str(origin) and survivor[2] == origin_slot
        if not same and link_id in held and survivor[0] not in held:
            kept[index] = link
            for old, new in list(moved.items()):
                if new == survivor[0]:
                    moved[old] = link_id
            moved[survivor[0]] = link_id
        else:
            moved[link_id] = survivor[0]
    if len(kept) == len(links):
        return sub
    nodes = []
    for node in sub.get("nodes") or []:
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, list) and any(
            isinstance(i, dict) and i.get("link") in moved for i in inputs
        ):
            node = {
                **node,
                "inputs": [
                    {**i, "link": moved[i["link"]]}
                    if isinstance(i, dict) and i.get("link") in moved
                    else i
                    for i in inputs
                ],
            }
        nodes.append(node)
    return {**sub, "nodes": nodes, "links": kept}


def _link_fields(link: Any) -> tuple[Any, Any, Any, Any, Any] | None:
    """(id, origin id, origin slot, target id, target slot) of a stored link, or None."""
    if isinstance(link, dict):
        return (
            link.get("id"),
            link.get("origin_id"),
            link.get("origin_slot"),
            link.get("target_id"),
            link.get("target_slot"),
        )
    if isinstance(link, list) and len(link) >= 5:
        return link[0], link[1], link[2], link[3], link[4]
    return None


def _renumbered(sub: dict[str, Any], remap: dict[str, int]) -> dict[str, Any]:
    """A copy of a subgraph definition with node ids (and the links' ends) remapped."""
    nodes = []
    for node in sub.get("nodes") or []:
        if isinstance(node, dict) and str(node.get("id")) in remap:
            node = {**node, "id": remap[str(node["id"])]}
        nodes.append(node)
    links = []
    for link in sub.get("links") or []:
        if isinstance(link, dict):
            link = {
                **link,
                "origin_id": remap.get(str(link.get("origin_id")), link.get("origin_id")),
                "target_id": remap.get(str(link.get("target_id")), link.get("target_id")),
            }
        elif isinstance(link, list) and len(link) >= 5:
            link = [
                link[0],
                remap.get(str(link[1]), link[1]),
                link[2],
                remap.get(str(link[3]), link[3]),
                *link[4:],
            ]
        links.append(link)
    return {**sub, "nodes": nodes, "links": links}


def fix_output_links(graph: Graph) -> None:
    """Repair output link lists the way the frontend's link fixer does before loading.

    A link that its target input holds but its origin output does not list is added to the
    output; one whose target input holds another link is removed from it.
    """
    for link in reversed(list(graph.links.values())):
        origin = graph.nodes.get(link.origin_id)
        target = graph.nodes.get(link.target_id)
        if origin is None or target is None:
            continue
        inputs = target.get("inputs") or []
        held = inputs[link.target_slot].get("link") if link.target_slot < len(inputs) else None
        if held is None:
            continue
        listed = graph.output_links(origin, link.origin_slot)
        if held == link.id and link.id not in listed:
            graph.fixed_outputs[(origin["id"], link.origin_slot)] = [*listed, link.id]
        elif held != link.id and link.id in listed:
            graph.fixed_outputs[(origin["id"], link.origin_slot)] = [
                i for i in listed if i != link.id
            ]


def is_valid_connection(type_a: Any, type_b: Any) -> bool:
    """litegraph's type compatibility check: ``*``/empty match anything, ``A,B`` lists match."""
    if type_a in ("", "*", None, 0) or type_b in ("", "*", None, 0) or type_a == type_b:
        return True
    a, b = str(type_a).lower(), str(type_b).lower()
    if "," not in a and "," not in b:
        return a == b
    return any(x == y for x in a.split(",") for y in b.split(","))


def clone_json(value: Any) -> Any:
    """A deep copy of JSON data, many times faster than copy.deepcopy (marshal round trip)."""
    try:
        return marshal.loads(marshal.dumps(value))
    except ValueError:  # something marshal cannot write: copy it the slow way
        return copy.deepcopy(value)


def js_number(value: Any) -> Any:
    """Write integral floats as ints (as JavaScript does) inside any JSON value."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, list):
        return [js_number(v) for v in value]
    if isinstance(value, dict):
        return {k: js_number(v) for k, v in value.items()}
    return value


def js_key_order(obj: dict[str, Any]) -> dict[str, Any]:
    """Reorder keys as JavaScript objects do: integer-like keys ascending, then insertion order."""
    ints = [k for k in obj if k[:1].isdigit() and _is_array_index(k)]
    if not ints:
        return obj
    ordered = {k: obj[k] for k in sorted(ints, key=int)}
    ordered.update((k, v) for k, v in obj.items() if not _is_array_index(k))
    return ordered


def _is_array_index(key: str) -> bool:
    """True for canonical non-negative integer strings below 2**32 - 1 (JS array indices)."""
    return key.isdigit() and (key == "0" or not key.startswith("0")) and int(key) < 2**32 - 1


class Converter:
    """Converts one UI workflow; create one per conversion (it keeps per-run widget state)."""

    def __init__(
        self, ui: dict[str, Any], object_info: ObjectInfo, allow_unknown_nodes: bool = False
    ):
        self.object_info = object_info
        self.allow_unknown = allow_unknown_nodes
        self.root = _make_graph("root", ui, None)
        fix_output_links(self.root)
        self.subgraphs: dict[str, Graph] = {}
        for sub in dedupe_subgraph_node_ids(ui):
            if isinstance(sub, dict) and sub.get("id"):
                self.subgraphs[str(sub["id"])] = _make_graph(str(sub["id"]), sub, sub)
        self.states: dict[tuple[str, Any], WidgetState] = {}
        self.nodes: dict[str, Node] = {}
        self._input_cache: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        self._templates: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        self._layouts: dict[str, tuple[list[Widget], tuple[Any, ...], tuple[int, ...]]] = {}
        #: ``control_after_generate`` of each emitted node's widgets: {exec_id: {field: mode}}.
        self.controls: dict[str, dict[str, str]] = {}
        #: The node being read, for errors about input the checks let through.
        self.where = "the workflow"
        #: Inputs fed by one PrimitiveNode: [(title, [(exec_id, field), ...]), ...].
        self.primitive_groups: list[tuple[str | None, list[tuple[str, str]]]] = []

    # --- public -------------------------------------------------------------------------------

    def convert(self) -> dict[str, Any]:
        """Run the whole conversion and return the API prompt."""
        self._configure_all()
        for raw in self._execution_order(self.root):
            # graphToPrompt does not ask a muted or bypassed top-level instance for its inner
            # nodes (nested ones still give theirs: ``SubgraphNode.getInnerNodes``).
            self._expand(raw, (), None, with_inner=(raw.get("mode") or 0) not in _SKIPPED_MODES)
        self._apply_primitives()
        output: dict[str, Any] = {}
        for node in self.nodes.values():
            self.where = f"node {node.exec_id} ({node.type})"
            entry = self._serialize(node)
            if entry is not None:
                output[node.exec_id] = entry
        return js_key_order(output)

    # --- loading: widget values ---------------------------------------------------------------

    def _is_subgraph(self, raw: dict[str, Any]) -> bool:
        return bool(self.subgraphs) and str(raw.get("type")) in self.subgraphs

    def _is_known(self, raw: dict[str, Any]) -> bool:
        node_type = str(raw.get("type"))
        return (
            node_type in VIRTUAL_TYPES
            or node_type in self.subgraphs
            or self.object_info.has(node_type)
        )

    def _configure_all(self) -> None:
        """Give every node its widget values, then build subgraph instances' promoted widgets."""
        graphs = [*self.subgraphs.values(), self.root]
        for graph in graphs:
            for node_id, raw in graph.nodes.items():
                if not self._is_subgraph(raw):
                    self.where = _where(graph, node_id, raw)
                    self.states[(graph.key, node_id)] = self._node_widgets(raw)
        for graph in graphs:
            for node_id, raw in graph.nodes.items():
                if self._is_subgraph(raw):
                    self.where = _where(graph, node_id, raw)
                    self._configure_instance(graph, node_id, raw, set())

    def _node_widgets(self, raw: dict[str, Any]) -> WidgetState:
        """Widgets of a regular node, filled positionally from ``widgets_values``."""
        stored = raw.get("widgets_values")
        stored = stored if isinstance(stored, list) else []
        node_type = str(raw.get("type"))
        if node_type == "PrimitiveNode":
            return WidgetState([Widget("value")], [stored[0] if stored else None])
        if node_type in VIRTUAL_TYPES:
            return WidgetState([], [])
        if not self.object_info.has(node_type):
            # placeholder widgets all called UNKNOWN: the widget store renames the repeats
            names = ["UNKNOWN", *(f"UNKNOWN_{i}" for i in range(1, len(stored)))][: len(stored)]
            return WidgetState(
                [Widget(name) for name in names], [_placeholder_value(v) for v in stored]
            )
        if self.object_info.is_dynamic(node_type):
            return configure_dynamic(self.object_info, node_type, stored)
        slots, defaults, stored_at = self._widget_layout(node_type)
        stored = migrate_widget_values(self.object_info, node_type, stored)
        values = list(defaults)
        for i, value in zip(stored_at, stored, strict=False):
            values[i] = value
        return WidgetState(slots, values)

    def _widget_layout(
        self, node_type: str
    ) -> tuple[list[Widget], tuple[Any, ...], tuple[int, ...]]:
        """A known class's widget slots, their default values and the indices of the stored
        ones (computed once per class; shared, never modified)."""
        layout = self._layouts.get(node_type)
        if layout is None:
            slots = list(self.object_info.widgets(node_type))
            layout = (
                slots,
                tuple(_default_value(slot) for slot in slots),
                tuple(i for i, slot in enumerate(slots) if slot.stored),
            )
            self._layouts[node_type] = layout
        return layout

    def _configure_instance(
        self, graph: Graph, node_id: Any, raw: dict[str, Any], seen: set[str]
    ) -> WidgetState:
        """Promote one widget per subgraph input and apply the instance's stored values."""
        key = (graph.key, node_id)
        if key in self.states:
            return self.states[key]
        sub = self.subgraphs[str(raw.get("type"))]
        if sub.key in seen:
            raise WorkflowError(f"subgraph {sub.key} contains itself (node {node_id})")
        state = WidgetState([], [])
        for inp in self._instance_inputs(raw):
            sub_input = _find_subgraph_input(sub, inp.get("name"))
            if sub_input is None:
                continue
            target = self._promoted_target(sub, sub_input, seen | {sub.key})
            if target is not None:
                state.slots.append(Widget(str(sub_input.get("name")), self._slot_spec(*target)))
                state.values.append(self._widget_value(*target))
                state.promoted_targets.append(target)
        self.states[key] = state
        stored = raw.get("widgets_values")
        for i, value in enumerate(stored if isinstance(stored, list) else []):
            if i < len(state.slots):
                self._set_widget(graph.key, node_id, state.slots[i].name, value)
        return state

    def _promoted_target(
        self, sub: Graph, sub_input: dict[str, Any], seen: set[str]
    ) -> tuple[str, Any, str] | None:
        """The inner widget a subgraph input promotes: the first linked input with a widget."""
        for link_id in sub_input.get("linkIds") or []:
            link = sub.links.get(link_id)
            target = sub.nodes.get(link.target_id) if link else None
            if target is None:
                continue
            target_input = _stored_target_input(target, link)
            widget_name = (target_input.get("widget") or {}).get("name") if target_input else None
            if not widget_name:
                continue
            state: WidgetState | None
            if self._is_subgraph(target):
                state = self._configure_instance(sub, target["id"], target, seen)
            else:
                state = self.states.get((sub.key, target["id"]))
            if state is not None and state.index(widget_name) >= 0:
                return (sub.key, target["id"], widget_name)
        return None

    def _instance_inputs(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        """An instance's input slots: the definition's, each taking the stored input of its name.

        The stored list is often shorter or in another order; slots follow the definition.
        """
        sub = self.subgraphs[str(raw.get("type"))]
        saved = {i.get("name"): i for i in raw.get("inputs") or [] if isinstance(i, dict)}
        return [
            {
                "name": s.get("name"),
                "type": s.get("type"),
                "link": None,
                **saved.get(s.get("name"), {}),
            }
            for s in (sub.definition or {}).get("inputs") or []
        ]

    def _inputs(self, graph: Graph, raw: dict[str, Any]) -> list[dict[str, Any]]:
        """A node's input slots after load, as the frontend rebuilds them.

        For a known class the slots follow the node definition (link sockets, then widget
        sockets) and take their links from the stored inputs of the same name; stored inputs
        the definition lacks come after, and widget sockets whose widget is gone are removed.
        """
        key = (graph.key, raw["id"])
        cached = self._input_cache.get(key)
        if cached is not None:
            return cached
        stored = [i for i in raw.get("inputs") or [] if isinstance(i, dict)]
        node_type = str(raw.get("type"))
        if self.object_info.has(node_type):
            state = self.states.get(key)
            names = None
            if state is not None and self.object_info.is_dynamic(node_type):
                names = frozenset(slot.name for slot in state.slots)
                stored = _drop_stale_option_inputs(state, stored)
            stored = self._rebuild_inputs(node_type, stored, names)
        self._input_cache[key] = stored
        return stored

    def _rebuild_inputs(
        self, node_type: str, stored: list[dict[str, Any]], names: frozenset[str] | None = None
    ) -> list[dict[str, Any]]:
        by_name = {i.get("name"): i for i in stored}
        rebuilt: list[dict[str, Any]] = []
        for template, overrides in self._slot_templates(node_type):
            saved = by_name.pop(template["name"], None)
            if saved is None:
                rebuilt.append(template)
            elif _holds(saved, overrides):
                rebuilt.append(saved)  # already what the definition imposes (never modified)
            else:
                rebuilt.append({**saved, **overrides})
        if by_name:
            names = names if names is not None else self.object_info.widget_names(node_type)
            rebuilt += [
                i
                for i in stored
                if i.get("name") in by_name
                and (not (i.get("widget") or {}).get("name") or i["widget"]["name"] in names)
            ]
        return rebuilt

    def _slot_templates(self, node_type: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Per input slot of a class: the unconnected slot, and the keys the definition imposes
        on a stored one (both shared, never modified)."""
        templates = self._templates.get(node_type)
        if templates is None:
            templates = []
            for name, slot_type, has_widget in self.object_info.input_slots(node_type):
                overrides = {
                    "name": name,
                    "type": slot_type,
                    **({"widget": {"name": name}} if has_widget else {}),
                }
                templates.append(({"link": None, **overrides}, overrides))
            self._templates[node_type] = templates
        return templates

    def _target_input(self, graph: Graph, link: Link) -> dict[str, Any] | None:
        """The input slot a link ends at (found by link id, else by slot index)."""
        target = graph.nodes.get(link.target_id)
        if target is None:
            return None
        inputs = (
            self._inputs(graph, target)
            if not self._is_subgraph(target)
            else self._instance_inputs(target)
        )
        for inp in inputs:
            if inp.get("link") == link.id:
                return inp
        return inputs[link.target_slot] if link.target_slot < len(inputs) else None

    def _run_widget_callback(self, graph_key: str, node_id: Any, name: str) -> None:
        """A PrimitiveNode calls the target widget's callback: numbers get rounded and clamped."""
        state = self.states.get((graph_key, node_id))
        i = state.index(name) if state is not None else -1
        if state is None or i < 0 or state.slots[i].spec is None:
            return
        adjusted = number_widget_callback(state.slots[i].spec, state.values[i])
        if adjusted is not state.values[i]:
            self._set_widget(graph_key, node_id, name, adjusted)

    def _slot_spec(self, graph_key: str, node_id: Any, name: str) -> Any:
        """The input spec behind a widget (promoted widgets copy their inner widget's)."""
        state = self.states.get((graph_key, node_id))
        if state is None:
            return None
        i = state.index(name)
        return state.slots[i].spec if i >= 0 else None

    def _widget_value(self, graph_key: str, node_id: Any, name: str) -> Any:
        state = self.states.get((graph_key, node_id))
        if state is None:
            return None
        i = state.index(name)
        return state.values[i] if i >= 0 else None

    def _set_widget(self, graph_key: str, node_id: Any, name: str, value: Any) -> None:
        """Set a widget value; a promoted widget also writes through to its inner widget."""
        state = self.states.get((graph_key, node_id))
        if state is None:
            return
        i = state.index(name)
        if i < 0:
            return
        state.values[i] = value
        if state.promoted_targets:
            self._set_widget(*state.promoted_targets[i], value)

    # --- execution order and subgraph expansion ---------------------------------------------

    def _execution_order(self, graph: Graph) -> list[dict[str, Any]]:
        """litegraph's computeExecutionOrder: Kahn's algorithm over stored node order."""
        pending: dict[Any, int] = {}
        ready: deque[dict[str, Any]] = deque()
        for node_id, raw in graph.nodes.items():
            inputs = (
                self._instance_inputs(raw) if self._is_subgraph(raw) else self._inputs(graph, raw)
            )
            count = 0
            for inp in inputs:
                if inp.get("link") is not None:
                    count += 1
            if count == 0:
                ready.append(raw)
            else:
                pending[node_id] = count
        order: list[dict[str, Any]] = []
        done: set[Any] = set()
        visited_links: set[Any] = set()
        links = graph.links
        while ready:
            raw = ready.popleft()
            order.append(raw)
            done.add(raw["id"])
            for slot in range(len(raw.get("outputs") or [])):
                for link_id in graph.output_links(raw, slot):
                    link = links.get(link_id)
                    if link is None or link_id in visited_links:
                        continue
                    visited_links.add(link_id)
                    target_id = link.target_id
                    if target_id in pending and target_id in graph.nodes:
                        pending[target_id] -= 1
                        if pending[target_id] == 0:
                            ready.append(graph.nodes[target_id])
        rest = [raw for node_id, raw in graph.nodes.items() if node_id not in done]
        rest.sort(key=lambda raw: _js_key_rank(raw["id"]))
        return order + rest

    def _expand(
        self,
        raw: dict[str, Any],
        path: tuple[str, ...],
        instance: Node | None,
        with_inner: bool = True,
    ) -> None:
        """Register a node (and, for a subgraph instance, its inner nodes depth-first)."""
        graph = self.root if instance is None else self.subgraphs[instance.type]
        exec_id = ":".join((*path, str(raw["id"])))
        is_sub = self._is_subgraph(raw)
        inputs = self._instance_inputs(raw) if is_sub else self._inputs(graph, raw)
        node = Node(
            exec_id,
            graph,
            raw,
            path,
            instance,
            inputs,
            str(raw.get("type")),
            is_sub,
            raw.get("mode") or 0,
        )
        if exec_id not in self.nodes:
            self.nodes[exec_id] = node
        if not is_sub or not with_inner:
            return
        if len(path) > 32:
            raise WorkflowError(f"subgraphs nested too deeply at node {exec_id}")
        sub = self.subgraphs[node.type]
        for inner in sub.nodes.values():
            self._expand(inner, (*path, str(raw["id"])), node)

    # --- primitives ------------------------------------------------------------------------

    def _apply_primitives(self) -> None:
        """Each PrimitiveNode writes its value into the widget of every input it feeds."""
        for node in list(self.nodes.values()):
            if node.type != "PrimitiveNode":
                continue
            link_ids = node.graph.output_links(node.raw, 0)
            own = [node.graph.links[i] for i in link_ids if i in node.graph.links]
            if not own:
                continue
            value = self._primitive_value(node, own[0])
            # The frontend looks the links up in the root graph, even from inside a subgraph
            # (where it fails when the id is missing; then this uses the subgraph's own link).
            links = [
                link
                for i in link_ids
                if (link := self.root.links.get(i) or node.graph.links.get(i)) is not None
            ]
            targets: list[tuple[str, str]] = []
            self.primitive_groups.append((node.raw.get("title"), targets))
            for link in links:
                target = node.graph.nodes.get(link.target_id)
                target_input = self._target_input(node.graph, link)
                if target is None or target_input is None:
                    continue
                widget_name = (target_input.get("widget") or {}).get("name")
                if widget_name:
                    self._set_widget(node.graph.key, target["id"], widget_name, value)
                    self._run_widget_callback(node.graph.key, target["id"], widget_name)
                    targets.append((":".join((*node.path, str(target["id"]))), widget_name))

    def _primitive_value(self, node: Node, first_link: Link) -> Any:
        """A PrimitiveNode's value: its stored one, else its first target's widget value.

        Text values get ``%Node.widget%`` replacement when the node asks for it; a first target
        of an unknown type gives no value at all (as in the frontend).
        """
        first = node.graph.nodes.get(first_link.target_id)
        if first is not None and not self._is_known(first):
            return None
        stored = node.raw.get("widgets_values")
        if isinstance(stored, list) and stored:
            value = stored[0]
        else:
            target_input = self._target_input(node.graph, first_link) or {}
            name = (target_input.get("widget") or {}).get("name")
            value = self._widget_value(node.graph.key, first_link.target_id, name) if name else None
        replace = (node.raw.get("properties") or {}).get("Run widget replace on values")
        if replace and value and isinstance(value, str):
            value = apply_text_replacements(value, self._lookup_widget)
        return value

    # --- serialization ----------------------------------------------------------------------

    def _serialize(self, node: Node) -> dict[str, Any] | None:
        """The API entry for one node, or None for virtual, muted and bypassed nodes."""
        if node.type in VIRTUAL_TYPES or node.is_subgraph or node.mode in (MODE_MUTED, MODE_BYPASS):
            return None
        known = self.object_info.has(node.type)
        if not known and not self.allow_unknown:
            title = node.raw.get("title")
            raise UnknownNodeTypeError(
                f"node {node.exec_id} has type {node.type!r}"
                + (f" (title {title!r})" if title else "")
                + ", which this ComfyUI server does not know; install the custom node or pass "
                "allow_unknown_nodes=True",
                node_id=node.exec_id,
                node_type=node.type,
                title=title,
            )
        inputs: dict[str, Any] = {}
        state = self.states.get((node.graph.key, node.raw["id"]))
        save_node = node.type in SAVE_NODE_TYPES
        for slot, value in zip(
            state.slots if state else [], state.values if state else [], strict=True
        ):
            if slot.in_prompt and slot.name and value is not UNDEFINED:
                if save_node or not slot.plain:
                    value = self._serialize_widget(node, slot, value)
                if slot.spec is not None and slot.spec.type == "CURVE" and value is not None:
                    inputs[slot.name] = {"__type__": "CURVE", "__value__": js_number(value)}
                    continue
                inputs[slot.name] = value if type(value) in _JSON_SCALARS else _wrap(value)
        for i, inp in enumerate(node.inputs):
            if inp.get("link") is None:
                continue
            resolved = self._resolve_input(node, i, set())
            if resolved is None:
                continue
            name = str(inp.get("name"))
            if resolved.is_value:
                value = resolved.value
                inputs[name] = value if type(value) in _JSON_SCALARS else _wrap(value)
            elif self.nodes[resolved.origin_id].mode == MODE_MUTED:
                inputs.pop(name, None)  # its source is not sent, so neither is the input
            else:
                inputs[name] = [resolved.origin_id, resolved.origin_slot]
        inputs = js_key_order(inputs)
        if state is not None:
            self._record_controls(node.exec_id, state)
        if not known:  # a placeholder: no class_type, its own title (else an empty one)
            return {"inputs": inputs, "_meta": self._meta(node.raw, node.raw.get("title") or "")}
        return {"inputs": inputs, "class_type": node.type, "_meta": self._meta(node.raw)}

    def _meta(self, raw: dict[str, Any], title: Any = None) -> dict[str, Any]:
        """``_meta`` as frontend 1.58 writes it: the title, then the node pack and its version
        from the node's properties (``cnr_id``, ``ver``) when it has them."""
        meta: dict[str, Any] = {"title": self._title(raw) if title is None else title}
        properties = raw.get("properties")
        if isinstance(properties, dict):
            for key in ("cnr_id", "ver"):
                value = properties.get(key)
                if value is not None and value != "":
                    meta[key] = value
        return meta

    def _serialize_widget(self, node: Node, slot: Widget, value: Any) -> Any:
        """A widget's value as the frontend serializes it (fixed, DOM text, dynamic prompts)."""
        if slot.has_fixed:
            return slot.fixed
        spec = slot.spec
        if slot.upload_folder is not None:
            value = _upload_combo_value(slot, value)
        value = _widget_text(slot, value)
        if spec is not None and spec.type == "STRING":
            if spec.options.get("dynamicPrompts") is True and isinstance(value, str):
                value = process_dynamic_prompt(value)
        if (
            node.type in SAVE_NODE_TYPES
            and slot.name == "filename_prefix"
            and isinstance(value, str)
            and "%" in value
        ):
            value = apply_text_replacements(value, self._lookup_widget)
        return value

    def _lookup_widget(self, node_name: str, widget_name: str) -> tuple[Any] | None:
        """``%Node.widget%``: the first node with that S&R name (else title) anywhere."""
        nodes = list(self._all_nodes(self.root))
        matches = [
            (g, raw)
            for g, raw in nodes
            if (raw.get("properties") or {}).get("Node name for S&R") == node_name
        ]
        if not matches:
            matches = [(g, raw) for g, raw in nodes if self._title(raw) == node_name]
        if not matches:
            return None
        graph, raw = matches[0]
        state = self.states.get((graph.key, raw["id"]))
        if state is None or state.index(widget_name) < 0:
            return None
        return (state.values[state.index(widget_name)],)

    def _all_nodes(self, graph: Graph, depth: int = 0):
        """Every node of the hierarchy: a subgraph's nodes come just before its instance."""
        for raw in graph.nodes.values():
            if self._is_subgraph(raw) and depth < 32:
                yield from self._all_nodes(self.subgraphs[str(raw.get("type"))], depth + 1)
            yield graph, raw

    def _title(self, raw: dict[str, Any]) -> str:
        if raw.get("title"):
            return str(raw["title"])
        sub = self.subgraphs.get(str(raw.get("type")))
        if sub is not None:
            return str((sub.definition or {}).get("name") or "")
        return self.object_info.display_name(str(raw.get("type")))

    def _record_controls(self, exec_id: str, state: WidgetState) -> None:
        """Remember the control mode stored after each seed-like widget."""
        for i, slot in enumerate(state.slots):
            if slot.name == "control_after_generate" and i > 0:
                mode = state.values[i]
                if isinstance(mode, str):
                    self.controls.setdefault(exec_id, {})[state.slots[i - 1].name] = mode

    # --- link resolution (ExecutableNodeDTO.resolveInput / resolveOutput) ---------------------

    def _node_at(self, path: tuple[str, ...], node_id: Any) -> Node:
        exec_id = ":".join((*path, str(node_id))) if path else str(node_id)
        node = self.nodes.get(exec_id)
        if node is None:
            raise WorkflowError(f"no node {exec_id} in the expanded graph")
        return node

    def _resolve_input(
        self, node: Node, slot: int, visited: set[tuple], wanted_type: Any = None
    ) -> Resolved | None:
        """Follow the link into an input to a real node output (or a promoted widget value)."""
        key = (node.graph.key, node.raw["id"], "I", slot)
        if key in visited:
            raise WorkflowError(
                f"circular link while resolving input {slot} of node {node.exec_id}"
            )
        visited.add(key)
        if slot >= len(node.inputs):
            raise WorkflowError(f"node {node.exec_id} has no input slot {slot}")
        inp = node.inputs[slot]
        link_id = inp.get("link")
        if link_id is None:
            return None
        link = node.graph.links.get(link_id)
        if link is None:
            return None
        if node.instance is not None and link.origin_id == SUBGRAPH_INPUT_NODE:
            return self._resolve_from_instance(node.instance, link.origin_slot, visited)
        if link.origin_id not in node.graph.nodes:
            raise WorkflowError(
                f"input {inp.get('name')!r} of node {node.exec_id} is linked to node "
                f"{link.origin_id}, which does not exist"
            )
        origin = self._node_at(node.path, link.origin_id)
        if (
            origin.mode != MODE_BYPASS
            and not origin.is_subgraph
            and origin.type not in VIRTUAL_TYPES
        ):
            return Resolved(origin.exec_id, link.origin_slot)
        return self._resolve_output(
            origin,
            link.origin_slot,
            wanted_type if wanted_type is not None else inp.get("type"),
            visited,
        )

    def _resolve_from_instance(
        self, instance: Node, slot: int, visited: set[tuple]
    ) -> Resolved | None:
        """A link from a subgraph's input node: continue outside, or use the promoted widget."""
        if slot >= len(instance.inputs):
            raise WorkflowError(f"subgraph instance {instance.exec_id} has no input slot {slot}")
        outer = instance.inputs[slot]
        if outer.get("link") is None:
            state = self.states.get((instance.graph.key, instance.raw["id"]))
            name = str(outer.get("name"))
            if state is None or state.index(name) < 0:
                return None
            index = state.index(name)
            # frontend 1.58 keeps a promoted value on the host as it was saved (ADR 0009):
            # no textarea turns it into text on the way
            return Resolved(origin_id=instance.exec_id, is_value=True, value=state.values[index])
        return self._resolve_input(instance, slot, visited)

    def _resolve_output(
        self, node: Node, slot: int, wanted_type: Any, visited: set[tuple]
    ) -> Resolved | None:
        """The real output behind a node's output slot (through bypass, reroute, subgraph)."""
        key = (node.graph.key, node.raw["id"], "O", slot)
        if key in visited:
            raise WorkflowError(
                f"circular link while resolving output {slot} of node {node.exec_id}"
            )
        visited.add(key)
        if node.mode == MODE_BYPASS:
            index = _bypass_slot(node, slot, wanted_type)
            return None if index < 0 else self._resolve_input(node, index, visited)
        if node.is_subgraph:
            return self._resolve_subgraph_output(node, slot, wanted_type, visited)
        if node.type in VIRTUAL_TYPES:
            if slot < len(node.inputs):
                return self._resolve_input(node, slot, visited, wanted_type)
            return None
        return Resolved(origin_id=node.exec_id, origin_slot=slot)

    def _resolve_subgraph_output(
        self, node: Node, slot: int, wanted_type: Any, visited: set[tuple]
    ) -> Resolved | None:
        """Follow a subgraph instance's output to the inner node that produces it."""
        sub = self.subgraphs[node.type]
        outputs = (sub.definition or {}).get("outputs") or []
        if slot >= len(outputs):
            raise WorkflowError(f"subgraph instance {node.exec_id} has no output slot {slot}")
        link = next(
            (sub.links[i] for i in outputs[slot].get("linkIds") or [] if i in sub.links), None
        )
        if link is None:
            return None
        if link.origin_id == SUBGRAPH_INPUT_NODE:
            return self._resolve_from_instance(node, link.origin_slot, visited)
        if link.origin_id not in sub.nodes:
            raise WorkflowError(
                f"output {slot} of subgraph {sub.key} comes from missing node {link.origin_id}"
            )
        inner = self._node_at((*node.path, str(node.raw["id"])), link.origin_id)
        return self._resolve_output(inner, link.origin_slot, wanted_type, visited)


def _bypass_slot(node: Node, slot: int, wanted_type: Any) -> int:
    """Which input a bypassed node passes to output ``slot``: same slot, exact type, compatible."""
    inputs = node.inputs
    outputs = node.outputs
    if slot >= len(outputs):
        return -1
    output_type = outputs[slot].get("type")
    if wanted_type in ("*", ""):
        if not inputs:
            return -1
        return slot if len(inputs) > slot else 0
    if slot < len(inputs):
        opposite = inputs[slot].get("type")
        if is_valid_connection(opposite, output_type) and is_valid_connection(
            opposite, wanted_type
        ):
            return slot
    for i, inp in enumerate(inputs):
        if inp.get("type") == wanted_type:
            return i
    for i, inp in enumerate(inputs):
        if is_valid_connection(inp.get("type"), output_type) and is_valid_connection(
            inp.get("type"), wanted_type
        ):
            return i
    return -1


def _stored_target_input(target: dict[str, Any], link: Link | None) -> dict[str, Any] | None:
    """The saved input a subgraph input's link ends at (by link id, else by slot), as
    ``LLink.resolve`` finds it: its widget name must still be a widget of the node to promote."""
    inputs = [i for i in target.get("inputs") or [] if isinstance(i, dict)]
    if link is None:
        return None
    for inp in inputs:
        if inp.get("link") == link.id:
            return inp
    return inputs[link.target_slot] if 0 <= link.target_slot < len(inputs) else None


def _drop_stale_option_inputs(
    state: WidgetState, stored: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A DynamicCombo removes the ``<name>.*`` inputs of options other than its current one
    (``updateWidgets`` in dynamicWidgets.ts): a saved input under a combo survives only when the
    chosen option has it (an input, or an Autogrow group it grows from)."""
    combos = [
        (slot.name, slot.spec, value)
        for slot, value in zip(state.slots, state.values, strict=True)
        if slot.spec is not None and slot.spec.type == DYNAMIC_COMBO
    ]
    if not combos:
        return stored
    kept = []
    for inp in stored:
        name = str(inp.get("name"))
        owner = max(
            (c for c in combos if name.startswith(c[0] + ".")),
            key=lambda c: len(c[0]),
            default=None,
        )
        if owner is not None:
            children = option_children(owner[1], owner[2]) if isinstance(owner[2], str) else []
            if not any(name == c.name or name.startswith(c.name + ".") for c in children):
                continue
        kept.append(inp)
    return kept


def configure_dynamic(object_info: ObjectInfo, node_type: str, stored: list[Any]) -> WidgetState:
    """Apply ``widgets_values`` one by one to a node whose widgets change as values are set.

    ``LGraphNode.configure`` walks the live widget list, giving each saved widget the next
    stored value: setting a DynamicCombo replaces its ``<name>.*`` children (with their defaults)
    right after it, so the following values go to the new children; setting CustomCombo's last
    non-empty ``optionN`` adds ``optionN+1`` (``dynamicWidgets.ts``, ``customWidgets.ts``).
    """
    slots = list(object_info.widgets(node_type))
    values = [_default_value(slot) for slot in slots]
    position = 0
    i = 0
    while i < len(slots) and position < len(stored):
        slot = slots[i]
        if not slot.stored:
            i += 1
            continue
        value = stored[position]
        position += 1
        values[i] = value
        if slot.spec is not None and slot.spec.type == DYNAMIC_COMBO:
            _replace_children(slots, values, i, slot, value)
        elif node_type == CUSTOM_COMBO and slot.name.startswith("option"):
            _grow_custom_combo(slots, values, i, value)
        if len(slots) > 10_000:
            raise WorkflowError(f"node type {node_type} grows without bound while loading")
        i += 1
    if node_type == CUSTOM_COMBO and len(slots) > 1 and slots[1].name == "index":
        options = values[2:]
        values[1] = options.index(values[0]) if values[0] in options else -1
    return WidgetState(slots, values)


def _replace_children(
    slots: list[Widget], values: list[Any], i: int, combo: Widget, value: Any
) -> None:
    """A DynamicCombo was set: drop every ``<name>.*`` widget, insert the option's children."""
    prefix = combo.name + "."
    keep = [j for j, slot in enumerate(slots) if not slot.name.startswith(prefix)]
    slots[:] = [slots[j] for j in keep]
    values[:] = [values[j] for j in keep]
    at = slots.index(combo) + 1 if combo in slots else i + 1
    spec = combo.spec
    children = child_widgets(spec, value) if spec is not None and isinstance(value, str) else []
    slots[at:at] = children
    values[at:at] = [_default_value(child) for child in children]


def _grow_custom_combo(slots: list[Widget], values: list[Any], i: int, value: Any) -> None:
    """CustomCombo: a value in the last option adds an empty next one; clearing the one before
    an empty last option removes that last option."""
    if i == len(slots) - 1:
        if value:
            name = f"option{len(slots) - 1}"
            slots.append(Widget(name, slots[i].spec, default=""))
            values.append("")
        return
    if not value and i == len(slots) - 2 and not values[-1]:
        slots.pop()
        values.pop()


def _where(graph: Graph, node_id: Any, raw: dict[str, Any]) -> str:
    inside = "" if graph.key == "root" else f" of subgraph {graph.key}"
    return f"node {node_id}{inside} ({raw.get('type')})"


def _holds(slot: dict[str, Any], overrides: dict[str, Any]) -> bool:
    """True when a stored slot already has every key the definition imposes."""
    for key, value in overrides.items():
        if slot.get(key) != value:
            return False
    return True


def _find_subgraph_input(sub: Graph, name: Any) -> dict[str, Any] | None:
    for sub_input in (sub.definition or {}).get("inputs") or []:
        if sub_input.get("name") == name:
            return sub_input
    return None


def number_widget_callback(spec: Any, value: Any) -> Any:
    """What the frontend's INT/FLOAT widget callbacks make of a value a PrimitiveNode pushes.

    INT rounds to its step (offset by ``min``); FLOAT rounds to ``round`` (or the precision its
    step implies) and clamps to [min, max]. Other widgets keep the value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    options = spec.options
    if spec.type == "INT":
        step = options.get("step") or 1
        if step == 1:
            return value if isinstance(value, int) else js_number(float(math.floor(value + 0.5)))
        offset = math.fmod(options.get("min", 0) or 0, step)
        return js_number(math.floor((value - offset) / step + 0.5) * step + offset)
    if spec.type != "FLOAT":
        return value
    step = options.get("step", 0.5)
    precision = max(0, -math.floor(math.log10(step))) if step and step > 0 else 0
    round_to = 10**-precision if precision and not options.get("round") else options.get("round")
    if not round_to:
        return value
    rounded = math.floor(value / round_to + 0.5) * round_to
    fixed = float(_to_fixed(rounded, precision))
    low = options.get("min", 0)
    high = options.get("max", 2048)
    return js_number(
        min(
            max(fixed, low if low is not None else -math.inf),
            high if high is not None else math.inf,
        )
    )


def _to_fixed(value: float, digits: int) -> str:
    """JavaScript's ``Number.prototype.toFixed`` (ties go to the larger number)."""
    exact = Decimal(value)
    quantum = Decimal(1).scaleb(-digits)
    if exact < 0:
        return str(-(-exact).quantize(quantum, rounding=ROUND_HALF_DOWN))
    return str(exact.quantize(quantum, rounding=ROUND_HALF_UP))


def _wrap(value: Any) -> Any:
    """List widget values are wrapped so the backend cannot take them for links."""
    value = js_number(value)
    return {"__value__": value} if isinstance(value, list) else value


def _widget_text(slot: Widget, value: Any) -> Any:
    """Multiline text widgets are textareas: whatever is stored, they hold a string."""
    spec = slot.spec
    if spec is not None and spec.type == "STRING" and spec.options.get("multiline"):
        return js_string(value)
    return value


def _upload_combo_value(slot: Widget, value: Any) -> Any:
    """The file combo behind an upload button: empty means its first value, and files from
    another folder than ``input`` get a `` [output]``-style annotation."""
    if not value:
        default = _default_value(slot)
        return "undefined" if default is UNDEFINED else js_string(default)
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, str) and slot.upload_folder != "input" and not _ANNOTATED.search(value):
        return f"{value} [{slot.upload_folder}]"
    return value


def _default_value(slot: Widget) -> Any:
    """A widget's value before ``widgets_values`` is applied, as the frontend initialises it."""
    spec = slot.spec
    if slot.has_fixed:
        return slot.fixed
    if spec is None:
        return slot.default
    if spec.type == DYNAMIC_COMBO:
        return default_option(spec)
    default = spec.options.get("default")
    if spec.type == "COMBO":
        if default or spec.choices:
            return default or (spec.choices or (None,))[0]
        return "Loading..." if spec.options.get("remote") else UNDEFINED
    if default is not None:
        return default
    return {"INT": 0, "FLOAT": 0, "BOOLEAN": False, "STRING": ""}.get(spec.type, UNDEFINED)


def _placeholder_value(value: Any) -> Any:
    """The frontend keeps scalar values of unknown nodes and JSON-stringifies the rest."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value if value is not None else json.dumps(None)
    return json.dumps(js_number(value), separators=(",", ":"), ensure_ascii=False)


def _js_key_rank(node_id: Any) -> tuple[int, int]:
    """Sort key of ``for (key in object)`` over node ids: integer keys first (sort is stable)."""
    text = str(node_id)
    return (0, int(text)) if _is_array_index(text) else (1, 0)


def convert_ui_to_api(
    ui: dict[str, Any], object_info: ObjectInfo, allow_unknown_nodes: bool = False
) -> dict[str, Any]:
    """Convert a UI workflow dict to an API prompt exactly as frontend 1.58.1 would, with the
    node definitions of the server that will run it (``object_info``)."""
    return Converter(ui, object_info, allow_unknown_nodes).convert()


def widgets_values_index(object_info: ObjectInfo, node: dict[str, Any], name: str) -> int | None:
    """Where a UI node's ``widgets_values`` holds widget ``name``, read as ``_node_widgets`` reads
    it (hidden control values and pre-1.16 forceInput values counted); None if it holds none.

    The index may be past the end of a short list (a widget a newer node definition added):
    ``stored_widget_defaults`` gives the values to pad it with.
    """
    stored = node.get("widgets_values")
    if not isinstance(stored, list):
        return None
    layout = _stored_layout(object_info, node)
    if layout is None:
        return None
    slots, _values = layout
    position = next((i for i, slot in enumerate(slots) if slot.name == name), -1)
    if position < 0:
        return None
    node_type = str(node.get("type"))
    if node_type == "PrimitiveNode" or object_info.is_dynamic(node_type):
        return position
    kept = migrate_widget_values(object_info, node_type, list(range(len(stored))))
    if position < len(kept):
        return kept[position]
    return position if len(kept) == len(stored) else None


def stored_widget_defaults(object_info: ObjectInfo, node: dict[str, Any]) -> list[Any]:
    """The value of every saved widget of a node as loaded (stored order): what a short
    ``widgets_values`` is padded with before a value is written past its end."""
    layout = _stored_layout(object_info, node)
    return [] if layout is None else layout[1]


def _stored_layout(
    object_info: ObjectInfo, node: dict[str, Any]
) -> tuple[list[Widget], list[Any]] | None:
    """The widgets of a node that ``widgets_values`` holds, with their values after loading."""
    stored = node.get("widgets_values")
    stored = stored if isinstance(stored, list) else []
    node_type = str(node.get("type"))
    if node_type == "PrimitiveNode":
        return [Widget("value")], [stored[0] if stored else None]
    if node_type in VIRTUAL_TYPES or not object_info.has(node_type):
        return None
    if object_info.is_dynamic(node_type):
        state = configure_dynamic(object_info, node_type, stored)
        pairs = [(s, v) for s, v in zip(state.slots, state.values, strict=True) if s.stored]
    else:
        pairs = [(s, _default_value(s)) for s in object_info.widgets(node_type) if s.stored]
        kept = migrate_widget_values(object_info, node_type, stored)
        pairs = [(s, kept[i] if i < len(kept) else v) for i, (s, v) in enumerate(pairs)]
    return [p[0] for p in pairs], [p[1] for p in pairs]
