"""Reading the run store back: ``cw.history``, ``cw.load_batch``, ``cw.resume`` and ``cw.rerun``.

``resume`` finishes a batch whose kernel died: it asks the server (``/queue``, ``/history``) about
every item that was not finished, fetches the outputs of those that finished meanwhile, follows the
ones still queued or running, sends the items that were planned but never queued, and marks the
ones the server forgot as ``lost``. Every step goes through the store, so it can be interrupted and
run again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from comfy_widgets.client import background_loop, running_loop
from comfy_widgets.errors import ComfyWidgetsError, ServerConnectionError
from comfy_widgets.results import TAIL_COLUMNS, OutputRef, build_frame, columns_for, empty_row
from comfy_widgets.store import TERMINAL_STATES, Store, StoredWorkflow, clean_url, text_or_none
from comfy_widgets.transport.outputs import file_refs, output_from_file, text_outputs

log = logging.getLogger(__name__)

SEED_FIELDS = ("seed", "noise_seed")
HISTORY_HEAD = [
    "generation_id",
    "prompt_id",
    "workflow",
    "batch_id",
    "batch_index",
    "server",
    "status",
    "parameters",
    "seed",
]


def history(
    workflow: Any = None,
    batch_id: str | None = None,
    status: str | list[str] | None = None,
    since: Any = None,
    store: Store | None = None,
) -> pd.DataFrame:
    """Every recorded generation matching the filters, one row each, in the order recorded.

    ``workflow`` is a name, a content hash, a workflow id or a Workflow; ``since`` a unix time,
    datetime or date string; ``status`` one status or a list. Timestamps are UTC; image cells
    are OutputRefs, so the frame displays with thumbnails.
    """
    store = store or Store.default()
    records = store.generation_records(
        workflow=workflow, batch_id=batch_id, status=status, since=since
    )
    rows = [_history_row(r) for r in records]
    return build_frame(rows, [*HISTORY_HEAD, *TAIL_COLUMNS, "error_node", "prompt"])


def load_batch(batch_id: str, store: Store | None = None) -> pd.DataFrame:
    """A recorded batch as its results DataFrame (the columns of ``await batch``).

    Items that were planned but never sent appear as ``pending`` (``cancelled`` once the batch
    ended), so the frame always has one row per planned item, ready for ``ResultGrid``.
    """
    store = store or Store.default()
    record = store.batch_record(batch_id)
    if record is None:
        raise ComfyWidgetsError(f"no batch {batch_id!r} in {store.path}")
    records = {r["batch_index"]: r for r in store.generation_records(batch_id=batch_id)}
    plan = record["plan"]
    total = max(record["total_count"], len(plan), max(records, default=-1) + 1)
    varied = _varied_columns(record)
    unsent = "pending" if record["status"] in ("pending", "running") else "cancelled"
    rows = []
    for index in range(total):
        gen = records.get(index)
        values = gen["parameters"] if gen else (plan[index] if index < len(plan) else {})
        row = {"batch_id": batch_id, "batch_index": index}
        row.update({name: values.get(name) for name in varied})
        row["seed"] = seed_of(values)
        row.update(_generation_columns(gen) if gen else empty_row(unsent))
        rows.append(row)
    return build_frame(rows, columns_for(varied))


def output_refs(outputs: list[dict[str, Any]], server: str | None) -> list[OutputRef]:
    """OutputRefs for stored output descriptions (the store's local copy is used first)."""
    return [OutputRef.from_record(o, server=server) for o in outputs]


def _history_row(record: dict[str, Any]) -> dict[str, Any]:
    """One ``history()`` row from a stored generation."""
    return {
        "generation_id": record["id"],
        "workflow": record["workflow_name"],
        "batch_id": record["batch_id"],
        "batch_index": record["batch_index"],
        "parameters": record["parameters"],
        "seed": seed_of(record["parameters"]),
        **_generation_columns(record),
        "error_node": record["error_node"],
        "prompt": record["prompt"],
    }


def _generation_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The prompt id, server, status, outputs, timing and error columns of a stored generation."""
    refs = output_refs(record["outputs"], record["server"])
    images = [ref for ref in refs if ref.kind == "image"]
    started, finished = record["started_at"], record["finished_at"]
    both = started is not None and finished is not None
    return {
        "prompt_id": record["prompt_id"],
        "server": record["server"],
        "status": record["status"],
        "image": images[0] if images else None,
        "outputs": refs,
        "queued_at": _utc(record["queued_at"]),
        "started_at": _utc(started),
        "finished_at": _utc(finished),
        "duration_s": (finished - started) if both else None,
        "error": record["error"],
    }


def _utc(value: float | None) -> pd.Timestamp | None:
    """A stored unix time as a UTC Timestamp (the results DataFrame's time type)."""
    return None if value is None else pd.Timestamp(value, unit="s", tz="UTC")


def _varied_columns(record: dict[str, Any]) -> list[str]:
    """The varied-parameter columns of a batch: as recorded, else the plan keys that change."""
    columns = record["columns"]
    if columns is None:
        plan = record["plan"]
        keys = list(dict.fromkeys(k for row in plan for k in row))
        columns = [k for k in keys if len({repr(row.get(k)) for row in plan}) > 1]
    return [c for c in columns if c != "seed" and c.rsplit(".", 1)[-1] not in SEED_FIELDS]


def seed_of(values: dict[str, Any]) -> Any:
    """The seed among parameter values: ``seed``, else the first ``*.seed``/``noise_seed`` key."""
    if "seed" in values:
        return values["seed"]
    for name, value in values.items():
        if name.rsplit(".", 1)[-1] in SEED_FIELDS:
            return value
    return None


# --- resume ----------------------------------------------------------------------------------


@dataclass
class ResumedJob:
    """The Job attributes the store hooks read, for an item that ``resume`` sends or adopts."""

    prompt_id: str
    client: Any
    workflow: Any
    parameters: dict[str, Any]
    prompt: dict[str, Any] | None
    batch_id: str
    batch_index: int
    state: str = "pending"
    outputs: list[Any] = field(default_factory=list)
    error_message: str | None = None
    error_node: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def resume(
    batch_id: str,
    client: Any = None,
    *,
    store: Store | None = None,
    requeue_lost: bool = False,
    poll_interval: float = 0.25,
) -> Any:
    """Finish a recorded batch after a restart; returns its DataFrame (awaitable inside a loop).

    In a notebook cell use ``df = await cw.resume(batch_id)``; in a script ``cw.resume(batch_id)``
    blocks. ``client`` (a Client or a list, one per server) defaults to clients for the servers
    the batch recorded; pass your own when a server needs credentials. Items never sent are
    spread over the servers that answer. ``requeue_lost=True`` also sends again the items the
    server lost.
    """
    coro = aresume(
        batch_id, client, store=store, requeue_lost=requeue_lost, poll_interval=poll_interval
    )
    clients = _as_list(client)
    if running_loop() is not None:
        if not clients:
            return asyncio.ensure_future(coro)
        return asyncio.wrap_future(clients[0].spawn(coro))
    loop = clients[0].loop if clients else background_loop()
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


async def aresume(
    batch_id: str,
    client: Any = None,
    *,
    store: Store | None = None,
    requeue_lost: bool = False,
    poll_interval: float = 0.25,
) -> pd.DataFrame:
    """The coroutine behind ``resume``: reconcile, send what was never sent, follow to the end."""
    store = store or Store.default()
    record = store.batch_record(batch_id)
    if record is None:
        raise ComfyWidgetsError(f"no batch {batch_id!r} in {store.path}")
    recorded = {r["batch_index"]: r for r in store.generation_records(batch_id=batch_id)}
    given = _as_list(client)
    created = _missing_clients(given, store, record, recorded.values())
    try:
        servers = await _reachable_servers(given, created)
        store.update_batch(batch_id, status="running")
        await _settle_items(servers, store, record, recorded, requeue_lost)
        await asyncio.gather(*(_follow(server, store, poll_interval) for server in servers))
    finally:
        for extra in created:
            await extra.aclose()
    store.update_batch(batch_id, status=_final_status(store, batch_id))
    return load_batch(batch_id, store)


async def _reachable_servers(given: list, created: list) -> list[_Server]:
    """Read every server's queue and history; a recorded server that is down is skipped.

    Its items stay as they are (a later resume can settle them); a client the caller passed
    must answer.
    """
    servers = []
    for client in given + created:
        try:
            servers.append(await _Server.read(client))
        except ServerConnectionError:
            if client in given:
                raise
            log.warning("resume: %s does not answer; its items are left as they are", client.url)
    if not servers:
        raise ServerConnectionError("resume: none of the batch's servers answers")
    return servers


async def _settle_items(
    servers: list[_Server], store: Store, record: dict, recorded: dict, requeue_lost: bool
) -> None:
    """Decide what each unfinished or unsent item needs; new sends take the servers in turn."""
    by_url = {clean_url(server.client.url): server for server in servers}
    turn = itertools.cycle(servers)
    for index in range(max(record["total_count"], len(record["plan"]))):
        row = recorded.get(index)
        if row is None:
            await _start_unsent(servers, next(turn), store, record, index)
        elif row["status"] not in TERMINAL_STATES and row["server"] in by_url:
            await _reconcile(by_url[row["server"]], store, record, row, requeue_lost)
        elif row["status"] == "lost" and requeue_lost:
            target = next(turn)
            await _send(target, store, _job_for(target.client, store, record, index))


def _as_list(client: Any) -> list[Any]:
    """The given client(s) as a list (None gives [])."""
    if client is None:
        return []
    return list(client) if isinstance(client, (list, tuple)) else [client]


def _missing_clients(given: list, store: Store, record: dict, rows: Any) -> list[Any]:
    """New clients for the batch's servers that no given client talks to (or the default one)."""
    from comfy_widgets.client import connect

    have = {clean_url(c.url) for c in given}
    urls = list(record["servers"]) + [r["server"] for r in rows if r["server"]]
    missing = [url for url in dict.fromkeys(urls) if url not in have]
    if not given and not missing:
        missing = [None]
    return [connect(url, store=store) for url in missing]


@dataclass
class _Server:
    """One server during a resume: its client, one look at its queue and history, and the
    prompt ids to follow there."""

    client: Any
    queued: set[str]
    history: dict[str, Any]
    by_prompt: dict[str, list[str]]
    follow: list[str] = field(default_factory=list)

    @classmethod
    async def read(cls, client: Any) -> _Server:
        """Fetch ``/queue`` then ``/history`` (in that order, so nothing slips between them)."""
        items = _queue_items(await client.get_queue())
        history = await client.get_history()
        pairs = [(i[1], i[2]) for i in items] + [
            (pid, (entry.get("prompt") or [None, None, None])[2]) for pid, entry in history.items()
        ]
        by_prompt: dict[str, list[str]] = {}
        for pid, prompt in pairs:
            by_prompt.setdefault(_canonical(prompt), []).append(pid)
        return cls(client, {i[1] for i in items}, history, by_prompt)

    def claim_prompt(self, prompt: dict[str, Any], store: Store) -> str | None:
        """The id of a server prompt equal to ``prompt`` that the store has no record of.

        A claimed id is not offered again, so two equal items never adopt the same prompt.
        """
        ids = self.by_prompt.get(_canonical(prompt), [])
        for pid in ids:
            if not store.generation_records(generation_id=pid):
                ids.remove(pid)
                return pid
        return None


def _canonical(prompt: Any) -> str:
    """A prompt as canonical JSON, to compare what we sent with what the server kept.

    ComfyUI stores validated inputs converted to their type (``cfg: 8`` comes back as ``8.0``),
    so whole floats are written as ints here.
    """
    return json.dumps(_whole_floats_as_ints(prompt), sort_keys=True, separators=(",", ":"))


def _whole_floats_as_ints(value: Any) -> Any:
    """``value`` with every float that is a whole number replaced by the int (recursively)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(v) for v in value]
    return value


def _queue_items(queue: dict[str, Any]) -> list[list]:
    """The running and pending items of a ``/queue`` answer: ``[number, prompt_id, prompt, …]``."""
    return [item for key in ("queue_running", "queue_pending") for item in queue.get(key) or []]


async def _reconcile(
    server: _Server, store: Store, record: dict, row: dict, requeue_lost: bool
) -> None:
    """Settle a recorded, unfinished item: record it, follow it, send it again, or mark it lost."""
    prompt_id = row["prompt_id"]
    if prompt_id in server.history:
        await _record_history(server.client, store, prompt_id, server.history[prompt_id])
    elif prompt_id in server.queued:
        server.follow.append(prompt_id)
    elif row["status"] == "pending" or requeue_lost:
        job = _job_for(server.client, store, record, row["batch_index"])
        if row["status"] == "pending":
            job.prompt_id = prompt_id  # the POST never arrived: send it under the same id
        await _send(server, store, job)
    else:
        store.mark_generation(prompt_id, "lost", "not in the server's queue or history")


async def _start_unsent(
    servers: list[_Server], target: _Server, store: Store, record: dict, index: int
) -> None:
    """An item with no record: adopt a server's copy (sent just before a crash), else send it
    to ``target``."""
    job = _job_for(target.client, store, record, index)
    if job.prompt is None:
        job.prompt = await _build_prompt(target.client, job.workflow, job.parameters)
    for server in servers:
        orphan = server.claim_prompt(job.prompt, store)
        if orphan is not None:
            job.prompt_id, job.client = orphan, server.client
            store.job_queued(job)
            if orphan in server.history:
                await _record_history(server.client, store, orphan, server.history[orphan])
            else:
                server.follow.append(orphan)
            return
    await _send(target, store, job)


def _job_for(client: Any, store: Store, record: dict, index: int) -> ResumedJob:
    """A job-like record of batch item ``index`` from the stored plan (prompt None if unknown)."""
    plan, prompts = record["plan"], record["prompts"]
    return ResumedJob(
        prompt_id=str(uuid.uuid4()),
        client=client,
        workflow=_workflow_of(store, record),
        parameters=plan[index] if index < len(plan) else {},
        prompt=prompts[index] if index < len(prompts) else None,
        batch_id=record["id"],
        batch_index=index,
    )


async def _send(server: _Server, store: Store, job: ResumedJob) -> None:
    """Record the item as ``pending`` under its prompt id, POST it, record it ``queued``, follow.

    Recording first means a crash during the POST leaves a row the next resume can check.
    """
    if job.prompt is None:
        job.prompt = await _build_prompt(server.client, job.workflow, job.parameters)
    job.client = server.client
    store.record_job(job, "pending")
    await server.client.queue_prompt(job.prompt, prompt_id=job.prompt_id)
    job.state = "queued"
    job.timings["queued_at"] = time.time()
    store.job_queued(job)
    server.follow.append(job.prompt_id)


async def _follow(server: _Server, store: Store, poll_interval: float) -> None:
    """Poll until each followed prompt is in the history (record it) or gone (mark it lost)."""
    client, pending = server.client, list(server.follow)
    while pending:
        await asyncio.sleep(poll_interval)
        in_queue = {item[1] for item in _queue_items(await client.get_queue())}
        still = []
        for prompt_id in pending:
            entry = (await client.get_history(prompt_id)).get(prompt_id)
            if entry is not None:
                await _record_history(client, store, prompt_id, entry)
            elif prompt_id in in_queue:
                still.append(prompt_id)
            else:
                store.mark_generation(prompt_id, "lost", "not in the server's queue or history")
        pending = still


async def _record_history(client: Any, store: Store, prompt_id: str, entry: dict) -> None:
    """Fetch a finished prompt's outputs (as a Job would) and record its final state."""
    status, error, error_node, timings = _history_status(entry)
    refs, outputs = [], []
    for node_id, ui_output in (entry.get("outputs") or {}).items():
        if isinstance(ui_output, dict):
            refs.extend(file_refs(str(node_id), ui_output))
            outputs.extend(text_outputs(str(node_id), ui_output))
    datas = await asyncio.gather(*(client.view(r.filename, r.subfolder, r.type) for r in refs))
    files = [output_from_file(ref, data) for ref, data in zip(refs, datas, strict=True)]
    store.record_outputs(
        prompt_id, status, files + outputs, error=error, error_node=error_node, timings=timings
    )


def _history_status(entry: dict) -> tuple[str, str | None, str | None, dict[str, float]]:
    """Status, error message, error node and timings from a HistoryEntry's status messages."""
    status = entry.get("status") or {}
    messages = {name: data for name, data in status.get("messages") or []}
    timings = {}
    if "execution_start" in messages:
        timings["started_at"] = messages["execution_start"].get("timestamp", 0) / 1000
    for name in ("execution_success", "execution_error", "execution_interrupted"):
        if name in messages:
            timings["finished_at"] = messages[name].get("timestamp", 0) / 1000
    if status.get("status_str") == "success":
        return "completed", None, None, timings
    if "execution_error" in messages:
        err = messages["execution_error"]
        return "failed", err.get("exception_message"), text_or_none(err.get("node_id")), timings
    if "execution_interrupted" in messages:
        node = messages["execution_interrupted"].get("node_id")
        return "cancelled", "interrupted", text_or_none(node), timings
    return "failed", status.get("status_str") or "failed", None, timings


async def _build_prompt(client: Any, workflow: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Build an item's prompt from the stored workflow with the server's object_info."""
    from comfy_widgets.workflow.workflow import Workflow

    if workflow is None:
        raise ComfyWidgetsError("the batch has no recorded workflow or prompts to resume from")
    wf = Workflow.load(workflow.source, name=workflow.name, allow_unknown_nodes=True)
    return wf.with_object_info(await client.get_object_info()).apply(values)


def _workflow_of(store: Store, record: dict) -> Any:
    """The batch's stored workflow (name, source, format, hash), or None."""
    stored = store.workflow_record(record["workflow_id"]) if record["workflow_id"] else None
    return StoredWorkflow(stored) if stored else None


def _final_status(store: Store, batch_id: str) -> str:
    """``completed`` when every item completed, ``failed`` when none did, else ``partial``."""
    statuses = [r["status"] for r in store.generation_records(batch_id=batch_id)]
    done = statuses.count("completed")
    if statuses and done == len(statuses):
        return "completed"
    return "failed" if done == 0 else "partial"


# --- rerun -----------------------------------------------------------------------------------


def rerun(generation_id: int | str, client: Any = None, *, store: Store | None = None) -> Any:
    """Queue the exact prompt a recorded generation sent, again; returns the new Job.

    ``generation_id`` is the ``generation_id`` column of ``history()`` or a prompt id.
    """
    store = store or Store.default()
    found = store.generation_records(generation_id=generation_id)
    if not found or found[0]["prompt"] is None:
        raise ComfyWidgetsError(f"no recorded prompt for generation {generation_id!r}")
    record = found[0]
    if client is None:
        from comfy_widgets.client import connect

        client = connect(record["server"], store=store)
    stored = store.workflow_record(record["workflow_id"]) if record["workflow_id"] else None
    workflow = StoredWorkflow(stored) if stored else None
    return client.submit(record["prompt"], workflow=workflow, parameters=record["parameters"])
