"""The exceptions comfy_widgets raises, in one small hierarchy (modelled on httpx's).

Catch ``ComfyWidgetsError`` for everything; catch a subclass for one kind of failure.
Every message names what went wrong and where (file, node, parameter, allowed values).
"""

from __future__ import annotations

from typing import Any


class ComfyWidgetsError(Exception):
    """Base class of every error raised by comfy_widgets."""


# --- workflows and parameters ---------------------------------------------------------------


class WorkflowError(ComfyWidgetsError, ValueError):
    """A workflow could not be read or converted (malformed JSON, unknown format, bad graph)."""


class UnknownNodeTypeError(WorkflowError):
    """A node's type is not in the object_info in use (names node id, type and title)."""

    def __init__(self, message: str, *, node_id: str, node_type: str, title: str | None = None):
        super().__init__(message)
        self.node_id = node_id
        self.node_type = node_type
        self.title = title


class ParameterError(ComfyWidgetsError, ValueError):
    """A parameter name or value was rejected before anything was queued.

    ``errors`` maps each offending parameter name to its message, so a form can show each one
    next to its field.
    """

    def __init__(self, message: str, *, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors: dict[str, str] = dict(errors or {})


# --- talking to the server ------------------------------------------------------------------


class ServerError(ComfyWidgetsError):
    """Base class for failures while talking to a ComfyUI server."""


class ServerConnectionError(ServerError, ConnectionError):
    """The server could not be reached (refused, reset, timed out, DNS)."""


class HTTPStatusError(ServerError):
    """The server answered with an unexpected HTTP status."""

    def __init__(self, message: str, *, status_code: int, body: str = ""):
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class AuthenticationError(HTTPStatusError):
    """The server refused the credentials (HTTP 401/403): a missing, wrong or expired API key."""


class ProtocolError(ServerError):
    """The server answered something that is not its protocol: HTML where JSON belongs (a proxy's
    error page), JSON of the wrong shape, or a redirect loop. The message quotes the start of it."""


class ResponseTooLargeError(ServerError):
    """An answer or frame is larger than the client accepts (``max_output_bytes`` and friends)."""


class QueueFullError(HTTPStatusError):
    """The server's queue is full (Comfy API v2 ``queue_full``, HTTP 429) for longer than the
    client was willing to wait; ``retry_after`` is the server's last hint, in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        body: str = "",
        retry_after: float | None = None,
    ):
        super().__init__(message, status_code=status_code, body=body)
        self.retry_after: float | None = retry_after


class SubmitOutcomeUnknownError(ServerError):
    """A submit may or may not have reached the server, and it cannot tell which: the client
    does not send it again (that could run it twice). ``key`` is the Idempotency-Key used."""

    def __init__(self, message: str, *, key: str):
        super().__init__(message)
        self.key = key


class PromptValidationError(ServerError, ValueError):
    """ComfyUI rejected a prompt (HTTP 400). ``node_errors`` is ComfyUI's per-node error dict."""

    def __init__(
        self,
        message: str,
        *,
        error: dict[str, Any] | None = None,
        node_errors: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.error: dict[str, Any] = dict(error or {})
        self.node_errors: dict[str, Any] = dict(node_errors or {})


class ExecutionError(ServerError):
    """A queued prompt failed while running (ComfyUI's ``execution_error``)."""

    def __init__(
        self,
        message: str,
        *,
        prompt_id: str | None = None,
        node_id: str | None = None,
        node_type: str | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.details: dict[str, Any] = dict(details or {})


class JobCancelledError(ComfyWidgetsError):
    """The job was cancelled (deleted from the queue or interrupted) before it finished."""


class BlockingCallError(ComfyWidgetsError, RuntimeError):
    """A blocking wait was attempted inside a running event loop; ``await`` instead."""


class StoreError(ComfyWidgetsError):
    """The run store cannot be opened or written: corrupt, read-only, or its folder missing.
    The message names the file and what to do; nothing is run unrecorded without saying so."""
