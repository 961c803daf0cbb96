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
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image

from comfy_widgets.client import running_loop
from comfy_widgets.errors import (
    BlockingCallError,
    ComfyWidgetsError,
    ExecutionError,
    JobCancelledError,
    ServerConnectionError,
)
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
from comfy_widgets.transport.outputs import Output, file_refs, output_from_file, text_outputs
from comfy_widgets.workflow.writeback import job_ui_graph

if TYPE_CHECKING:
    from comfy_widgets.client import Client
    from comfy_widgets.uploads import PendingUpload
    from comfy_widgets.workflow.workflow import Workflow

log = logging.getLogger(__name__)

TERMINAL_STATES = ("completed", "failed", "cancelled")
# After execution_success, /history is complete once the following executing-null arrives;
# if that frame never comes (socket trouble), finish from /history after this delay.
SUCCESS_GRACE_S = 2.0


@dataclass
class NodeState:
    """One node of the prompt as seen so far."""

    node_id: str
    title: str
    class_type: str
    state: str = "pending"
    value: float = 0.0
    max: float = 1.0
    started_at: float | None = None
    finished_at: float | None = None
    text: str | None = None

    @property
    def fraction(self) -> float:
        """How far this node is, 0..1 (cached and done nodes count as 1)."""
        if self.state in ("cached", "done"):
            return 1.0
        if self.state != "running" or self.max <= 0:
            return 0.0
        return max(0.0, min(1.0, self.value / self.max))


@dataclass
class JobResult:
    """What a finished job produced, with what made it."""

    prompt_id: str
    status: str
    outputs: list[Output]
    parameters: dict[str, Any]
    prompt: dict[str, Any]
    timings: dict[str, float | None]
    job: Job = field(repr=False)

    @property
    def images(self) -> list[Image.Image]:
        """Every image output, decoded on first access (a 1,000-item batch keeps only bytes)."""
        return [o.image for o in self.outputs if o.kind == "image" and o.image is not None]


def _nodes_of(prompt: dict[str, Any]) -> dict[str, NodeState]:
    nodes = {}
    for node_id, node in prompt.items():
        class_type = str(node.get("class_type", "")) if isinstance(node, dict) else ""
        meta = node.get("_meta") if isinstance(node, dict) else None
        title = meta.get("title") if isinstance(meta, dict) else None
        nodes[str(node_id)] = NodeState(str(node_id), str(title or class_type), class_type)
    return nodes


class Job:
    """One prompt on one server: awaitable, observable, cancellable."""

    def __init__(
        self,
        client: Client,
        prompt: dict[str, Any],
        *,
        workflow: Workflow | None = None,
        parameters: dict[str, Any] | None = None,
        uploads: list[PendingUpload] | None = None,
        batch_id: str | None = None,
        batch_index: int | None = None,
        front: bool = False,
        prompt_id: str | None = None,
    ):
        self.prompt_id = prompt_id or str(uuid.uuid4())
        self.client = client
        self.workflow = workflow
        self.parameters: dict[str, Any] = dict(parameters or {})
        self.prompt = prompt
        self.batch_id = batch_id
        self.batch_index = batch_index
        self.front = front
        self.uploads = list(uploads or [])
        self.state = "pending"
        self.progress = 0.0
        self.current_node: str | None = None
        self.nodes = _nodes_of(prompt)
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
        self.frames_missed = False  # set by the monitor on a reconnect: /history has outputs
        self.cancel_requested = False
        self._ui_outputs: dict[str, dict[str, Any]] = {}
        self._succeeded = False
        self._finishing = False
        self._future: concurrent.futures.Future[JobResult] = concurrent.futures.Future()
        self._subscribers: list[Callable[[Job], None]] = []
        self._deferred_hooks: list[str] = []
        self._tasks: set[Any] = set()  # strong references: the loop keeps only weak ones

    def __repr__(self) -> str:
        return (
            f"<Job {self.prompt_id[:8]} {self.state} {self.progress:.0f}%"
            f"{' node ' + self.current_node if self.current_node else ''}>"
        )

    # --- derived views ------------------------------------------------------------------------

    @property
    def current_node_title(self) -> str | None:
        """Title of the node running now (its _meta.title, else its class)."""
        node = self.nodes.get(self.current_node or "")
        return node.title if node else None

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
        """Id of the node that failed, if known."""
        return getattr(self.error, "node_id", None)

    @property
    def finishing(self) -> bool:
        """True once the outcome is known and outputs are being fetched (or the job is done)."""
        return self._finishing

    def done(self) -> bool:
        """True once the job completed, failed or was cancelled."""
        return self._future.done()

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

    def _hook(self, name: str) -> None:
        """Call a store hook; hooks before job_queued wait until the POST has answered."""
        store = self.client.store
        if store is None or store is False:
            return
        if not self.posted and name != "job_queued":
            self._deferred_hooks.append(name)
            return
        try:
            getattr(store, name)(self)
        except Exception:
            log.exception("store.%s failed for job %s", name, self.prompt_id)
        if name == "job_queued":
            pending, self._deferred_hooks = self._deferred_hooks, []
            for deferred in pending:
                self._hook(deferred)

    # --- submitting ---------------------------------------------------------------------------

    def start(self) -> None:
        """Upload images and POST the prompt on the client's loop (returns at once)."""
        submitting = self.client.spawn(self._submit())
        self._tasks.add(submitting)
        submitting.add_done_callback(self._tasks.discard)

    async def _submit(self) -> None:
        monitor = self.client.monitor
        monitor.watch(self)
        await monitor.wait_connected()
        try:
            await self._post()
        except ComfyWidgetsError as exc:
            await self.finish("failed", exc)
            return
        except Exception as exc:
            log.exception("queueing job %s failed", self.prompt_id)
            await self.finish("failed", ComfyWidgetsError(f"queueing failed: {exc!r}"))
            return
        if self.cancel_requested:
            await self.cancel_async()

    async def _post(self) -> None:
        for upload in self.uploads:
            await self.client.ensure_uploaded(upload)
        if self.cancel_requested:
            await self.finish("cancelled")
            return
        # the send time, not the answer's: a free server starts the prompt (execution_start)
        # before its POST answer arrives, and queued_at must not come after started_at
        # as the frontend does, so the server's own PNGs carry the graph with the values used
        graph = job_ui_graph(self)
        sent_at = time.time()
        answer = await self.client.queue_prompt(
            self.prompt,
            prompt_id=self.prompt_id,
            front=self.front,
            extra_data={"extra_pnginfo": {"workflow": graph}} if graph is not None else None,
        )
        self.number = answer.get("number") if isinstance(answer, dict) else None
        self.timings["queued_at"] = self.timings["queued_at"] or sent_at
        first_post = not self.posted
        self.posted = True
        if self.state == "pending":
            self.state = "queued"
        if first_post:
            self._hook("job_queued")
        self._changed()
        self.client.monitor.request_queue_refresh()

    async def resubmit(self) -> None:
        """Queue the same prompt again under the same id (the server lost it in a restart)."""
        for node in self.nodes.values():
            node.state, node.value = "pending", 0.0
        self.state, self.current_node, self._ui_outputs = "queued", None, {}
        self._succeeded = False
        try:
            await self._post()
        except ComfyWidgetsError as exc:
            await self.finish("failed", exc)

    # --- events -------------------------------------------------------------------------------

    def handle_event(self, event: Event) -> None:
        """Apply one event of this prompt (on the loop thread)."""
        if self.done() or self._finishing:
            return
        if isinstance(event, ExecutionStartEvent):
            self._on_start(time.time())
        elif isinstance(event, ExecutionCachedEvent):
            self._on_cached(event)
        elif isinstance(event, ExecutingEvent):
            self._on_executing(event)
        elif isinstance(event, ProgressEvent):
            self._on_progress(event)
        elif isinstance(event, ProgressStateEvent):
            self._on_progress_state(event)
        elif isinstance(event, ExecutedEvent):
            self._ui_outputs[event.node] = event.output
            self._node_done(event.node)
        elif isinstance(event, ExecutionSuccessEvent):
            self._on_success(event)
        elif isinstance(event, ExecutionErrorEvent):
            self._on_error(event)
        elif isinstance(event, ExecutionInterruptedEvent):
            self._end("cancelled")
        elif isinstance(event, PreviewEvent):
            self.preview, self.preview_mime = event.image, event.mime
            self.preview_node = event.node_id or self.current_node
        elif isinstance(event, TextEvent) and event.node_id in self.nodes:
            self.nodes[event.node_id].text = event.text
        self._update_progress()
        self._changed()

    def _schedule(self, coro: Any) -> None:
        task = self.client.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_start(self, started_at: float) -> None:
        self.state = "running"
        self.queue_position = None
        if self.timings["started_at"] is None:
            self.timings["started_at"] = started_at
        self._hook("job_started")

    def mark_running(self) -> None:
        """The prompt is running (learned from /queue after a reconnect)."""
        if self.state in ("pending", "queued") and not self.done():
            self._on_start(time.time())
            self._changed()

    def set_queue_position(self, position: int) -> None:
        """Store the place in the queue (0 = next to run) learned from /queue."""
        if self.state in ("pending", "queued") and position != self.queue_position:
            self.queue_position = position
            self._changed()

    def _on_cached(self, event: ExecutionCachedEvent) -> None:
        for node_id in event.nodes:
            node = self.nodes.get(node_id)
            if node is not None:
                node.state, node.value, node.max = "cached", 1.0, 1.0

    def _on_executing(self, event: ExecutingEvent) -> None:
        if event.node is None:
            self.current_node = None
            if self._succeeded:
                self._end("completed")
            else:
                self._schedule(self._finish_from_history())
            return
        if self.state != "running":
            self._on_start(time.time())
        previous = self.nodes.get(self.current_node or "")
        if previous is not None and previous.state == "running" and previous.node_id != event.node:
            self._node_done(previous.node_id)
        self.current_node = event.node
        node = self.nodes.get(event.node)
        if node is not None and node.state not in ("done", "cached"):
            node.state = "running"
            node.started_at = node.started_at or time.time()

    def _on_progress(self, event: ProgressEvent) -> None:
        node = self.nodes.get(event.node or "")
        if node is not None and node.state != "cached":
            node.state, node.value, node.max = "running", event.value, event.max
            node.started_at = node.started_at or time.time()

    def _on_progress_state(self, event: ProgressStateEvent) -> None:
        for node_id, entry in event.nodes.items():
            node = self.nodes.get(node_id)
            if node is None or node.state == "cached":
                continue
            node.value, node.max = entry.value, entry.max
            if entry.state == "finished":
                self._node_done(node_id)
            elif entry.state == "error":
                node.state = "error"
            elif entry.state == "running" and node.state != "done":
                node.state = "running"
                node.started_at = node.started_at or time.time()

    def _node_done(self, node_id: str) -> None:
        node = self.nodes.get(node_id)
        if node is None or node.state in ("done", "cached"):
            return
        node.state, node.value = "done", node.max
        node.finished_at = time.time()

    def _on_success(self, event: ExecutionSuccessEvent) -> None:
        self._succeeded = True
        self.timings["finished_at"] = time.time()
        self.client.loop.call_later(SUCCESS_GRACE_S, self._success_grace_over)

    def _success_grace_over(self) -> None:
        if not self.done() and not self._finishing:
            self._schedule(self._finish_from_history())

    def _on_error(self, event: ExecutionErrorEvent) -> None:
        node = self.nodes.get(event.node_id or "")
        if node is not None:
            node.state = "error"
        where = f" in node {event.node_id} ({event.node_type})" if event.node_id else ""
        error = ExecutionError(
            f"{event.exception_type or 'Error'}{where}: {event.exception_message.strip()}",
            prompt_id=self.prompt_id,
            node_id=event.node_id,
            node_type=event.node_type,
            details=event.raw,
        )
        self._end("failed", error)

    def _update_progress(self) -> None:
        if not self.nodes:
            return
        total = sum(node.fraction for node in self.nodes.values())
        self.progress = max(self.progress, min(100.0, 100.0 * total / len(self.nodes)))

    # --- finishing ----------------------------------------------------------------------------

    async def _finish_from_history(self) -> None:
        """Finish from /history when the terminal frames were missed."""
        try:
            await self.client.monitor.reconcile([self], lost="cancel")
        except ComfyWidgetsError as exc:
            log.info("could not read history of %s: %s", self.prompt_id, exc)

    async def apply_history(self, entry: dict[str, Any]) -> None:
        """Finish from a /history entry (the prompt ended while we were not listening)."""
        status = entry.get("status") or {}
        messages = status.get("messages") or []
        if status.get("status_str") == "success":
            self._ui_outputs = {
                str(k): v for k, v in (entry.get("outputs") or {}).items() if isinstance(v, dict)
            }
            for node in self.nodes.values():
                if node.state != "cached":
                    node.state, node.value = "done", node.max
            await self.finish("completed")
            return
        for item in messages:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)):
                continue
            name, data = item
            if name == "execution_interrupted":
                await self.finish("cancelled")
                return
            if name == "execution_error":
                event = ExecutionErrorEvent(
                    self.prompt_id,
                    data.get("node_id"),
                    data.get("node_type"),
                    str(data.get("exception_message", "")),
                    str(data.get("exception_type", "")),
                    raw=dict(data),
                )
                self._on_error(event)
                await self._wait_done()
                return
        await self.finish("failed", ExecutionError("the prompt failed", prompt_id=self.prompt_id))

    async def _wait_done(self) -> None:
        with contextlib.suppress(ComfyWidgetsError):
            await asyncio.wrap_future(self._future)

    async def _fetch_outputs(self) -> list[Output]:
        outputs: list[Output] = []
        refs = []
        for node_id, ui_output in self._ui_outputs.items():
            refs.extend(file_refs(node_id, ui_output))
            outputs.extend(text_outputs(node_id, ui_output))
        datas = await asyncio.gather(
            *(self.client.view(r.filename, r.subfolder, r.type) for r in refs)
        )
        files = [output_from_file(ref, data) for ref, data in zip(refs, datas, strict=True)]
        return files + outputs

    def _end(self, status: str, error: ComfyWidgetsError | None = None) -> None:
        """Start finishing from an event handler (at most once)."""
        if self.done() or self._finishing:
            return
        self._finishing = True
        self._schedule(self._complete(status, error))

    async def finish(self, status: str, error: ComfyWidgetsError | None = None) -> None:
        """End the job once: fetch outputs, set the final state, resolve waiters, call hooks."""
        if self.done() or self._finishing:
            return
        self._finishing = True
        await self._complete(status, error)

    async def _outputs_from_history(self) -> None:
        """Add the outputs /history lists: ``executed`` frames sent during a reconnect are lost."""
        try:
            entry = (await self.client.get_history(self.prompt_id) or {}).get(self.prompt_id)
        except ComfyWidgetsError as exc:
            log.info("could not read history of %s: %s", self.prompt_id, exc)
            return
        outputs = entry.get("outputs") if isinstance(entry, dict) else None
        if isinstance(outputs, dict):
            found = {str(k): v for k, v in outputs.items() if isinstance(v, dict)}
            self._ui_outputs = {**found, **self._ui_outputs, **found}  # in /history's order

    async def _complete(self, status: str, error: ComfyWidgetsError | None) -> None:
        if status == "completed" and self.frames_missed:
            await self._outputs_from_history()
        try:
            self.outputs = await self._fetch_outputs()
        except ComfyWidgetsError as exc:
            log.warning("could not fetch outputs of %s: %s", self.prompt_id, exc)
            if status == "completed":
                status, error = "failed", exc
        now = time.time()
        if status != "completed" or self.timings["finished_at"] is None:
            self.timings["finished_at"] = now
        self._set_durations()
        self.state = status
        self.current_node = None
        self.queue_position = None
        if status == "completed":
            self.progress = 100.0
        if status == "failed":
            self.error = error or ExecutionError("the prompt failed", prompt_id=self.prompt_id)
        self.client.monitor.unwatch(self)
        self._hook("job_finished")  # recorded before any waiter wakes up and reads the store
        self._resolve()
        self._changed()

    def _set_durations(self) -> None:
        t = self.timings
        queued, started, finished = t["queued_at"], t["started_at"], t["finished_at"]
        t["queue_s"] = (started - queued) if queued and started else None
        t["run_s"] = (finished - started) if started and finished else None
        t["total_s"] = (finished - queued) if queued and finished else None

    def _resolve(self) -> None:
        if self.state == "completed":
            self._future.set_result(self.result_now())
        elif self.state == "cancelled":
            self._future.set_exception(JobCancelledError(f"job {self.prompt_id} was cancelled"))
        else:
            self._future.set_exception(self.error or ComfyWidgetsError("job failed"))

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
            await self.client.delete_queued([self.prompt_id])
            await self.client.interrupt(self.prompt_id)
            await self.client.monitor.reconcile([self], lost="cancel")
        except ServerConnectionError as exc:
            # nobody to tell: end the job here rather than wait for a server that is gone
            log.warning("cancelling %s locally, the server is unreachable: %s", self.prompt_id, exc)
            await self.finish("cancelled")

    # --- waiting ------------------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, JobResult]:
        return asyncio.wrap_future(self._future).__await__()

    def result(self, timeout: float | None = None) -> JobResult:
        """Block until done (plain scripts only); inside a running loop use ``await job``."""
        if running_loop() is not None:
            raise BlockingCallError(
                "job.result() would block the running event loop (and the socket the job "
                "listens on); use `await job` instead"
            )
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"job {self.prompt_id} not done after {timeout} s") from None

    # --- display ------------------------------------------------------------------------------

    def _summary_html(self) -> str:
        title = html.escape(self.workflow.name if self.workflow is not None else "prompt")
        error = f" — {html.escape(self.error_message)}" if self.error_message else ""
        return (
            f"<div><b>{title}</b> <code>{self.prompt_id[:8]}</code>: {self.state}, "
            f"{self.progress:.0f}%, {len(self.outputs)} output(s){error}</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Show the live progress widget (its bundle, or IPython's ``(data, metadata)`` pair);
        plain HTML where the widget module is unavailable."""
        try:
            from comfy_widgets.widgets.progress import ProgressView
        except ImportError:
            return {"text/plain": repr(self), "text/html": self._summary_html()}
        return ProgressView(self)._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        """Display the live progress widget, whose saved HTML is refreshed when the job ends."""
        from comfy_widgets.widgets.progress import ProgressView

        ProgressView(self)._ipython_display_()
