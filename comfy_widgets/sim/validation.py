"""Prompt validation with ComfyUI's rules and exact error shapes (execution.validate_prompt), as
0.3.64 or 0.27 answers (0.27: `missing_node_type`, `dependency_cycle`, V3 COMBO options checked).

The structure follows ComfyUI's own recursion on purpose: its odd corners (a link to a missing node
reported as `exception_during_inner_validation` on the node downstream of the bad link, numbering
of `dependent_outputs`) come out the same way only if the same walk is done.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field

from comfy_widgets.sim.versions import NEWEST, Emulate

PRIMITIVE_CASTS = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
LONG_LIST = 20
AUTOGROW = "COMFY_AUTOGROW_V3"
MATCH_TYPE = "COMFY_MATCHTYPE_V3"
# Nodes whose VALIDATE_INPUTS checks a file instead of the combo list: (class, input).
FILE_CHECKED = {("LoadImage", "image"), ("LoadImageMask", "image")}


@dataclass
class ValidationResult:
    """Outcome of validate_prompt: ok, the top-level error, outputs to run, per-node errors."""

    ok: bool
    error: dict | None
    outputs: list[str]
    node_errors: dict = field(default_factory=dict)


def _error(kind: str, message: str, details: str = "") -> dict:
    """A graph-level error dict (`invalid_prompt`, `prompt_no_outputs`, ...)."""
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _input_specs(node_info: dict) -> list[tuple[str, str, list]]:
    """(name, category, spec) of the required and optional inputs in declared order."""
    order = node_info.get("input_order", {})
    out = []
    for category in ("required", "optional"):
        specs = node_info["input"].get(category, {})
        names = order.get(category, list(specs))
        out.extend((name, category, specs[name]) for name in names if name in specs)
    return out


def _type_matches(received: object, expected: object) -> bool:
    """ComfyUI's validate_node_input: equal, wildcard, or overlapping comma-separated unions.

    A legacy combo input (its type is the option list) matches no linked output at all.
    """
    if received == expected or MATCH_TYPE in (received, expected):  # 0.27: resolved per link
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def _tb() -> list[str]:
    """The current exception's traceback as ComfyUI lists it (traceback.format_tb)."""
    return traceback.format_tb(sys.exc_info()[2])


class _Validator:
    """One validate_prompt run over a prompt dict (mutates widget values to their cast types)."""

    def __init__(self, prompt: dict, object_info: dict, file_exists, emulate: Emulate) -> None:
        self.prompt = prompt
        self.info = object_info
        self.file_exists = file_exists
        self.profile = emulate.profile
        self.validated: dict[str, tuple[bool, list, str]] = {}
        self.visiting: list[str] = []  # the link path being walked (0.27's cycle check)

    def _cycle(self, unique_id: str) -> tuple[bool, list, str]:
        """0.27: mark every node on the cycle that leads back to `unique_id`."""
        path = self.visiting[self.visiting.index(unique_id) :] + [unique_id]
        members = list(dict.fromkeys(path))
        details = " -> ".join(f"{n} ({self.prompt[n]['class_type']})" for n in path)
        for node_id in members:
            error = {
                "type": "dependency_cycle",
                "message": "Dependency cycle detected",
                "details": details,
                "extra_info": {"node_id": node_id, "cycle_nodes": members},
            }
            self.validated[node_id] = (False, [error], node_id)
        return self.validated[unique_id]

    def validate_inputs(self, unique_id: str) -> tuple[bool, list, str]:
        """Validate one node and, recursively, the nodes it links from."""
        if unique_id in self.visiting:
            if self.profile.dependency_cycle:
                return self._cycle(unique_id)
            return (False, [], unique_id)  # 0.3.64: the outputs fail with no node error
        if unique_id in self.validated:
            return self.validated[unique_id]
        node = self.prompt[unique_id]
        inputs = node.setdefault("inputs", {})
        errors: list[dict] = []
        valid = True
        for name, category, spec in _input_specs(self.info[node["class_type"]]):
            if spec[0] == AUTOGROW:  # 0.27: sent as dotted children (`images.image0`), not checked
                continue
            if name not in inputs:
                if category == "required":
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            input_type = spec[0]
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            config = [input_type, extra]
            value = inputs[name]
            if isinstance(value, list):
                link_error, link_valid = self._check_link(
                    unique_id, name, value, input_type, config
                )
                if link_error is not None:
                    errors.append(link_error)
                valid = valid and link_valid
                continue
            if (node["class_type"], name) in FILE_CHECKED:
                errors.extend(self._check_file(name, value))
                continue
            errors.extend(self._check_value(inputs, name, input_type, extra, config))
        earlier = self.validated.get(unique_id, (True, [], unique_id))  # a cycle found below
        errors = earlier[1] + [e for e in errors if e not in earlier[1]]
        result = (earlier[0] and valid and not errors, errors, unique_id)
        self.validated[unique_id] = result
        return result

    def _check_link(self, unique_id: str, name: str, value: list, input_type, config: list):
        """Check a `[node_id, slot]` link; returns (error or None, still valid)."""
        if len(value) != 2:
            message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
            return (
                {
                    "type": "bad_linked_input",
                    "message": message,
                    "details": name,
                    "extra_info": {
                        "input_name": name,
                        "input_config": config,
                        "received_value": value,
                    },
                },
                False,
            )
        from_id, slot = value
        from_class = self.prompt[from_id]["class_type"]  # KeyError for a missing node, like ComfyUI
        received = tuple(self.info[from_class]["output"])[slot]  # IndexError for a bad slot
        if not _type_matches(received, input_type):
            details = f"{name}, received_type({received}) mismatch input_type({input_type})"
            return (
                {
                    "type": "return_type_mismatch",
                    "message": "Return type mismatch between linked nodes",
                    "details": details,
                    "extra_info": {
                        "input_name": name,
                        "input_config": config,
                        "received_type": received,
                        "linked_node": value,
                    },
                },
                False,
            )
        self.visiting.append(unique_id)
        try:
            ok = self.validate_inputs(from_id)[0]
        except Exception as ex:  # noqa: BLE001 - ComfyUI reports any inner failure this way
            self.validated[from_id] = (
                False,
                [
                    {
                        "type": "exception_during_inner_validation",
                        "message": "Exception when validating inner node",
                        "details": str(ex),
                        "extra_info": {
                            "input_name": name,
                            "input_config": config,
                            "exception_message": str(ex),
                            "exception_type": type(ex).__name__,
                            "traceback": _tb(),
                            "linked_node": value,
                        },
                    }
                ],
                from_id,
            )
            return None, False
        finally:
            self.visiting.pop()
        return None, ok

    def _check_file(self, name: str, value):
        """LoadImage's VALIDATE_INPUTS: the named input file must exist."""
        if isinstance(value, str) and self.file_exists(value):
            return
        yield {
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": f"{name} - Invalid image file: {value}",
            "extra_info": {"input_name": name},
        }

    def _check_value(self, inputs: dict, name: str, input_type, extra: dict, config: list):
        """Cast a widget value and check min, max and combo options; yields error dicts."""
        value = inputs[name]
        if isinstance(value, dict) and "__value__" in value:
            value = inputs[name] = value["__value__"]
        cast = PRIMITIVE_CASTS.get(input_type) if isinstance(input_type, str) else None
        if cast is not None:
            try:
                value = inputs[name] = cast(value)
            except Exception as ex:  # noqa: BLE001 - any conversion failure is reported
                yield {
                    "type": "invalid_input_type",
                    "message": f"Failed to convert an input value to a {input_type} value",
                    "details": f"{name}, {value}, {ex}",
                    "extra_info": {
                        "input_name": name,
                        "input_config": config,
                        "received_value": value,
                        "exception_message": str(ex),
                    },
                }
                return
        if "min" in extra and value < extra["min"]:
            yield {
                "type": "value_smaller_than_min",
                "message": f"Value {value} smaller than min of {extra['min']}",
                "details": name,
                "extra_info": {"input_name": name, "input_config": config, "received_value": value},
            }
            return
        if "max" in extra and value > extra["max"]:
            yield {
                "type": "value_bigger_than_max",
                "message": f"Value {value} bigger than max of {extra['max']}",
                "details": name,
                "extra_info": {"input_name": name, "input_config": config, "received_value": value},
            }
            return
        # Legacy combos (a list type) are checked; 0.3.64 lets "COMBO" inputs pass, 0.27 checks
        # their `options` too (each value of a multiselect list).
        options = input_type if isinstance(input_type, list) else None
        if options is None and input_type == "COMBO" and self.profile.missing_node_type:
            options = extra.get("options", [])
        if options is None:
            return
        if extra.get("multiselect") and isinstance(value, list):
            bad = [v for v in value if v not in options]
        else:
            bad = [value] if value not in options else []
        if bad:
            long = len(options) > LONG_LIST
            listing = f"(list of length {len(options)})" if long else str(options)
            shown = (
                ", ".join(repr(v) for v in bad) if self.profile.missing_node_type else f"'{value}'"
            )
            yield {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": f"{name}: {shown} not in {listing}",
                "extra_info": {
                    "input_name": name,
                    "input_config": None if long else config,
                    "received_value": value,
                },
            }


def _missing_node_type(node_id: str, node: dict) -> dict:
    """0.27's error for a node without class_type or of an unknown class (named by its title)."""
    class_type = node.get("class_type") if isinstance(node, dict) else None
    meta = node.get("_meta", {}) if isinstance(node, dict) else {}
    if class_type is None:
        title = meta.get("title")
        message = (
            f"Node '{title or f'ID #{node_id}'}' has no class_type. "
            "The workflow may be corrupted or a custom node is missing."
        )
    else:
        title = meta.get("title", class_type)
        message = f"Node '{title}' not found. The custom node may not be installed."
    error = _error("missing_node_type", message, f"Node ID '#{node_id}'")
    error["extra_info"] = {"node_id": node_id, "class_type": class_type, "node_title": title}
    return error


def _graph_error(prompt: dict, object_info: dict, emulate: Emulate) -> dict | None:
    """The error for a node without class_type or of an unknown class (`invalid_prompt` in
    0.3.64, `missing_node_type` in 0.27)."""
    for node_id, node in prompt.items():
        missing = not isinstance(node, dict) or "class_type" not in node
        if emulate.profile.missing_node_type and (missing or node["class_type"] not in object_info):
            return _missing_node_type(node_id, node)
        if missing:
            return _error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        if node["class_type"] not in object_info:
            return _error(
                "invalid_prompt",
                f"Cannot execute because node {node['class_type']} does not exist.",
                f"Node ID '#{node_id}'",
            )
    return None


def validate_prompt(
    prompt: dict,
    object_info: dict,
    file_exists=lambda name: True,
    targets: list[str] | None = None,
    emulate: Emulate = NEWEST,
) -> ValidationResult:
    """Validate an API prompt like ComfyUI: graph errors first, then every output's inputs.

    `file_exists(name)` answers LoadImage's check that an input image exists; `targets`
    (partial_execution_targets) limits which output nodes count.
    """
    graph_error = _graph_error(prompt, object_info, emulate)
    if graph_error is not None:
        return ValidationResult(False, graph_error, [], {})
    outputs = [
        nid
        for nid, node in prompt.items()
        if object_info[node["class_type"]].get("output_node") is True
        and (targets is None or nid in targets)
    ]
    if not outputs:
        return ValidationResult(False, _error("prompt_no_outputs", "Prompt has no outputs"), [], {})
    validator = _Validator(prompt, object_info, file_exists, emulate)
    good: list[str] = []
    failures: list[tuple[str, list]] = []
    node_errors: dict = {}
    for output in outputs:
        try:
            valid, reasons, _ = validator.validate_inputs(output)
        except Exception as ex:  # noqa: BLE001 - reported as ComfyUI does
            valid = False
            reasons = [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(ex),
                    "extra_info": {"exception_type": type(ex).__name__, "traceback": _tb()},
                }
            ]
            validator.validated[output] = (False, reasons, output)
        if valid:
            good.append(output)
            continue
        failures.append((output, reasons))
        for node_id, (ok, node_reasons, _) in validator.validated.items():
            if ok or not node_reasons:
                continue
            entry = node_errors.setdefault(
                node_id,
                {
                    "errors": node_reasons,
                    "dependent_outputs": [],
                    "class_type": prompt[node_id]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{r['message']}: {r['details']}" for _, rs in failures for r in rs)
        error = _error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
        )
        return ValidationResult(False, error, [], node_errors)
    return ValidationResult(True, None, good, node_errors)
