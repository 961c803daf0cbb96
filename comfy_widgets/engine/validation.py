"""Checks of a prompt against the server it is about to go to, before anything is queued."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from comfy_widgets.errors import ComfyWidgetsError, ParameterError

if TYPE_CHECKING:
    from comfy_widgets.workflow.parameters import WorkflowParameter
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
            errors[param.name] = _missing_model(param, value, str(param.model_list), param.options)
    if errors:
        lines = "\n".join(f"  - {msg}" for msg in errors.values())
        raise ParameterError(
            f"{len(errors)} model file(s) missing on the server:\n{lines}", errors=errors
        )


async def check_models_on_server(
    workflow: Workflow,
    prompts: Iterable[dict[str, Any]],
    list_models: Callable[[str], Awaitable[list[str]]],
    seen: dict[str, frozenset[str]] | None = None,
) -> None:
    """Raise ParameterError if the prompts name model files the server does not list.

    For a workflow without the server's object_info (``check_server_models`` then cannot
    tell): each model folder the workflow's parameters use is listed once (``GET
    /models/<folder>``), and every prompt checked against it before anything is queued, so a
    batch whose checkpoint the server lacks is refused once instead of item by item. A folder
    the server cannot list, or lists empty, is left to the server to judge.

    ``seen`` (the server's ``Client.models_seen``) keeps each folder's last list: a folder
    whose wanted files were all in it is not listed again (a file missing there is).
    """
    if workflow.object_info.trusts_model_lists:
        return
    wanted: dict[str, dict[str, WorkflowParameter]] = {}
    params = [p for p in workflow.parameters() if p.model_list not in (None, "input")]
    for prompt in prompts:
        for param in params:
            value = (prompt.get(param.node_id) or {}).get("inputs", {}).get(param.field)
            if isinstance(value, str):
                wanted.setdefault(str(param.model_list), {}).setdefault(value, param)
    errors: dict[str, str] = {}
    for folder, values in wanted.items():
        if seen is not None and seen.get(folder, frozenset()).issuperset(values):
            continue
        try:
            available = await list_models(folder)
        except ComfyWidgetsError:
            continue
        if not isinstance(available, list) or not available:
            continue  # no list to judge by (a v2 server lists none): the server decides
        if seen is not None:
            seen[folder] = frozenset(v for v in available if isinstance(v, str))
        for value, param in values.items():
            if value not in available and param.name not in errors:
                errors[param.name] = _missing_model(param, value, folder, available)
    if errors:
        lines = "\n".join(f"  - {msg}" for msg in errors.values())
        raise ParameterError(
            f"{len(errors)} model file(s) missing on the server, nothing was queued:\n{lines}",
            errors=errors,
        )


def _missing_model(
    param: WorkflowParameter, value: str, folder: str, available: Sequence[Any]
) -> str:
    """The line naming a model file the server lacks, with the first files its folder has."""
    shown = ", ".join(repr(o) for o in available[:10]) or "nothing"
    more = " …" if len(available) > 10 else ""
    return (
        f"{param.name}: {value!r} ({param.field!r} of node {param.node_id}, "
        f"{param.node_class}) is not on the server; its {folder!r} folder has {shown}{more}"
    )
