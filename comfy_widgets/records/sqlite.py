"""The run store: every workflow, generation and batch recorded in an embedded SQLite file.

``Store`` is the ``Recorder`` (``records.recorder``) the engine uses by default. One file per
working folder (``$COMFY_WIDGETS_HOME/store.sqlite``, else ``./.comfy_widgets/store.sqlite``) in
WAL mode with a busy timeout, so a kernel, a script and a resumed run can write to it at the same
time. Jobs record each state change as it happens (``record_generation``), so a crash loses
nothing that happened before it. Output files are written next to it under ``outputs/`` with
ComfyUI's PNG metadata. The dict-returning readers (``generation_records``, ``batch_record``,
``workflow_record``, ``query``) are this implementation's own extras.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from comfy_widgets.errors import StoreError
from comfy_widgets.records.migrations import migrate
from comfy_widgets.records.recorder import (
    BatchRecord,
    GenerationRecord,
    StoredOutput,
    WorkflowRecord,
    clean_url,
)
from comfy_widgets.states import TERMINAL_JOB_STATES, BatchState, JobState
from comfy_widgets.transport.outputs import Output
from comfy_widgets.workflow import pngmeta

log = logging.getLogger(__name__)

STORE_FILENAME = "store.sqlite"
TERMINAL_STATES = TERMINAL_JOB_STATES  # kept for readers of the old name
BUSY_TIMEOUT_MS = 30_000
# Ids per ``IN (...)`` query: well under SQLite's limit on bound parameters (999 in old builds).
IN_CHUNK = 500
MIME_SUFFIX = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "audio/flac": ".flac",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "text/plain": ".txt",
}


def default_store_path() -> Path:
    """The store file used by default: in ``$COMFY_WIDGETS_HOME``, else in ``./.comfy_widgets``."""
    home = os.environ.get("COMFY_WIDGETS_HOME")
    folder = Path(home) if home else Path.cwd() / ".comfy_widgets"
    return folder / STORE_FILENAME


def to_json(value: Any) -> str | None:
    """JSON text for a stored value (None stays NULL); numpy scalars and odd objects become str."""
    if value is None:
        return None
    return json.dumps(value, default=_json_default, sort_keys=False)


def from_json(text: str | None) -> Any:
    """The value of a JSON cell; a cell that is not JSON (hand-edited, damaged) reads as None,
    logged, so one bad row never hides the others."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        log.warning("skipping a stored JSON value that does not parse: %.80r", text)
        return None


def _json_default(value: Any) -> Any:
    """Make numpy scalars, paths and other objects JSON-serialisable."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return str(value)


def safe_name(text: str) -> str:
    """A folder-safe version of a workflow or batch name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return cleaned[:80] or "unnamed"


class Store:
    """An open run store: a SQLite connection shared by the threads of this process."""

    _defaults: dict[Path, Store] = {}
    _defaults_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike | None = None):
        target = Path(path) if path is not None else default_store_path()
        if target.is_dir() or target.suffix == "":
            target = target / STORE_FILENAME
        self.path = target.resolve()
        self.home = self.path.parent
        self.outputs_dir = self.home / "outputs"
        self._lock = threading.RLock()
        self._workflow_ids: dict[str, int] = {}  # content hash -> row id (rows are never deleted)
        self._batch_ids: set[str] = set()  # batch rows known to exist (batches are never deleted)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._conn = _connect(self.path)
            self.schema_version = migrate(self._conn)
            self._conn.execute("BEGIN IMMEDIATE")  # writable? (a read-only file or folder)
            self._conn.execute("ROLLBACK")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"the run store {self.path} cannot be opened for recording ({exc}). If it is "
                "damaged, move it aside (it is a SQLite file); if it is read-only, fix its "
                "permissions; or set COMFY_WIDGETS_HOME to another folder, or pass store=None "
                "to cw.connect to record nothing"
            ) from exc

    @classmethod
    def default(cls) -> Store:
        """The shared store for the current default path (one instance per resolved path)."""
        path = default_store_path().resolve()
        with cls._defaults_lock:
            store = cls._defaults.get(path)
            if store is None:
                store = cls._defaults[path] = cls(path)
            return store

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def close(self) -> None:
        """Close the connection (the file stays; a new Store can reopen it)."""
        with self._lock:
            self._conn.close()

    # --- low level -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): waits for other writers, never deadlocks."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._workflow_ids.clear()  # a workflow row inserted here is gone again
                self._batch_ids.clear()
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple | list = ()) -> list[dict[str, Any]]:
        """Run a read query and return its rows as dicts."""
        with self._lock:
            return [dict(row) for row in self._conn.execute(sql, args).fetchall()]

    # --- workflows -------------------------------------------------------------------------

    def save_workflow(self, workflow: Any) -> int:
        """Record a workflow once per content hash and return its row id."""
        with self.transaction() as conn:
            return _upsert_workflow(conn, workflow)

    def workflow_record(self, workflow_id: int) -> dict[str, Any] | None:
        """The stored workflow row (with ``workflow`` parsed from JSON), or None."""
        rows = self.query("SELECT * FROM workflows WHERE id = ?", (workflow_id,))
        if not rows:
            return None
        row = rows[0]
        row["workflow"] = from_json(row.pop("workflow_json"))
        row["default_parameters"] = from_json(row["default_parameters"]) or {}
        return row

    def last_used(self, workflow: Any) -> dict[str, Any]:
        """The parameter values last used with this workflow ({} if it was never run)."""
        rows = self.query(
            "SELECT default_parameters FROM workflows WHERE content_hash = ?",
            (_workflow_fields(workflow)["content_hash"],),
        )
        return (from_json(rows[0]["default_parameters"]) or {}) if rows else {}

    def set_last_used(self, workflow: Any, values: dict[str, Any]) -> None:
        """Remember ``values`` as this workflow's last-used parameters (the form's defaults)."""
        with self.transaction() as conn:
            workflow_id = _upsert_workflow(conn, workflow)
            conn.execute(
                "UPDATE workflows SET default_parameters = ?, updated_at = ? WHERE id = ?",
                (to_json(dict(values)), time.time(), workflow_id),
            )

    # --- generations -----------------------------------------------------------------------

    def record_generation(self, generation: GenerationRecord) -> None:
        """Record a generation; a final one has its outputs written as files, once."""
        self.record_generations([generation])

    def record_generations(self, generations: Sequence[GenerationRecord]) -> None:
        """Record several generations, in order, in ONE transaction (the engine's per-tick batch).

        The rows they touch are looked up in one query; a final generation has its output
        files written, unless its row is final already (then it is skipped). When it returns,
        every row is committed. A write fails as a whole (files written for it stay, named by
        no row, and are written again in full when the item is recorded again).
        """
        if not generations:
            return
        with self.transaction() as conn:
            known = _KnownRows.of(conn, generations)
            moves: dict[str, list[int]] = {}
            for generation in generations:
                self._record_one(conn, known, generation, moves)
            _move_batch_counts(conn, moves)

    def _record_one(
        self,
        conn: sqlite3.Connection,
        known: _KnownRows,
        generation: GenerationRecord,
        moves: dict[str, list[int]],
    ) -> None:
        """Write one generation's row (and a final one's files) inside the caller's transaction.

        A finished row only changes again when a final record comes with its outputs. The
        batch's completed/failed counts move by the change of this row's status alone, noted
        in ``moves`` for the caller to apply once per transaction (which holds the write lock,
        so concurrent writers never miss each other's). A final record carries the prompt
        again: the server may have rewritten it (0.27's node replacement), and the row must say
        what ran; the same JSON goes into the PNG files.
        """
        final = generation.state in TERMINAL_JOB_STATES
        fields = _generation_fields(generation, with_json=final)
        existing = known.find(fields)
        same_prompt = existing is not None and existing["prompt_id"] == fields["prompt_id"]
        if existing is not None and same_prompt and existing["status"] in TERMINAL_JOB_STATES:
            return  # final already: its files are written, a late record changes nothing
        outputs = self._save_outputs(generation, fields["prompt_json"]) if final else None
        if not same_prompt and not final:
            fields = _generation_fields(generation)  # a new row: with its prompt and values
        workflow = generation.workflow
        workflow_id = self._workflow_id(conn, workflow) if workflow is not None else None
        batch_id = fields["batch_id"]
        if batch_id is not None and batch_id not in self._batch_ids:
            _ensure_batch(conn, batch_id, workflow_id)
            self._batch_ids.add(batch_id)
        status = str(generation.state)
        values = {
            **fields,
            "workflow_id": workflow_id,
            "status": status,
            "outputs_json": to_json(outputs) if outputs is not None else None,
        }
        old_status: str | None = None
        if existing is None:
            row_id = _insert_generation(conn, values)
        else:
            row_id, old_status = existing["id"], existing["status"]
            if same_prompt:
                _update_generation(conn, row_id, values)
            else:
                _replace_generation(conn, row_id, values)
        known.note(row_id, fields, status, replaced=None if same_prompt else existing)
        if batch_id is not None:
            _note_count_move(moves, batch_id, old_status, status)

    def _save_outputs(self, generation: GenerationRecord, prompt_json: str | None) -> list[dict]:
        """Write a final generation's output files (PNGs carry ``prompt_json``); their stored
        descriptions."""
        prompt_id = str(generation.prompt_id)
        folder = self.outputs_dir / _output_folder(generation)
        texts = png_texts(generation, generation.outputs, prompt_json)
        return [
            self._save_output(folder, prompt_id, n, output, texts)
            for n, output in enumerate(generation.outputs)
        ]

    def _save_output(
        self, folder: Path, prompt_id: str, n: int, output: Output, texts: dict[str, str]
    ) -> dict[str, Any]:
        """Write one output's bytes (PNGs get ComfyUI metadata); return its stored description."""
        record: dict[str, Any] = {
            "node_id": text_or_none(output.node_id),
            "filename": output.filename,
            "subfolder": output.subfolder or "",
            "type": output.type,
            "kind": output.kind,
            "mime": output.mime,
            "local_path": None,
            "asset_id": getattr(output, "asset_id", None),
        }
        path = folder / f"{safe_name(prompt_id)}_{n}{_suffix(record)}"
        if write_output_file(output, path, texts):
            record["local_path"] = str(path)
        return record

    def _workflow_id(self, conn: sqlite3.Connection, workflow: Any) -> int:
        """The workflow's row id, remembered per content hash (one SELECT per workflow)."""
        record = WorkflowRecord.of(workflow)
        known = self._workflow_ids.get(record.content_hash)
        if known is None:
            known = self._workflow_ids[record.content_hash] = _upsert_workflow(conn, record)
        return known

    def find_generations(
        self,
        *,
        workflow: Any = None,
        batch_id: str | None = None,
        status: str | Sequence[str] | None = None,
        since: Any = None,
        generation_id: int | str | None = None,
    ) -> list[GenerationRecord]:
        """Recorded generations matching every given filter, as typed records."""
        rows = self.generation_records(
            workflow=workflow,
            batch_id=batch_id,
            status=status,
            since=since,
            generation_id=generation_id,
        )
        workflows: dict[int, WorkflowRecord | None] = {}
        for row in rows:
            wid = row["workflow_id"]
            if wid is not None and wid not in workflows:
                workflows[wid] = self.workflow(wid)
        return [_generation_of(row, workflows.get(row["workflow_id"])) for row in rows]

    def workflow(self, workflow_id: int) -> WorkflowRecord | None:
        """The stored workflow as a typed record, or None."""
        row = self.workflow_record(workflow_id)
        if row is None:
            return None
        return WorkflowRecord(
            row["name"], row["workflow"], row["format"], row["content_hash"], id=row["id"]
        )

    # --- batches ---------------------------------------------------------------------------

    def create_batch(
        self,
        batch_id: str,
        workflow: Any,
        total_count: int,
        spec: dict[str, Any] | None = None,
        plan_seed: int | None = None,
        plan_rows: list[dict[str, Any]] | None = None,
        servers: list[str] | None = None,
        status: str = "pending",
        prompts: list[dict[str, Any]] | None = None,
        columns: list[str] | None = None,
    ) -> str:
        """Record a batch and its full plan before anything is queued, so resume can finish it.

        ``plan_rows`` are the values of every item (``VariationPlan.items``), ``prompts`` the API
        prompts built from them (sent as they are by ``resume``), ``columns`` the varied parameter
        columns of the results DataFrame (``VariationPlan.columns``).
        """
        now = time.time()
        plan_rows, prompts = list(plan_rows or []), list(prompts or [])
        with self.transaction() as conn:
            workflow_id = _upsert_workflow(conn, workflow) if workflow is not None else None
            values = {
                "workflow_id": workflow_id,
                "total_count": int(total_count),
                "status": status,
                "spec_json": to_json(spec),
                "plan_seed": None if plan_seed is None else int(plan_seed),
                "plan_json": None,  # the plan goes to batch_items, one row per item
                "prompts_json": None,
                "columns_json": to_json(columns),
                "servers_json": to_json([clean_url(s) for s in servers or []]),
                "updated_at": now,
            }
            if conn.execute("SELECT 1 FROM batches WHERE id = ?", (batch_id,)).fetchone():
                sets = ", ".join(f"{k} = ?" for k in values)
                conn.execute(
                    f"UPDATE batches SET {sets} WHERE id = ?", (*values.values(), batch_id)
                )
            else:
                cols = ", ".join(["id", "created_at", *values])
                marks = ", ".join("?" * (len(values) + 2))
                conn.execute(
                    f"INSERT INTO batches ({cols}) VALUES ({marks})",
                    (batch_id, now, *values.values()),
                )
            _write_plan(conn, batch_id, plan_rows, prompts)
            _recount_batch(conn, batch_id)  # once: generations may have arrived before it
        return batch_id

    def update_batch(self, batch_id: str, *, status: str | None = None) -> None:
        """Set a batch's status (its counts move with each of its generations' writes)."""
        with self.transaction() as conn:
            _ensure_batch(conn, batch_id, None)
            if status is not None:
                conn.execute(
                    "UPDATE batches SET status = ?, updated_at = ? WHERE id = ?",
                    (status, time.time(), batch_id),
                )

    def record_batch(self, batch: BatchRecord) -> None:
        """Record a batch and its whole plan (the Recorder interface of ``create_batch``)."""
        self.create_batch(
            batch.id,
            batch.workflow,
            batch.total_count,
            spec=batch.spec,
            plan_seed=batch.plan_seed,
            plan_rows=batch.plan,
            servers=batch.servers,
            status=str(batch.state),
            prompts=batch.prompts,
            columns=batch.columns,
        )

    def set_batch_state(self, batch_id: str, state: BatchState) -> None:
        """Set a batch's state; its counts follow its generations."""
        self.update_batch(batch_id, status=str(state))

    def acquire_lease(self, batch_id: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the batch's lease unless another holder's is still running."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute(_TAKE_LEASE, (batch_id, holder, now + ttl_s, now))
            row = conn.execute(
                "SELECT holder FROM batch_leases WHERE batch_id = ?", (batch_id,)
            ).fetchone()
        return row is not None and row["holder"] == holder

    def release_lease(self, batch_id: str, holder: str) -> None:
        """Give back ``holder``'s lease on the batch."""
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM batch_leases WHERE batch_id = ? AND holder = ?", (batch_id, holder)
            )

    def batch(self, batch_id: str) -> BatchRecord | None:
        """The recorded batch as a typed record, or None."""
        row = self.batch_record(batch_id)
        if row is None:
            return None
        workflow = self.workflow(row["workflow_id"]) if row["workflow_id"] else None
        return BatchRecord(
            id=row["id"],
            workflow=workflow,
            total_count=row["total_count"],
            state=BatchState(row["status"]),
            spec=row["spec"],
            plan_seed=row["plan_seed"],
            plan=row["plan"],
            prompts=row["prompts"],
            columns=row["columns"],
            servers=row["servers"],
            completed_count=row["completed_count"],
            failed_count=row["failed_count"],
        )

    def batch_record(self, batch_id: str) -> dict[str, Any] | None:
        """The stored batch row with its JSON fields parsed, or None."""
        rows = self.query("SELECT * FROM batches WHERE id = ?", (batch_id,))
        if not rows:
            return None
        row = rows[0]
        row["spec"] = from_json(row.pop("spec_json"))
        plan, prompts = row.pop("plan_json"), row.pop("prompts_json")
        if plan is None and prompts is None:  # recorded since migration 4: one row per item
            plan, prompts = self._plan_rows(batch_id)
        else:  # recorded before: the whole plan in the batch row
            plan, prompts = from_json(plan) or [], from_json(prompts) or []
        row["plan"], row["prompts"] = plan, prompts
        row["columns"] = from_json(row.pop("columns_json"))
        row["servers"] = from_json(row.pop("servers_json")) or []
        return row

    def _plan_rows(self, batch_id: str) -> tuple[list[Any], list[Any]]:
        """A batch's item values and prompts from ``batch_items``, in item order."""
        rows = self.query(
            "SELECT values_json, prompt_json FROM batch_items WHERE batch_id = ?"
            " ORDER BY batch_index",
            (batch_id,),
        )
        return [from_json(r["values_json"]) for r in rows], [
            from_json(r["prompt_json"]) for r in rows
        ]

    # --- reading ---------------------------------------------------------------------------

    def generation_records(
        self,
        *,
        workflow: Any = None,
        batch_id: str | None = None,
        status: str | Sequence[str] | None = None,
        since: Any = None,
        generation_id: int | str | None = None,
    ) -> list[dict[str, Any]]:
        """Generation rows (JSON parsed, workflow name joined) that match every given filter."""
        where, args = _generation_filters(workflow, batch_id, status, since, generation_id)
        sql = (
            "SELECT g.*, w.name AS workflow_name FROM generations g"
            " LEFT JOIN workflows w ON w.id = g.workflow_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            # a batch's items in item order: records are written a tick at a time, not in order
            + (" ORDER BY g.batch_index, g.id" if batch_id is not None else " ORDER BY g.id")
        )
        return [_parse_generation(row) for row in self.query(sql, args)]


_TAKE_LEASE = """
    INSERT INTO batch_leases (batch_id, holder, expires_at) VALUES (?, ?, ?)
    ON CONFLICT (batch_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE batch_leases.expires_at < ? OR batch_leases.holder = excluded.holder
"""


def _connect(path: Path) -> sqlite3.Connection:
    """Open the SQLite file in autocommit mode with WAL, foreign keys and a busy timeout."""
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _workflow_fields(workflow: Any) -> dict[str, Any]:
    """Name, format, source and content hash of a Workflow, WorkflowRecord or workflow dict."""
    record = WorkflowRecord.of(workflow)
    return {
        "name": record.name or "workflow",
        "format": record.format,
        "source": record.source,
        "content_hash": record.content_hash,
    }


def _upsert_workflow(conn: sqlite3.Connection, workflow: Any) -> int:
    """Return the id of the workflow row with this content hash, inserting it if new."""
    fields = _workflow_fields(workflow)
    row = conn.execute(
        "SELECT id FROM workflows WHERE content_hash = ?", (fields["content_hash"],)
    ).fetchone()
    if row:
        return int(row["id"])
    cursor = conn.execute(
        "INSERT INTO workflows (name, content_hash, format, workflow_json, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            fields["name"],
            fields["content_hash"],
            fields["format"],
            to_json(fields["source"]),
            time.time(),
        ),
    )
    return int(cursor.lastrowid or 0)


def _ensure_batch(conn: sqlite3.Connection, batch_id: str, workflow_id: int | None) -> None:
    """Create a minimal batch row if a job of an unrecorded batch arrives first."""
    conn.execute(
        "INSERT OR IGNORE INTO batches (id, workflow_id, status, created_at) VALUES (?, ?, ?, ?)",
        (batch_id, workflow_id, "running", time.time()),
    )


def _generation_fields(generation: GenerationRecord, *, with_json: bool = True) -> dict[str, Any]:
    """The generation columns a record fills (the server URL without credentials).

    Without ``with_json`` the prompt and parameters are left None (an update of a row that has
    them already keeps them: only the final record may change the prompt, and encoding it
    three times per item was a visible cost).
    """
    batch_id, batch_index = generation.batch_id, generation.batch_index
    return {
        "prompt_id": str(generation.prompt_id),
        "server": clean_url(generation.server),
        "parameters_json": to_json(dict(generation.parameters)) if with_json else None,
        "prompt_json": to_json(generation.prompt) if with_json else None,
        "error": text_or_none(generation.error),
        "error_node": text_or_none(generation.error_node),
        "queued_at": generation.queued_at,
        "started_at": generation.started_at,
        "finished_at": generation.finished_at,
        "batch_id": None if batch_id is None else str(batch_id),
        "batch_index": None if batch_index is None else int(batch_index),
    }


def _generation_of(row: dict[str, Any], workflow: WorkflowRecord | None) -> GenerationRecord:
    """A parsed generation row (``generation_records``) as a typed record."""
    return GenerationRecord(
        prompt_id=row["prompt_id"],
        state=JobState(row["status"]),
        server=row["server"],
        workflow=workflow,
        parameters=row["parameters"],
        prompt=row["prompt"],
        batch_id=row["batch_id"],
        batch_index=row["batch_index"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        error_node=row["error_node"],
        saved_outputs=[StoredOutput(**_output_fields(o)) for o in row["outputs"]],
        id=row["id"],
    )


def _output_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The StoredOutput fields of a stored output description (unknown keys dropped)."""
    keys = ("node_id", "filename", "subfolder", "type", "kind", "mime", "local_path", "asset_id")
    return {k: record.get(k) if k != "subfolder" else record.get(k) or "" for k in keys}


def _output_folder(generation: GenerationRecord) -> str:
    """Output subfolder: the batch id for batch items, else the workflow's name."""
    if generation.batch_id is not None:
        return safe_name(generation.batch_id)
    workflow = generation.workflow
    return safe_name(workflow.name if workflow is not None else "prompts")


class _KnownRows:
    """The generation rows one write touches, looked up in one query per ``IN_CHUNK`` ids
    (by prompt id, and by batch item for a re-sent item), and kept up to date as it writes."""

    def __init__(self) -> None:
        self.by_prompt: dict[str, dict[str, Any]] = {}
        self.by_item: dict[tuple[str, int], dict[str, Any]] = {}

    @classmethod
    def of(cls, conn: sqlite3.Connection, generations: Sequence[GenerationRecord]) -> _KnownRows:
        known = cls()
        step = IN_CHUNK // 2  # a generation binds its prompt id and maybe its batch index
        for start in range(0, len(generations), step):
            for row in conn.execute(*_rows_query(generations[start : start + step])):
                known._add(dict(row))
        return known

    def find(self, fields: dict[str, Any]) -> dict[str, Any] | None:
        """The row of this prompt id, else the row holding the same batch item."""
        row = self.by_prompt.get(fields["prompt_id"])
        if row is None and fields["batch_id"] is not None and fields["batch_index"] is not None:
            row = self.by_item.get((fields["batch_id"], fields["batch_index"]))
        return row

    def note(
        self,
        row_id: int,
        fields: dict[str, Any],
        status: str,
        replaced: dict[str, Any] | None,
    ) -> None:
        """The row as just written (``replaced``: the row of an earlier attempt it overwrote)."""
        if replaced is not None:
            self.by_prompt.pop(replaced["prompt_id"], None)
        keys = ("prompt_id", "batch_id", "batch_index")
        self._add({"id": row_id, "status": status, **{k: fields[k] for k in keys}})

    def _add(self, row: dict[str, Any]) -> None:
        self.by_prompt[row["prompt_id"]] = row
        if row["batch_id"] is not None and row["batch_index"] is not None:
            self.by_item[(row["batch_id"], row["batch_index"])] = row


def _rows_query(generations: Sequence[GenerationRecord]) -> tuple[str, list[Any]]:
    """One SELECT for the rows of these prompt ids and of their batch items."""
    prompt_ids = list({str(g.prompt_id) for g in generations})
    items: dict[str, set[int]] = {}
    for g in generations:
        if g.batch_id is not None and g.batch_index is not None:
            items.setdefault(str(g.batch_id), set()).add(int(g.batch_index))
    terms = [f"prompt_id IN ({', '.join('?' * len(prompt_ids))})"]
    args: list[Any] = list(prompt_ids)
    for batch_id, indexes in items.items():
        terms.append(f"(batch_id = ? AND batch_index IN ({', '.join('?' * len(indexes))}))")
        args += [batch_id, *indexes]
    sql = "SELECT id, status, prompt_id, batch_id, batch_index FROM generations WHERE "
    return sql + " OR ".join(terms), args


def _insert_generation(conn: sqlite3.Connection, values: dict[str, Any]) -> int:
    """Insert a generation row from the given column values; its id."""
    values = {**values, "created_at": time.time()}
    cols = ", ".join(values)
    cursor = conn.execute(
        f"INSERT INTO generations ({cols}) VALUES ({', '.join('?' * len(values))})",
        tuple(values.values()),
    )
    return int(cursor.lastrowid or 0)


def _update_generation(conn: sqlite3.Connection, row_id: int, values: dict[str, Any]) -> None:
    """Update a generation row, keeping stored values where the new ones are unknown (None)."""
    keep_old = [k for k in values if k not in ("status",)]
    sets = ", ".join(["status = ?"] + [f"{k} = COALESCE(?, {k})" for k in keep_old])
    conn.execute(
        f"UPDATE generations SET {sets} WHERE id = ?",
        (values["status"], *(values[k] for k in keep_old), row_id),
    )


def _replace_generation(conn: sqlite3.Connection, row_id: int, values: dict[str, Any]) -> None:
    """Overwrite a batch item's row with a new attempt (a new prompt id for the same item)."""
    sets = ", ".join(f"{k} = ?" for k in values)
    conn.execute(f"UPDATE generations SET {sets} WHERE id = ?", (*values.values(), row_id))


def _write_plan(
    conn: sqlite3.Connection, batch_id: str, plan_rows: list[Any], prompts: list[Any]
) -> None:
    """Store a batch's plan as one ``batch_items`` row per item (replacing an earlier plan)."""
    conn.execute("DELETE FROM batch_items WHERE batch_id = ?", (batch_id,))
    count = max(len(plan_rows), len(prompts))
    conn.executemany(
        "INSERT INTO batch_items (batch_id, batch_index, values_json, prompt_json)"
        " VALUES (?, ?, ?, ?)",
        (
            (
                batch_id,
                i,
                to_json(plan_rows[i]) if i < len(plan_rows) else None,
                to_json(prompts[i]) if i < len(prompts) else None,
            )
            for i in range(count)
        ),
    )


FAILED_STATES = ("failed", "lost")


def _note_count_move(moves: dict[str, list[int]], batch_id: str, old: str | None, new: str) -> None:
    """Note how one item's status change moves its batch's completed/failed counts."""
    move = moves.setdefault(batch_id, [0, 0])
    move[0] += (new == "completed") - (old == "completed")
    move[1] += (new in FAILED_STATES) - (old in FAILED_STATES)


def _move_batch_counts(conn: sqlite3.Connection, moves: dict[str, list[int]]) -> None:
    """Move each batch's completed/failed counts by the changes noted (no recount)."""
    now = time.time()
    conn.executemany(
        "UPDATE batches SET completed_count = completed_count + ?,"
        " failed_count = failed_count + ?, updated_at = ? WHERE id = ?",
        [(c, f, now, batch_id) for batch_id, (c, f) in moves.items() if c or f],
    )


def _recount_batch(conn: sqlite3.Connection, batch_id: str) -> None:
    """Recount a batch's completed and failed items from its generations (once, on record)."""
    conn.execute(
        "UPDATE batches SET"
        " completed_count = (SELECT COUNT(*) FROM generations"
        "   WHERE batch_id = :b AND status = 'completed'),"
        " failed_count = (SELECT COUNT(*) FROM generations"
        "   WHERE batch_id = :b AND status IN ('failed', 'lost')),"
        " updated_at = :now WHERE id = :b",
        {"b": batch_id, "now": time.time()},
    )


def _generation_filters(
    workflow: Any, batch_id: Any, status: Any, since: Any, generation_id: Any
) -> tuple[list[str], list[Any]]:
    """SQL conditions and arguments for ``generation_records``."""
    where: list[str] = []
    args: list[Any] = []
    if workflow is not None:
        if isinstance(workflow, numbers.Integral):
            where.append("g.workflow_id = ?")
            args.append(int(workflow))
        elif isinstance(workflow, str):
            where.append("(w.name = ? OR w.content_hash = ?)")
            args += [workflow, workflow]
        else:
            where.append("w.content_hash = ?")
            args.append(_workflow_fields(workflow)["content_hash"])
    if batch_id is not None:
        where.append("g.batch_id = ?")
        args.append(str(batch_id))
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        where.append(f"g.status IN ({', '.join('?' * len(statuses))})")
        args += statuses
    if since is not None:
        where.append("COALESCE(g.queued_at, g.created_at) >= ?")
        args.append(_unix_time(since))
    if generation_id is not None:
        if isinstance(generation_id, numbers.Integral):
            where.append("g.id = ?")
            args.append(int(generation_id))
        else:
            where.append("g.prompt_id = ?")
            args.append(str(generation_id))
    return where, args


def _parse_generation(row: dict[str, Any]) -> dict[str, Any]:
    """Decode a generation row's JSON columns into ``parameters``, ``prompt`` and ``outputs``."""
    row["parameters"] = from_json(row.pop("parameters_json")) or {}
    row["prompt"] = from_json(row.pop("prompt_json"))
    row["outputs"] = from_json(row.pop("outputs_json")) or []
    return row


def _unix_time(value: Any) -> float:
    """Unix seconds from a number, a datetime, a pandas Timestamp or an ISO string."""
    if isinstance(value, (int, float)):
        return float(value)
    import pandas as pd

    return pd.Timestamp(value).to_pydatetime().timestamp()


def png_texts(
    generation: GenerationRecord, outputs: Sequence[Any], prompt_json: str | None = None
) -> dict[str, str]:
    """The ComfyUI text chunks for a generation's PNG outputs ({} when none is a PNG): the API
    prompt (``prompt_json`` when it is encoded already), params, and the UI graph holding the
    values used (left out when it cannot hold them: ComfyUI then loads the exact prompt)."""
    if not any(_is_png(output) for output in outputs):
        return {}
    if prompt_json is None:
        return pngmeta.comfy_text_chunks(
            generation.prompt, generation.ui_graph, dict(generation.parameters)
        )
    rest = pngmeta.comfy_text_chunks(None, generation.ui_graph, dict(generation.parameters))
    return {"prompt": prompt_json, **rest}


def _is_png(output: Any) -> bool:
    """True for an output whose bytes are a PNG (it gets ComfyUI's metadata chunks)."""
    data = getattr(output, "data", None)
    return isinstance(data, bytes) and pngmeta.is_png(data)


def _suffix(record: dict[str, Any]) -> str:
    """File suffix of an output: from its server filename when that is a plain extension
    (the server chooses the name: a NUL byte or 300 characters never reach the file system),
    else from its MIME type."""
    suffix = Path(str(record.get("filename") or "").replace("\0", "")).suffix
    if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix):
        return suffix
    return MIME_SUFFIX.get(record.get("mime") or "", ".bin")


def write_output_file(output: Any, path: Path, texts: dict[str, str]) -> bool:
    """Write an output's bytes to ``path`` (a PNG with ComfyUI's metadata ``texts``) and note
    the copy on the Output, so its job may let go of the bytes; False when it has none."""
    data = getattr(output, "data", None)
    if not data:
        return False
    if isinstance(data, str):
        data = data.encode("utf-8")
    if pngmeta.is_png(data):
        data = pngmeta.with_text_chunks(data, texts)
    _write_file(path, data)
    if isinstance(output, Output):
        output.local_path = str(path)
    return True


def _write_file(path: Path, data: bytes) -> None:
    """Write a file, making its folder when it is missing (asked of the file system only then).

    No temporary name and rename: nothing reads the file before the row naming it is committed,
    after this returns, and a crash half-way leaves a file no row names, written again in full
    when the item is finished again. Plain ``os`` calls: ``open()`` makes four system calls
    before the write, each a hand-over of the GIL the kernel's event loop is waiting for.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def text_or_none(value: Any) -> str | None:
    """``str(value)`` unless it is None."""
    return None if value is None else str(value)
