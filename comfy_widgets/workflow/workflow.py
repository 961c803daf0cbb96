"""A loaded workflow: API or UI format in, API prompt and parameters out.

``Workflow.load`` accepts a path, a dict or JSON text, detects the format, converts UI workflows
the way ComfyUI's frontend does (:mod:`comfy_widgets.workflow.conversion`), checks the graph
(links to missing nodes, cycles) and exposes the parameters
(:mod:`comfy_widgets.workflow.parameters`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from comfy_widgets.errors import ComfyWidgetsError, WorkflowError
from comfy_widgets.workflow.appmode import app_mode_inputs
from comfy_widgets.workflow.conversion import Converter, clone_json
from comfy_widgets.workflow.object_info import ObjectInfo
from comfy_widgets.workflow.parameters import (
    ParameterSet,
    WorkflowParameter,
    apply_app_inputs,
    apply_to_prompt,
    build_parameter_set,
    copy_parameter,
    option_parameters,
)
from comfy_widgets.workflow.validate import check_api, check_ui

Format = Literal["api", "ui"]


class Workflow:
    """One workflow, immutable once loaded; every method returns new objects."""

    def __init__(
        self,
        source: dict[str, Any],
        *,
        name: str = "workflow",
        object_info: ObjectInfo | None = None,
        allow_unknown_nodes: bool = False,
        _owned: bool = False,
    ):
        if not isinstance(source, dict):
            raise WorkflowError(
                f"a workflow is a JSON object, not a {type(source).__name__}; "
                "give a path, a dict or JSON text"
            )
        self.source: dict[str, Any] = source if _owned else _copy_source(source)
        self.name = name
        self.object_info = object_info if object_info is not None else ObjectInfo.bundled()
        self.allow_unknown_nodes = allow_unknown_nodes
        self.format: Format = detect_format(self.source)
        self._controls: dict[str, dict[str, str]] = {}
        self._groups: list[tuple[str | None, list[tuple[str, str]]]] = []
        if self.format == "ui":
            check_ui(self.source)
            converter = Converter(self.source, self.object_info, allow_unknown_nodes)
            with _named_failures(lambda: converter.where):
                self._api = converter.convert()
            self._controls, self._groups = converter.controls, converter.primitive_groups
        else:
            check_api(self.source)
            self._api = clone_json(self.source)
        with _named_failures(lambda: "the converted prompt"):
            check_graph(self._api, links_checked=self.format == "ui")
        self._hash: str | None = None
        self._param_set: ParameterSet | None = None

    @property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the original workflow (computed once)."""
        if self._hash is None:
            with _named_failures(lambda: "the workflow to hash it"):
                self._hash = content_hash(self.source)
        return self._hash

    @property
    def _params(self) -> ParameterSet:
        if self._param_set is None:
            with _named_failures(lambda: "its parameters"):
                pset = build_parameter_set(
                    self._api, self.object_info, controls=self._controls, groups=self._groups
                )
                if self.format == "ui":
                    apply_app_inputs(pset, app_mode_inputs(self.source, self._api))
            self._param_set = pset
        return self._param_set

    @classmethod
    def load(
        cls,
        src: str | Path | bytes | dict[str, Any] | Workflow,
        object_info: ObjectInfo | dict[str, Any] | None = None,
        *,
        name: str | None = None,
        allow_unknown_nodes: bool = False,
    ) -> Workflow:
        """Load a workflow from a path, a dict, JSON text, PNG bytes or another Workflow.

        A PNG (path or bytes) gives its ``workflow`` text chunk, else its ``prompt`` chunk."""
        if isinstance(object_info, dict):
            object_info = ObjectInfo(object_info, source="user")
        if isinstance(src, Workflow):
            return src if object_info is None else src.with_object_info(object_info)
        data, default_name = _read_source(src)
        return cls(
            data,
            name=name or default_name,
            object_info=object_info,
            allow_unknown_nodes=allow_unknown_nodes,
            _owned=not isinstance(src, dict),
        )

    def to_api(self) -> dict[str, Any]:
        """The API prompt (a new dict), as ComfyUI's frontend would send it."""
        return clone_json(self._api)

    def parameters(self) -> list[WorkflowParameter]:
        """The workflow's parameters, in node order (copies: changing them changes nothing)."""
        with _named_failures(lambda: "its parameters"):
            return [copy_parameter(p) for p in self._params.parameters]

    def parameter(self, name: str) -> WorkflowParameter:
        """One parameter by friendly name or canonical key (ParameterError if unknown)."""
        from comfy_widgets.errors import ParameterError

        try:
            return copy_parameter(self._params.resolve(name))
        except KeyError as exc:
            raise ParameterError(str(exc.args[0]), errors={name: str(exc.args[0])}) from None

    def option_parameters(self, key: str, option: Any) -> list[WorkflowParameter]:
        """The inputs DynamicCombo parameter ``key`` gives its node when set to ``option``, as
        new parameters at their defaults (what a form shows after the option changes); values
        for them are accepted by ``apply`` together with that option."""
        combo = self._params.resolve(key) if key in self._params.by_name else None
        if combo is None or not combo.dynamic:
            return []
        inputs = (self._api.get(combo.node_id) or {}).get("inputs") or {}
        return option_parameters(self._params, combo, option, inputs)

    def apply(self, values: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """A validated API prompt with these values; raises ParameterError before any change."""
        merged = {**(values or {}), **kw}
        return apply_to_prompt(self._api, self._params, merged)

    def apply_shared(self, values: dict[str, Any]) -> dict[str, Any]:
        """``apply(values)``, except that the nodes the values leave alone are the workflow's
        own objects: read it, never change it. A batch's items differ in a few nodes, and a
        full copy per item was most of a 10,000-item batch's memory."""
        return apply_to_prompt(self._api, self._params, values, share=True)

    def with_object_info(self, object_info: ObjectInfo | dict[str, Any]) -> Workflow:
        """The same workflow read with another server's node definitions (e.g. its model lists)."""
        if isinstance(object_info, dict):
            object_info = ObjectInfo(object_info, source="server")
        return Workflow(
            self.source,
            name=self.name,
            object_info=object_info,
            allow_unknown_nodes=self.allow_unknown_nodes,
            _owned=True,
        )

    def node_title(self, node_id: str) -> str | None:
        """The title of a node of the API prompt (as shown in ComfyUI), or None."""
        node = self._api.get(str(node_id))
        return None if node is None else (node.get("_meta") or {}).get("title")

    def __repr__(self) -> str:
        return (
            f"Workflow({self.name!r}, format={self.format!r}, nodes={len(self._api)}, "
            f"parameters={len(self._params.parameters)})"
        )


#: What malformed input can still raise deep in the conversion, once the shape checks passed.
_MALFORMED = (
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    IndexError,
    RecursionError,
    OverflowError,
    UnicodeError,
)


@contextmanager
def _named_failures(where: Callable[[], str]) -> Iterator[None]:
    """Turn an error that bad input causes into a WorkflowError naming the node being read."""
    try:
        yield
    except ComfyWidgetsError:
        raise
    except _MALFORMED as exc:
        raise WorkflowError(
            f"cannot read {where()}: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc


def _read_source(src: str | Path | bytes | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Parse the input into a dict and pick a default name (the file stem when there is one).

    A PNG (a path or its bytes) gives the workflow it carries, as when one is dropped on ComfyUI.
    """
    if isinstance(src, dict):
        return src, "workflow"
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if data.startswith(PNG_SIGNATURE):
            return _png_workflow(data, "the given PNG"), "workflow"
        return _parse_json(_decode(data, "the given bytes"), "the given bytes"), "workflow"
    if isinstance(src, Path) or (isinstance(src, str) and not src.lstrip().startswith(("{", "["))):
        path = Path(src)
        try:
            data = path.read_bytes()
        except (OSError, ValueError) as exc:
            raise WorkflowError(f"cannot read workflow file {str(path)!r}: {exc}") from exc
        if data.startswith(PNG_SIGNATURE):
            return _png_workflow(data, f"PNG file {str(path)!r}"), path.stem
        return _parse_json(_decode(data, str(path)), str(path)), path.stem
    if isinstance(src, str):
        return _parse_json(src, "JSON text"), "workflow"
    raise WorkflowError(
        f"cannot load a workflow from {type(src).__name__}; give a path, a dict or JSON text"
    )


def _copy_source(source: dict[str, Any]) -> dict[str, Any]:
    """A private copy of a caller's dict; JSON nested too deeply to copy is refused."""
    try:
        return clone_json(source)
    except RecursionError as exc:
        raise WorkflowError("the workflow is JSON nested too deeply to read") from exc


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_workflow(data: bytes, where: str) -> dict[str, Any]:
    """The workflow a PNG carries (imported here: reading images needs Pillow)."""
    from comfy_widgets.workflow.pngmeta import workflow_from_png

    return workflow_from_png(data, where)


def _decode(data: bytes, where: str) -> str:
    """UTF-8 text (a leading byte-order mark allowed), or a WorkflowError saying it is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise WorkflowError(
            f"{where} is neither JSON text (UTF-8) nor a PNG image: byte {exc.start} is "
            f"{data[exc.start : exc.start + 1]!r}"
        ) from exc


def _parse_json(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise WorkflowError(f"{where} is JSON nested too deeply to read") from exc
    if not isinstance(data, dict):
        raise WorkflowError(
            f"{where} is JSON but not a workflow (a {type(data).__name__}, expected an object)"
        )
    return data


def detect_format(data: dict[str, Any]) -> Format:
    """``"ui"`` for litegraph workflows (nodes + links), ``"api"`` for prompts; else an error."""
    if isinstance(data.get("nodes"), list) and ("links" in data or "version" in data):
        if not isinstance(data.get("links", []), list):
            raise WorkflowError("UI workflow has a 'links' value that is not a list")
        return "ui"
    if data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        return "api"
    keys = ", ".join(repr(k) for k in list(data)[:5]) or "nothing"
    raise WorkflowError(
        "this JSON is neither a ComfyUI API prompt (nodes with 'class_type') "
        f"nor a UI workflow ('nodes' and 'links'); it has {keys}"
    )


def content_hash(data: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, compact) of a workflow."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # lone surrogates (valid in JSON text as \ud800 escapes) are hashed as they are
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def check_graph(prompt: dict[str, Any], links_checked: bool = False) -> None:
    """Reject links to missing nodes and dependency cycles, naming the nodes involved.

    ``links_checked`` skips the first check for converted prompts, which have no such links.
    """
    for node_id, node in [] if links_checked else prompt.items():
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            raise WorkflowError(f"node {node_id} ({node.get('class_type')}) has no inputs dict")
        for name, value in inputs.items():
            if _is_link(value) and str(value[0]) not in prompt:
                raise WorkflowError(
                    f"input {name!r} of node {node_id} ({node.get('class_type')}) is linked to "
                    f"node {value[0]!r}, which is not in the workflow"
                )
    cycle = _find_cycle(prompt)
    if cycle:
        raise WorkflowError("the workflow has a cycle: " + " -> ".join(cycle))


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
    )


def _find_cycle(prompt: dict[str, Any]) -> list[str] | None:
    """One dependency cycle as a list of node ids (first repeated at the end), or None."""
    if _links_point_back(prompt):
        return None
    state: dict[str, int] = {}
    for root in prompt:
        if state.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, _deps(prompt, root))]
        path = [root]
        state[root] = 1
        while stack:
            node_id, deps = stack[-1]
            if not deps:
                state[node_id] = 2
                stack.pop()
                path.pop()
                continue
            dep = deps.pop()
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if not state.get(dep):
                state[dep] = 1
                path.append(dep)
                stack.append((dep, _deps(prompt, dep)))
    return None


def _links_point_back(prompt: dict[str, Any]) -> bool:
    """True when every link comes from an earlier node: that order proves there is no cycle."""
    earlier: set[str] = set()
    for node_id, node in prompt.items():
        for value in (node.get("inputs") or {}).values():
            if (
                type(value) is list
                and len(value) == 2
                and _is_link(value)
                and str(value[0]) not in earlier
                and str(value[0]) in prompt
            ):
                return False
        earlier.add(node_id)
    return True


def _deps(prompt: dict[str, Any], node_id: str) -> list[str]:
    inputs = prompt[node_id].get("inputs") or {}
    return [
        str(v[0])
        for v in inputs.values()
        if type(v) is list and len(v) == 2 and _is_link(v) and str(v[0]) in prompt
    ]


def extract_parameters(
    wf_json: dict[str, Any] | str | Workflow, object_info: ObjectInfo | None = None
) -> list[WorkflowParameter]:
    """The parameters of a workflow given as a dict (API or UI format), a path or JSON text."""
    return Workflow.load(wf_json, object_info).parameters()


def apply_parameters(
    wf_json: dict[str, Any] | str | Workflow,
    values: dict[str, Any] | None = None,
    object_info: ObjectInfo | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """A new API prompt with ``values`` applied (friendly names or canonical keys)."""
    return Workflow.load(wf_json, object_info).apply(values, **kw)
