"""comfy_widgets: drive a ComfyUI server from Jupyter notebooks.

The public API in one place; see README.md for a tour.
"""

from comfy_widgets import sim
from comfy_widgets.batch import Batch
from comfy_widgets.client import Client, connect
from comfy_widgets.errors import (
    BlockingCallError,
    ComfyWidgetsError,
    ExecutionError,
    HTTPStatusError,
    JobCancelledError,
    ParameterError,
    PromptValidationError,
    ServerConnectionError,
    ServerError,
    UnknownNodeTypeError,
    WorkflowError,
)
from comfy_widgets.export import export_batch
from comfy_widgets.history import history, load_batch, rerun, resume
from comfy_widgets.jobs import Job, JobResult
from comfy_widgets.object_info import ObjectInfo
from comfy_widgets.parameters import WorkflowParameter, apply_parameters, extract_parameters
from comfy_widgets.plan import increment, sweep, values
from comfy_widgets.results import OutputRef, show
from comfy_widgets.store import Store
from comfy_widgets.widgets.batch_panel import BatchPanel
from comfy_widgets.widgets.batch_view import BatchView
from comfy_widgets.widgets.form import ParameterForm
from comfy_widgets.widgets.grid import ResultGrid
from comfy_widgets.widgets.progress import ProgressView
from comfy_widgets.workflow import Workflow

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:
    """Register the ``%comfy_connect`` and ``%comfy_form`` magics (``%load_ext comfy_widgets``)."""
    from comfy_widgets.magics import load_ipython_extension as load

    load(ipython)


__all__ = [
    "Batch",
    "BatchPanel",
    "BatchView",
    "BlockingCallError",
    "Client",
    "ComfyWidgetsError",
    "ExecutionError",
    "HTTPStatusError",
    "Job",
    "JobCancelledError",
    "JobResult",
    "ObjectInfo",
    "OutputRef",
    "ParameterError",
    "ParameterForm",
    "ProgressView",
    "PromptValidationError",
    "ResultGrid",
    "ServerConnectionError",
    "ServerError",
    "Store",
    "UnknownNodeTypeError",
    "Workflow",
    "WorkflowError",
    "WorkflowParameter",
    "apply_parameters",
    "connect",
    "export_batch",
    "extract_parameters",
    "history",
    "increment",
    "load_batch",
    "rerun",
    "resume",
    "show",
    "sim",
    "sweep",
    "values",
]
