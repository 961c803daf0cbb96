"""The one interface the engine uses to run prompts on a server: ``Backend``.

The classic ComfyUI protocol (HTTP + one WebSocket, ``transport.classic``) implements it; Comfy
API v2 (HTTP + SSE) and ComfyUI's ``/api/jobs`` are to implement it too, so nothing here names a
ComfyUI dict shape: what comes back from a server is one of the small dataclasses below.

The engine's ``Job`` is a ``PromptWatcher``: the backend routes each parsed event of a prompt to
the watcher registered for its id, and, when it brings its view of the server up to date
(``reconcile``: after a reconnect, while the socket is down, when it stays quiet), it tells each
watcher what the server says about its prompt through the watcher's typed methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from comfy_widgets.states import JobState
from comfy_widgets.transport.outputs import OutputFileRef, file_refs

if TYPE_CHECKING:
    from comfy_widgets.errors import ComfyWidgetsError
    from comfy_widgets.transport.events import Event, ExecutionErrorEvent


@dataclass(frozen=True)
class Submitted:
    """The server accepted a prompt: its id and its place number (None if not told)."""

    prompt_id: str
    number: float | None = None


@dataclass(frozen=True)
class QueuedPrompt:
    """One prompt waiting or running on the server, with the prompt as the server keeps it."""

    prompt_id: str
    number: float
    prompt: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class QueueState:
    """What the server is running now and what waits, in run order."""

    running: tuple[QueuedPrompt, ...] = ()
    pending: tuple[QueuedPrompt, ...] = ()

    @property
    def running_ids(self) -> list[str]:
        """Ids of the running prompts."""
        return [item.prompt_id for item in self.running]

    @property
    def pending_ids(self) -> list[str]:
        """Ids of the waiting prompts, next to run first."""
        return [item.prompt_id for item in self.pending]


@dataclass(frozen=True)
class NodeOutput:
    """What one node produced: files on the server and plain texts."""

    node_id: str
    files: tuple[OutputFileRef, ...] = ()
    texts: tuple[str, ...] = ()

    @classmethod
    def from_ui(cls, node_id: str, ui_output: dict[str, Any]) -> NodeOutput:
        """From a node's ui output as ComfyUI reports it (``executed`` frame, ``/history``)."""
        texts = ui_output.get("text")
        return cls(
            str(node_id),
            tuple(file_refs(str(node_id), ui_output)),
            tuple(t for t in texts if isinstance(t, str)) if isinstance(texts, list) else (),
        )


@dataclass(frozen=True)
class PromptOutcome:
    """How a finished prompt ended, as the server remembers it (``/history``, ``/api/jobs``).

    ``state`` is COMPLETED, FAILED or CANCELLED; ``error`` is set for a failure the server
    explained; ``message`` is the server's own word for any other failure.
    """

    prompt_id: str
    state: JobState
    outputs: tuple[NodeOutput, ...] = ()
    error: ExecutionErrorEvent | None = None
    interrupted_node: str | None = None
    message: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    prompt: dict[str, Any] | None = field(default=None, repr=False)


class LostPolicy(str, Enum):
    """What to do with a posted prompt the server has neither queued nor finished."""

    RESUBMIT = "resubmit"  # the server lost it (restart): queue it again under the same id
    CANCEL = "cancel"  # it was deleted: the job is cancelled
    CANCEL_IF_LISTENING = "cancel_if_listening"  # cancelled unless the socket dropped meanwhile


@runtime_checkable
class PromptWatcher(Protocol):
    """What a backend needs from whoever follows one prompt (the engine's Job)."""

    @property
    def prompt_id(self) -> str: ...

    @property
    def posted(self) -> bool:
        """True once the server accepted the prompt."""
        ...

    @property
    def waiting(self) -> bool:
        """True while the prompt is queued (not yet running) on the server."""
        ...

    cancel_requested: bool
    frames_missed: bool  # set by the backend: events were missed, take outputs from the server

    def done(self) -> bool: ...

    def handle_event(self, event: Event) -> None:
        """Apply one event of this prompt (on the backend's loop)."""

    def mark_running(self) -> None:
        """The server says the prompt runs now."""

    def set_queue_position(self, position: int) -> None:
        """The server says the prompt waits at ``position`` (0 = next)."""

    async def apply_outcome(self, outcome: PromptOutcome) -> None:
        """The prompt ended while nobody listened: finish from what the server remembers."""

    async def finish(self, state: JobState, error: ComfyWidgetsError | None = None) -> None:
        """End the job here (e.g. CANCELLED when the server dropped it)."""

    async def resubmit(self) -> None:
        """Queue the prompt again under the same id (the server lost it)."""


@runtime_checkable
class Backend(Protocol):
    """Runs prompts on one server; every coroutine runs on the backend's event loop."""

    url: str  # the server's base URL, without credentials

    async def submit(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        *,
        front: bool = False,
        extra_data: dict[str, Any] | None = None,
    ) -> Submitted:
        """Queue ``prompt`` under the client-chosen ``prompt_id`` (a lowercase UUID)."""
        ...

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt (only ``prompt_id`` if given and running)."""

    async def delete_queued(self, prompt_ids: Iterable[str]) -> None:
        """Remove waiting prompts from the queue (a running one is not touched)."""

    async def cancel(self, prompt_id: str) -> None:
        """Stop one prompt whether it waits or runs (deleted if waiting, else interrupted).

        A backend without one call for both deletes then interrupts, in that order."""

    async def queue_state(self) -> QueueState:
        """What runs and what waits now."""
        ...

    async def outcome(self, prompt_id: str) -> PromptOutcome | None:
        """How a finished prompt ended, or None if it is unknown or not finished."""
        ...

    async def outcomes(self, max_items: int | None = None) -> dict[str, PromptOutcome]:
        """Every finished prompt the server remembers, by id."""
        ...

    async def fetch_output(self, ref: OutputFileRef) -> bytes:
        """The bytes of one output file."""
        ...

    async def upload_image(self, name: str, data: bytes) -> str:
        """Put an image in the server's input folder; returns the name prompts refer to."""
        ...

    async def object_info(self) -> dict[str, Any]:
        """The server's node definitions (ComfyUI's object_info shape: the workflow layer's)."""
        ...

    async def models(self, folder: str | None = None) -> list[str]:
        """Model folder names, or the files of one folder."""
        ...

    def watch(self, watcher: PromptWatcher) -> None:
        """Route events of ``watcher.prompt_id`` to it (call before submitting)."""

    def unwatch(self, watcher: PromptWatcher) -> None:
        """Stop routing events to a finished watcher."""

    async def wait_connected(self, timeout: float = 5.0) -> bool:
        """Wait until events flow (so no early one is missed); False on timeout."""
        ...

    def request_queue_refresh(self) -> None:
        """Soon tell waiting watchers their queue positions (coalesced; after a submit).

        A backend whose server pushes positions may do nothing."""

    async def reconcile(self, watchers: Sequence[PromptWatcher], *, lost: LostPolicy) -> None:
        """Bring ``watchers`` up to date from the server's queue and finished prompts."""

    async def aclose(self) -> None:
        """Stop listening and close connections."""
