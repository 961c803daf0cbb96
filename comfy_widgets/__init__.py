"""comfy_widgets: drive a ComfyUI server from Jupyter notebooks."""

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

__version__ = "0.1.0"

__all__ = [
    "BlockingCallError",
    "ComfyWidgetsError",
    "ExecutionError",
    "HTTPStatusError",
    "JobCancelledError",
    "ParameterError",
    "PromptValidationError",
    "ServerConnectionError",
    "ServerError",
    "UnknownNodeTypeError",
    "WorkflowError",
]
