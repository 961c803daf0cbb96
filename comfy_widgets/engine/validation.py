"""Checks of a prompt against the server it is about to go to, before anything is queued."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comfy_widgets.errors import ParameterError

if TYPE_CHECKING:
    from comfy_widgets.workflow.workflow import Workflow


def check_server_models(workflow: Workflow, prompt: dict[str, Any]) -> None:
    """Raise ParameterError if ``prompt`` names model files the server does not list.

    Only with the server's own object_info (``trusts_model_lists``): it catches, before anything
    is queued, what ComfyUI would reject as ``value_not_in_list`` (e.g. a downloaded workflow's
    checkpoint this server lacks). Input images are not checked: uploads add to that list.
    """
    if not workflow.object_info.trusts_model_lists:
        return
    errors: dict[str, str] = {}
    for param in workflow.parameters():
        if param.model_list in (None, "input") or param.options is None:
            continue
        value = (prompt.get(param.node_id) or {}).get("inputs", {}).get(param.field)
        if isinstance(value, str) and value not in param.options:
            shown = ", ".join(repr(o) for o in param.options[:10]) or "nothing"
            more = " …" if len(param.options) > 10 else ""
            errors[param.name] = (
                f"{param.name}: {value!r} ({param.field!r} of node {param.node_id}, "
                f"{param.node_class}) is not on the server; its {param.model_list!r} folder "
                f"has {shown}{more}"
            )
    if errors:
        lines = "\n".join(f"  - {msg}" for msg in errors.values())
        raise ParameterError(
            f"{len(errors)} model file(s) missing on the server:\n{lines}", errors=errors
        )
