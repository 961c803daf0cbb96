"""What the engine records, and the one interface it records through: ``Recorder``.

The engine turns its jobs and batches into the typed records below and hands them to a
Recorder; it never sees SQL. ``records.sqlite.Store`` (the embedded default) implements the
protocol; a PostgreSQL store is to implement it too; ``NullRecorder`` records nothing (a client
made with ``store=None`` or ``store=False``).

Writes are idempotent per prompt id: recording a generation again updates its row, and once a
generation is in a final state (``JobState.terminal``) only a record that comes with outputs
changes it again, and finishing it twice writes nothing the second time.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from comfy_widgets.states import BatchState, JobState

if TYPE_CHECKING:
    from comfy_widgets.transport.outputs import Output


@functools.lru_cache(maxsize=64)
def clean_url(url: str | None) -> str | None:
    """Strip user info, query and fragment from a server URL so no credential is ever stored."""
    if not url:
        return url
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def workflow_hash(source: Any) -> str:
    """sha256 of the canonical JSON of a workflow (the same rule as ``Workflow.content_hash``)."""
    canonical = json.dumps(source, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class WorkflowRecord:
    """A workflow as recorded: once per content hash."""

    name: str
    source: dict[str, Any] = field(repr=False)
    format: str | None = None  # "api" or "ui"
    content_hash: str = ""
    id: int | None = None  # set when read back from a store

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", workflow_hash(self.source))

    @classmethod
    def of(cls, workflow: Any) -> WorkflowRecord:
        """From a ``Workflow``, a ``WorkflowRecord`` or a plain workflow dict."""
        if isinstance(workflow, WorkflowRecord):
            return workflow
        if isinstance(workflow, dict):
            fmt = "ui" if "nodes" in workflow else "api"
            return cls("workflow", workflow, fmt)
        from comfy_widgets.workflow.workflow import Workflow

        if not isinstance(workflow, Workflow):
            raise TypeError(f"not a workflow: {type(workflow).__name__}")
        return cls(
            workflow.name or "workflow", workflow.source, workflow.format, workflow.content_hash
        )


@dataclass(frozen=True)
class StoredOutput:
    """An output as a store keeps it: where it was on the server, and the local copy if any."""

    node_id: str | None
    filename: str | None
    subfolder: str = ""
    type: str | None = None
    kind: str | None = None
    mime: str | None = None
    local_path: str | None = None
    asset_id: str | None = None  # the server's asset id (ComfyUI 0.27+ with --enable-assets)

    def as_dict(self) -> dict[str, Any]:
        """The description ``OutputRef.from_record`` and the JSON column use."""
        return {
            "node_id": self.node_id,
            "filename": self.filename,
            "subfolder": self.subfolder,
            "type": self.type,
            "kind": self.kind,
            "mime": self.mime,
            "local_path": self.local_path,
            "asset_id": self.asset_id,
        }


@dataclass
class GenerationRecord:
    """One prompt sent (or planned) to a server: what was asked, where, and how it ended.

    ``outputs`` are the fetched files a finished generation hands to the recorder (it writes
    them next to the store); ``saved_outputs`` is what a store gives back when read.
    ``ui_graph`` is the UI workflow holding the values used (PNG metadata), when there is one.
    """

    prompt_id: str
    state: JobState
    server: str | None = None
    workflow: WorkflowRecord | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] | None = field(default=None, repr=False)
    ui_graph: dict[str, Any] | None = field(default=None, repr=False)
    batch_id: str | None = None
    batch_index: int | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    error_node: str | None = None
    outputs: list[Output] = field(default_factory=list, repr=False)
    saved_outputs: list[StoredOutput] = field(default_factory=list, repr=False)
    id: int | None = None  # the store's generation id, when read back


@dataclass
class BatchRecord:
    """A batch and its whole plan, recorded before anything is queued so it can be resumed.

    ``plan`` holds the values of every item, ``prompts`` the API prompts built from them,
    ``columns`` the varied parameter columns of the results DataFrame.
    """

    id: str
    workflow: WorkflowRecord | None
    total_count: int
    state: BatchState = BatchState.PENDING
    spec: dict[str, Any] | None = None
    plan_seed: int | None = None
    plan: list[dict[str, Any]] = field(default_factory=list, repr=False)
    prompts: list[dict[str, Any]] = field(default_factory=list, repr=False)
    columns: list[str] | None = None
    servers: list[str] = field(default_factory=list)
    completed_count: int = 0  # read back only: kept by the store from its generations
    failed_count: int = 0


@runtime_checkable
class Recorder(Protocol):
    """Where the engine records workflows, generations and batches (see the module docstring)."""

    def record_generation(self, generation: GenerationRecord) -> None:
        """Insert or update a generation; a final one has its ``outputs`` saved once."""

    def record_batch(self, batch: BatchRecord) -> None:
        """Insert or replace a batch and its plan."""

    def set_batch_state(self, batch_id: str, state: BatchState) -> None:
        """Set a batch's state (its counts follow its generations)."""

    def last_used(self, workflow: WorkflowRecord) -> dict[str, Any]:
        """The parameter values last used with this workflow ({} if never)."""
        ...

    def set_last_used(self, workflow: WorkflowRecord, values: dict[str, Any]) -> None:
        """Remember ``values`` as this workflow's last-used parameters (the form's defaults)."""

    def batch(self, batch_id: str) -> BatchRecord | None:
        """The recorded batch, or None."""
        ...

    def find_generations(
        self,
        *,
        workflow: Any = None,
        batch_id: str | None = None,
        status: str | Sequence[str] | None = None,
        since: Any = None,
        generation_id: int | str | None = None,
    ) -> list[GenerationRecord]:
        """Recorded generations matching every given filter, in the order recorded (with
        ``batch_id``, in item order).

        ``workflow`` is a name, content hash, workflow id or workflow; ``generation_id`` the
        store's id or a prompt id.
        """
        ...

    def acquire_lease(self, batch_id: str, holder: str, ttl_s: float) -> bool:
        """Take (or renew) the batch's lease for ``holder`` for ``ttl_s`` seconds; False while
        another holder's lease runs. One ``resume`` of a batch at a time holds it."""
        ...

    def release_lease(self, batch_id: str, holder: str) -> None:
        """Give the lease back (only ``holder``'s own)."""


class NullRecorder:
    """Records nothing and finds nothing: recording is off."""

    def __repr__(self) -> str:
        return "NullRecorder()"

    def __bool__(self) -> bool:
        return False

    def record_generation(self, generation: GenerationRecord) -> None:
        """Nothing is recorded."""

    def record_batch(self, batch: BatchRecord) -> None:
        """Nothing is recorded."""

    def set_batch_state(self, batch_id: str, state: BatchState) -> None:
        """Nothing is recorded."""

    def last_used(self, workflow: WorkflowRecord) -> dict[str, Any]:
        """No values are remembered."""
        return {}

    def set_last_used(self, workflow: WorkflowRecord, values: dict[str, Any]) -> None:
        """Nothing is remembered."""

    def batch(self, batch_id: str) -> BatchRecord | None:
        """No batch is known."""
        return None

    def find_generations(
        self,
        *,
        workflow: Any = None,
        batch_id: str | None = None,
        status: str | Sequence[str] | None = None,
        since: Any = None,
        generation_id: int | str | None = None,
    ) -> list[GenerationRecord]:
        """No generation is known."""
        return []

    def acquire_lease(self, batch_id: str, holder: str, ttl_s: float) -> bool:
        """Nothing is shared: every lease is granted."""
        return True

    def release_lease(self, batch_id: str, holder: str) -> None:
        """Nothing to give back."""
