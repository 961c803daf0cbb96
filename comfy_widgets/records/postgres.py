"""A team's shared run store in PostgreSQL: the ``Recorder`` protocol over psycopg 3.

Chosen with ``COMFY_WIDGETS_STORE=postgresql://user:password@host/db`` or
``cw.connect(..., store="postgresql://…")``; the embedded default stays SQLite. Several kernels on
several machines write to one database at once: every write is one transaction, a batch item's
write locks its batch row first, so the batch's completed/failed counts are recounted from rows
every writer has committed, and a lost connection is opened again on the next call.

Credentials: the password (from the URL's user info or its ``password=`` parameter) is kept
apart from everything printable. ``repr``, log lines and errors show the URL without it, and an
error from the driver has it scrubbed. No URL of the store is ever written into the database.

Outputs: output files are written to this machine's local store folder
(``$COMFY_WIDGETS_HOME/outputs``, else ``./.comfy_widgets/outputs``), the same layout as the
SQLite store; the row keeps the server's file reference (filename, subfolder, type), the writer's
absolute path, and the path relative to the outputs folder. Read on another machine, an output
resolves to the writer's path if it exists there (a shared mount), else to the same relative path
under this machine's outputs folder (a synced or copied folder), else the server's ``/view``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import numbers
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from comfy_widgets.errors import StoreError
from comfy_widgets.records import pg_schema
from comfy_widgets.records.recorder import (
    BatchRecord,
    GenerationRecord,
    StoredOutput,
    WorkflowRecord,
    clean_url,
)
from comfy_widgets.records.sqlite import _suffix, png_texts, safe_name, write_output_file
from comfy_widgets.states import TERMINAL_JOB_STATES, BatchState, JobState

log = logging.getLogger(__name__)

URL_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT_MS = 30_000
STATEMENT_TIMEOUT_MS = 120_000
RETRIES = 3
UNAVAILABLE_WAIT_S = 60.0  # how long a queued write waits for an unreachable database
FLUSH_TIMEOUT_S = 120.0  # a read waits this long for the queued writes before it fails
TERMINAL = tuple(state.value for state in TERMINAL_JOB_STATES)
FAILED_STATES = (JobState.FAILED.value, JobState.LOST.value)

T = TypeVar("T")


class StoreUnavailable(StoreError):
    """The database could not be reached (down, restarting, network): queued writes wait."""


_open_stores: weakref.WeakSet[PostgresStore] = weakref.WeakSet()


@atexit.register
def _flush_open_stores() -> None:
    """At interpreter exit, write what the stores still have queued (a script's last records)."""
    for store in list(_open_stores):
        try:
            store.flush(timeout=30)
        except Exception as exc:  # exit goes on; say what was lost
            log.error("run store %s: %s", store.url, exc)


def is_postgres_url(value: Any) -> bool:
    """True for a ``postgresql://`` or ``postgres://`` URL (the store to use is PostgreSQL)."""
    return isinstance(value, str) and value.strip().lower().startswith(URL_SCHEMES)


def local_store_home() -> Path:
    """This machine's store folder: ``$COMFY_WIDGETS_HOME``, else ``./.comfy_widgets``."""
    home = os.environ.get("COMFY_WIDGETS_HOME")
    return Path(home) if home else Path.cwd() / ".comfy_widgets"


class PostgresStore:
    """A run store in a PostgreSQL database, shared by every kernel that names its URL."""

    _shared: dict[str, PostgresStore] = {}
    _shared_lock = threading.Lock()

    def __init__(
        self,
        url: str,
        *,
        outputs_dir: str | os.PathLike | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ):
        self._params, self._password, self.url = _split_url(url)
        self._params.setdefault("connect_timeout", str(max(1, int(connect_timeout))))
        self._params.setdefault("application_name", "comfy_widgets")
        folder = Path(outputs_dir) if outputs_dir is not None else local_store_home() / "outputs"
        self.outputs_dir = folder.resolve()
        self._lock = threading.RLock()
        self._conn: Any = None
        self._workflow_ids: dict[str, int] = {}  # content hash -> committed workflow row id
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], str] | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._writer: threading.Thread | None = None
        with self._lock:
            self.schema_version = self._attempt(pg_schema.migrate, retries=1)
        log.info("run store: %s (schema %s)", self.url, self.schema_version)

    @classmethod
    def shared(cls, url: str) -> PostgresStore:
        """The store for ``url`` shared by this process (one connection, opened once)."""
        key = hashlib.sha256(url.strip().encode()).hexdigest()  # no password kept as a key
        with cls._shared_lock:
            store = cls._shared.get(key)
            if store is None:
                store = cls._shared[key] = cls(url)
            return store

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    def close(self) -> None:
        """Write what is queued, stop the writer thread and close the connection (a later call
        opens a new one)."""
        self.flush()
        writer = self._writer
        if writer is not None:
            self._jobs.put(None)
            writer.join(timeout=FLUSH_TIMEOUT_S)
            self._writer = None
        _open_stores.discard(self)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- the writer thread -------------------------------------------------------------

    def _submit(self, write: Callable[[], None], what: str) -> None:
        """Queue a write for the writer thread, so a job on the kernel's event loop never waits
        for the database's round trips (about 15 per recorded state); reads ``flush`` first."""
        with self._idle:
            self._pending += 1
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_queued, name="comfy-widgets-store-writer", daemon=True
                )
                self._writer.start()
                _open_stores.add(self)
        self._jobs.put((write, what))

    def _write_queued(self) -> None:
        """The writer thread: run queued writes in order; a failed one is logged (as the engine
        logs a failing recorder) and the next one goes on."""
        while True:
            item = self._jobs.get()
            if item is None:
                return
            write, what = item
            try:
                self._write_patiently(write, what)
            except Exception as exc:
                log.error("run store %s: %s was not recorded: %s", self.url, what, self._scrub(exc))
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _write_patiently(self, write: Callable[[], None], what: str) -> None:
        """Run one queued write; while the database is unreachable (a restart, a failover, the
        network) try again with growing pauses for up to ``UNAVAILABLE_WAIT_S``."""
        deadline = time.monotonic() + UNAVAILABLE_WAIT_S
        pause = 0.1
        while True:
            try:
                return write()
            except StoreUnavailable:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("run store %s unreachable; %s waits %.1f s", self.url, what, pause)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Wait until every queued write is in the database (reads call it first, so this
        process always reads what it wrote)."""
        if threading.current_thread() is self._writer:
            return
        with self._idle:
            if not self._idle.wait_for(lambda: self._pending == 0, timeout):
                raise StoreError(
                    f"store {self.url}: {self._pending} writes still queued after {timeout:g} s"
                )

    # --- connection --------------------------------------------------------------------

    def _connection(self) -> Any:
        """The open connection, (re)connecting when there is none or it broke."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> Any:
        """Open an autocommit connection with dict rows and lock/statement timeouts (a write
        stuck behind another kernel's lock fails after 30 s instead of hanging the job)."""
        import psycopg
        from psycopg.conninfo import make_conninfo
        from psycopg.rows import dict_row

        try:
            conn = psycopg.connect(
                make_conninfo("", **self._params),
                password=self._password,
                autocommit=True,
                row_factory=dict_row,
            )
            # SET, not a startup ``options`` parameter: connection poolers refuse the latter
            conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
            conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            return conn
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot open the store {self.url}: {self._scrub(exc)}"
            ) from None

    def _scrub(self, error: BaseException) -> str:
        """An error's message with the password (and its URL-encoded form) blanked out."""
        return _scrub(str(error).strip(), self._password)

    def _attempt(self, work: Callable[[Any], T], retries: int = RETRIES) -> T:
        """Run ``work(conn)``; retry on a dropped connection, a deadlock or a race on a unique
        key (another writer inserted the same row first); errors name the store, never the
        password."""
        import psycopg
        from psycopg import errors

        for attempt in range(retries + 1):
            conn = self._connection()
            try:
                return work(conn)
            except (errors.UniqueViolation, errors.DeadlockDetected, errors.SerializationFailure):
                if attempt == retries:
                    raise
            except errors.ForeignKeyViolation:  # a remembered workflow row was deleted meanwhile
                self._workflow_ids.clear()
                if attempt == retries:
                    raise
            except psycopg.OperationalError as exc:
                if not conn.broken:  # a timeout or a refusal: the database answered
                    raise StoreError(f"store {self.url}: {self._scrub(exc)}") from None
                if attempt == retries:
                    raise StoreUnavailable(f"store {self.url}: {self._scrub(exc)}") from None
                log.warning("run store %s: connection lost, reconnecting", self.url)
        raise AssertionError("unreachable")

    def _write(self, work: Callable[[Any], T]) -> T:
        """Run ``work`` in one transaction, retried as a whole when it races another writer."""

        def transaction(conn: Any) -> T:
            with conn.transaction():
                return work(conn)

        with self._lock:
            return self._attempt(transaction)

    def _read(self, query: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read query as dicts (after this process's queued writes)."""
        self.flush()
        with self._lock:
            return self._attempt(lambda conn: conn.execute(query, args).fetchall())

    def query(self, query: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Run a read query (``%s`` placeholders); its rows as dicts (for tests and tools)."""
        return self._read(query, args)

    # --- workflows ---------------------------------------------------------------------

    def save_workflow(self, workflow: Any) -> int:
        """Record a workflow once per content hash and return its row id."""
        record = _workflow_record(workflow)
        self.flush()
        return self._write(lambda conn: _upsert_workflow(conn, record, self._workflow_ids))

    def last_used(self, workflow: Any) -> dict[str, Any]:
        """The parameter values last used with this workflow ({} if it was never run)."""
        rows = self._read(
            "SELECT default_parameters FROM comfyui_workflows WHERE content_hash = %s",
            (_workflow_record(workflow).content_hash,),
        )
        return dict(rows[0]["default_parameters"] or {}) if rows else {}

    def set_last_used(self, workflow: Any, values: dict[str, Any]) -> None:
        """Remember ``values`` as this workflow's last-used parameters (the form's defaults)."""
        record, remembered = _workflow_record(workflow), _jsonb(dict(values))

        def work(conn: Any) -> None:
            workflow_id = _upsert_workflow(conn, record, self._workflow_ids)
            conn.execute(
                "UPDATE comfyui_workflows SET default_parameters = %s, updated_at = now()"
                " WHERE id = %s",
                (remembered, workflow_id),
            )

        self._submit(lambda: self._write(work), f"last-used values of {record.name!r}")

    # --- generations -------------------------------------------------------------------

    def record_generation(self, generation: GenerationRecord) -> None:
        """Insert or update a generation; a final one has its outputs saved as files, once.

        A generation already final under the same prompt id is left as it is (finishing twice
        writes nothing); a new prompt id for a recorded batch item replaces that item's row.
        The record is copied now and written by the store's writer thread (see ``flush``).
        """
        state = _state_text(generation.state)
        final = state in TERMINAL
        values = _generation_values(generation, state, None)
        workflow, prompt_id = generation.workflow, str(generation.prompt_id)
        given = [_output_dict(o) for o in generation.saved_outputs]
        outputs = list(generation.outputs or []) if final else []
        folder = _output_folder(generation)
        texts = png_texts(generation, outputs)

        def write() -> None:
            if final:
                if self._is_finished(prompt_id):
                    return
                saved = given + self._save_outputs(prompt_id, folder, outputs, texts)
                values["outputs"] = _jsonb(saved)
            self._write(lambda conn: _write_generation(conn, workflow, values, self._workflow_ids))

        self._submit(write, f"generation {prompt_id}")

    def _is_finished(self, prompt_id: str) -> bool:
        """True when the generation's final state is recorded already."""
        rows = self._read(
            "SELECT status FROM comfyui_generations WHERE prompt_id = %s", (str(prompt_id),)
        )
        return bool(rows) and rows[0]["status"] in TERMINAL

    def _save_outputs(
        self, prompt_id: str, folder: str, outputs: list[Any], texts: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Write a generation's fetched outputs under the outputs folder (PNGs with ComfyUI's
        metadata ``texts``) and return their stored descriptions."""
        described = []
        for n, output in enumerate(outputs):
            record = _output_dict(output)
            relative = f"{folder}/{safe_name(prompt_id)}_{n}{_suffix(record)}"
            path = self.outputs_dir / relative
            if write_output_file(output, path, texts):
                record["local_path"] = str(path)
                record["relative_path"] = relative
            described.append(record)
        return described

    def find_generations(
        self,
        *,
        workflow: Any = None,
        batch_id: str | None = None,
        status: str | Sequence[str] | None = None,
        since: Any = None,
        generation_id: int | str | None = None,
    ) -> list[GenerationRecord]:
        """Recorded generations matching every given filter, in the order recorded."""
        where, args = _generation_filters(workflow, batch_id, status, since, generation_id)
        query = (
            "SELECT g.* FROM comfyui_generations g"
            " LEFT JOIN comfyui_workflows w ON w.id = g.workflow_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            # a batch's items in item order: records are written a tick at a time, not in order
            + (" ORDER BY g.batch_index, g.id" if batch_id is not None else " ORDER BY g.id")
        )
        rows = self._read(query, args)
        workflows = self._workflows({row["workflow_id"] for row in rows} - {None})
        return [self._generation(row, workflows.get(row["workflow_id"])) for row in rows]

    def _workflows(self, ids: set[int]) -> dict[int, WorkflowRecord]:
        """The workflows with these ids, each read once however many generations use it."""
        if not ids:
            return {}
        rows = self._read(
            "SELECT id, name, workflow, format, content_hash FROM comfyui_workflows"
            " WHERE id = ANY(%s)",
            (sorted(ids),),
        )
        return {row["id"]: _workflow_from_row(row) for row in rows}

    def _generation(self, row: dict[str, Any], workflow: WorkflowRecord | None) -> GenerationRecord:
        """A GenerationRecord from a row, its outputs resolved on this machine."""
        return GenerationRecord(
            prompt_id=row["prompt_id"],
            state=_job_state(row["status"]),
            server=row["server"],
            workflow=workflow,
            parameters=dict(row["parameters_used"] or {}),
            prompt=_loads(row["prompt"]),
            batch_id=row["batch_id"],
            batch_index=row["batch_index"],
            queued_at=_unix(row["queued_at"]),
            started_at=_unix(row["started_at"]),
            finished_at=_unix(row["finished_at"]),
            error=row["error"],
            error_node=row["error_node"],
            saved_outputs=[self._stored_output(o) for o in row["outputs"] or []],
            id=row["id"],
        )

    def _stored_output(self, record: dict[str, Any]) -> StoredOutput:
        """A stored output whose ``local_path`` is a file on this machine when one is found."""
        local = record.get("local_path")
        relative = record.get("relative_path")
        if relative and not (local and Path(local).is_file()):
            mine = self.outputs_dir / relative
            if mine.is_file():
                local = str(mine)
        return StoredOutput(
            node_id=record.get("node_id"),
            filename=record.get("filename"),
            subfolder=record.get("subfolder") or "",
            type=record.get("type"),
            kind=record.get("kind"),
            mime=record.get("mime"),
            local_path=local,
            asset_id=record.get("asset_id"),
        )

    # --- batches -----------------------------------------------------------------------

    def record_batch(self, batch: BatchRecord) -> None:
        """Insert or replace a batch and its plan (its counts follow its generations)."""
        workflow, batch_id = batch.workflow, str(batch.id)
        values = {
            "total_count": int(batch.total_count),
            "status": _state_text(batch.state),
            "spec": _jsonb(batch.spec),
            "plan_seed": None if batch.plan_seed is None else int(batch.plan_seed),
            "plan": _json(list(batch.plan or [])),
            "prompts": _json(list(batch.prompts or [])),
            "varied_columns": _jsonb(None if batch.columns is None else list(batch.columns)),
            "servers": _jsonb([clean_url(s) for s in batch.servers or []]),
        }

        def work(conn: Any) -> None:
            workflow_id = None
            if workflow is not None:
                workflow_id = _upsert_workflow(conn, workflow, self._workflow_ids)
            cols = ["id", "workflow_id", *values]
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[1:])
            conn.execute(
                f"INSERT INTO comfyui_batches ({', '.join(cols)}, updated_at)"
                f" VALUES ({', '.join(['%s'] * len(cols))}, now())"
                f" ON CONFLICT (id) DO UPDATE SET {sets}, updated_at = now()",
                (batch_id, workflow_id, *values.values()),
            )
            _refresh_batch_counts(conn, batch_id)

        self._submit(lambda: self._write(work), f"batch {batch_id}")

    def set_batch_state(self, batch_id: str, state: BatchState) -> None:
        """Set a batch's state (its counts are recounted from its generations)."""

        def work(conn: Any) -> None:
            _lock_batch(conn, str(batch_id), None)
            conn.execute(
                "UPDATE comfyui_batches SET status = %s, updated_at = now() WHERE id = %s",
                (_state_text(state), str(batch_id)),
            )
            _refresh_batch_counts(conn, str(batch_id))

        self._submit(lambda: self._write(work), f"state of batch {batch_id}")

    def acquire_lease(self, batch_id: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the batch's lease unless another holder's is still running (at once,
        not through the write queue: the answer decides what this process does next)."""

        def work(conn: Any) -> bool:
            row = conn.execute(_TAKE_LEASE, (str(batch_id), holder, ttl_s)).fetchone()
            return row is not None

        self.flush()
        return self._write(work)

    def release_lease(self, batch_id: str, holder: str) -> None:
        """Give back ``holder``'s lease on the batch."""

        def work(conn: Any) -> None:
            conn.execute(
                "DELETE FROM comfyui_batch_leases WHERE batch_id = %s AND holder = %s",
                (str(batch_id), holder),
            )

        self.flush()
        self._write(work)

    def batch(self, batch_id: str) -> BatchRecord | None:
        """The recorded batch with its plan, or None."""
        rows = self._read("SELECT * FROM comfyui_batches WHERE id = %s", (str(batch_id),))
        if not rows:
            return None
        row = rows[0]
        workflow = None
        if row["workflow_id"] is not None:
            workflow = self._workflows({row["workflow_id"]}).get(row["workflow_id"])
        return BatchRecord(
            id=row["id"],
            workflow=workflow,
            total_count=row["total_count"],
            state=_batch_state(row["status"]),
            spec=row["spec"],
            plan_seed=None if row["plan_seed"] is None else int(row["plan_seed"]),
            plan=_loads(row["plan"]) or [],
            prompts=_loads(row["prompts"]) or [],
            columns=row["varied_columns"],
            servers=list(row["servers"] or []),
            completed_count=row["completed_count"],
            failed_count=row["failed_count"],
        )


# --- URL and credentials -------------------------------------------------------------------


_TAKE_LEASE = """
    INSERT INTO comfyui_batch_leases (batch_id, holder, expires_at)
    VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))
    ON CONFLICT (batch_id) DO UPDATE
        SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
        WHERE comfyui_batch_leases.expires_at < clock_timestamp()
            OR comfyui_batch_leases.holder = EXCLUDED.holder
    RETURNING holder
"""


def _split_url(url: str) -> tuple[dict[str, str], str | None, str]:
    """libpq connection parameters without the password, the password, and a URL to show."""
    if not is_postgres_url(url):
        raise StoreError("a PostgreSQL store URL starts with postgresql:// or postgres://")
    try:
        from psycopg import conninfo
    except ImportError:
        raise StoreError(
            "a PostgreSQL store needs psycopg: pip install 'comfy_widgets[postgres]'"
        ) from None
    try:
        params = conninfo.conninfo_to_dict(url.strip())
    except Exception as exc:  # the driver's message may quote the URL, password included
        raise StoreError(f"not a valid PostgreSQL URL: {_scrub_url_error(exc, url)}") from None
    password = params.pop("password", None)
    str_params = {k: str(v) for k, v in params.items() if v is not None}
    return str_params, None if password is None else str(password), _display_url(str_params)


def _display_url(params: dict[str, str]) -> str:
    """``postgresql://user@host:port/dbname``: what repr, logs and errors show."""
    user = params.get("user")
    host = params.get("host", "")
    port = params.get("port")
    where = f"{host}:{port}" if port and "," not in host else host
    if where.startswith("/"):  # a unix socket folder
        where = f"[{where}]"
    auth = f"{quote(user, safe='')}@" if user else ""
    return f"postgresql://{auth}{where}/{params.get('dbname', '')}"


def _scrub(message: str, password: str | None) -> str:
    """``message`` with ``password`` (plain and URL-encoded) replaced by ``***``."""
    if password:
        for form in {password, quote(password, safe=""), quote(password)}:
            message = message.replace(form, "***")
    return message


def _scrub_url_error(error: BaseException, url: str) -> str:
    """A URL parse error's message without any part of the URL's user info or query."""
    message = str(error).strip()
    rest = url.split("://", 1)[-1]
    secret_parts = [rest.split("@", 1)[0]] if "@" in rest else []
    if "?" in url:
        secret_parts.append(url.split("?", 1)[1])
    for part in secret_parts:
        for piece in {part, *part.split(":"), *part.split("&")}:
            if len(piece) >= 3:
                message = message.replace(piece, "***")
    return message


# --- rows ----------------------------------------------------------------------------------


def _workflow_record(workflow: Any) -> WorkflowRecord:
    """A WorkflowRecord from a Workflow, a record, a plain dict or any object with the fields."""
    if isinstance(workflow, (WorkflowRecord, dict)):
        return WorkflowRecord.of(workflow)
    source = getattr(workflow, "source", None)
    if source is None:
        return WorkflowRecord.of(workflow)
    return WorkflowRecord(
        getattr(workflow, "name", None) or "workflow",
        source,
        getattr(workflow, "format", None),
        getattr(workflow, "content_hash", None) or "",
    )


def _workflow_from_row(row: dict[str, Any]) -> WorkflowRecord:
    """A stored workflow row as a WorkflowRecord (with its id)."""
    return WorkflowRecord(
        name=row["name"],
        source=_loads(row["workflow"]),
        format=row["format"],
        content_hash=row["content_hash"],
        id=row["id"],
    )


def _upsert_workflow(conn: Any, workflow: Any, known: dict[str, int] | None = None) -> int:
    """The id of the workflow row with this content hash, inserting it when new (a concurrent
    insert of the same workflow by another writer is waited for, then found).

    Ids found already committed are remembered in ``known`` (the store's), so recording the
    items of a batch does not ask again; an id inserted by this transaction is not remembered
    (the transaction may still roll back).
    """
    record = _workflow_record(workflow)
    if known is not None and record.content_hash in known:
        return known[record.content_hash]
    row = conn.execute(
        "INSERT INTO comfyui_workflows (name, content_hash, format, workflow)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (content_hash) DO NOTHING RETURNING id",
        (record.name, record.content_hash, record.format, _json(record.source)),
    ).fetchone()
    if row is not None:
        return int(row["id"])
    row = conn.execute(
        "SELECT id FROM comfyui_workflows WHERE content_hash = %s", (record.content_hash,)
    ).fetchone()
    if known is not None:
        known[record.content_hash] = int(row["id"])
    return int(row["id"])


def _lock_batch(conn: Any, batch_id: str, workflow_id: int | None) -> None:
    """Create a minimal batch row if needed, then lock it until the transaction ends.

    Every writer of a batch's items takes this lock first, so the recount that follows sees
    every other writer's committed rows (no count is lost between two kernels).
    """
    lock = "SELECT 1 FROM comfyui_batches WHERE id = %s FOR UPDATE"
    if conn.execute(lock, (batch_id,)).fetchone() is None:
        conn.execute(
            "INSERT INTO comfyui_batches (id, workflow_id, status) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO NOTHING",
            (batch_id, workflow_id, BatchState.RUNNING.value),
        )
        conn.execute(lock, (batch_id,))


def _refresh_batch_counts(conn: Any, batch_id: str) -> None:
    """Recount a batch's completed and failed items from its generations."""
    conn.execute(
        "UPDATE comfyui_batches SET"
        " completed_count = (SELECT COUNT(*) FROM comfyui_generations"
        "   WHERE batch_id = %(b)s AND status = %(done)s),"
        " failed_count = (SELECT COUNT(*) FROM comfyui_generations"
        "   WHERE batch_id = %(b)s AND status = ANY(%(failed)s)),"
        " updated_at = now() WHERE id = %(b)s",
        {"b": batch_id, "done": JobState.COMPLETED.value, "failed": list(FAILED_STATES)},
    )


def _generation_values(
    generation: GenerationRecord, state: str, outputs: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The generation's column values (None where the record does not know the value)."""
    batch_id, index = generation.batch_id, generation.batch_index
    return {
        "prompt_id": str(generation.prompt_id),
        "server": clean_url(generation.server),
        "status": state,
        "parameters_used": _jsonb(dict(generation.parameters)) if generation.parameters else None,
        "prompt": _json(generation.prompt) if generation.prompt is not None else None,
        "outputs": _jsonb(outputs) if outputs is not None else None,
        "error": _text(generation.error),
        "error_node": _text(generation.error_node),
        "queued_at": _timestamp(generation.queued_at),
        "started_at": _timestamp(generation.started_at),
        "finished_at": _timestamp(generation.finished_at),
        "batch_id": None if batch_id is None else str(batch_id),
        "batch_index": None if index is None else int(index),
    }


def _write_generation(
    conn: Any, workflow: WorkflowRecord | None, values: dict[str, Any], known: dict[str, int]
) -> None:
    """Insert, update or replace one generation row (inside a transaction), then recount its
    batch. The batch row is locked before the generation row, in every writer."""
    workflow_id = _upsert_workflow(conn, workflow, known) if workflow is not None else None
    batch_id = values["batch_id"]
    if batch_id is None:  # e.g. marking a recorded item lost: its row knows the batch
        row = conn.execute(
            "SELECT batch_id FROM comfyui_generations WHERE prompt_id = %s",
            (values["prompt_id"],),
        ).fetchone()
        batch_id = row["batch_id"] if row else None
    if batch_id is not None:
        _lock_batch(conn, batch_id, workflow_id)
    existing = conn.execute(
        "SELECT id, status, prompt_id FROM comfyui_generations WHERE prompt_id = %s FOR UPDATE",
        (values["prompt_id"],),
    ).fetchone()
    if existing is None and batch_id is not None and values["batch_index"] is not None:
        existing = conn.execute(
            "SELECT id, status, prompt_id FROM comfyui_generations"
            " WHERE batch_id = %s AND batch_index = %s FOR UPDATE",
            (batch_id, values["batch_index"]),
        ).fetchone()
    values = {**values, "workflow_id": workflow_id}
    if existing is None:
        row = {**values, "parameters_used": values["parameters_used"] or _jsonb({})}
        conn.execute(
            f"INSERT INTO comfyui_generations ({', '.join(row)})"
            f" VALUES ({', '.join(['%s'] * len(row))})",
            tuple(row.values()),
        )
    elif existing["prompt_id"] != values["prompt_id"]:  # a new attempt at the same batch item
        row = {**values, "parameters_used": values["parameters_used"] or _jsonb({})}
        sets = ", ".join(f"{k} = %s" for k in row)
        conn.execute(
            f"UPDATE comfyui_generations SET {sets}, created_at = clock_timestamp() WHERE id = %s",
            (*row.values(), existing["id"]),
        )
    elif existing["status"] not in TERMINAL:
        keep = [k for k in values if k != "status"]
        sets = ", ".join(["status = %s"] + [f"{k} = COALESCE(%s, {k})" for k in keep])
        conn.execute(
            f"UPDATE comfyui_generations SET {sets} WHERE id = %s",
            (values["status"], *(values[k] for k in keep), existing["id"]),
        )
    if batch_id is not None:
        _refresh_batch_counts(conn, batch_id)


def _generation_filters(
    workflow: Any, batch_id: Any, status: Any, since: Any, generation_id: Any
) -> tuple[list[str], list[Any]]:
    """SQL conditions and arguments for ``find_generations``."""
    where: list[str] = []
    args: list[Any] = []
    if workflow is not None:
        if isinstance(workflow, numbers.Integral) and not isinstance(workflow, bool):
            where.append("g.workflow_id = %s")
            args.append(int(workflow))
        elif isinstance(workflow, str):
            where.append("(w.name = %s OR w.content_hash = %s)")
            args += [workflow, workflow]
        else:
            where.append("w.content_hash = %s")
            args.append(_workflow_record(workflow).content_hash)
    if batch_id is not None:
        where.append("g.batch_id = %s")
        args.append(str(batch_id))
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        where.append("g.status = ANY(%s)")
        args.append([_state_text(s) for s in statuses])
    if since is not None:
        where.append("COALESCE(g.queued_at, g.created_at) >= %s")
        args.append(_timestamp(_unix_time(since)))
    if generation_id is not None:
        if isinstance(generation_id, numbers.Integral) and not isinstance(generation_id, bool):
            where.append("g.id = %s")
            args.append(int(generation_id))
        else:
            where.append("g.prompt_id = %s")
            args.append(str(generation_id))
    return where, args


def _output_folder(generation: GenerationRecord) -> str:
    """Output subfolder: the batch id for batch items, else the workflow's name."""
    if generation.batch_id is not None:
        return safe_name(generation.batch_id)
    name = generation.workflow.name if generation.workflow is not None else None
    return safe_name(name or "prompts")


def _output_dict(output: Any) -> dict[str, Any]:
    """The stored description of an Output or a StoredOutput (no bytes)."""
    if isinstance(output, StoredOutput):
        return output.as_dict()
    node_id = getattr(output, "node_id", None)
    local = getattr(output, "local_path", None)
    return {
        "node_id": None if node_id is None else str(node_id),
        "filename": getattr(output, "filename", None),
        "subfolder": getattr(output, "subfolder", "") or "",
        "type": getattr(output, "type", None),
        "kind": getattr(output, "kind", None),
        "mime": getattr(output, "mime", None),
        "local_path": None if local is None else str(local),
        "asset_id": getattr(output, "asset_id", None),
    }


# --- values --------------------------------------------------------------------------------


def _state_text(state: Any) -> str:
    """The stored string of a JobState/BatchState (or a plain status string)."""
    return str(getattr(state, "value", state))


def _job_state(text: str) -> JobState:
    """A stored status as a JobState (a status written by a newer version stays a string)."""
    try:
        return JobState(text)
    except ValueError:
        return text  # type: ignore[return-value]


def _batch_state(text: str) -> BatchState:
    """A stored batch status as a BatchState (an unknown newer one stays a string)."""
    try:
        return BatchState(text)
    except ValueError:
        return text  # type: ignore[return-value]


def _text(value: Any) -> str | None:
    """Text for a TEXT column: PostgreSQL refuses NUL characters, so they become U+FFFD."""
    return None if value is None else str(value).replace("\x00", "\ufffd")


def _dumps(value: Any) -> str:
    """JSON text PostgreSQL accepts: no NaN/Infinity and no NUL characters (made strings)."""
    try:
        text = json.dumps(value, default=_json_default, allow_nan=False, ensure_ascii=False)
    except ValueError:
        text = json.dumps(_json_safe(value), default=_json_default, ensure_ascii=False)
    if "\\u0000" in text:
        text = text.replace("\\u0000", "\\ufffd")
    return text


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats replaced by their names (``"nan"``, ``"inf"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """Make numpy scalars, paths and other objects JSON-serialisable."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            result = item()
            return _json_safe(result)
        except (TypeError, ValueError):
            pass
    return str(value)


def _json(value: Any) -> Any:
    """A value for a JSON column (its text kept exactly, key order included), serialised now:
    the writer thread sends it later, and the caller may change the object meanwhile."""
    from psycopg.types.json import Json

    return None if value is None else Json(_dumps(value), dumps=_as_is)


def _jsonb(value: Any) -> Any:
    """A value for a JSONB column, serialised now (see ``_json``)."""
    from psycopg.types.json import Jsonb

    return None if value is None else Jsonb(_dumps(value), dumps=_as_is)


def _as_is(text: str) -> str:
    """The ``dumps`` of JSON text serialised already."""
    return text


def _loads(value: Any) -> Any:
    """A JSON column's value (psycopg already parsed it; text from a newer schema is parsed)."""
    return json.loads(value) if isinstance(value, str) else value


def _timestamp(value: float | None) -> datetime | None:
    """A unix time as an aware UTC datetime (TIMESTAMPTZ)."""
    return None if value is None else datetime.fromtimestamp(float(value), tz=timezone.utc)


def _unix(value: datetime | None) -> float | None:
    """A TIMESTAMPTZ as unix seconds."""
    return None if value is None else value.timestamp()


def _unix_time(value: Any) -> float:
    """Unix seconds from a number, a datetime, a pandas Timestamp or an ISO string."""
    if isinstance(value, (int, float)):
        return float(value)
    import pandas as pd

    return float(pd.Timestamp(value).to_pydatetime().timestamp())
