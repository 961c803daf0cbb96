"""``cw.resume``: finish a recorded batch after a restart; ``cw.rerun``: send a generation again.

``resume`` uses the engine's one ``Job`` type for every item: a prompt the server still has
(queued, running or finished) is *adopted* as a Job under its recorded prompt id, which the
backend follows through the same monitor and reconcile path as any Job (an adopted prompt's
events go to the socket of the kernel that sent it, so it is brought up to date from the
server's queue at every queue change) and which fetches its outputs and records its end as any
Job does. Items planned but never sent are sent as new Jobs, spread over the servers that
answer; items the server forgot are marked ``lost`` (sent again with ``requeue_lost=True``).
Every step goes through the Recorder, so a resume can be interrupted and run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from comfy_widgets.engine.client import Client, connect
from comfy_widgets.engine.job import LOST_MESSAGE, Job
from comfy_widgets.errors import ComfyWidgetsError, ServerConnectionError
from comfy_widgets.loops import background_loop, running_loop
from comfy_widgets.records import (
    BatchRecord,
    GenerationRecord,
    Recorder,
    WorkflowRecord,
    clean_url,
    open_recorder,
)
from comfy_widgets.results.recorded import load_batch
from comfy_widgets.states import BatchState, JobState
from comfy_widgets.transport.backend import PromptOutcome

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# One resume of a batch at a time (across kernels and machines sharing a store): the running one
# holds a lease it renews; a second waits for it and then finds the items settled. A crashed
# holder's lease runs out after LEASE_TTL_S.
LEASE_TTL_S = 30.0
LEASE_RENEW_S = 10.0
LEASE_POLL_S = 0.5


def resume(
    batch_id: str,
    client: Any = None,
    *,
    store: Recorder | None = None,
    requeue_lost: bool = False,
    poll_interval: float | None = None,
) -> Any:
    """Finish a recorded batch after a restart; returns its DataFrame (awaitable inside a loop).

    In a notebook cell use ``df = await cw.resume(batch_id)``; in a script ``cw.resume(batch_id)``
    blocks. ``client`` (a Client or a list, one per server) defaults to clients for the servers
    the batch recorded; pass your own when a server needs credentials. Items never sent are
    spread over the servers that answer. ``requeue_lost=True`` also sends again the items the
    server lost. ``poll_interval`` is accepted for compatibility and unused: adopted prompts
    are followed through the client's monitor.
    """
    coro = aresume(batch_id, client, store=store, requeue_lost=requeue_lost)
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
    store: Recorder | None = None,
    requeue_lost: bool = False,
    poll_interval: float | None = None,
) -> pd.DataFrame:
    """The coroutine behind ``resume``: reconcile, send what was never sent, follow to the end."""
    recorder = open_recorder(store if store is not None else "default")
    record = recorder.batch(batch_id)
    if record is None:
        raise ComfyWidgetsError(f"no batch {batch_id!r} in {recorder!r}")
    holder = str(uuid.uuid4())
    await _take_lease(recorder, batch_id, holder)
    renewing = asyncio.ensure_future(_keep_lease(recorder, batch_id, holder))
    try:
        await _resume_items(recorder, record, client, requeue_lost)
    finally:
        renewing.cancel()
        recorder.release_lease(batch_id, holder)
    return load_batch(batch_id, recorder)


async def _resume_items(
    recorder: Recorder, record: BatchRecord, client: Any, requeue_lost: bool
) -> None:
    """Settle every item of the batch (the caller holds its lease) and set its final state."""
    recorded = {g.batch_index: g for g in recorder.find_generations(batch_id=record.id)}
    given = _as_list(client)
    created = _missing_clients(given, recorder, record, list(recorded.values()))
    try:
        servers = await _reachable_servers(given, created)
        recorder.set_batch_state(record.id, BatchState.RUNNING)
        jobs = await _settle_items(servers, recorder, record, recorded, requeue_lost)
        await asyncio.gather(*(_finished(job) for job in jobs))
    finally:
        for extra in created:
            await extra.aclose()
    recorder.set_batch_state(record.id, _final_status(recorder, record.id))


async def _take_lease(recorder: Recorder, batch_id: str, holder: str) -> None:
    """Wait until this resume holds the batch's lease (another resume of it finishes first)."""
    waiting = False
    while not recorder.acquire_lease(batch_id, holder, LEASE_TTL_S):
        if not waiting:
            log.info("batch %s is being resumed elsewhere; waiting for that to finish", batch_id)
            waiting = True
        await asyncio.sleep(LEASE_POLL_S)


async def _keep_lease(recorder: Recorder, batch_id: str, holder: str) -> None:
    """Renew the lease while the resume runs."""
    while True:
        await asyncio.sleep(LEASE_RENEW_S)
        try:
            recorder.acquire_lease(batch_id, holder, LEASE_TTL_S)
        except ComfyWidgetsError as exc:
            log.warning("could not renew the lease on batch %s: %s", batch_id, exc)


async def _finished(job: Job) -> None:
    """Wait for a job to end, however it ends (its record says how)."""
    with contextlib.suppress(ComfyWidgetsError):
        await job


async def _reachable_servers(given: list[Client], created: list[Client]) -> list[_Server]:
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
    servers: list[_Server],
    recorder: Recorder,
    record: BatchRecord,
    recorded: dict[int | None, GenerationRecord],
    requeue_lost: bool,
) -> list[Job]:
    """Decide what each unfinished or unsent item needs; new sends take the servers in turn.

    Returns the Jobs to wait for.
    """
    by_url = {clean_url(server.client.url): server for server in servers}
    turn = itertools.cycle(servers)
    jobs: list[Job | None] = []
    for index in range(max(record.total_count, len(record.plan))):
        row = recorded.get(index)
        if row is None:
            jobs.append(await _start_unsent(servers, next(turn), recorder, record, index))
        elif not row.state.terminal and row.server in by_url:
            server = by_url[row.server]
            jobs.append(await _reconcile(server, recorder, record, row, requeue_lost))
        elif row.state == JobState.LOST and requeue_lost:
            target = next(turn)
            jobs.append(await _send(await _item_job(target.client, recorder, record, index)))
    return [job for job in jobs if job is not None]


def _as_list(client: Any) -> list[Any]:
    """The given client(s) as a list (None gives [])."""
    if client is None:
        return []
    return list(client) if isinstance(client, (list, tuple)) else [client]


def _missing_clients(
    given: list[Client], recorder: Recorder, record: BatchRecord, rows: list[GenerationRecord]
) -> list[Client]:
    """New clients for the batch's servers that no given client talks to (or the default one)."""
    have = {clean_url(c.url) for c in given}
    urls = list(record.servers) + [r.server for r in rows if r.server]
    missing: list[str | None] = [url for url in dict.fromkeys(urls) if url not in have]
    if not given and not missing:
        missing = [None]
    return [connect(url, store=recorder) for url in missing]


@dataclass
class _Server:
    """One server during a resume: its client and one look at its queue and history."""

    client: Client
    queued: set[str]
    outcomes: dict[str, PromptOutcome]
    by_prompt: dict[str, list[str]]

    @classmethod
    async def read(cls, client: Client) -> _Server:
        """Read the queue then the history (in that order, so nothing slips between them)."""
        queue = await client.backend.queue_state()
        outcomes = await client.backend.outcomes()
        items = queue.running + queue.pending
        pairs = [(q.prompt_id, q.prompt) for q in items] + [
            (pid, outcome.prompt) for pid, outcome in outcomes.items()
        ]
        by_prompt: dict[str, list[str]] = {}
        for pid, prompt in pairs:
            by_prompt.setdefault(_canonical(prompt), []).append(pid)
        return cls(client, {q.prompt_id for q in items}, outcomes, by_prompt)

    def claim_prompt(self, prompt: dict[str, Any], recorder: Recorder) -> str | None:
        """The id of a server prompt equal to ``prompt`` that the recorder has no record of.

        A claimed id is not offered again, so two equal items never adopt the same prompt.
        """
        ids = self.by_prompt.get(_canonical(prompt), [])
        for pid in ids:
            if not recorder.find_generations(generation_id=pid):
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


async def _reconcile(
    server: _Server,
    recorder: Recorder,
    record: BatchRecord,
    row: GenerationRecord,
    requeue_lost: bool,
) -> Job | None:
    """Settle a recorded, unfinished item: adopt it, send it again, or mark it lost."""
    prompt_id = row.prompt_id
    if prompt_id in server.outcomes or prompt_id in server.queued:
        job = _adopted(server.client, recorder, row)
        await _follow(job, server.outcomes.get(prompt_id))
        return job
    if row.state == JobState.PENDING or requeue_lost:
        # a pending row's POST never arrived: send it under the same id
        same_id = prompt_id if row.state == JobState.PENDING else None
        assert row.batch_index is not None
        return await _send(
            await _item_job(server.client, recorder, record, row.batch_index, same_id)
        )
    lost = replace(row, state=JobState.LOST, error=LOST_MESSAGE, outputs=[], saved_outputs=[])
    recorder.record_generation(lost)
    return None


def _adopted(client: Client, recorder: Recorder, row: GenerationRecord) -> Job:
    """A Job for a recorded generation the server has (queued, running or finished)."""
    job = Job(
        client,
        row.prompt or {},
        workflow=row.workflow,
        parameters=row.parameters,
        batch_id=row.batch_id,
        batch_index=row.batch_index,
        prompt_id=row.prompt_id,
        recorder=recorder,
    )
    job.adopt(queued_at=row.queued_at, started_at=row.started_at)
    return job


async def _follow(job: Job, outcome: PromptOutcome | None) -> None:
    """Finish an adopted job from the server's record, or follow it until it ends."""
    if outcome is not None:
        await job.apply_outcome(outcome)
    else:
        job.follow()


async def _start_unsent(
    servers: list[_Server], target: _Server, recorder: Recorder, record: BatchRecord, index: int
) -> Job:
    """An item with no record: adopt a server's copy (sent just before a crash), else send it
    to ``target``."""
    job = await _item_job(target.client, recorder, record, index)
    for server in servers:
        orphan = server.claim_prompt(job.prompt, recorder)
        if orphan is not None:
            adopted = await _item_job(server.client, recorder, record, index, orphan)
            adopted.adopt(record_queued=True)
            await _follow(adopted, server.outcomes.get(orphan))
            return adopted
    return await _send(job)


async def _item_job(
    client: Client,
    recorder: Recorder,
    record: BatchRecord,
    index: int,
    prompt_id: str | None = None,
) -> Job:
    """A Job for batch item ``index`` from the recorded plan (its prompt built if unrecorded)."""
    plan, prompts = record.plan, record.prompts
    values = plan[index] if index < len(plan) else {}
    prompt = prompts[index] if index < len(prompts) else None
    if prompt is None:
        prompt = await _build_prompt(client, record.workflow, values)
    return Job(
        client,
        prompt,
        workflow=record.workflow,
        parameters=values,
        batch_id=record.id,
        batch_index=index,
        prompt_id=prompt_id,
        recorder=recorder,
    )


async def _send(job: Job) -> Job:
    """Record the item as ``pending`` under its prompt id, then queue it as any Job.

    Recording first means a crash during the POST leaves a row the next resume can check.
    """
    record = job.record()
    record.state = JobState.PENDING
    job.recorder.record_generation(record)
    job.start()
    return job


async def _build_prompt(
    client: Client, workflow: WorkflowRecord | None, values: dict[str, Any]
) -> dict[str, Any]:
    """Build an item's prompt from the stored workflow with the server's object_info."""
    from comfy_widgets.workflow.workflow import Workflow

    if workflow is None:
        raise ComfyWidgetsError("the batch has no recorded workflow or prompts to resume from")
    wf = Workflow.load(workflow.source, name=workflow.name, allow_unknown_nodes=True)
    return wf.with_object_info(await client.get_object_info()).apply(values)


def _final_status(recorder: Recorder, batch_id: str) -> BatchState:
    """``completed`` when every item completed, ``failed`` when none did, else ``partial``."""
    states = [g.state for g in recorder.find_generations(batch_id=batch_id)]
    done = states.count(JobState.COMPLETED)
    if states and done == len(states):
        return BatchState.COMPLETED
    return BatchState.FAILED if done == 0 else BatchState.PARTIAL


# --- rerun -----------------------------------------------------------------------------------


def rerun(generation_id: int | str, client: Any = None, *, store: Recorder | None = None) -> Job:
    """Queue the exact prompt a recorded generation sent, again; returns the new Job.

    ``generation_id`` is the ``generation_id`` column of ``history()`` or a prompt id.
    """
    recorder = open_recorder(store if store is not None else "default")
    found = recorder.find_generations(generation_id=generation_id)
    if not found or found[0].prompt is None:
        raise ComfyWidgetsError(f"no recorded prompt for generation {generation_id!r}")
    record = found[0]
    if client is None:
        client = connect(record.server, store=recorder)
    return client.submit(record.prompt, workflow=record.workflow, parameters=record.parameters)
