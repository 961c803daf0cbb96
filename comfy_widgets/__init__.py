"""comfy_widgets: drive a ComfyUI server from Jupyter notebooks.

The public API in one place; see README.md for a tour. Names are imported on first use, so
``python -m comfy_widgets.sim`` or the CLI do not pay for pandas and ipywidgets.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Batch": "comfy_widgets.engine.batch",
    "BatchPanel": "comfy_widgets.widgets.batch_panel",
    "BatchView": "comfy_widgets.widgets.batch_view",
    "BlockingCallError": "comfy_widgets.errors",
    "Client": "comfy_widgets.engine.client",
    "ComfyWidgetsError": "comfy_widgets.errors",
    "ExecutionError": "comfy_widgets.errors",
    "HTTPStatusError": "comfy_widgets.errors",
    "Job": "comfy_widgets.engine.job",
    "JobCancelledError": "comfy_widgets.errors",
    "JobResult": "comfy_widgets.engine.job",
    "ObjectInfo": "comfy_widgets.workflow.object_info",
    "OutputRef": "comfy_widgets.results.frame",
    "ParameterError": "comfy_widgets.errors",
    "ParameterForm": "comfy_widgets.widgets.form",
    "ProgressView": "comfy_widgets.widgets.progress",
    "PromptValidationError": "comfy_widgets.errors",
    "ResultGrid": "comfy_widgets.widgets.grid",
    "ServerConnectionError": "comfy_widgets.errors",
    "ServerError": "comfy_widgets.errors",
    "Store": "comfy_widgets.records.sqlite",
    "UnknownNodeTypeError": "comfy_widgets.errors",
    "VariationPlan": "comfy_widgets.engine.plan",
    "Workflow": "comfy_widgets.workflow.workflow",
    "WorkflowError": "comfy_widgets.errors",
    "WorkflowParameter": "comfy_widgets.workflow.parameters",
    "apply_parameters": "comfy_widgets.workflow.workflow",
    "connect": "comfy_widgets.engine.client",
    "export_batch": "comfy_widgets.results.export",
    "extract_parameters": "comfy_widgets.workflow.workflow",
    "history": "comfy_widgets.results.recorded",
    "increment": "comfy_widgets.engine.plan",
    "load_batch": "comfy_widgets.results.recorded",
    "rerun": "comfy_widgets.engine.resume",
    "resume": "comfy_widgets.engine.resume",
    "show": "comfy_widgets.results.frame",
    "sweep": "comfy_widgets.engine.plan",
    "values": "comfy_widgets.engine.plan",
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

    register_display(ipython)
    load(ipython)


# --- display: the core types carry static HTML; the live widgets are registered here ---------
# (this facade sits above every layer, so it may name the widgets; the engine never does)

_DISPLAYED = {"Job": "comfy_widgets.engine.job", "Batch": "comfy_widgets.engine.batch"}


def register_display(ipython: Any = None) -> bool:
    """Show Jobs and Batches as their live widgets in ``ipython`` (default: the running shell).

    Registers IPython display formatters by type name, so nothing is imported until a Job or
    Batch is displayed; the widgets module is imported then. Called on ``import comfy_widgets``
    inside IPython and by ``%load_ext comfy_widgets``. Returns False outside IPython.
    """
    if ipython is None:
        ipython = _running_ipython()
    if ipython is None:
        return False
    formatter = ipython.display_formatter
    job_module, batch_module = _DISPLAYED["Job"], _DISPLAYED["Batch"]
    formatter.ipython_display_formatter.for_type_by_name(job_module, "Job", _show_job)
    formatter.mimebundle_formatter.for_type_by_name(job_module, "Job", _job_bundle)
    formatter.mimebundle_formatter.for_type_by_name(batch_module, "Batch", _batch_bundle)
    return True


def _running_ipython() -> Any:
    """The running IPython shell, without importing IPython where it is not loaded."""
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _show_job(job: Any) -> None:
    """IPython's display hook for a Job: the live progress view, else its static summary."""
    try:
        from comfy_widgets.widgets.display import show_job
    except ImportError:
        from IPython.display import display

        display({"text/plain": repr(job), "text/html": job._repr_html_()}, raw=True)
        return
    show_job(job)


def _job_bundle(job: Any) -> Any:
    """The mimebundle of a Job: the progress widget's (None: IPython uses ``_repr_html_``)."""
    try:
        from comfy_widgets.widgets.display import job_mimebundle
    except ImportError:
        return None
    return job_mimebundle(job)


def _batch_bundle(batch: Any) -> Any:
    """The mimebundle of a Batch: the live batch view's (None: IPython uses ``_repr_html_``)."""
    try:
        from comfy_widgets.widgets.display import batch_mimebundle
    except ImportError:
        return None
    return batch_mimebundle(batch)


register_display()
