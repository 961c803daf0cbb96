"""The UI graph of a generation: the workflow's litegraph JSON with the values it ran with.

ComfyUI's frontend loads a dropped PNG from its ``workflow`` chunk (the UI graph) in preference
to its ``prompt`` chunk, so that graph must hold the values the generation used. Values are
written where the frontend reads them back: the node's ``widgets_values`` (and
``widgets_values_named``), the PrimitiveNode that feeds a widget, a subgraph instance's promoted
widget values and the inner nodes behind them. The result is converted again and compared with
the applied prompt; when it differs, no graph is given (the caller then keeps only the exact
``prompt``).
"""

from __future__ import annotations

from typing import Any

from comfy_widgets.errors import ComfyWidgetsError
from comfy_widgets.workflow.conversion import (
    SUBGRAPH_INPUT_NODE,
    UNDEFINED,
    Link,
    clone_json,
    parse_links,
    stored_widget_defaults,
    widgets_values_index,
)
from comfy_widgets.workflow.frontend_text import process_dynamic_prompt
from comfy_widgets.workflow.object_info import ObjectInfo
from comfy_widgets.workflow.workflow import Workflow

#: A place in the UI JSON that holds a value: a list and an index, or a dict and a key.
Place = tuple[Any, Any]
#: The nodes from the root graph down to one node: (graph or subgraph definition, node) pairs.
Chain = list[tuple[dict[str, Any], dict[str, Any]]]


def ui_graph_with_values(workflow: Workflow, values: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of the workflow's UI graph holding ``values``, or None when it has no UI graph or
    a value's place cannot be written so that the graph converts to ``workflow.apply(values)``.

    Raises ParameterError for values ``workflow.apply`` rejects.
    """
    if workflow.format != "ui":
        return None
    expected = workflow.apply(values)
    graph = clone_json(workflow.source)
    writer = GraphWriter(graph, workflow.object_info)
    for name in values:
        param = workflow.parameter(str(name))
        sent = expected[param.node_id]["inputs"][param.field]
        value = sent["__value__"] if isinstance(sent, dict) and "__value__" in sent else sent
        for key in (param.key, *param.linked_keys):
            places = writer.places(key)
            if not places:
                return None
            for container, index in places:
                container[index] = clone_json(value)
    try:
        written = Workflow(
            graph,
            name=workflow.name,
            object_info=workflow.object_info,
            allow_unknown_nodes=workflow.allow_unknown_nodes,
        ).to_api()
    except ComfyWidgetsError:
        return None
    return graph if _same_prompt(written, expected, writer) else None


class GraphWriter:
    """Finds where a UI graph stores the value of one API input (``"<exec id>.<field>"``)."""

    def __init__(self, graph: dict[str, Any], object_info: ObjectInfo):
        self.root = graph
        self.object_info = object_info
        self.subgraphs = {
            str(sub["id"]): sub
            for sub in (graph.get("definitions") or {}).get("subgraphs") or []
            if isinstance(sub, dict) and sub.get("id")
        }

    def places(self, key: str) -> list[Place] | None:
        """Every place to write for one input key; None when one of them cannot be found."""
        exec_id, _, field = key.partition(".")  # fields may hold dots (model.duration)
        chain: Chain = []
        graph: dict[str, Any] | None = self.root
        for node_id in exec_id.split(":"):
            raw = _node(graph, node_id) if graph is not None else None
            if graph is None or raw is None:
                return None
            chain.append((graph, raw))
            graph = self.subgraphs.get(str(raw.get("type")))
        return self._widget(chain, field)

    def _widget(self, chain: Chain, name: str) -> list[Place] | None:
        """A widget's places: its link's source when its input is linked, else its stored value."""
        raw = chain[-1][1]
        is_instance = str(raw.get("type")) in self.subgraphs
        link_id = next(
            (
                inp.get("link")
                for inp in raw.get("inputs") or []
                if isinstance(inp, dict)
                and inp.get("link") is not None
                and (inp.get("name") if is_instance else (inp.get("widget") or {}).get("name"))
                == name
            ),
            None,
        )
        if link_id is None:
            return self._promoted(chain, name) if is_instance else self._stored(raw, name)
        source = self._link_source(chain, link_id)
        if source is None or is_instance:
            return source
        return source + (self._stored(raw, name) or [])

    def _stored(self, raw: dict[str, Any], name: str) -> list[Place] | None:
        """A regular node's own value: ``widgets_values`` (and ``widgets_values_named``)."""
        index = widgets_values_index(self.object_info, raw, name)
        if index is None:
            return None
        values = raw["widgets_values"]
        if index >= len(values):  # a widget newer than the save: pad with what loading gives
            padding = stored_widget_defaults(self.object_info, raw)
            if index >= len(padding) or any(v is UNDEFINED for v in padding):
                return None
            values.extend(clone_json(padding[len(values) : index + 1]))
        places: list[Place] = [(values, index)]
        named = raw.get("widgets_values_named")
        if isinstance(named, dict) and name in named:
            places.append((named, name))
        return places

    def _link_source(self, chain: Chain, link_id: Any) -> list[Place] | None:
        """Where the value arriving over a link lives: a PrimitiveNode, or the subgraph instance
        whose input the link comes from; None for anything else (a node output)."""
        graph = chain[-1][0]
        link = parse_links(graph.get("links")).get(link_id)
        if link is None:
            return None
        if link.origin_id == SUBGRAPH_INPUT_NODE:
            inputs = graph.get("inputs") or []
            if len(chain) < 2 or link.origin_slot >= len(inputs):
                return None
            return self._widget(chain[:-1], str(inputs[link.origin_slot].get("name")))
        origin = _node(graph, str(link.origin_id))
        if origin is None or origin.get("type") != "PrimitiveNode":
            return None
        return self._stored(origin, "value")

    def _promoted(self, chain: Chain, name: str) -> list[Place] | None:
        """A subgraph instance's promoted widget: the instance's positional value (when stored)
        and the inner widgets the subgraph input feeds."""
        instance = chain[-1][1]
        sub = self.subgraphs[str(instance.get("type"))]
        sub_links = parse_links(sub.get("links"))
        places: list[Place] = []
        position = 0
        for sub_input in sub.get("inputs") or []:
            targets = [
                t
                for t in (
                    self._inner_widget(sub, sub_links.get(i))
                    for i in sub_input.get("linkIds") or []
                )
                if t is not None
            ]
            if sub_input.get("name") == name:
                stored = instance.get("widgets_values")
                if targets and isinstance(stored, list) and position < len(stored):
                    places.append((stored, position))
                for target, widget in targets:
                    inner = [*chain, (sub, target)]
                    found = (
                        self._promoted(inner, widget)
                        if str(target.get("type")) in self.subgraphs
                        else self._stored(target, widget)
                    )
                    places += found or []
                return places or None
            position += 1 if targets else 0
        return None

    def _inner_widget(
        self, sub: dict[str, Any], link: Link | None
    ) -> tuple[dict[str, Any], str] | None:
        """The inner node and widget name a subgraph input link ends at, if it ends at one."""
        if link is None:
            return None
        target = _node(sub, str(link.target_id))
        if target is None:
            return None
        inputs = [i for i in target.get("inputs") or [] if isinstance(i, dict)]
        is_instance = str(target.get("type")) in self.subgraphs
        for inp in inputs:
            if inp.get("link") == link.id:
                name = inp.get("name") if is_instance else (inp.get("widget") or {}).get("name")
                return (target, str(name)) if name else None
        return None

    def text_at(self, key: str) -> Any:
        """The value the graph stores for one input key (None when it has no place)."""
        places = self.places(key)
        if not places:
            return None
        container, index = places[0]
        return container[index]


def _node(graph: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    """The node of a graph whose id reads ``node_id``."""
    for raw in graph.get("nodes") or []:
        if isinstance(raw, dict) and str(raw.get("id")) == node_id:
            return raw
    return None


def _same_prompt(written: dict[str, Any], expected: dict[str, Any], writer: GraphWriter) -> bool:
    """True when the written graph converts to the expected prompt; a text widget with dynamic
    prompts may differ where the frontend's ``{a|b}`` choice or comment stripping explains it."""
    if written.keys() != expected.keys():
        return False
    for node_id, node in expected.items():
        other = written[node_id]
        if (
            other.get("class_type") != node.get("class_type")
            or other["inputs"].keys() != node["inputs"].keys()
        ):
            return False
        for name, value in node["inputs"].items():
            got = other["inputs"][name]
            if got != value or type(got) is not type(value) and isinstance(value, bool):
                if not _dynamic_variant(writer, node, f"{node_id}.{name}", got):
                    return False
    return True


def _dynamic_variant(writer: GraphWriter, node: dict[str, Any], key: str, got: Any) -> bool:
    """True when ``got`` is what the frontend's dynamic prompt pass makes of the stored text."""
    spec = (
        writer.object_info.input(str(node.get("class_type")), key.rpartition(".")[2])
        if writer.object_info.has(str(node.get("class_type")))
        else None
    )
    if spec is None or spec.type != "STRING" or not spec.options.get("dynamicPrompts"):
        return False
    text = writer.text_at(key)
    if not isinstance(text, str) or not isinstance(got, str):
        return False
    return "{" in text or got == process_dynamic_prompt(text)


def ui_graph_for(
    workflow: Workflow, values: dict[str, Any], prompt: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The UI graph of a generation: ``workflow`` holding ``values``, or None unless ``prompt``
    is exactly that workflow with those values and the graph can hold them."""
    if workflow.format != "ui":
        return None
    values = dict(values)
    try:
        if workflow.apply(values) != prompt:
            return None
        return ui_graph_with_values(workflow, values)
    except ComfyWidgetsError:
        return None
