"""The batch runner: many variations of one workflow, queued a few at a time on one or more servers.

``Batch`` builds the variation plan, validates every item (a bad value queues nothing), records
the batch in the store, then keeps at most ``concurrency`` items in flight per server, sending
each next item to the server with the most free capacity: its own unfinished items, or, for a v2
server (which says nothing of its load), every unfinished job of ours it runs. A server that
cannot be reached or refuses our credentials gets no more items; its unsent ones go to the others.
``server_stats()`` gives per-server counts and throughput (the batch view shows them). Each
item is a Job (``batch_id``/``batch_index`` set), so it has its own progress and store record.
``batch.df`` / ``await batch`` give the results as a DataFrame (``comfy_widgets.results.frame``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import heapq
import html
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comfy_widgets.engine.plan import MAX_ITEMS, VariationPlan
from comfy_widgets.engine.recording import GATHER_MORE_S
from comfy_widgets.engine.validation import check_models_on_server, check_server_models
from comfy_widgets.engine.waiting import wait_detached
from comfy_widgets.errors import (
    AuthenticationError,
    BlockingCallError,
    ComfyWidgetsError,
    ParameterError,
    ServerConnectionError,
)
from comfy_widgets.loops import running_loop
from comfy_widgets.records import BatchRecord, WorkflowRecord
from comfy_widgets.states import BatchState, JobState
from comfy_widgets.transport.backend import LostPolicy
from comfy_widgets.transport.uploads import prepare_image_values

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from comfy_widgets.engine.client import Client
    from comfy_widgets.engine.job import Job
    from comfy_widgets.results.frame import OutputRef, ResultsFrame

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True)
class ServerStats:
    """One server of a batch: where it is, what of the batch it runs and how fast."""

    url: str  # without credentials; a v2 server's ends in /api/v2
    protocol: str  # "classic" or "v2"
    sent: int  # items sent to it (a re-sent item counts on each server it went to)
    running: int
    queued: int
    completed: int
    failed: int
    down: bool  # gets no more items: it could not be reached or refused us
    per_minute: float  # completed items per minute since its first item was sent

    def as_dict(self) -> dict[str, object]:
        """As plain JSON values (for widgets)."""
        return {
            "url": self.url,
            "protocol": self.protocol,
            "sent": self.sent,
            "running": self.running,
            "queued": self.queued,
            "completed": self.completed,
            "failed": self.failed,
            "down": self.down,
            "per_minute": round(self.per_minute, 2),
        }


class Batch:
    """Runs every item of a variation plan and collects the results (see module docstring).

    ``status`` goes pending -> running -> completed (all items), partial (some failed), failed
    (none completed) or cancelled (stopped before every item ran).

    Made by ``client.batch(workflow, count=..., **variations)``; starts at once and returns
    without waiting. ``servers`` is a list of Clients or URLs to spread the work over (default:
    ``client`` alone). ``concurrency`` bounds the items queued or running per server. The items'
    prompts (``job.prompt``) share the nodes their values leave alone with the workflow and
    with each other (``Workflow.apply_shared``): read them, never change them in place.
    """

    def __init__(
        self,
        client: Client,
        workflow: Any,
        count: int | None = None,
        *,
        mode: str = "grid",
        concurrency: int = DEFAULT_CONCURRENCY,
        servers: Sequence[Client | str] | None = None,
        plan_seed: int | None = None,
        max_items: int = MAX_ITEMS,
        **variations: Any,
    ):
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            message = f"concurrency must be a whole number >= 1, not {concurrency!r}"
            raise ParameterError(message, errors={"concurrency": message})
        self.client = client
        self.workflow = client._load_workflow(workflow)  # as client.run: server's object_info
        self.id = str(uuid.uuid4())
        self.concurrency = concurrency
        self.servers = _server_clients(client, servers)
        self._owned = [s for s in self.servers if s is not client and s not in (servers or [])]
        parameters = self.workflow.parameters()
        self._image_names = {n for p in parameters if p.type == "image" for n in (p.name, p.key)}
        self.variation_plan = VariationPlan(
            variations,
            count=count,
            mode=mode,
            plan_seed=plan_seed,
            parameters=parameters,
            max_items=max_items,
        )
        self._items = self.variation_plan.validate(self._prepare_item)
        self.status = BatchState.PENDING
        self._jobs: list[Job | None] = [None] * len(self._items)
        self._refs: dict[int, list[OutputRef]] = {}
        self._stopping = False
        self._subscribers: list[Callable[[Batch], None]] = []
        self._item_subscribers: list[Callable[[Batch, int | None], None]] = []
        # resolves when every item is done; the DataFrame is built when asked for (``await
        # batch``, ``result()``, ``df``), so a batch nobody reads as a frame never loads pandas
        self._future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._wake = asyncio.Event()
        # the sockets opening (``_run``), held so the loop cannot drop the tasks mid-way
        self._connecting: list[asyncio.Task[bool]] = []
        self._todo = list(range(len(self._items)))  # a heap: lowest index is sent first
        self._down: set[Client] = set()
        self._live: dict[Client, set[int]] = {server: set() for server in self.servers}
        self._sent: dict[Client, int] = dict.fromkeys(self.servers, 0)
        # per server, how many of its current items are in each state (``server_stats``), and
        # what each item adds there: kept up to date per change instead of recounted per call
        self._states: dict[Client, Counter[JobState]] = {s: Counter() for s in self.servers}
        self._counted: dict[int, tuple[Client, JobState]] = {}
        self._first_sent: dict[Client, float] = {}
        self._last_done: dict[Client, float] = {}
        self._finished = 0
        self.error: ComfyWidgetsError | None = None  # why the batch was refused, if it was
        self._open: set[Job] = set()  # sent and not done yet
        self._record()
        client.spawn(self._run())

    def __repr__(self) -> str:
        return (
            f"<Batch {self.id[:8]} {self.status.value}: "
            f"{self.completed_count}/{self.total} completed"
            f"{f', {self.failed_count} failed' if self.failed_count else ''}>"
        )

    # --- counts and views -------------------------------------------------------------------

    @functools.cached_property
    def plan(self) -> pd.DataFrame:
        """The plan as a DataFrame: batch_index and the varied values of every item."""
        return self.variation_plan.to_frame()

    @property
    def total(self) -> int:
        """Number of items in the plan."""
        return len(self._items)

    @property
    def plan_seed(self) -> int:
        """The seed random seeds were drawn from; pass it as ``plan_seed`` to get them again."""
        return self.variation_plan.plan_seed

    @property
    def varied(self) -> list[str]:
        """Names of the parameters that vary across items."""
        return self.variation_plan.varied

    @property
    def jobs(self) -> list[Job]:
        """The Jobs created so far, in item order (items not yet sent have none)."""
        return [job for job in self._jobs if job is not None]

    def _count(self, state: JobState) -> int:
        return sum(1 for job in self._jobs if job is not None and job.state == state)

    def job(self, index: int) -> Job | None:
        """The Job of item ``index`` (its latest attempt), or None if it was not sent yet."""
        return self._jobs[index]

    @property
    def completed_count(self) -> int:
        """Items that completed."""
        return self._count(JobState.COMPLETED)

    @property
    def failed_count(self) -> int:
        """Items that failed."""
        return self._count(JobState.FAILED)

    @property
    def cancelled_count(self) -> int:
        """Items cancelled, including those never sent because the batch was stopped."""
        never_sent = sum(1 for job in self._jobs if job is None) if self.done() else 0
        return self._count(JobState.CANCELLED) + never_sent

    @property
    def running_count(self) -> int:
        """Items running on a server now."""
        return self._count(JobState.RUNNING)

    def server_stats(self) -> list[ServerStats]:
        """Per server of the pool: items sent, running, queued, completed, failed, throughput."""
        stats = []
        for server in self.servers:
            states = self._states[server]
            completed = states[JobState.COMPLETED]
            first = self._first_sent.get(server)
            live = bool(self._live[server])
            end = time.monotonic() if live or first is None else self._last_done.get(server)
            span = (end - first) if first is not None and end is not None else 0.0
            stats.append(
                ServerStats(
                    url=server.url,
                    protocol=getattr(server, "protocol", "classic"),
                    sent=self._sent[server],
                    running=states[JobState.RUNNING],
                    queued=states[JobState.QUEUED] + states[JobState.PENDING],
                    completed=completed,
                    failed=states[JobState.FAILED],
                    down=server in self._down,
                    per_minute=60.0 * completed / span if span > 0 else 0.0,
                )
            )
        return stats

    def done(self) -> bool:
        """True once every item has finished (or was never sent because of a stop)."""
        return self._future.done()

    @property
    def df(self) -> ResultsFrame:
        """The results so far: one row per item, in batch_index order."""
        from comfy_widgets.results.frame import build_frame, columns_for

        rows = []
        for index in range(self.total):
            row = {"batch_id": self.id, "batch_index": index, **self.variation_plan.row(index)}
            row.update(self._item_columns(index))
            rows.append(row)
        return build_frame(rows, columns_for(self.variation_plan.columns))

    def _item_columns(self, index: int) -> dict[str, Any]:
        from comfy_widgets.results.frame import OutputRef, empty_row

        job = self._jobs[index]
        if job is None:
            return empty_row("cancelled" if self._stopping or self.done() else "pending")
        refs = self._refs.get(index)
        if refs is None:
            refs = [OutputRef.from_output(o, client=job.client) for o in job.outputs]
            if job.done():
                self._refs[index] = refs  # keep the thumbnails cache of finished items
        return job_row(job, refs)

    # --- observers --------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Batch], None]) -> Callable[[], None]:
        """Call ``callback(batch)`` (loop thread) after each item change; returns unsubscribe."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def subscribe_items(self, callback: Callable[[Batch, int | None], None]) -> Callable[[], None]:
        """Like ``subscribe``, with the index of the item that changed (None: the batch itself),
        so an observer does work for that item alone, not for the whole batch."""
        self._item_subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._item_subscribers:
                self._item_subscribers.remove(callback)

        return unsubscribe

    def _on_job(self, job: Job) -> None:
        """A job changed: free its server slot, count it once done, then tell subscribers.

        The slot is freed as soon as the server is through with the prompt (``finishing``:
        its outputs are being fetched and recorded), so the next item is queued while that
        happens and a fast server never waits for the client. An item whose server could not
        be reached goes back to the queue for another server, and that server gets no more
        items (as long as another one is left).
        """
        index = job.batch_index
        if index is not None and self._jobs[index] is job:
            self._count_state(index, job)
        live = self._live[job.client]
        wake = self._stopping  # stop_async waits for every job to be posted or done
        if (job.finishing or job.done()) and job.batch_index in live:
            live.discard(job.batch_index)
            wake = True
            self._hurry_last(job)
        if job.done() and job in self._open:
            self._open.discard(job)
            self._finished += 1
            wake = True
            self._last_done[job.client] = time.monotonic()
            if self._unreachable(job) and job.batch_index is not None:
                log.warning("%s is unreachable; its items go to the other servers", job.client.url)
                self._down.add(job.client)
                heapq.heappush(self._todo, job.batch_index)
        if wake:  # the send loop only cares about free slots and finished items
            self._wake.set()
        self._changed(job.batch_index)

    def _count_state(self, index: int, job: Job) -> None:
        """Count item ``index`` under its job's server and state (its previous count removed)."""
        counted = (job.client, job.state)
        old = self._counted.get(index)
        if old == counted:
            return
        if old is not None:
            self._states[old[0]][old[1]] -= 1
        self._counted[index] = counted
        self._states.setdefault(job.client, Counter())[job.state] += 1

    def _unreachable(self, job: Job) -> bool:
        """True when the job never reached its server (unreachable, or our credentials were
        refused: nothing ran) and another server is still up."""
        if (
            job.state != JobState.FAILED
            or job.posted
            or not isinstance(job.error, (ServerConnectionError, AuthenticationError))
        ):
            return False
        return any(s is not job.client and s not in self._down for s in self.servers)

    def _changed(self, index: int | None = None) -> None:
        """Tell subscribers; a batch-level change (no index) also wakes the send loop."""
        if index is None:
            self._wake.set()
        for callback in list(self._subscribers):
            try:
                callback(self)
            except Exception:
                log.exception("batch subscriber failed")
        for item_callback in list(self._item_subscribers):
            try:
                item_callback(self, index)
            except Exception:
                log.exception("batch subscriber failed")

    # --- preparing --------------------------------------------------------------------------

    def _prepare_item(self, values: dict[str, Any]) -> tuple[dict, dict, list]:
        """Validate one item: its API prompt, the values used and the images to upload."""
        merged, uploads = prepare_image_values(self._image_names, values)
        prompt = self.workflow.apply_shared(merged)  # items are read, never changed
        check_server_models(self.workflow, prompt)
        return prompt, merged, uploads

    def _record(self) -> None:
        """Record the batch and its whole plan before anything is queued (resume needs it)."""
        try:
            self.client.recorder.record_batch(
                BatchRecord(
                    id=self.id,
                    workflow=WorkflowRecord.of(self.workflow),
                    total_count=self.total,
                    state=self.status,
                    spec=self.variation_plan.describe(),
                    plan_seed=self.plan_seed,
                    plan=[values for _, values, _ in self._items],
                    prompts=[prompt for prompt, _, _ in self._items],
                    columns=self.variation_plan.columns,
                    servers=[server.url for server in self.servers],
                )
            )
        except Exception:
            log.exception("recording batch %s failed", self.id)

    def _store_status(self) -> None:
        try:
            self.client.recorder.set_batch_state(self.id, self.status)
        except Exception:
            log.exception("recording the state of batch %s failed", self.id)

    # --- running ----------------------------------------------------------------------------

    async def _run(self) -> None:
        """Send items in order while a server has a free slot; finish when all are done."""
        self._set_status(BatchState.RUNNING)
        # each server's socket opens while the models are checked, not after (every job
        # still waits for its own server's): a first batch starts a handshake sooner
        self._connecting = [asyncio.create_task(s.backend.wait_connected()) for s in self.servers]
        try:
            await self._check_models()
        except ParameterError as exc:
            await self._refuse(exc)
            return
        try:
            while True:
                await self._wait_until(lambda: self._stopping or self._idle() or self._sendable())
                if self._stopping or self._idle():
                    break
                server = min(self._open_servers(), key=self._load)
                self._send(heapq.heappop(self._todo), server)
            self._hurry_records()  # stopped: what is still open is the tail
            await self._wait_until(self._all_finished)
        except Exception:
            log.exception("batch %s stopped by an unexpected error", self.id)
            self._stopping = True
        self.status = self._final_status()
        self._future.set_result(None)  # before notifying, so subscribers see done()
        self._store_status()
        self._changed()
        await asyncio.gather(*(server.aclose() for server in self._owned))

    async def _check_models(self) -> None:
        """Check every item's model files against each server's lists, once, before queueing
        (when the workflow was not built with the server's object_info)."""
        prompts = [item[0] for item in self._items]
        for server in self.servers:
            try:
                await check_models_on_server(
                    self.workflow, prompts, server.models, server.models_seen
                )
            except ServerConnectionError:
                continue  # an unreachable server is handled when sending to it

    async def _refuse(self, error: ComfyWidgetsError) -> None:
        """End the batch before anything was queued: every item cancelled, the error raised
        by ``await batch`` / ``batch.result()``."""
        self.error = error
        self._todo = []
        self.status = BatchState.FAILED
        self._future.set_exception(error)
        self._store_status()
        self._changed()
        await asyncio.gather(*(server.aclose() for server in self._owned))

    def _all_finished(self) -> bool:
        return self._finished == sum(self._sent.values())

    def _idle(self) -> bool:
        """Nothing left to send and nothing in flight."""
        return not self._todo and self._all_finished()

    def _sendable(self) -> bool:
        return bool(self._todo) and bool(self._open_servers())

    def _open_servers(self) -> list[Client]:
        """Servers that are up and have a free slot."""
        return [s for s in self.servers if s not in self._down and self._busy(s) < self.concurrency]

    def _busy(self, server: Client) -> int:
        """How many of our items occupy ``server``: this batch's in flight, or, for a backend
        that counts them (v2: every unfinished job of ours, other batches' too), that count."""
        own = getattr(server.backend, "unfinished_jobs", 0)
        return max(len(self._live[server]), int(own))

    def _load(self, server: Client) -> tuple[int, int]:
        """Busy slots first, then items sent so far, so equal servers take turns."""
        return self._busy(server), self._sent[server]

    def _send(self, index: int, server: Client) -> None:
        prompt, values, uploads = self._items[index]
        job = server.submit(
            prompt,
            workflow=self.workflow,
            parameters=values,
            uploads=uploads,
            batch_id=self.id,
            batch_index=index,
        )
        self._jobs[index] = job
        self._pace_records(job)
        self._count_state(index, job)
        self._refs.pop(index, None)  # a re-sent item's earlier attempt
        self._live[server].add(index)
        self._open.add(job)
        self._sent[server] += 1
        self._first_sent.setdefault(server, time.monotonic())
        job.subscribe(self._on_job)
        if job.done():  # finished before we subscribed (e.g. failed at once)
            self._on_job(job)
        self._changed(index)

    def _pace_records(self, job: Job) -> None:
        """While more items are to be sent, a finished item's record may wait longer for
        others to share its write (nobody waits for it); once the last is sent, every item
        still open is in the batch's tail, whose end waits for its records."""
        if self._todo and not self._stopping:
            job.final_record_wait = GATHER_MORE_S
        else:
            self._hurry_records()

    def _hurry_records(self) -> None:
        """Every item still open is in the batch's tail: its final record waits the least."""
        for job in self._open:
            job.final_record_wait = None

    def _hurry_last(self, job: Job) -> None:
        """The batch's last item to finish has no record left to share a write with: its
        final record is written at once (``await batch`` waits for it)."""
        if not self._todo and not any(self._live.values()):  # nothing sent is still running
            job.final_record_wait = 0.0

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait on the loop until ``predicate()`` holds (re-checked after every change)."""
        while not predicate():
            self._wake.clear()
            await self._wake.wait()

    def _set_status(self, status: BatchState) -> None:
        self.status = status
        self._store_status()
        self._changed()

    def _final_status(self) -> BatchState:
        """completed, failed (nothing completed), partial, or cancelled (stopped early)."""
        states = [job.state if job is not None else JobState.CANCELLED for job in self._jobs]
        if self._stopping and JobState.CANCELLED in states:
            return BatchState.CANCELLED
        if all(s == JobState.COMPLETED for s in states):
            return BatchState.COMPLETED
        if JobState.COMPLETED not in states:
            return BatchState.FAILED
        return BatchState.PARTIAL

    # --- stopping ---------------------------------------------------------------------------

    def stop(self, interrupt: bool = False) -> concurrent.futures.Future[None]:
        """Stop remaining items from any thread: nothing more is sent, queued items are deleted.

        Items already running finish, unless ``interrupt=True``. Returns a future that resolves
        once the servers have been told (``await batch.stop_async()`` inside a loop).
        """
        self._stopping = True
        return self.client.spawn(self.stop_async(interrupt))

    async def stop_async(self, interrupt: bool = False) -> None:
        """Stop remaining items and wait until the servers have been told (see ``stop``)."""
        self._stopping = True
        self._changed()
        await self._wait_until(lambda: all(j is None or j.posted or j.done() for j in self._jobs))
        live = [j for j in self._jobs if j is not None and not j.done()]
        by_server: dict[Client, list[Job]] = {}
        for job in live:
            by_server.setdefault(job.client, []).append(job)
        await asyncio.gather(*(self._stop_on(s, jobs, interrupt) for s, jobs in by_server.items()))

    async def _stop_on(self, server: Client, jobs: list[Job], interrupt: bool) -> None:
        """Delete this server's queued items, settle them, and interrupt running ones if asked."""
        queued = [j for j in jobs if j.state == JobState.QUEUED]
        if queued:
            try:
                await server.backend.delete_queued([j.prompt_id for j in queued])
                await server.backend.reconcile(queued, lost=LostPolicy.CANCEL)
            except ServerConnectionError as exc:
                log.warning(
                    "cancelling %d queued item(s) locally, %s is unreachable: %s",
                    len(queued),
                    server.url,
                    exc,
                )
                await asyncio.gather(*(j.finish(JobState.CANCELLED) for j in queued))
        if interrupt:
            running = [j for j in jobs if not j.done()]
            await asyncio.gather(*(j.cancel_async() for j in running))

    # --- results ----------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, ResultsFrame]:
        """Wait for every item and give the results DataFrame; interrupting the wait leaves
        the batch running (one line says so and how to stop it, see ``engine.waiting``)."""
        return self._frame_when_done().__await__()

    async def _frame_when_done(self) -> ResultsFrame:
        await self.wait()
        return self.df

    async def wait(self) -> None:
        """Wait until every item is done, without building the results DataFrame."""
        await wait_detached(self._future, self._interrupted_notice)

    def _interrupted_notice(self) -> str:
        done = sum(1 for j in self._jobs if j is not None and j.done())
        return (
            f"Stopped waiting: batch {self.id} keeps running in the background ({done}/"
            f"{self.total} done). batch.stop() stops it; `await batch` waits again."
        )

    def result(self, timeout: float | None = None) -> ResultsFrame:
        """Block until every item is done (plain scripts); inside a running loop ``await batch``."""
        if running_loop() is not None:
            raise BlockingCallError(
                "batch.result() would block the running event loop; use `await batch` instead"
            )
        try:
            self._future.result(timeout)
            return self.df
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"batch {self.id} not done after {timeout} s") from None

    def export(self, folder: str | Path, **kwargs: Any) -> Path:
        """Write the results (CSV/Parquet, output files, grid.png, index.html) to ``folder``."""
        from comfy_widgets.results.export import export_batch

        return export_batch(self.df, folder, store=self.client.store, **kwargs)

    def _repr_html_(self) -> str:
        """A static summary; in IPython the live batch view is shown instead (the display
        formatters ``comfy_widgets`` registers for Batch, see ``comfy_widgets.widgets.display``)."""
        return f"<div>{html.escape(repr(self))}</div>"


def job_row(job: Job, outputs: list[OutputRef]) -> dict[str, Any]:
    """The columns a Job fills: prompt id, server, status, outputs, timings and error."""
    from comfy_widgets.results.frame import timestamp as _timestamp

    timings = job.timings
    started, finished = timings.get("started_at"), timings.get("finished_at")
    images = [o for o in outputs if o.kind == "image"]
    return {
        "prompt_id": job.prompt_id,
        "server": job.client.url,
        "status": job.state.value,
        "image": images[0] if images else None,
        "outputs": outputs,
        "queued_at": _timestamp(timings.get("queued_at")),
        "started_at": _timestamp(started),
        "finished_at": _timestamp(finished),
        "duration_s": (finished - started) if started and finished else None,
        "error": job.error_message,
    }


def _server_clients(client: Client, servers: Sequence[Client | str] | None) -> list[Client]:
    """The pool: ``client`` alone, or the given Clients and URLs (URLs share client's Recorder).

    Clients made here for URLs are closed (WebSocket and HTTP) when the batch ends; their
    OutputRefs reopen HTTP on demand.
    """
    if not servers:
        return [client]
    pool = [client.for_server(s) if isinstance(s, str) else s for s in servers]
    return list(dict.fromkeys(pool))
