"""A workflow's editable parameters: discovery, friendly names, validation and application.

Every literal widget input of an API prompt can be a parameter (its canonical name is
``"<node_id>.<field>"``); the well-known ones (see :mod:`comfy_widgets.workflow.detection`) are not
``advanced`` and get a friendly name such as ``seed``, ``steps`` or ``prompt`` when exactly one
input answers to it. Values are checked against the node definitions before anything is queued.
"""

from __future__ import annotations

import copy
import difflib
import numbers
from dataclasses import dataclass
from typing import Any

from comfy_widgets.errors import ParameterError
from comfy_widgets.workflow.conversion import clone_json
from comfy_widgets.workflow.detection import (
    DETECTION_TABLE,
    friendly_alias,
    is_seed_field,
    prompt_roles,
)
from comfy_widgets.workflow.object_info import (
    CUSTOM_COMBO,
    DYNAMIC_COMBO,
    InputSpec,
    ObjectInfo,
    option_children,
    resolve_input,
)

_PRIMITIVES = frozenset(
    {
        "PrimitiveInt",
        "PrimitiveFloat",
        "PrimitiveString",
        "PrimitiveStringMultiline",
        "PrimitiveBoolean",
    }
)
_SCALAR_TYPES = {
    "INT": "number",
    "FLOAT": "number",
    "STRING": "string",
    "BOOLEAN": "boolean",
    "COMBO": "select",
    DYNAMIC_COMBO: "select",
}
_MAX_LISTED_OPTIONS = 12


@dataclass
class WorkflowParameter:
    """One editable input of a workflow, with what a form or a validator needs to know."""

    name: str
    key: str
    node_id: str
    field: str
    label: str
    type: str
    value: Any
    options: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    multiline: bool = False
    node_class: str = ""
    node_title: str = ""
    control_after_generate: str | None = None
    is_integer: bool = False
    advanced: bool = False
    model_list: str | None = None
    tooltip: str | None = None
    #: Other canonical keys set together with this one (inputs fed by one PrimitiveNode).
    linked_keys: tuple[str, ...] = ()
    #: Friendly names that may refer to this parameter (ambiguous ones included).
    aliases: tuple[str, ...] = ()
    #: True for a DynamicCombo: choosing another option changes which inputs the node has.
    dynamic: bool = False
    #: For an input a DynamicCombo option adds (``model.duration``): that combo's key.
    parent: str | None = None
    #: True when the workflow's author chose this input in App Mode (``extra.linearData``).
    app_input: bool = False


def copy_parameter(param: WorkflowParameter) -> WorkflowParameter:
    """A copy that callers may change freely (options and value are copied too)."""
    copied = copy.copy(param)  # much faster than dataclasses.replace
    if isinstance(param.value, (list, dict)):
        copied.value = clone_json(param.value)
    if param.options is not None:
        copied.options = list(param.options)
    return copied


@dataclass
class ParameterSet:
    """A workflow's parameters and the name lookup used to apply values."""

    parameters: list[WorkflowParameter]
    by_name: dict[str, list[WorkflowParameter]]
    object_info: ObjectInfo

    def resolve(self, name: str) -> WorkflowParameter:
        """The parameter a user-supplied name refers to; raises KeyError with a message."""
        found = self.by_name.get(name)
        if not found:
            raise KeyError(self._unknown_message(name))
        if len(found) > 1:
            choices = ", ".join(f"{p.key} ({p.node_title})" for p in found)
            raise KeyError(f"{name!r} is ambiguous: it matches {choices}; use one of those names")
        return found[0]

    def _unknown_message(self, name: str) -> str:
        node_id, _, input_name = name.partition(".")
        node_params = [p for p in self.parameters if p.node_id == node_id]
        if input_name and node_params:
            fields = ", ".join(p.field for p in node_params)
            return (
                f"unknown parameter {name!r}: node {node_id} ({node_params[0].node_title}) "
                f"has no editable input {input_name!r}; its inputs are: {fields}"
            )
        known = sorted(self.by_name)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown parameter {name!r}{hint}"


def build_parameter_set(
    prompt: dict[str, Any],
    object_info: ObjectInfo,
    *,
    controls: dict[str, dict[str, str]] | None = None,
    groups: list[tuple[str | None, list[tuple[str, str]]]] | None = None,
) -> ParameterSet:
    """Discover the parameters of an API prompt (plus UI extras: control modes, primitives)."""
    controls = controls or {}
    roles = prompt_roles(prompt, object_info)
    grouped = _group_index(prompt, groups or [])
    params: list[WorkflowParameter] = []
    described: dict[tuple[str, str], dict[str, Any]] = {}
    for node_id, node in prompt.items():
        for field_name, spec in _literal_inputs(node, object_info):
            key = f"{node_id}.{field_name}"
            members = grouped.get(key)
            if members is not None and members[0] != key:
                continue
            param = _make_parameter(
                node_id,
                node,
                field_name,
                spec,
                object_info,
                controls.get(node_id, {}).get(field_name),
                described,
            )
            if members is not None:
                param.linked_keys = tuple(members[1:])
                role = next(
                    (roles[_split(k, prompt)] for k in members if _split(k, prompt) in roles), None
                )
            else:
                role = roles.get((node_id, field_name))
            param.aliases = _aliases(param, node, role)
            params.append(param)
    return ParameterSet(params, _name_index(params, prompt), object_info)


def apply_app_inputs(pset: ParameterSet, chosen: list[tuple[str, str | None]]) -> None:
    """Put the inputs a workflow's author chose in App Mode first, in their order, under their
    labels, and every other parameter under Advanced.

    ``chosen`` holds (canonical key, label or None) pairs; keys that name no parameter (a linked
    input, a node no longer there) are skipped, as App Mode itself prunes them.
    """
    by_key: dict[str, WorkflowParameter] = {}
    for param in pset.parameters:
        for key in (param.key, *param.linked_keys):
            by_key.setdefault(key, param)
    first: list[WorkflowParameter] = []
    for key, label in chosen:
        found = by_key.get(key)
        if found is None or found.app_input:
            continue
        param = found
        param.app_input = True
        param.advanced = False
        if label:
            param.label = label
        first.append(param)
    if not first:
        return
    for param in pset.parameters:
        if not param.app_input:
            param.advanced = True
    pset.parameters[:] = [*first, *(p for p in pset.parameters if not p.app_input)]


def _split(key: str, prompt: dict[str, Any] | None = None) -> tuple[str, str]:
    """``"<node_id>.<field>"`` apart. Fields may hold dots (``model.duration``), and so may
    API node ids: the node id is the shortest prefix that names a node of ``prompt``."""
    if prompt is not None:
        at = key.find(".")
        while at >= 0:
            if key[:at] in prompt:
                return key[:at], key[at + 1 :]
            at = key.find(".", at + 1)
    node_id, _, field_name = key.partition(".")
    return node_id, field_name


def _group_index(
    prompt: dict[str, Any], groups: list[tuple[str | None, list[tuple[str, str]]]]
) -> dict[str, list[str]]:
    """Map each key driven by a PrimitiveNode to all keys of its group (first one leads)."""
    index: dict[str, list[str]] = {}
    order = {node_id: i for i, node_id in enumerate(prompt)}
    for _title, targets in groups:
        present = sorted(
            (
                (node_id, name)
                for node_id, name in targets
                if node_id in prompt
                and _is_literal((prompt[node_id].get("inputs") or {}).get(name, [None, None]))
            ),
            key=lambda target: order[target[0]],
        )
        keys = [f"{node_id}.{name}" for node_id, name in present]
        if len(keys) > 1:
            for key in keys:
                index[key] = keys
    return index


def _is_literal(value: Any) -> bool:
    return not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str))


def _literal_inputs(node: dict[str, Any], object_info: ObjectInfo):
    """Yield (field, spec) for a node's widget inputs that hold a value (not a link).

    Inputs follow the node definition; the dotted inputs a DynamicCombo option or an Autogrow
    group adds (``model.duration``, ``floats.u_float0``) come right after their parent, in the
    prompt's order, with the spec of the option or template that made them.
    """
    class_type = str(node.get("class_type"))
    inputs = node.get("inputs") or {}
    if not isinstance(inputs, dict):
        return
    if object_info.has(class_type):
        dotted = [name for name in inputs if "." in name]
        for spec in object_info.inputs(class_type):
            if _is_value_widget(spec) and spec.name in inputs and _is_literal(inputs[spec.name]):
                yield spec.name, spec
            for name in dotted:
                if name.startswith(spec.name + ".") and _is_literal(inputs[name]):
                    child = resolve_input(object_info, class_type, name, inputs)
                    if child is not None and _is_value_widget(child):
                        yield name, child
        if class_type == CUSTOM_COMBO:
            for name, value in inputs.items():
                if name.startswith("option") and isinstance(value, str):
                    yield name, InputSpec(name, "STRING", {}, False)
        return
    for name, value in inputs.items():
        if isinstance(value, (str, int, float, bool)) and not isinstance(value, dict):
            yield name, None


def _is_value_widget(spec: InputSpec) -> bool:
    return spec.is_widget and spec.type in _SCALAR_TYPES


def _dynamic_parent(node: dict[str, Any], node_id: str, field_name: str) -> str | None:
    """The key of the DynamicCombo whose option added a dotted input (the longest one that is
    a literal input of the node), or None."""
    inputs = node.get("inputs") or {}
    parts = field_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:cut])
        if name in inputs and isinstance(inputs[name], str):
            return f"{node_id}.{name}"
    return None


def _make_parameter(
    node_id: str,
    node: dict[str, Any],
    field_name: str,
    spec: InputSpec | None,
    object_info: ObjectInfo,
    control: str | None,
    described: dict[tuple[str, str], dict[str, Any]],
) -> WorkflowParameter:
    """Describe one input as a WorkflowParameter (type, range, options, model list).

    What the node definition alone decides is worked out once per class and input, in
    ``described`` (shared by every node of the class; never modified).
    """
    class_type = str(node.get("class_type"))
    value = node["inputs"][field_name]
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    title = (node.get("_meta") or {}).get("title") or object_info.display_name(class_type)
    # dotted inputs depend on the option chosen, CustomCombo's choices on its options
    cacheable = spec is not None and "." not in field_name and class_type != CUSTOM_COMBO
    fields = described.get((class_type, field_name)) if cacheable else None
    if fields is None:
        fields = _input_fields(class_type, field_name, spec, value, object_info)
        if class_type == CUSTOM_COMBO and field_name == "choice":
            inputs = node.get("inputs") or {}
            fields["options"] = [
                v for k, v in inputs.items() if k.startswith("option") and isinstance(v, str) and v
            ]
        if cacheable:
            described[(class_type, field_name)] = fields
    key = f"{node_id}.{field_name}"
    return WorkflowParameter(
        name=key,
        key=key,
        node_id=node_id,
        field=field_name,
        value=value,
        node_title=str(title),
        control_after_generate=control if fields["type"] in ("seed", "number", "select") else None,
        dynamic=spec is not None and spec.type == DYNAMIC_COMBO,
        parent=_dynamic_parent(node, node_id, field_name) if "." in field_name else None,
        **fields,
    )


def _input_label(field_name: str, options: dict[str, Any]) -> str:
    """The label of an input: the definition's ``display_name`` (ComfyUI 0.27+ gives some
    inputs one, e.g. ``Sampling Mode``), else the input's own name made readable."""
    shown = options.get("display_name")
    if isinstance(shown, str) and shown.strip():
        return shown.strip()
    return field_name.rpartition(".")[2].replace("_", " ").capitalize()


def _input_fields(
    class_type: str, field_name: str, spec: InputSpec | None, value: Any, object_info: ObjectInfo
) -> dict[str, Any]:
    """The WorkflowParameter fields an input's definition decides (its value only without one)."""
    options = spec.options if spec is not None else {}
    kind = _param_type(class_type, field_name, spec, value)
    fields: dict[str, Any] = {
        "label": _input_label(field_name, options),
        "type": kind,
        "node_class": class_type,
        "advanced": field_name not in DETECTION_TABLE.get(class_type, ()),
        "tooltip": options.get("tooltip"),
        "multiline": bool(options.get("multiline")),
        "is_integer": (spec.type == "INT")
        if spec is not None
        else isinstance(value, int) and not isinstance(value, bool) and kind in ("number", "seed"),
    }
    if spec is not None and spec.type in ("INT", "FLOAT"):
        fields["min"] = options.get("min")
        fields["max"] = options.get("max")
        fields["step"] = options.get("step", 1 if spec.type == "INT" else None)
    if spec is not None and spec.type == "COMBO":
        fields["options"] = list(spec.choices or ())
        fields["model_list"] = object_info.model_folder(class_type, field_name)
    if spec is not None and spec.type == DYNAMIC_COMBO:
        fields["options"] = list(spec.choices or ())
    return fields


def _param_type(class_type: str, field_name: str, spec: InputSpec | None, value: Any) -> str:
    """The parameter's kind: seed, number, string, boolean, select or image."""
    if spec is not None:
        if spec.type == "COMBO" and spec.options.get("image_upload"):
            return "image"
        if is_seed_field(field_name, spec.type):
            return "seed"
        return _SCALAR_TYPES.get(spec.type, "string")
    if class_type == "LoadImage" and field_name == "image":
        return "image"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "seed" if is_seed_field(field_name, None) and isinstance(value, int) else "number"
    return "string"


def _aliases(param: WorkflowParameter, node: dict[str, Any], role: str | None) -> tuple[str, ...]:
    """Friendly names for a parameter, best first."""
    names: list[str] = []
    if role is not None:
        names.append(role)
    if param.node_class in _PRIMITIVES:
        title = (node.get("_meta") or {}).get("title") or ""
        slug = "_".join(str(title).lower().split())
        if (
            slug
            and slug.replace("_", "").isalnum()
            and not slug.startswith(("primitive", "int", "float", "string", "boolean"))
        ):
            names.append(slug)
    else:
        names.append(friendly_alias(param.node_class, param.field))
        names.append(param.field)
    return tuple(dict.fromkeys(names))


def _is_active_seed(param: WorkflowParameter, prompt: dict[str, Any]) -> bool:
    """A seed on a sampler that adds no noise (``add_noise`` off) does not matter."""
    add_noise = (prompt.get(param.node_id, {}).get("inputs") or {}).get("add_noise")
    return add_noise not in ("disable", False)


def _name_index(
    params: list[WorkflowParameter], prompt: dict[str, Any]
) -> dict[str, list[WorkflowParameter]]:
    """Canonical keys always; a friendly alias names the one parameter that answers to it."""
    candidates: dict[str, list[WorkflowParameter]] = {}
    for param in params:
        for alias in param.aliases:
            candidates.setdefault(alias, []).append(param)
    for alias, found in candidates.items():
        if alias == "seed" and len(found) > 1:
            active = [p for p in found if _is_active_seed(p, prompt)]
            if active:
                candidates[alias] = active
    index: dict[str, list[WorkflowParameter]] = dict(candidates)
    for param in params:
        unique = next((a for a in param.aliases if candidates.get(a) == [param]), None)
        param.name = unique or param.key
        index[param.key] = [param]
        for key in param.linked_keys:
            index[key] = [param]
    return index


# --- validation ------------------------------------------------------------------------------


def check_value(param: WorkflowParameter, value: Any, trust_model_lists: bool) -> Any:
    """Return the value to send, or raise ValueError saying what is allowed."""
    where = f"{param.field!r} of node {param.node_id} ({param.node_title})"
    if value is None:
        raise ValueError(f"None is not a value for {where}")
    kind = param.type
    if kind in ("number", "seed"):
        return _check_number(param, value, where)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean (True/False) for {where}")
        return value
    if kind in ("string", "image"):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string for {where}")
        if kind == "image" and not value:
            raise ValueError(f"an image file name is required for {where}")
        return value
    if kind == "select":
        return _check_choice(param, value, where, trust_model_lists)
    return value


def _check_number(param: WorkflowParameter, value: Any, where: str) -> Any:
    # numbers.Real also admits NumPy scalars (np.int64 from a DataFrame, np.float32), which are
    # sent as the plain int or float JSON can hold.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{value!r} is not a number for {where}")
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not a finite number for {where}")
    if param.is_integer:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number for {where}")
        value = int(value)
    if param.min is not None and value < param.min:
        raise ValueError(
            f"{value!r} is below the minimum {param.min} for {where} "
            f"(allowed: {param.min} to {param.max})"
        )
    if param.max is not None and value > param.max:
        raise ValueError(
            f"{value!r} is above the maximum {param.max} for {where} "
            f"(allowed: {param.min} to {param.max})"
        )
    return value


def _check_choice(param: WorkflowParameter, value: Any, where: str, trust: bool) -> Any:
    options = param.options or []
    if value in options and type(value) in {type(o) for o in options}:
        return value
    if param.model_list is not None and not trust and isinstance(value, str):
        return value  # the bundled snapshot's file lists describe another machine
    shown = ", ".join(repr(o) for o in options[:_MAX_LISTED_OPTIONS])
    more = f" … ({len(options)} in all)" if len(options) > _MAX_LISTED_OPTIONS else ""
    raise ValueError(f"{value!r} is not among the allowed values for {where}: {shown}{more}")


# --- applying --------------------------------------------------------------------------------


def option_parameters(
    pset: ParameterSet,
    combo: WorkflowParameter,
    option: Any,
    node_inputs: dict[str, Any] | None = None,
) -> list[WorkflowParameter]:
    """The inputs choosing ``option`` in DynamicCombo ``combo`` gives its node, as parameters
    with their default values (nested DynamicCombos at their first option, recursively).

    ``node_inputs`` (the node's current inputs) is needed for a combo that is itself the child
    of another DynamicCombo."""
    object_info = pset.object_info
    spec = resolve_input(object_info, combo.node_class, combo.field, node_inputs or {})
    if spec is None or spec.type != DYNAMIC_COMBO:
        return []
    node = {
        "class_type": combo.node_class,
        "inputs": {combo.field: option, **_option_defaults(spec, option)},
        "_meta": {"title": combo.node_title},
    }
    params = []
    for name, child in _literal_inputs(node, object_info):
        if name.startswith(combo.field + "."):
            param = _make_parameter(combo.node_id, node, name, child, object_info, None, {})
            param.name = param.key
            params.append(param)
    return params


def _option_defaults(spec: InputSpec, option: Any) -> dict[str, Any]:
    """Default values of the widget inputs one option adds (nested options expanded)."""
    values: dict[str, Any] = {}
    for child in option_children(spec, option):
        if not child.is_widget:
            continue
        if child.type == DYNAMIC_COMBO:
            first = child.choices[0] if child.choices else None
            values[child.name] = first
            values.update(_option_defaults(child, first))
        elif child.type == "COMBO":
            values[child.name] = child.options.get("default", (child.choices or [None])[0])
        else:
            default = child.options.get("default")
            if default is None:
                default = {"INT": 0, "FLOAT": 0, "BOOLEAN": False, "STRING": ""}.get(child.type)
            values[child.name] = default
    return values


def apply_to_prompt(
    prompt: dict[str, Any], pset: ParameterSet, values: dict[str, Any], *, share: bool = False
) -> dict[str, Any]:
    """A new prompt with the values applied; one ParameterError lists every bad name.

    Giving a DynamicCombo another option replaces the inputs its old option added with the new
    option's (at their defaults, unless ``values`` sets them by canonical key). With ``share``
    the nodes the values leave alone are ``prompt``'s own objects (to be read, never changed).
    """
    errors: dict[str, str] = {}
    updates: list[tuple[WorkflowParameter, Any]] = []
    trust = pset.object_info.trusts_model_lists
    resolved: dict[str, WorkflowParameter] = {}
    pending: list[str] = []
    for name in values:
        try:
            resolved[str(name)] = pset.resolve(str(name))
        except KeyError as exc:
            pending.append(str(name))
            errors[str(name)] = str(exc.args[0])
    switches: list[tuple[WorkflowParameter, list[WorkflowParameter]]] = []
    for name, param in resolved.items():
        if param.dynamic and values[name] != param.value and values[name] in (param.options or []):
            node_inputs = prompt.get(param.node_id, {}).get("inputs") or {}
            switches.append((param, option_parameters(pset, param, values[name], node_inputs)))
    added = {child.key: child for _, children in switches for child in children}
    for name in pending:
        if name in added:
            resolved[name] = added[name]
            del errors[name]
    for name, param in resolved.items():
        try:
            updates.append((param, check_value(param, values[name], trust)))
        except ValueError as exc:
            errors[name] = f"{name}: {exc}"
    if errors:
        lines = "\n".join(f"  - {msg}" for msg in errors.values())
        raise ParameterError(f"{len(errors)} invalid parameter(s):\n{lines}", errors=errors)
    result = dict(prompt)  # a node is copied when a value changes it (_own_inputs)
    owned: set[str] = set()
    for combo, children in switches:
        inputs = _own_inputs(result, owned, combo.node_id)
        result[combo.node_id]["inputs"] = _switch_option(inputs, combo.field, children)
    for param, value in updates:
        sent = {"__value__": clone_json(value)} if isinstance(value, list) else value
        for key in (param.key, *param.linked_keys):
            node_id, field_name = _split(key, result)
            _own_inputs(result, owned, node_id)[field_name] = sent
    return result if share else clone_json(result)


def _own_inputs(prompt: dict[str, Any], owned: set[str], node_id: str) -> dict[str, Any]:
    """The inputs of node ``node_id`` of ``prompt``, copied with the node the first time they
    are asked for (noted in ``owned``), so changing them leaves the original node alone."""
    if node_id not in owned:
        node = prompt[node_id] = dict(prompt[node_id])
        node["inputs"] = dict(node["inputs"])
        owned.add(node_id)
    inputs: dict[str, Any] = prompt[node_id]["inputs"]
    return inputs


def _switch_option(
    inputs: dict[str, Any], field_name: str, children: list[WorkflowParameter]
) -> dict[str, Any]:
    """A node's inputs with the old option's ``<field>.*`` inputs replaced by the new ones
    (placed right after the combo, where the frontend puts them)."""
    prefix = field_name + "."
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        if name.startswith(prefix):
            continue
        out[name] = value
        if name == field_name:
            out.update((child.field, clone_json(child.value)) for child in children)
    return out
