"""Shape checks on a workflow before it is converted: bad input fails here, naming the place.

The converter reads nodes, links and subgraph definitions the way the frontend does and trusts
their shapes (a node's ``inputs`` is a list of objects, a link's slots are integers). Files that
were cut, hand-edited or made to attack the loader break those assumptions; each check below
raises a ``WorkflowError`` that names the node, link or subgraph and what is wrong with it,
instead of a ``TypeError`` from deep inside the conversion.
"""

from __future__ import annotations

import math
from typing import Any

from comfy_widgets.errors import WorkflowError

#: Node and link ids and slot numbers beyond this are not ids any editor writes.
MAX_ID = 2**53


def _is_id(value: Any) -> bool:
    """A node or link id: an integer (not a bool) or a non-empty string."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= MAX_ID
    return isinstance(value, str) and 0 < len(value) <= 200


def _slot(value: Any) -> bool:
    """A slot number: a small integer (or its digits, which ``parse_links`` reads); subgraph
    input and output nodes use negative ids, never negative slots."""
    if isinstance(value, str):
        return value.isdigit() and len(value) <= 5
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10_000


def _optional(value: Any, kind: type | tuple[type, ...]) -> bool:
    return value is None or isinstance(value, kind)


def check_ui(data: dict[str, Any]) -> None:
    """Check the root graph and every subgraph definition of a UI workflow."""
    check_graph_shape(data, "the workflow")
    definitions = data.get("definitions")
    if not _optional(definitions, dict):
        raise WorkflowError("the workflow's 'definitions' is not an object")
    subgraphs = (definitions or {}).get("subgraphs")
    if not _optional(subgraphs, list):
        raise WorkflowError("the workflow's 'definitions.subgraphs' is not a list")
    for i, sub in enumerate(subgraphs or []):
        if not isinstance(sub, dict):
            raise WorkflowError(f"subgraph definition #{i} is not an object")
        if not _is_id(sub.get("id")):
            raise WorkflowError(f"subgraph definition #{i} has no valid id: {sub.get('id')!r:.80}")
        where = f"subgraph {sub['id']}"
        check_graph_shape(sub, where)
        for side in ("inputs", "outputs"):
            slots = sub.get(side)
            if not _optional(slots, list):
                raise WorkflowError(f"{where} has '{side}' that is not a list")
            for j, slot in enumerate(slots or []):
                if not isinstance(slot, dict):
                    raise WorkflowError(f"{side[:-1]} #{j} of {where} is not an object")
                ids = slot.get("linkIds")
                if not _optional(ids, list) or not all(_is_id(x) for x in ids or []):
                    raise WorkflowError(f"{side[:-1]} #{j} of {where} has invalid linkIds")


def check_graph_shape(graph: dict[str, Any], where: str) -> None:
    """Nodes are objects with an id, a type and slot lists; links have ids and slot numbers."""
    nodes = graph.get("nodes")
    if not isinstance(nodes, list):
        raise WorkflowError(f"{where} has 'nodes' that is not a list")
    for i, node in enumerate(nodes):
        _check_node(node, i, where)
    links = graph.get("links")
    if not _optional(links, list):
        raise WorkflowError(f"{where} has 'links' that is not a list")
    for i, link in enumerate(links or ()):
        if not _plain_link(link):
            _check_link(link, i, where)


def _plain_link(link: Any) -> bool:
    """The usual root-graph link, checked quickly: six fields, integer ids and slots."""
    return (
        type(link) is list
        and len(link) >= 5
        and type(link[0]) is int
        and type(link[1]) is int
        and type(link[3]) is int
        and type(link[2]) is int
        and type(link[4]) is int
        and 0 <= link[2] <= 10_000
        and 0 <= link[4] <= 10_000
        and -MAX_ID <= link[0] <= MAX_ID
        and -MAX_ID <= link[1] <= MAX_ID
        and -MAX_ID <= link[3] <= MAX_ID
    )


def _check_node(node: Any, index: int, where: str) -> None:
    if not isinstance(node, dict):
        raise WorkflowError(f"node #{index} of {where} is not an object: {node!r:.80}")
    node_id = node.get("id")
    if not _is_id(node_id):
        raise WorkflowError(f"node #{index} of {where} has no valid id: {node_id!r:.80}")
    name = f"node {node_id} of {where}" if where != "the workflow" else f"node {node_id}"
    node_type = node.get("type")
    if not isinstance(node_type, str) or not node_type:
        raise WorkflowError(f"{name} has no type (a non-empty string): {node_type!r:.80}")
    mode = node.get("mode")
    if not _optional(mode, int) or isinstance(mode, bool):
        raise WorkflowError(f"{name} ({node_type}) has mode {mode!r:.40}, not a number")
    for key, kind in (
        ("properties", dict),
        ("widgets_values", (list, dict)),
        ("widgets_values_named", dict),
    ):
        if not _optional(node.get(key), kind):
            raise WorkflowError(f"{name} ({node_type}) has a '{key}' of the wrong kind")
    title = node.get("title")
    if title is not None and not isinstance(title, (str, int, float)):
        raise WorkflowError(f"{name} ({node_type}) has a title that is not text")
    for side, fine in (("inputs", _plain_input), ("outputs", _plain_output)):
        slots = node.get(side)
        if not _optional(slots, list):
            raise WorkflowError(f"{name} ({node_type}) has '{side}' that is not a list")
        for j, slot in enumerate(slots or ()):
            if not fine(slot):  # the usual slot passes the quick test; others are examined
                _check_slot(slot, side, j, f"{name} ({node_type})")


_NAME_TYPES = (str, type(None))


def _plain_input(slot: Any) -> bool:
    """The common case, checked quickly: a dict with text name, int/None link, plain widget."""
    if type(slot) is not dict:
        return False
    link = slot.get("link")
    widget = slot.get("widget")
    return (
        type(slot.get("name")) in _NAME_TYPES
        and (link is None or (type(link) is int and -MAX_ID <= link <= MAX_ID))
        and (widget is None or (type(widget) is dict and type(widget.get("name")) in _NAME_TYPES))
    )


def _plain_output(slot: Any) -> bool:
    if type(slot) is not dict or type(slot.get("name")) not in _NAME_TYPES:
        return False
    links = slot.get("links")
    return links is None or (
        type(links) is list and all(type(x) is int and -MAX_ID <= x <= MAX_ID for x in links)
    )


def _check_slot(slot: Any, side: str, index: int, name: str) -> None:
    label = f"{side[:-1]} #{index} of {name}"
    if not isinstance(slot, dict):
        raise WorkflowError(f"{label} is not an object: {slot!r:.80}")
    slot_name = slot.get("name")
    if slot_name is not None and not isinstance(slot_name, str):
        raise WorkflowError(f"{label} has a name that is not text: {slot_name!r:.80}")
    if side == "inputs":
        link = slot.get("link")
        if link is not None and not _is_id(link):
            raise WorkflowError(f"{label} has link {link!r:.80}, not a link id")
        widget = slot.get("widget")
        if not _optional(widget, dict) or not _optional((widget or {}).get("name"), str):
            raise WorkflowError(f"{label} has a 'widget' that is not {{'name': text}}")
    else:
        links = slot.get("links")
        if not _optional(links, list) or not all(_is_id(x) for x in links or []):
            raise WorkflowError(f"{label} has 'links' that is not a list of link ids")


def _check_link(link: Any, index: int, where: str) -> None:
    if isinstance(link, list):
        if len(link) < 5:
            raise WorkflowError(f"link #{index} of {where} has {len(link)} fields, not 6")
        link_id, origin, origin_slot, target, target_slot = link[:5]
    elif isinstance(link, dict):
        link_id = link.get("id")
        origin, target = link.get("origin_id"), link.get("target_id")
        origin_slot, target_slot = link.get("origin_slot", 0), link.get("target_slot", 0)
    else:
        raise WorkflowError(f"link #{index} of {where} is not a list or an object: {link!r:.80}")
    if not _is_id(link_id):
        raise WorkflowError(f"link #{index} of {where} has no valid id: {link_id!r:.80}")
    for label, value in (("origin", origin), ("target", target)):
        if not _is_id(value):
            raise WorkflowError(f"link {link_id} of {where} has {label} node {value!r:.80}")
    for label, value in (("origin", origin_slot), ("target", target_slot)):
        if not _slot(value):
            raise WorkflowError(
                f"link {link_id} of {where} has {label} slot {value!r:.80}, not a slot number"
            )


def check_api(prompt: dict[str, Any]) -> None:
    """Each node of an API prompt has a class_type (text) and an inputs object."""
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            raise WorkflowError(f"node {node_id} has class_type {class_type!r:.80}, not a name")
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(f"node {node_id} ({class_type}) has inputs that is not an object")
        meta = node.get("_meta")
        if not _optional(meta, dict):
            raise WorkflowError(f"node {node_id} ({class_type}) has _meta that is not an object")


def finite(value: Any) -> bool:
    """False for NaN and infinities (which JSON cannot carry)."""
    return not isinstance(value, float) or math.isfinite(value)
