"""``V2Backend``: the engine's ``Backend`` over Comfy API v2 (Comfy Cloud, comfy-api-proxy).

The engine names prompts by its own ids; v2 names jobs by server-made ids. The backend keeps the
map, sends each prompt with the Idempotency-Key ``cw-<prompt_id>`` (``-<n>`` for the n-th
resubmit of a prompt the server lost) and the label ``comfy_widgets:<prompt_id>`` as the job's
``metadata``, so a lost answer or a new kernel finds the job instead of running it twice.

Per watched job one task follows it (``follow_job``): SSE events become the engine's events
(running, node, step, preview), polls set running/queue position, and the job read back at the
end becomes a ``PromptOutcome`` for ``watcher.apply_outcome``. Outputs are v2 assets: their
refs are ``V2FileRef`` (an ``OutputFileRef`` carrying the asset URL) and ``fetch_output`` reads
them from the server. Images uploaded by ``upload_image`` become ``core/ASSET`` references in
the prompts that name them. v2 serves no ``object_info``: the bundled snapshot stands in.

As ``ClassicBackend`` does, all I/O runs on one event loop (the one running when the backend
was made, the kernel's in Jupyter, else the shared background loop), so the engine's Client
facade can hold either backend. ``url`` is the server's v2 URL (``…/api/v2``, no credentials):
that is what the store records, and ``cw.connect`` of it speaks v2 again (resume, rerun).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from comfy_widgets.errors import (
    ComfyWidgetsError,
    HTTPStatusError,
    ServerConnectionError,
    ServerError,
    SubmitOutcomeUnknownError,
)
from comfy_widgets.loops import LoopBound, running_loop, within
from comfy_widgets.states import JobState
from comfy_widgets.transport.backend import (
    LostPolicy,
    NodeOutput,
    PromptOutcome,
    PromptWatcher,
    QueuedPrompt,
    QueueState,
    Submitted,
)
from comfy_widgets.transport.events import (
    ExecutingEvent,
    ExecutionErrorEvent,
    ExecutionStartEvent,
    PreviewEvent,
    ProgressEvent,
)
from comfy_widgets.transport.outputs import OutputFileRef
from comfy_widgets.transport.uploads import PendingUpload, pending_upload
from comfy_widgets.transport.v2 import (
    API,
    PreviewImage,
    ProgressUpdate,
    StatusChange,
    V2Asset,
    V2Client,
    V2Event,
    V2Job,
    V2Status,
    _segment,
    follow_job,
)

if TYPE_CHECKING:
    from comfy_widgets.workflow.object_info import ObjectInfo

log = logging.getLogger(__name__)

LABEL = "comfy_widgets:"


@dataclass(frozen=True)
class V2FileRef(OutputFileRef):
    """An output file that lives as a v2 asset: ``url`` is where its bytes are."""

    asset_id: str = ""
    url: str = ""


def _key(prompt_id: str, attempt: int) -> str:
    return f"cw-{prompt_id}" if attempt <= 1 else f"cw-{prompt_id}-{attempt}"


def _label(prompt_id: str, attempt: int) -> str:
    return LABEL + prompt_id if attempt <= 1 else f"{LABEL}{prompt_id}#{attempt}"


def _prompt_id_of(job: V2Job) -> str:
    """Our prompt id of a job (from its label), or the job id for jobs we did not send."""
    if job.metadata and job.metadata.startswith(LABEL):
        return job.metadata[len(LABEL) :].split("#", 1)[0]
    return job.id


def _outcome(prompt_id: str, job: V2Job, cancel_requested: bool) -> PromptOutcome:
    """A finished v2 job as the engine's PromptOutcome."""
    if job.status is V2Status.SUCCEEDED:
        by_node: dict[str, list[V2FileRef]] = {}
        for out in job.outputs:
            ref = V2FileRef(out.node_id, out.name, "", "output", out.id, out.url)
            by_node.setdefault(out.node_id, []).append(ref)
        outputs = tuple(NodeOutput(node, tuple(refs)) for node, refs in by_node.items())
        return PromptOutcome(prompt_id, JobState.COMPLETED, outputs)
    if job.status is V2Status.CANCELED or (
        job.status is V2Status.EXPIRED and cancel_requested
    ):  # a cancelled queued job leaves ComfyUI without a history entry: the proxy says expired
        return PromptOutcome(prompt_id, JobState.CANCELLED)
    if job.status is V2Status.FAILED and job.error is not None:
        error = ExecutionErrorEvent(
            prompt_id,
            job.error.node_id,
            job.error.class_type,
            job.error.message,
            job.error.code,
            (job.error.traceback,) if job.error.traceback else (),
        )
        return PromptOutcome(prompt_id, JobState.FAILED, error=error, message=job.error.message)
    return PromptOutcome(
        prompt_id, JobState.FAILED, message=f"the v2 server reports the job {job.status}"
    )


class _Translator:
    """Turns one job's v2 events into the engine's events, for one watcher."""

    def __init__(self, watcher: PromptWatcher) -> None:
        self.watcher = watcher
        self.node: str | None = None
        self.started = False

    def on_event(self, event: V2Event) -> None:
        pid = self.watcher.prompt_id
        if isinstance(event, StatusChange):
            if event.status in (V2Status.RUNNING, V2Status.CANCELING):
                self._start()
            elif event.status is V2Status.QUEUED and event.queue_position is not None:
                self.watcher.set_queue_position(max(0, event.queue_position - 1))
        elif isinstance(event, ProgressUpdate):
            self._start()
            p = event.progress
            if p.current_node and p.current_node != self.node:
                self.node = p.current_node
                self.watcher.handle_event(ExecutingEvent(pid, p.current_node))
            if p.current_node and p.step is not None and p.steps:
                self.watcher.handle_event(ProgressEvent(pid, p.current_node, p.step, p.steps))
        elif isinstance(event, PreviewImage):
            self.watcher.handle_event(
                PreviewEvent(pid, event.image, event.content_type, event.node_id)
            )

    def on_poll(self, job: V2Job) -> None:
        if job.status in (V2Status.RUNNING, V2Status.CANCELING):
            self._start()
        elif job.status is V2Status.QUEUED and job.queue_position is not None:
            self.watcher.set_queue_position(max(0, job.queue_position - 1))

    def _start(self) -> None:
        if not self.started:
            self.started = True
            self.watcher.handle_event(ExecutionStartEvent(self.watcher.prompt_id, None))


class V2Backend(LoopBound):
    """Runs prompts on one Comfy API v2 server (``Backend``); coroutines run on one loop."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        client: V2Client | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self._api_key = api_key  # kept only to open a new V2Client when the loop changes
        self._own_client = client is None
        self.client = client or V2Client(url, api_key=api_key)
        self.url = self.client.url + API
        self.client_id = str(uuid.uuid4())  # v2 has no client id; kept for the Client facade
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = running_loop()
        self._healthy = False
        self._jobs: dict[str, str] = {}  # prompt id -> v2 job id
        self._attempts: dict[str, int] = {}
        self._watchers: dict[str, PromptWatcher] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._uploads: dict[str, V2Asset] = {}
        self._cancelled: set[str] = set()

    def __repr__(self) -> str:
        return f"V2Backend({self.url!r})"

    # --- event loop (LoopBound) ----------------------------------------------------------------

    def _rebind(self) -> None:
        """The HTTP client's connections and the event followers died with the previous loop."""
        if self._loop is not None and self._own_client:
            self.client = V2Client(self.client.url, api_key=self._api_key)
        self._followers = {}
        self._healthy = False

    @property
    def protocol(self) -> str:
        """``"v2"``: the protocol this backend speaks."""
        return "v2"

    @property
    def unfinished_jobs(self) -> int:
        """Jobs of ours this backend follows that have not ended (a pool's load figure: v2
        servers do not say how busy they are, and listing their jobs is expensive)."""
        return sum(1 for w in self._watchers.values() if not w.done())

    def request_headers(self) -> dict[str, str]:
        """No headers: the API key never leaves this backend (outputs: ``fetch_output``)."""
        return {}

    @property
    def posting(self) -> bool:
        """Always False: submits do not hold up anything else."""
        return False

    # --- submitting ----------------------------------------------------------------------------

    async def submit(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        *,
        front: bool = False,  # v2 has no queue front (its priority is advisory): ignored
        extra_data: dict[str, Any] | None = None,
    ) -> Submitted:
        """Queue ``prompt`` as a v2 job, once, under our ``prompt_id``.

        A server that has never answered is refused at once (nothing can have been sent, so a
        pool routes the item elsewhere); one that answered before and drops is retried (a
        restart), the Idempotency-Key keeping the item from running twice.
        """
        if not await self.wait_connected():
            raise ServerConnectionError(f"the v2 server {self.url} does not answer")
        attempt = self._attempts.get(prompt_id, 0) + 1
        self._attempts[prompt_id] = attempt
        # v2's extra_data is closed: only the partner-node key rides along (no extra_pnginfo)
        extra = {k: v for k, v in (extra_data or {}).items() if k == "api_key_comfy_org"}
        try:
            job = await self.client.submit(
                self._with_assets(prompt),
                idempotency_key=_key(prompt_id, attempt),
                metadata=_label(prompt_id, attempt),
                extra_data=extra or None,
            )
        except SubmitOutcomeUnknownError as exc:
            # The server holds the key but lists no job (a proxy killed between taking the key
            # and recording the job): whether it ran cannot be known through v2. Not sent
            # again (it could run twice); the item is ``lost``, which resume can requeue.
            watcher = self._watchers.get(prompt_id)
            if watcher is not None:
                await watcher.finish(JobState.LOST, exc)
            raise
        self._jobs[prompt_id] = job.id
        self._cancelled.discard(prompt_id)
        watcher = self._watchers.get(prompt_id)
        if watcher is not None:
            self._follow(watcher, job.id)
        return Submitted(prompt_id, None)

    def _with_assets(self, prompt: dict[str, Any]) -> dict[str, Any]:
        """The prompt with every input naming an uploaded image replaced by its asset ref."""
        if not self._uploads:
            return prompt
        out: dict[str, Any] = {}
        for node_id, node in prompt.items():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            if not isinstance(inputs, dict):
                out[node_id] = node
                continue
            new_inputs = {
                k: self._uploads[v].ref if isinstance(v, str) and v in self._uploads else v
                for k, v in inputs.items()
            }
            out[node_id] = {**node, "inputs": new_inputs}
        return out

    async def upload_image(self, image: Any, data: bytes | None = None) -> str:
        """Upload once (content-addressed) as a v2 asset; prompts keep naming it by its name.

        ``image`` is a file name with its ``data`` (the Backend form), or a PIL image, path,
        numpy array or bytes (the Client form, named by content)."""
        upload = PendingUpload(str(image), data) if data is not None else pending_upload(image)
        return await self.ensure_uploaded(upload)

    async def ensure_uploaded(self, upload: PendingUpload) -> str:
        """Upload ``upload`` unless done (the client skips content the server already has)."""
        if not self.on_loop_thread():
            return str(await self._on_loop(self.ensure_uploaded(upload)))
        if upload.name not in self._uploads:
            self._uploads[upload.name] = await self.client.upload(upload.name, upload.data)
        return upload.name

    def forget_uploads(self) -> None:
        """Forget the name -> asset map (uploads are content-addressed: a re-upload is cheap)."""
        self._uploads = {}

    # --- following -----------------------------------------------------------------------------

    def watch(self, watcher: PromptWatcher) -> None:
        """Route the job's events to ``watcher``; follow it now if it is already on the server."""
        self._watchers[watcher.prompt_id] = watcher
        job_id = self._jobs.get(watcher.prompt_id)
        if job_id is not None:
            self._follow(watcher, job_id)
        elif watcher.posted:  # adopted by resume: find its job by label
            self._spawn(watcher.prompt_id, self._adopt(watcher))

    def unwatch(self, watcher: PromptWatcher) -> None:
        """Stop following; the follow task ends itself if it is the caller."""
        self._watchers.pop(watcher.prompt_id, None)
        task = self._followers.pop(watcher.prompt_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _follow(self, watcher: PromptWatcher, job_id: str, *, use_sse: bool = True) -> None:
        running = self._followers.get(watcher.prompt_id)
        if running is not None and not running.done():
            return
        self._spawn(watcher.prompt_id, self._run_follower(watcher, job_id, use_sse))

    def _spawn(self, prompt_id: str, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._followers[prompt_id] = task

    async def _adopt(self, watcher: PromptWatcher) -> None:
        job = await self._find(watcher.prompt_id)
        if job is None:
            await watcher.finish(JobState.LOST)
            return
        self._jobs[watcher.prompt_id] = job.id
        self._followers.pop(watcher.prompt_id, None)
        self._follow(watcher, job.id)

    async def _run_follower(self, watcher: PromptWatcher, job_id: str, use_sse: bool) -> None:
        translator = _Translator(watcher)
        try:
            final = await follow_job(
                self.client,
                job_id,
                translator.on_event,
                on_poll=translator.on_poll,
                use_sse=use_sse,
                poll_interval=self.poll_interval,
            )
        except asyncio.CancelledError:
            raise
        except ComfyWidgetsError as exc:
            log.warning("following v2 job %s of %s failed: %s", job_id, watcher.prompt_id, exc)
            if not watcher.done():
                await watcher.finish(JobState.FAILED, exc)
            return
        if self._jobs.get(watcher.prompt_id) != job_id:
            return  # resubmitted meanwhile: a newer follower owns the watcher
        outcome = _outcome(watcher.prompt_id, final, self._cancel_asked(watcher))
        if not watcher.done():
            await watcher.apply_outcome(outcome)

    # --- cancelling ----------------------------------------------------------------------------

    async def _cancel(self, prompt_id: str) -> None:
        job_id = self._jobs.get(prompt_id)
        if job_id is None or prompt_id in self._cancelled:
            return
        self._cancelled.add(prompt_id)
        try:
            await self.client.cancel(job_id)
        except HTTPStatusError as exc:
            if exc.status_code != 404:
                self._cancelled.discard(prompt_id)
                raise
        self._poll_only(prompt_id, job_id)

    def _cancel_asked(self, watcher: PromptWatcher) -> bool:
        """True if the job was cancelled: by its watcher, or through this backend (a batch's
        stop deletes queued items without marking them; v2 then reports them ``expired``)."""
        return watcher.cancel_requested or watcher.prompt_id in self._cancelled

    def _poll_only(self, prompt_id: str, job_id: str) -> None:
        """Follow a cancelled job by polling: a job cancelled while queued leaves ComfyUI
        without a terminal event, so its stream would only end at the proxy's next
        keep-alive check (15 s)."""
        watcher = self._watchers.get(prompt_id)
        task = self._followers.pop(prompt_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if watcher is not None and not watcher.done():
            self._follow(watcher, job_id, use_sse=False)

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Cancel the job of ``prompt_id``, or every running job of ours."""
        if prompt_id is not None:
            await self._cancel(prompt_id)
            return
        for job in await self.client.list_jobs(status="running"):
            pid = _prompt_id_of(job)
            if self._jobs.get(pid) == job.id:
                await self._cancel(pid)

    async def delete_queued(self, prompt_ids: Iterable[str]) -> None:
        """Cancel these jobs (v2 has one cancel for queued and running)."""
        for prompt_id in prompt_ids:
            await self._cancel(prompt_id)

    async def cancel(self, prompt_id: str) -> None:
        """Cancel one job, queued or running (``Backend.cancel``: v2's one cancel)."""
        await self._cancel(prompt_id)

    # --- the server's view ---------------------------------------------------------------------

    async def queue_state(self) -> QueueState:
        """Running and queued jobs, queued ones in their order."""
        jobs = await self.client.list_jobs(status="queued,running")
        running = [j for j in jobs if j.status is V2Status.RUNNING]
        pending = sorted(
            (j for j in jobs if j.status is V2Status.QUEUED),
            key=lambda j: j.queue_position if j.queue_position is not None else 1 << 30,
        )
        return QueueState(
            tuple(QueuedPrompt(_prompt_id_of(j), 0.0) for j in running),
            tuple(QueuedPrompt(_prompt_id_of(j), float(i)) for i, j in enumerate(pending)),
        )

    async def _find(self, prompt_id: str) -> V2Job | None:
        """The latest job labelled with ``prompt_id`` (after a kernel restart: no map)."""
        for job in await self.client.list_jobs(limit=100):
            if _prompt_id_of(job) == prompt_id and job.metadata:
                return job
        return None

    async def _job_of(self, prompt_id: str) -> V2Job | None:
        job_id = self._jobs.get(prompt_id)
        if job_id is None:
            found = await self._find(prompt_id)
            if found is None:
                return None
            self._jobs[prompt_id] = job_id = found.id
        try:
            return await self.client.get_job(job_id)
        except HTTPStatusError as exc:
            if exc.status_code == 404:
                return None
            raise

    async def outcome(self, prompt_id: str) -> PromptOutcome | None:
        """How the job of ``prompt_id`` ended, or None (unknown or not finished)."""
        job = await self._job_of(prompt_id)
        if job is None or not job.status.terminal:
            return None
        return _outcome(prompt_id, job, prompt_id in self._cancelled)

    async def outcomes(self, max_items: int | None = None) -> dict[str, PromptOutcome]:
        """The finished jobs the server lists (at most 100, its page size)."""
        limit = max(1, min(100, max_items or 100))
        found: dict[str, PromptOutcome] = {}
        for job in await self.client.list_jobs(limit=limit):
            if job.status.terminal:
                pid = _prompt_id_of(job)
                found.setdefault(pid, _outcome(pid, job, pid in self._cancelled))
        return found

    async def reconcile(self, watchers: Sequence[PromptWatcher], *, lost: LostPolicy) -> None:
        """Bring watchers up to date from the jobs' state on the server."""
        for watcher in watchers:
            if watcher.done() or not watcher.posted:
                continue
            job = await self._job_of(watcher.prompt_id)
            if job is None:
                if lost is LostPolicy.RESUBMIT:
                    await watcher.resubmit()
                else:
                    await watcher.finish(JobState.CANCELLED)
                continue
            if job.status.terminal:
                await watcher.apply_outcome(
                    _outcome(watcher.prompt_id, job, self._cancel_asked(watcher))
                )
            elif job.status in (V2Status.RUNNING, V2Status.CANCELING):
                watcher.mark_running()
            elif job.queue_position is not None:
                watcher.set_queue_position(max(0, job.queue_position - 1))

    def request_queue_refresh(self) -> None:
        """Nothing to do: each followed job polls its own place."""

    async def fetch_output(self, ref: OutputFileRef) -> bytes:
        """The bytes of one output asset (its URL may be short-lived: then by asset id)."""
        if isinstance(ref, V2FileRef) and ref.url:
            try:
                return await self.client.fetch(ref.url)
            except HTTPStatusError as exc:
                if not ref.asset_id or exc.status_code not in (403, 404, 410):
                    raise
                return await self.client.fetch(f"/assets/{_segment(ref.asset_id)}/content")
        raise ServerError(
            f"output {ref.filename!r} of node {ref.node_id} has no v2 asset URL "
            "(read the job again to get one)"
        )

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """v2 serves no node definitions: the bundled snapshot (for client-side conversion)."""
        from comfy_widgets.workflow.object_info import _bundled

        raw = _bundled().raw
        if node_class is None:
            return raw
        return {node_class: raw[node_class]} if node_class in raw else {}

    @property
    def cached_object_info(self) -> ObjectInfo | None:
        """None: workflows keep the object_info they were loaded with (the bundled one)."""
        return None

    async def get_object_info(self) -> ObjectInfo:
        """The bundled object_info (v2 serves none; the server checks the workflow itself)."""
        from comfy_widgets.workflow.object_info import _bundled

        return _bundled()

    async def models(self, folder: str | None = None) -> list[str]:
        """v2 lists no model folders: always empty."""
        return []

    async def wait_connected(self, timeout: float = 5.0) -> bool:
        """True once the server answered its health probe (each job opens its own stream)."""
        if self._healthy:
            return True
        try:
            self._healthy = await within(timeout, self.client.health())
        except (asyncio.TimeoutError, ComfyWidgetsError):
            return False
        return self._healthy

    # --- what the Client facade offers that v2 answers differently or not at all ---------------

    async def queue_prompt(
        self,
        prompt: dict[str, Any],
        *,
        prompt_id: str | None = None,
        front: bool = False,
        extra_data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Submit ``prompt`` as a v2 job; the answer in ``POST /prompt``'s shape."""
        pid = prompt_id or str(uuid.uuid4())
        await self._on_loop(self.submit(prompt, pid, front=front, extra_data=extra_data))
        return {"prompt_id": pid, "number": None, "node_errors": {}}

    async def system_stats(self) -> dict[str, Any]:
        """What a v2 server says of itself: only whether it is healthy."""
        healthy = await self._on_loop(self.client.health())
        return {"system": {"comfy_api": "v2", "healthy": bool(healthy)}, "devices": []}

    async def features(self) -> dict[str, Any]:
        """No ``/features`` on v2: an empty answer."""
        return {}

    def _unsupported(self, what: str) -> ComfyWidgetsError:
        return ComfyWidgetsError(
            f"{what} is a call of the classic ComfyUI protocol; {self.url} speaks Comfy API v2 "
            "(use client.run / client.batch, job.cancel(), and the job's outputs)"
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Not on v2: raw requests would need the API key outside this backend."""
        raise self._unsupported(f"request({method} {path})")

    async def get_queue(self) -> dict[str, Any]:
        """Not on v2 (``queue_state`` gives running and queued jobs)."""
        raise self._unsupported("get_queue()")

    async def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None
    ) -> dict[str, Any]:
        """Not on v2 (``outcome`` / ``outcomes`` give finished jobs)."""
        raise self._unsupported("get_history()")

    async def clear_queue(self) -> None:
        """Not on v2: a shared server's queue is not ours to clear (cancel our jobs instead)."""
        raise self._unsupported("clear_queue()")

    async def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """Not on v2: outputs are assets, read through the job (``fetch_output``)."""
        raise self._unsupported(f"view({filename!r})")

    @property
    def monitor(self) -> Any:
        """Not on v2: there is no WebSocket, each job has its event stream."""
        raise self._unsupported("the WebSocket monitor")

    # --- lifetime -----------------------------------------------------------------------------

    async def _aclose_here(self) -> None:
        tasks = list(self._followers.values())
        self._followers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.aclose()
        if self._own_client:  # a closed httpx client cannot be reused: ready a fresh one
            self.client = V2Client(self.client.url, api_key=self._api_key)
        self._healthy = False
