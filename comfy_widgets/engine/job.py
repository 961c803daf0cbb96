"""A Job follows one prompt from POST to outputs: state, progress, nodes, queue position, previews.

Every mutation happens on the client's event loop; ``cancel()``, ``result()`` and ``await job``
are safe from any thread or loop. The prompt_id is chosen here, before POSTing, so the monitor
routes even the earliest message to this job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import html
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from comfy_widgets.engine.progress import ProgressTracker
from comfy_widgets.engine.recording import record_soon
from comfy_widgets.engine.waiting import wait_detached
from comfy_widgets.errors import (
    BlockingCallError,
    ComfyWidgetsError,
    ExecutionError,
    JobCancelledError,
    PromptValidationError,
    ServerConnectionError,
)
from comfy_widgets.loops import running_loop
from comfy_widgets.records import GenerationRecord, Recorder, WorkflowRecord, clean_url
from comfy_widgets.states import JobState, NodeState
from comfy_widgets.transport.backend import Backend, LostPolicy, NodeOutput, PromptOutcome
from comfy_widgets.transport.events import (
    Event,
    ExecutedEvent,
    ExecutingEvent,
    ExecutionCachedEvent,
    ExecutionErrorEvent,
    ExecutionInterruptedEvent,
    ExecutionStartEvent,
    ExecutionSuccessEvent,
    PreviewEvent,
    ProgressEvent,
    ProgressStateEvent,
    TextEvent,
)
from comfy_widgets.transport.outputs import Output, OutputFileRef, output_from_file, text_output
from comfy_widgets.workflow.workflow import Workflow
from comfy_widgets.workflow.writeback import ui_graph_for

if TYPE_CHECKING:
    from comfy_widgets.engine.client import Client
    from comfy_widgets.transport.uploads import PendingUpload

log = logging.getLogger(__name__)

TERMINAL_STATES = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)
# After execution_success, /history is complete once the following executing-null arrives;
# if that frame never comes (socket trouble), finish from /history after this delay.
SUCCESS_GRACE_S = 2.0
_IGNORED = object()  # what an event handler answers when the event changed nothing
LOST_MESSAGE = "not in the server's queue or history"
# Guards making a job's future on first wait against the loop settling the job meanwhile.
_FUTURE_LOCK = threading.Lock()


@dataclass
class JobNode:
    """One node of the prompt as seen so far."""

    node_id: str
    title: str
    class_type: str
    state: NodeState = NodeState.PENDING
    value: float = 0.0
    max: float = 1.0
    started_at: float | None = None
    finished_at: float | None = None
    text: str | None = None

    @property
    def fraction(self) -> float:
        """How far this node is, 0..1 (cached and done nodes count as 1)."""
        if self.state in (NodeState.CACHED, NodeState.DONE):
            return 1.0
        if self.state != NodeState.RUNNING or self.max <= 0:
            return 0.0
        return max(0.0, min(1.0, self.value / self.max))


@dataclass
class JobResult:
    """What a finished job produced, with what made it."""

    prompt_id: str
    status: JobState
    outputs: list[Output]
    parameters: dict[str, Any]
    prompt: dict[str, Any]
    timings: dict[str, float | None]
    job: Job = field(repr=False)

    @property
    def images(self) -> list[Image.Image]:
        """Every image output, decoded on first access (a 1,000-item batch keeps only bytes)."""
        return [o.image for o in self.outputs if o.kind == "image" and o.image is not None]


def _nodes_of(prompt: dict[str, Any]) -> dict[str, JobNode]:
    nodes = {}
    for node_id, node in prompt.items():
        class_type = str(node.get("class_type", "")) if isinstance(node, dict) else ""
        meta = node.get("_meta") if isinstance(node, dict) else None
        title = meta.get("title") if isinstance(meta, dict) else None
        nodes[str(node_id)] = JobNode(str(node_id), str(title or class_type), class_type)
    return nodes


class Job:
    """One prompt on one server: awaitable, observable, cancellable.

    The one job type of the engine: ``client.run``/``submit`` make one, each batch item is one,
    and ``resume`` adopts a recorded prompt id as one (``adopt``). It is the ``PromptWatcher``
    its backend routes events to, and it records itself through the client's Recorder.
    """

    def __init__(
        self,
        client: Client,
        prompt: dict[str, Any],
        *,
        workflow: Workflow | WorkflowRecord | None = None,
        parameters: dict[str, Any] | None = None,
        uploads: list[PendingUpload] | None = None,
        batch_id: str | None = None,
        batch_index: int | None = None,
        front: bool = False,
        prompt_id: str | None = None,
        recorder: Recorder | None = None,
    ):
        self.prompt_id = prompt_id or str(uuid.uuid4())
        self.client = client
        self.recorder: Recorder = recorder if recorder is not None else client.recorder
        self.workflow = workflow
        self.parameters: dict[str, Any] = dict(parameters or {})
        self.prompt = prompt
        self.batch_id = batch_id
        self.batch_index = batch_index
        self.front = front
        self.uploads = list(uploads or [])
        self.state = JobState.PENDING
        self._progress = 0.0
        self._progress_stale = False
        self._has_progress_state = False
        self.current_node: str | None = None
        self.nodes = _nodes_of(prompt)
        self._tracker: ProgressTracker | None = None  # made by the first event (``_steps``)
        self.queue_position: int | None = None
        self.number: float | None = None
        self.preview: bytes | None = None
        self.preview_mime: str | None = None
        self.preview_node: str | None = None
        self.outputs: list[Output] = []
        self.error: ComfyWidgetsError | None = None
        self.timings: dict[str, float | None] = {
            "created_at": time.time(),
            "queued_at": None,
            "started_at": None,
            "finished_at": None,
        }
        self.posted = False
        self.frames_missed = False  # set by the backend on a reconnect: the server has outputs
        self.cancel_requested = False
        self._adopted = False  # a prompt another kernel sent (resume): its events never reach us
        self._ui_graph: dict[str, Any] | None = None
        self._workflow_record: WorkflowRecord | None = None
        self._node_outputs: dict[str, NodeOutput] = {}
        self._succeeded = False
        self._finishing = False
        # made on the first wait (``_outcome``): most batch items are never awaited one by one,
        # and a future (with its condition and lock) is a dozen more objects per finished item
        # for the garbage collector to walk
        self._future: concurrent.futures.Future[JobResult] | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._done = False
        self._subscribers: list[Callable[[Job], None]] = []
        self._deferred_records: list[JobState] = []
        # how long the final record may wait for others to share its write (None: the
        # writer's GATHER_S); a batch lets its items wait longer while more are coming
        self.final_record_wait: float | None = None
        self._tasks: set[Any] = set()  # strong references: the loop keeps only weak ones
        self._history_check: asyncio.Task[None] | None = None

    @property
    def progress(self) -> float:
        """Percent done, 0..100: weighted by node, samplers by their steps, monotone, below 100
        until the end (``comfy_widgets.engine.progress``). Worked out when read, not per frame:
        a batch nobody watches pays nothing for it."""
        if self._progress_stale:
            self._progress_stale = False
            if self.nodes:
                self._progress = self._steps.update()
        return self._progress

    @progress.setter
    def progress(self, value: float) -> None:
        self._progress, self._progress_stale = value, False

    @property
    def _steps(self) -> ProgressTracker:
        """The tracker of node steps behind ``progress``, ``current_steps`` and ``eta_s``: made
        when first needed, let go of when the job ends (its ``nodes`` keep the timeline)."""
        if self._tracker is None:
            self._tracker = ProgressTracker.for_prompt(self.prompt)
        return self._tracker

    def __repr__(self) -> str:
        return (
            f"<Job {self.prompt_id[:8]} {self.state.value} {self.progress:.0f}%"
            f"{' node ' + self.current_node if self.current_node else ''}>"
        )

    # --- derived views ------------------------------------------------------------------------

    @property
    def current_node_title(self) -> str | None:
        """Title of the node running now (its _meta.title, else its class)."""
        node = self.nodes.get(self.current_node or "")
        return node.title if node else None

    @property
    def current_steps(self) -> tuple[int, int] | None:
        """(step, steps) of the running node when it reports steps, e.g. (12, 20)."""
        if self.state != JobState.RUNNING:
            return None
        return self._steps.running_steps(self.current_node)

    @property
    def eta_s(self) -> float | None:
        """Seconds left from the observed step times; None before a step was timed (or
        when the job is not running)."""
        if self.state != JobState.RUNNING:
            return None
        return self._steps.eta(time.time())

    @property
    def images(self) -> list[Image.Image]:
        """Every image output, decoded."""
        return [o.image for o in self.outputs if o.kind == "image" and o.image is not None]

    @property
    def error_message(self) -> str | None:
        """The error's message, if the job failed."""
        return str(self.error) if self.error is not None else None

    @property
    def error_node(self) -> str | None:
        """Id of the node that failed, if known: the node an execution error names, or the
        one node a server validation error names (several nodes: None, see the message)."""
        node = getattr(self.error, "node_id", None)
        if node is None and isinstance(self.error, PromptValidationError):
            nodes = list(self.error.node_errors)
            node = str(nodes[0]) if len(nodes) == 1 else None
        return node

    @property
    def backend(self) -> Backend:
        """The backend this job's prompt runs on (its client's)."""
        return self.client.backend

    @property
    def waiting(self) -> bool:
        """True while the server's queue says more than the events: the prompt is queued, or
        it is adopted (its events go to the socket of the kernel that sent it)."""
        return self.state == JobState.QUEUED or (self._adopted and not self.done())

    @property
    def finishing(self) -> bool:
        """True once the outcome is known and outputs are being fetched (or the job is done)."""
        return self._finishing

    def done(self) -> bool:
        """True once the job completed, failed or was cancelled (a plain flag: this is asked
        many times per event, and the future's own ``done()`` takes a lock)."""
        return self._done

    # --- observers ----------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Job], None]) -> Callable[[], None]:
        """Call ``callback(job)`` on the loop thread after every change; returns an unsubscribe."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _changed(self) -> None:
        for callback in list(self._subscribers):
            try:
                callback(self)
            except Exception:
                log.exception("job subscriber failed")

    def record(self) -> GenerationRecord:
        """This job as the Recorder sees it (the outputs fetched so far included)."""
        if self._workflow_record is None and self.workflow is not None:
            self._workflow_record = WorkflowRecord.of(self.workflow)
        timings = self.timings
        return GenerationRecord(
            prompt_id=self.prompt_id,
            state=self.state,
            server=clean_url(self.client.url),
            workflow=self._workflow_record,
            parameters=dict(self.parameters),
            prompt=self.prompt,
            ui_graph=self._ui_graph,
            batch_id=self.batch_id,
            batch_index=self.batch_index,
            queued_at=timings.get("queued_at"),
            started_at=timings.get("started_at"),
            finished_at=timings.get("finished_at"),
            error=self.error_message,
            error_node=self.error_node,
            outputs=list(self.outputs),
        )

    def _record(self, state: JobState) -> asyncio.Future[None] | None:
        """Record the job in ``state``; records before it is queued wait until the POST answered.

        On the loop thread the record goes to the recorder's ``RecordWriter`` (written off the
        loop, with the other records of this tick); the returned future resolves once it is
        written. Elsewhere it is written now (None). A queued single run also remembers its
        values as the workflow's last-used ones.
        """
        recorder = self.recorder
        if not self.posted and state != JobState.QUEUED:
            self._deferred_records.append(state)
            return None
        written: asyncio.Future[None] | None = None
        try:
            record = self.record()
            record.state = state
            if recorder and self.client.on_loop_thread():
                written = record_soon(recorder, self.client.loop, record, self.final_record_wait)
            else:
                recorder.record_generation(record)
            if state == JobState.QUEUED and self.batch_id is None and record.workflow is not None:
                recorder.set_last_used(record.workflow, dict(self.parameters))
        except Exception:
            log.exception("recording %s failed for job %s", state.value, self.prompt_id)
        if state == JobState.QUEUED:
            pending, self._deferred_records = self._deferred_records, []
            for deferred in pending:
                written = self._record(deferred) or written
        return written

    # --- submitting ---------------------------------------------------------------------------

    def start(self) -> None:
        """Upload images and POST the prompt on the client's loop (returns at once, from any
        thread; on the loop itself as a plain task, which is a fifth of the cost)."""
        if self.client.on_loop_thread():
            self._schedule(self._submit())
            return
        submitting = self.client.spawn(self._submit())
        self._tasks.add(submitting)
        submitting.add_done_callback(self._tasks.discard)

    async def _submit(self) -> None:
        self.backend.watch(self)
        await self.backend.wait_connected()
        try:
            await self._post()
        except ComfyWidgetsError as exc:
            await self.finish(JobState.FAILED, exc)
            return
        except Exception as exc:
            log.exception("queueing job %s failed", self.prompt_id)
            await self.finish(JobState.FAILED, ComfyWidgetsError(f"queueing failed: {exc!r}"))
            return
        if self.cancel_requested:
            await self.cancel_async()

    async def _post(self) -> None:
        for upload in self.uploads:
            await self.backend.upload_image(upload.name, upload.data)
        if self.cancel_requested:
            await self.finish(JobState.CANCELLED)
            return
        # the send time, not the answer's: a free server starts the prompt (execution_start)
        # before its POST answer arrives, and queued_at must not come after started_at
        # as the frontend does, so the server's own PNGs carry the graph with the values used
        ui_workflow = self._ui_workflow()
        if ui_workflow is not None:
            self._ui_graph = ui_graph_for(ui_workflow, self.parameters, self.prompt)
        graph = self._ui_graph
        sent_at = time.time()
        submitted = await self.backend.submit(
            self.prompt,
            self.prompt_id,
            front=self.front,
            extra_data={"extra_pnginfo": {"workflow": graph}} if graph is not None else None,
        )
        self.number = submitted.number
        self.timings["queued_at"] = self.timings["queued_at"] or sent_at
        first_post = not self.posted
        self.posted = True
        if self.state == JobState.PENDING:
            self.state = JobState.QUEUED
        if first_post:
            self._record(JobState.QUEUED)
        self._changed()
        self.backend.request_queue_refresh()

    def _ui_workflow(self) -> Workflow | None:
        """The workflow as a ``Workflow`` when it has a UI graph: a recorded one (``rerun``,
        ``resume``) is loaded again, so its PNGs get the ``workflow`` chunk like a first run."""
        workflow = self.workflow
        if isinstance(workflow, WorkflowRecord) and workflow.format == "ui":
            try:
                return Workflow.load(workflow.source, name=workflow.name, allow_unknown_nodes=True)
            except ComfyWidgetsError as exc:
                log.info("recorded workflow %s does not load again: %s", workflow.name, exc)
                return None
        return workflow if isinstance(workflow, Workflow) else None

    def adopt(
        self,
        *,
        queued_at: float | None = None,
        started_at: float | None = None,
        record_queued: bool = False,
    ) -> None:
        """Take over a prompt the server already has under this job's id (``resume``).

        The job counts as posted and queued; ``follow`` (or ``apply_outcome``) brings it up to
        date. A prompt the server then turns out to have forgotten ends as ``lost``.
        """
        self._adopted = True
        self.posted = True
        self.frames_missed = True
        self.state = JobState.QUEUED
        self.timings["queued_at"] = queued_at
        self.timings["started_at"] = started_at
        if record_queued:
            self._record(JobState.QUEUED)

    def follow(self) -> None:
        """Follow an adopted prompt through the backend (call on the client's loop)."""
        self.backend.watch(self)
        self.backend.request_queue_refresh()

    async def resubmit(self) -> None:
        """Queue the same prompt again under the same id (the server lost it in a restart).

        An adopted prompt is not sent again: it was lost (``resume(requeue_lost=True)`` sends
        lost items as new jobs).
        """
        if self._adopted:
            await self.finish(JobState.LOST)
            return
        for node in self.nodes.values():
            node.state, node.value = NodeState.PENDING, 0.0
        self._tracker = None
        self.progress = 0.0
        self.state, self.current_node, self._node_outputs = JobState.QUEUED, None, {}
        self._succeeded = False
        try:
            await self._post()
        except ComfyWidgetsError as exc:
            await self.finish(JobState.FAILED, exc)

    # --- events -------------------------------------------------------------------------------

    def handle_event(self, event: Event) -> None:
        """Apply one event of this prompt (on the loop thread)."""
        if self._done or self._finishing:
            return
        handler = _EVENT_HANDLERS.get(type(event))
        if handler is None or handler(self, event) is _IGNORED:
            return
        self._progress_stale = True
        self._changed()

    def _schedule(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self.client.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _check_history(self) -> None:
        """Finish from the server's record, one check at a time: a flood of ``executing null``
        frames makes one request, not one each."""
        if self._history_check is None or self._history_check.done():
            self._history_check = self._schedule(self._finish_from_history())

    def _on_execution_start(self, event: ExecutionStartEvent) -> None:
        self._on_start(time.time())

    def _on_start(self, started_at: float) -> None:
        self.state = JobState.RUNNING
        self.queue_position = None
        if self.timings["started_at"] is None:
            self.timings["started_at"] = started_at
        self._record(JobState.RUNNING)

    def mark_running(self) -> None:
        """The prompt is running (learned from /queue after a reconnect)."""
        if self.state in (JobState.PENDING, JobState.QUEUED) and not self.done():
            self._on_start(time.time())
            self._changed()

    def set_queue_position(self, position: int) -> None:
        """Store the place in the queue (0 = next to run) learned from /queue."""
        if self.state in (JobState.PENDING, JobState.QUEUED) and position != self.queue_position:
            self.queue_position = position
            self._changed()

    def _on_cached(self, event: ExecutionCachedEvent) -> None:
        for node_id in event.nodes:
            node = self.nodes.get(node_id)
            if node is not None:
                node.state, node.value, node.max = NodeState.CACHED, 1.0, 1.0
                self._steps.finished(node_id, time.time(), ran=False)

    def _on_executing(self, event: ExecutingEvent) -> None:
        if event.node is None:
            self.current_node = None
            if self._succeeded:
                self._end(JobState.COMPLETED)
            else:
                self._check_history()
            return
        if self.state != JobState.RUNNING:
            self._on_start(time.time())
        previous = self.nodes.get(self.current_node or "")
        running = previous is not None and previous.state == NodeState.RUNNING
        if previous is not None and running and previous.node_id != event.node:
            self._node_done(previous.node_id)
        self.current_node = event.node
        node = self.nodes.get(event.node)
        if node is not None and node.state not in (NodeState.DONE, NodeState.CACHED):
            node.state = NodeState.RUNNING
            node.started_at = node.started_at or time.time()
            self._steps.started(event.node, node.started_at)

    def _on_progress(self, event: ProgressEvent) -> object:
        if self._has_progress_state:
            return _IGNORED  # ComfyUI sends every step twice; progress_state says it all
        node = self.nodes.get(event.node or "")
        if node is not None and node.state != NodeState.CACHED:
            node.state, node.value, node.max = NodeState.RUNNING, event.value, event.max
            node.started_at = node.started_at or time.time()
            self._steps.step(node.node_id, event.value, event.max, time.time())
        return None

    def _on_progress_state(self, event: ProgressStateEvent) -> None:
        self._has_progress_state = True
        for node_id, entry in event.nodes.items():
            node = self.nodes.get(node_id)
            if node is None or node.state == NodeState.CACHED:
                continue
            node.value, node.max = entry.value, entry.max
            if entry.state == "finished":
                self._node_done(node_id)
            elif entry.state == "error":
                node.state = NodeState.ERROR
            elif entry.state == "running" and node.state != NodeState.DONE:
                node.state = NodeState.RUNNING
                node.started_at = node.started_at or time.time()
                self._steps.step(node_id, entry.value, entry.max, time.time())

    def _node_done(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is None or node.state in (NodeState.DONE, NodeState.CACHED):
            return
        node.state, node.value = NodeState.DONE, node.max
        node.finished_at = time.time()
        self._steps.finished(node_id, node.finished_at)

    def _on_success(self, event: ExecutionSuccessEvent) -> None:
        self._succeeded = True
        self.timings["finished_at"] = time.time()
        self._grace = self.client.loop.call_later(SUCCESS_GRACE_S, self._success_grace_over)

    def _success_grace_over(self) -> None:
        self._grace = None
        if not self.done() and not self._finishing:
            self._check_history()

    def _on_error(self, event: ExecutionErrorEvent) -> None:
        node = self.nodes.get(event.node_id or "")
        if node is not None:
            node.state = NodeState.ERROR
        where = f" in node {event.node_id} ({event.node_type})" if event.node_id else ""
        error = ExecutionError(
            f"{event.exception_type or 'Error'}{where}: {event.exception_message.strip()}",
            prompt_id=self.prompt_id,
            node_id=event.node_id,
            node_type=event.node_type,
            details=event.raw,
        )
        self._end(JobState.FAILED, error)

    def _on_executed(self, event: ExecutedEvent) -> None:
        self._node_outputs[event.node] = NodeOutput.from_ui(event.node, event.output)
        self._node_done(event.node)

    def _on_interrupted(self, event: ExecutionInterruptedEvent) -> None:
        self._end(JobState.CANCELLED)

    def _on_preview(self, event: PreviewEvent) -> None:
        self.preview, self.preview_mime = event.image, event.mime
        self.preview_node = event.node_id or self.current_node

    def _on_text(self, event: TextEvent) -> object:
        if event.node_id not in self.nodes:
            return _IGNORED
        self.nodes[event.node_id].text = event.text
        return None

    # --- finishing ----------------------------------------------------------------------------

    async def _finish_from_history(self) -> None:
        """Finish from what the server remembers when the terminal events were missed.

        After ``execution_success`` the job completed whatever the history says: a server that
        keeps no history (or an empty answer) leaves the outputs its ``executed`` frames named.
        """
        if not self._succeeded:
            try:
                await self.backend.reconcile([self], lost=LostPolicy.CANCEL)
            except ComfyWidgetsError as exc:
                log.info("could not read history of %s: %s", self.prompt_id, exc)
            return
        try:
            outcome = await self.backend.outcome(self.prompt_id)
        except ComfyWidgetsError as exc:
            log.info("could not read history of %s: %s", self.prompt_id, exc)
            outcome = None
        if outcome is not None:
            await self.apply_outcome(outcome)
        else:
            await self._finish_once(JobState.COMPLETED)

    def _take_server_prompt(self, prompt: dict[str, Any] | None) -> None:
        """Keep the prompt as the server ran it when the server rewrote it (ComfyUI 0.27
        replaces nodes whose class it lacks, ``/node_replacements``): the record must say what
        ran. Only a change of nodes or classes counts; the server's number formatting
        (``8`` kept as ``8.0``) is no rewrite."""
        if not isinstance(prompt, dict) or not prompt or prompt == self.prompt:
            return
        if _classes_of(prompt) != _classes_of(self.prompt):
            log.info(
                "the server rewrote prompt %s (node replacement); recording its copy",
                self.prompt_id,
            )
            self.prompt = prompt

    def _server_may_rewrite(self) -> bool:
        """True when the server's object_info (if fetched) lacks a class of the prompt: a 0.27+
        server may then replace the node, and the job reads the prompt back when it ends."""
        info = getattr(self.backend, "cached_object_info", None)
        if info is None:
            return False
        return any(not info.has(class_type) for class_type in _classes_of(self.prompt).values())

    async def apply_outcome(self, outcome: PromptOutcome) -> None:
        """Finish from the server's record (the prompt ended while we were not listening)."""
        self._take_server_prompt(outcome.prompt)
        if outcome.state == JobState.COMPLETED:
            self._node_outputs = {o.node_id: o for o in outcome.outputs}
            for node in self.nodes.values():
                if node.state != NodeState.CACHED:
                    node.state, node.value = NodeState.DONE, node.max
            await self._finish_once(JobState.COMPLETED)
            return
        if outcome.state == JobState.CANCELLED:
            await self._finish_once(JobState.CANCELLED)
            return
        if outcome.error is not None:
            self._on_error(outcome.error)
            await self._wait_done()
            return
        await self.finish(
            JobState.FAILED, ExecutionError("the prompt failed", prompt_id=self.prompt_id)
        )

    async def _wait_done(self) -> None:
        with contextlib.suppress(ComfyWidgetsError):
            await asyncio.wrap_future(self._outcome())

    async def _fetch_outputs(self) -> list[Output]:
        outputs: list[Output] = []
        refs: list[OutputFileRef] = []
        for node_output in self._node_outputs.values():
            refs.extend(node_output.files)
            outputs.extend(text_output(node_output.node_id, t) for t in node_output.texts)
        if len(refs) == 1:  # the usual case; gather would make a task for it
            datas = [await self.backend.fetch_output(refs[0])]
        else:
            datas = await asyncio.gather(*(self.backend.fetch_output(r) for r in refs))
        files = [output_from_file(ref, data) for ref, data in zip(refs, datas, strict=True)]
        return files + outputs

    def _end(self, status: JobState, error: ComfyWidgetsError | None = None) -> None:
        """Start finishing from an event handler (at most once)."""
        if self.done() or self._finishing:
            return
        self._finishing = True
        self._schedule(self._complete(status, error))

    async def finish(self, status: JobState, error: ComfyWidgetsError | None = None) -> None:
        """End the job once: fetch outputs, set the final state, resolve waiters, record it.

        An adopted prompt that ends as cancelled without anyone asking was dropped by the
        server: it is ``lost``.
        """
        if self._adopted and status == JobState.CANCELLED and not self.cancel_requested:
            status = JobState.LOST
        if status == JobState.LOST and error is None:
            error = ComfyWidgetsError(LOST_MESSAGE)
        await self._finish_once(status, error)

    async def _finish_once(self, status: JobState, error: ComfyWidgetsError | None = None) -> None:
        if self.done() or self._finishing:
            return
        self._finishing = True
        await self._complete(status, error)

    async def _outputs_from_history(self) -> None:
        """Add the outputs the server lists (``executed`` events sent during a reconnect are
        lost)."""
        try:
            outcome = await self.backend.outcome(self.prompt_id)
        except ComfyWidgetsError as exc:
            log.info("could not read history of %s: %s", self.prompt_id, exc)
            return
        if outcome is not None:
            self._take_server_prompt(outcome.prompt)
            found = {o.node_id: o for o in outcome.outputs}
            self._node_outputs = {**found, **self._node_outputs, **found}  # in the server's order

    async def _complete(self, status: JobState, error: ComfyWidgetsError | None) -> None:
        if status == JobState.COMPLETED and (self.frames_missed or self._server_may_rewrite()):
            await self._outputs_from_history()
        try:
            self.outputs = await self._fetch_outputs()
        except ComfyWidgetsError as exc:
            log.warning("could not fetch outputs of %s: %s", self.prompt_id, exc)
            if status == JobState.COMPLETED:
                status, error = JobState.FAILED, exc
        self._node_outputs = {}  # what the server listed is in ``outputs`` now
        now = time.time()
        if status != JobState.COMPLETED or self.timings["finished_at"] is None:
            self.timings["finished_at"] = now
        self._set_durations()
        self.state = status
        self.current_node = None
        self.queue_position = None
        self.progress = 100.0 if status == JobState.COMPLETED else self.progress
        self._tracker = None  # the figures are final now
        stopped = NodeState.ERROR if status == JobState.FAILED else NodeState.STOPPED
        for node in self.nodes.values():
            if node.state == NodeState.RUNNING:  # interrupted there: no longer running
                node.state = stopped
        if status in (JobState.FAILED, JobState.LOST):
            self.error = error or ExecutionError("the prompt failed", prompt_id=self.prompt_id)
        self.backend.unwatch(self)
        if self._grace is not None:  # ended anyway: the loop lets go of the job now
            self._grace.cancel()
            self._grace = None
        written = self._record(status)
        if written is not None:  # committed before any waiter wakes up and reads the store
            await written
        for output in self.outputs:
            output.release()  # the store has its copy (if it keeps one): no bytes kept here
        self._resolve()
        self._changed()

    def _set_durations(self) -> None:
        t = self.timings
        queued, started, finished = t["queued_at"], t["started_at"], t["finished_at"]
        t["queue_s"] = (started - queued) if queued and started else None
        t["run_s"] = (finished - started) if started and finished else None
        t["total_s"] = (finished - queued) if queued and finished else None

    def _resolve(self) -> None:
        with _FUTURE_LOCK:
            self._done = True
            future = self._future
        if future is not None:  # else whoever waits first makes it settled (``_outcome``)
            self._settle(future)

    def _outcome(self) -> concurrent.futures.Future[JobResult]:
        """The future waiters wait on (any thread), made on the first wait."""
        with _FUTURE_LOCK:
            future, made = self._future, self._future is None
            if future is None:
                future = self._future = concurrent.futures.Future()
            settle = made and self._done
        if settle:
            self._settle(future)
        return future

    def _settle(self, future: concurrent.futures.Future[JobResult]) -> None:
        """Give ``future`` the ended job's result, or its error."""
        if self.state == JobState.COMPLETED:
            future.set_result(self.result_now())
        elif self.state == JobState.CANCELLED:
            future.set_exception(JobCancelledError(f"job {self.prompt_id} was cancelled"))
        else:
            future.set_exception(self.error or ComfyWidgetsError("job failed"))

    def result_now(self) -> JobResult:
        """The JobResult as things stand (final once the job is done)."""
        return JobResult(
            prompt_id=self.prompt_id,
            status=self.state,
            outputs=list(self.outputs),
            parameters=dict(self.parameters),
            prompt=self.prompt,
            timings=dict(self.timings),
            job=self,
        )

    # --- cancelling ---------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel from any thread: delete the prompt if pending, interrupt it if running."""
        self.cancel_requested = True
        self.client.spawn(self.cancel_async())

    async def cancel_async(self) -> None:
        """Cancel and wait until the server has been told."""
        if not self.client.on_loop_thread():
            await asyncio.wrap_future(self.client.spawn(self.cancel_async()))
            return
        self.cancel_requested = True
        if self.done() or not self.posted:
            return
        try:
            await self.backend.cancel(self.prompt_id)
            await self.backend.reconcile([self], lost=LostPolicy.CANCEL)
        except ServerConnectionError as exc:
            # nobody to tell: end the job here rather than wait for a server that is gone
            log.warning("cancelling %s locally, the server is unreachable: %s", self.prompt_id, exc)
            await self.finish(JobState.CANCELLED)

    # --- waiting ------------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, JobResult]:
        """Wait for the job; interrupting the wait leaves the job running (one line says so
        and how to stop it, see ``comfy_widgets.engine.waiting``)."""
        return wait_detached(self._outcome(), self._interrupted_notice).__await__()

    def _interrupted_notice(self) -> str:
        return (
            f"Stopped waiting: job {self.prompt_id[:8]} keeps running in the background "
            f"({self.state.value}, {self.progress:.0f} %). job.cancel() stops it; `await job` "
            "waits again."
        )

    def result(self, timeout: float | None = None) -> JobResult:
        """Block until done (plain scripts only); inside a running loop use ``await job``."""
        if running_loop() is not None:
            raise BlockingCallError(
                "job.result() would block the running event loop (and the socket the job "
                "listens on); use `await job` instead"
            )
        try:
            return self._outcome().result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"job {self.prompt_id} not done after {timeout} s") from None

    # --- display ------------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        """A static summary; in IPython the live progress widget is shown instead (the display
        formatters ``comfy_widgets`` registers for Job, see ``comfy_widgets.widgets.display``)."""
        title = html.escape(self.workflow.name if self.workflow is not None else "prompt")
        error = f" — {html.escape(self.error_message)}" if self.error_message else ""
        return (
            f"<div><b>{title}</b> <code>{self.prompt_id[:8]}</code>: {self.state.value}, "
            f"{self.progress:.0f}%, {len(self.outputs)} output(s){error}</div>"
        )


def _classes_of(prompt: Any) -> dict[str, Any]:
    """``{node_id: class_type}`` of an API prompt (anything else: empty)."""
    if not isinstance(prompt, dict):
        return {}
    return {
        str(node_id): node.get("class_type")
        for node_id, node in prompt.items()
        if isinstance(node, dict)
    }


# How a Job applies each event type: one lookup per frame instead of a chain of checks.
_EVENT_HANDLERS: dict[type[Event], Callable[[Job, Any], object]] = {
    ExecutionStartEvent: Job._on_execution_start,
    ExecutionCachedEvent: Job._on_cached,
    ExecutingEvent: Job._on_executing,
    ProgressEvent: Job._on_progress,
    ProgressStateEvent: Job._on_progress_state,
    ExecutedEvent: Job._on_executed,
    ExecutionSuccessEvent: Job._on_success,
    ExecutionErrorEvent: Job._on_error,
    ExecutionInterruptedEvent: Job._on_interrupted,
    PreviewEvent: Job._on_preview,
    TextEvent: Job._on_text,
}
