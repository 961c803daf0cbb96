"""comfy_widgets: drive a ComfyUI server from Jupyter notebooks.

The public API in one place; see README.md for a tour. Names are imported on first use, so
``python -m comfy_widgets.sim`` or the CLI do not pay for pandas and ipywidgets.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Batch": "comfy_widgets.batch",
    "BatchPanel": "comfy_widgets.widgets.batch_panel",
    "BatchView": "comfy_widgets.widgets.batch_view",
    "BlockingCallError": "comfy_widgets.errors",
    "Client": "comfy_widgets.client",
    "ComfyWidgetsError": "comfy_widgets.errors",
    "ExecutionError": "comfy_widgets.errors",
    "HTTPStatusError": "comfy_widgets.errors",
    "Job": "comfy_widgets.jobs",
    "JobCancelledError": "comfy_widgets.errors",
    "JobResult": "comfy_widgets.jobs",
    "ObjectInfo": "comfy_widgets.workflow.object_info",
    "OutputRef": "comfy_widgets.results",
    "ParameterError": "comfy_widgets.errors",
    "ParameterForm": "comfy_widgets.widgets.form",
    "ProgressView": "comfy_widgets.widgets.progress",
    "PromptValidationError": "comfy_widgets.errors",
    "ResultGrid": "comfy_widgets.widgets.grid",
    "ServerConnectionError": "comfy_widgets.errors",
    "ServerError": "comfy_widgets.errors",
    "Store": "comfy_widgets.store",
    "UnknownNodeTypeError": "comfy_widgets.errors",
    "VariationPlan": "comfy_widgets.plan",
    "Workflow": "comfy_widgets.workflow.workflow",
    "WorkflowError": "comfy_widgets.errors",
    "WorkflowParameter": "comfy_widgets.workflow.parameters",
    "apply_parameters": "comfy_widgets.workflow.parameters",
    "connect": "comfy_widgets.client",
    "export_batch": "comfy_widgets.export",
    "extract_parameters": "comfy_widgets.workflow.parameters",
    "history": "comfy_widgets.history",
    "increment": "comfy_widgets.plan",
    "load_batch": "comfy_widgets.history",
    "rerun": "comfy_widgets.history",
    "resume": "comfy_widgets.history",
    "show": "comfy_widgets.results",
    "sweep": "comfy_widgets.plan",
    "values": "comfy_widgets.plan",
}
_SUBMODULES = {"examples", "sim"}

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is used (PEP 562)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"comfy_widgets.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'comfy_widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%comfy_connect`` and ``%comfy_form`` magics (``%load_ext comfy_widgets``)."""
    from comfy_widgets.magics import load_ipython_extension as load

    load(ipython)
