"""One WebSocket per (server, client_id), run as an asyncio task in the client's loop.

It routes parsed events to the Jobs watching each prompt_id, attributes legacy previews to the
running prompt, refreshes queue positions on ``status`` broadcasts, reconnects by itself and,
after every (re)connect, reconciles unfinished jobs through ``/api/jobs`` where the server has
it (ComfyUI 0.27+), else ``/queue`` and ``/history``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import connect as ws_connect

from comfy_widgets.errors import AuthenticationError, ComfyWidgetsError
from comfy_widgets.loops import within
from comfy_widgets.states import JobState
from comfy_widgets.transport.backend import LostPolicy, PromptWatcher
from comfy_widgets.transport.events import (
    Event,
    ExecutingEvent,
    ExecutionErrorEvent,
    ExecutionInterruptedEvent,
    ExecutionStartEvent,
    FeatureFlagsEvent,
    PreviewEvent,
    ProgressEvent,
    ProgressStateEvent,
    StatusEvent,
    TextEvent,
    parse_frame,
)

if TYPE_CHECKING:
    from comfy_widgets.transport.classic import ClassicBackend

log = logging.getLogger(__name__)

FEATURE_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
FIRST_RETRY_S = 0.05
FAST_RETRY_CAP_S = 0.25  # while the server has been down for less than FAST_WINDOW_S
FAST_WINDOW_S = 30.0
MAX_RETRY_S = 5.0
QUIET_CHECK_S = 10.0
STOP_TIMEOUT_S = 5.0
QUEUE_REFRESH_DELAY_S = 0.05  # coalesces the burst of `status` frames a batch of POSTs causes
QUEUE_REFRESH_INTERVAL_S = 0.25  # at most one GET /queue this often: positions for people to read
CONNECT_WAIT_S = 5.0
POLL_WHILE_DOWN_S = 3.0
MAX_FRAME_BYTES = 32 * 2**20  # previews and outputs lists are far smaller; larger is refused


def retry_delays() -> Iterator[float]:
    """Reconnect delays: 50 ms, doubling up to 250 ms for the first 30 s (a restarting server
    is caught within a quarter second), then doubling up to 5 s."""
    delay, waited = FIRST_RETRY_S, 0.0
    while True:
        yield delay
        waited += delay
        delay = min(delay * 2, FAST_RETRY_CAP_S if waited < FAST_WINDOW_S else MAX_RETRY_S)


class _RedactHeaders(logging.Filter):
    """Blank header values in websockets' handshake debug lines, so credentials never log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in ("> %s: %s", "< %s: %s") and isinstance(record.args, tuple):
            record.args = (record.args[0], "<redacted>")
        return True


_WS_LOGGER = logging.getLogger(f"{__name__}.websocket")
_WS_LOGGER.addFilter(_RedactHeaders())


class _connect(ws_connect):
    """websockets' connect, whose cross-origin redirects drop every header we add (it drops
    only ``Authorization``/``Cookie`` itself, not an ``X-Api-Key``)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        target = super().process_redirect(exc)
        if isinstance(target, str):
            old, new = urlsplit(self.uri), urlsplit(target)
            old_origin = (old.scheme.replace("ws", "http"), old.hostname, old.port)
            if old_origin != (new.scheme.replace("ws", "http"), new.hostname, new.port):
                self.additional_headers = None
        return target


# How ComfyUI's JSON (``json.dumps``) starts a legacy ``progress`` frame. ComfyUI sends every
# step twice, as ``progress`` and as ``progress_state``; once the socket has carried a
# ``progress_state``, the ``progress`` frames are dropped before parsing (a third of a
# sampler's frames). Any other spelling is parsed as usual, and then ignored by its Job.
_LEGACY_PROGRESS = '{"type": "progress", '


# How ComfyUI's JSON starts a ``progress_state`` frame, up to its prompt id. Each such frame is
# a full snapshot of its prompt's nodes, so of several read in one go (a fast sampler's steps
# come in bursts) only the last is parsed and dispatched: the earlier ones say nothing it does
# not. A frame of any other kind, or a snapshot of another prompt, dispatches the held one first.
_PROGRESS_STATE = '{"type": "progress_state", "data": {"prompt_id": "'
_AFTER_PROMPT_ID = '", "nodes": '


def _snapshot_key(frame: str | bytes) -> str | None:
    """The frame up to its prompt id for a ``progress_state`` spelled as ComfyUI spells it."""
    if not isinstance(frame, str) or not frame.startswith(_PROGRESS_STATE):
        return None
    # the first match ends the id: inside a JSON string both of its quotes would be escaped
    end = frame.find(_AFTER_PROMPT_ID, len(_PROGRESS_STATE))
    return frame[:end] if end > 0 else None


def _ws_url(http_url: str, client_id: str) -> str:
    scheme, rest = http_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={client_id}"


def _is_legacy_progress(frame: str | bytes) -> bool:
    """True for a text frame spelled as ComfyUI spells ``{"type": "progress", ...}``."""
    return isinstance(frame, str) and frame.startswith(_LEGACY_PROGRESS)


class Monitor:
    """The WebSocket of one backend: connection, reconnects, routing to prompt watchers."""

    def __init__(self, client: ClassicBackend, loop: asyncio.AbstractEventLoop):
        self.client = client
        self.loop = loop
        self.jobs: dict[str, PromptWatcher] = {}
        self.listeners: list[Callable[[Event], None]] = []
        self.running_prompt_id: str | None = None
        self.queue_remaining: int | None = None
        self.server_features: dict[str, Any] = {}
        self.connects = 0
        self.connected_at: float | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ws: Any = None
        self._stopping = False
        self._refresh_task: asyncio.Task[None] | None = None
        self._refresh_again = False
        self._last_refresh = float("-inf")
        self._last_poll = 0.0
        self._last_frame_at = 0.0
        self._progress_state_seen = False  # on this socket: its ``progress`` frames are dropped
        self._held: tuple[str, str] | None = None  # a progress_state snapshot not dispatched yet
        self._held_tick = False  # a dispatch of the held snapshot is scheduled this tick
        self._catch_up_task: asyncio.Task[None] | None = None
        self._reconcile_lock = asyncio.Lock()
        self.auth_error: AuthenticationError | None = None

    # --- lifetime -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open."""
        return self._connected.is_set()

    def ensure_started(self) -> None:
        """Start the connection task if it is not running (call on the client's loop)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = self.loop.create_task(self._run(), name="comfy_widgets-monitor")

    async def wait_connected(self, timeout: float = CONNECT_WAIT_S) -> bool:
        """Wait until the socket is open (so no early message is missed); False on timeout."""
        self.ensure_started()
        if self._connected.is_set():  # every job asks: no timer and no task when it is open
            return True
        try:
            await within(timeout, self._connected.wait())
        except asyncio.TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Close the socket and end the task."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_TIMEOUT_S)
        self._task = None
        self._connected.clear()

    async def drop_connection(self) -> None:
        """Close the current socket (the task reconnects); used by tests and benchmarks."""
        if self._ws is not None:
            await self._ws.close()

    # --- jobs ---------------------------------------------------------------------------------

    def watch(self, job: PromptWatcher) -> None:
        """Route events of ``job.prompt_id`` to ``job`` (call before POSTing it)."""
        self.jobs[job.prompt_id] = job
        self.ensure_started()

    def unwatch(self, job: PromptWatcher) -> None:
        """Stop routing events to a finished job."""
        if self.jobs.get(job.prompt_id) is job:
            del self.jobs[job.prompt_id]

    # --- the connection loop ------------------------------------------------------------------

    async def _run(self) -> None:
        delays = retry_delays()
        while not self._stopping:
            try:
                await self._session()
                delays = retry_delays()
            except asyncio.CancelledError:
                raise
            except websockets.InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    await self._refused(status)
                    break
                log.info("WebSocket to %s refused: HTTP %d", self.client.url, status)
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as exc:
                log.info("WebSocket to %s failed: %r", self.client.url, exc)
            except Exception:
                log.exception("WebSocket session to %s ended by an error", self.client.url)
            if self._stopping:
                break
            await self._poll_while_down()
            await asyncio.sleep(next(delays))

    async def _refused(self, status: int) -> None:
        """The handshake was refused for its credentials: fail every job (no retry loop)."""
        error = AuthenticationError(
            f"the WebSocket of {self.client.url} answered {status}: the server refused the "
            "credentials (token, auth or headers given to cw.connect)",
            status_code=status,
        )
        log.warning("%s", error)
        self.auth_error = error
        for job in list(self.jobs.values()):
            if not job.done():
                await job.finish(JobState.FAILED, error)

    async def _session(self) -> None:
        """One socket: open, announce features first, catch up, then read until closed.

        Jobs are reconciled right after connecting, and queue refreshes wait for that catch-up,
        so a `status` frame can never make a prompt the server lost look deleted. Frames keep
        being read meanwhile (a stalled reader would stall ComfyUI's sender for every client).
        Leaving ``async with`` waits for the
        close to finish, so the next socket with the same clientId never overlaps this one
        (ComfyUI would orphan the newer socket).
        """
        async with _connect(
            _ws_url(self.client.url, self.client.client_id),
            additional_headers=self.client._headers,
            max_size=MAX_FRAME_BYTES,
            open_timeout=CONNECT_WAIT_S,
            close_timeout=2,
            logger=_WS_LOGGER,
            compression=None,
        ) as ws:
            self._ws = ws
            try:
                await ws.send(json.dumps(FEATURE_FLAGS))
                self.connects += 1
                self.connected_at = time.monotonic()
                self._note_missed_frames()
                self._connected.set()
                log.debug("WebSocket connected to %s (connect #%d)", self.client.url, self.connects)
                self._catch_up_task = self.loop.create_task(self._catch_up())
                await self._read(ws)
            finally:
                self._connected.clear()
                self._ws = None

    def _note_missed_frames(self) -> None:
        """Jobs posted before this (re)connect may have lost frames (e.g. an output node's
        ``executed``) while no socket listened: they take their outputs from /history."""
        for job in self.jobs.values():
            if job.posted or self.connects > 1:
                job.frames_missed = True

    async def _read(self, ws: Any) -> None:
        """Dispatch frames until the socket closes, with the quiet-socket watchdog running."""
        watchdog = self.loop.create_task(self._watch_quiet())
        self._progress_state_seen = False  # a reconnect may have found another server
        try:
            async for frame in ws:
                self._last_frame_at = time.monotonic()
                if self._progress_state_seen and _is_legacy_progress(frame):
                    continue
                key = _snapshot_key(frame)
                if key is not None:
                    self._hold(key, frame)
                    continue
                self._dispatch_held()
                self.dispatch(parse_frame(frame))
        finally:
            self._dispatch_held()
            watchdog.cancel()

    def _hold(self, key: str, frame: str) -> None:
        """Keep a progress_state snapshot until the frames read with it are read (see
        ``_PROGRESS_STATE``); a snapshot of another prompt dispatches the one held first."""
        if self._held is not None and self._held[0] != key:
            self._dispatch_held()
        self._held = (key, frame)
        self._progress_state_seen = True
        if not self._held_tick:
            self._held_tick = True
            self.loop.call_soon(self._end_of_tick)

    def _end_of_tick(self) -> None:
        self._held_tick = False
        self._dispatch_held()

    def _dispatch_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self.dispatch(parse_frame(held[1]))

    async def _watch_quiet(self) -> None:
        """After QUIET_CHECK_S without a frame, check unfinished jobs over HTTP: a safety net
        should the socket stop receiving (e.g. orphaned by a duplicate clientId)."""
        while True:
            await asyncio.sleep(QUIET_CHECK_S)
            quiet = time.monotonic() - self._last_frame_at >= QUIET_CHECK_S
            if quiet and self._posted_jobs():
                await self._caught_up()
                await self._reconcile_quietly(self._posted_jobs(), LostPolicy.CANCEL_IF_LISTENING)

    async def _catch_up(self) -> None:
        """After (re)connecting: uploads may be gone and prompts lost; resubmit what was lost.

        After a reconnect the server may be another version (an upgrade restarts it): its
        endpoints (``/api/jobs``) are probed again."""
        if self.connects > 1:
            self.client.forget_capabilities()
        jobs = self._posted_jobs()
        if jobs:
            self.client.forget_uploads()
            await self._reconcile_quietly(jobs, LostPolicy.RESUBMIT)

    async def _caught_up(self) -> None:
        """Wait until the catch-up after the latest connect has finished."""
        if self._catch_up_task is not None:
            await asyncio.wait({self._catch_up_task})

    async def _poll_while_down(self) -> None:
        """While the socket is down, keep jobs honest through HTTP every few seconds."""
        if time.monotonic() - self._last_poll < POLL_WHILE_DOWN_S or not self._posted_jobs():
            return
        self._last_poll = time.monotonic()
        await self._reconcile_quietly(self._posted_jobs(), LostPolicy.RESUBMIT)

    # --- routing ------------------------------------------------------------------------------

    def dispatch(self, event: Event | None) -> None:
        """Route one parsed event to listeners and to the job it belongs to."""
        if event is None:
            return
        for listener in list(self.listeners) if self.listeners else ():
            try:
                listener(event)
            except Exception:
                log.exception("monitor listener failed")
        if isinstance(event, StatusEvent):
            self.queue_remaining = event.queue_remaining
            self.request_queue_refresh()
            return
        if isinstance(event, FeatureFlagsEvent):
            self.server_features = dict(event.flags)
            return
        if isinstance(event, ProgressStateEvent):
            self._progress_state_seen = True
        prompt_id = self._attribute(event)
        job = self.jobs.get(prompt_id) if prompt_id else None
        if job is not None:
            job.handle_event(event)

    def _attribute(self, event: Event) -> str | None:
        """The prompt an event belongs to; tracks which prompt is running."""
        prompt_id = event.prompt_id
        if prompt_id is None and isinstance(event, (ExecutingEvent, PreviewEvent, TextEvent)):
            prompt_id = self.running_prompt_id
        if isinstance(event, (ExecutionStartEvent, ProgressEvent, ProgressStateEvent)):
            self.running_prompt_id = prompt_id
        elif isinstance(event, ExecutingEvent):
            self.running_prompt_id = prompt_id if event.node is not None else None
        elif isinstance(event, (ExecutionErrorEvent, ExecutionInterruptedEvent)):
            self.running_prompt_id = None
        return prompt_id

    # --- reconciling with /queue and /history -------------------------------------------------

    def _posted_jobs(self) -> list[PromptWatcher]:
        return [job for job in self.jobs.values() if job.posted and not job.done()]

    async def _reconcile_quietly(self, jobs: list[PromptWatcher], lost: LostPolicy) -> None:
        """Reconcile from a background task: a failure is logged, never ends the monitor (a
        proxy's error page or a malformed answer now is no reason to stop watching)."""
        try:
            await self.reconcile(jobs, lost=lost)
        except ComfyWidgetsError as exc:
            log.info("could not reconcile jobs with %s: %s", self.client.url, exc)
        except Exception:
            log.warning("reconciling jobs with %s failed", self.client.url, exc_info=True)

    async def reconcile(self, jobs: list[PromptWatcher], *, lost: LostPolicy | str) -> None:
        """Bring jobs up to date from ``/queue`` and ``/history``.

        A prompt in neither was lost by the server (restart): ``lost="resubmit"`` queues it
        again under the same prompt_id, ``lost="cancel"`` marks it cancelled (deleted), and
        ``"cancel_if_listening"`` does so only if the socket stayed up meanwhile. One reconcile
        runs at a time, in order, so a prompt is never resubmitted twice.
        """
        async with self._reconcile_lock:
            await self._reconcile_locked(jobs, LostPolicy(lost))

    async def _reconcile_locked(self, jobs: list[PromptWatcher], lost: LostPolicy) -> None:
        epoch = self.connects if self.connected else None
        queue = await self.client.queue_ids()
        running, pending = queue.running_ids, queue.pending_ids
        if running and self.running_prompt_id is None:
            self.running_prompt_id = running[0]
        for job in jobs:
            if job.done():
                continue
            if job.prompt_id in running:
                job.mark_running()
            elif job.prompt_id in pending:
                job.set_queue_position(pending.index(job.prompt_id))
            else:
                await self._settle_missing(job, lost, epoch)

    async def _settle_missing(
        self, job: PromptWatcher, lost: LostPolicy, epoch: int | None
    ) -> None:
        outcome = await self.client.outcome(job.prompt_id)
        if job.done():
            return
        if outcome is not None:
            await job.apply_outcome(outcome)
        elif job.cancel_requested or lost == LostPolicy.CANCEL:
            await job.finish(JobState.CANCELLED)
        elif lost == LostPolicy.CANCEL_IF_LISTENING:
            # deleted by someone else, unless the socket dropped meanwhile (a restart: the
            # catch-up after reconnecting resubmits it)
            if epoch is not None and self.connected and self.connects == epoch:
                await job.finish(JobState.CANCELLED)
        else:
            log.info("prompt %s was lost by the server; queueing it again", job.prompt_id)
            await job.resubmit()

    def request_queue_refresh(self) -> None:
        """Refresh queue positions of waiting jobs soon: O(1) here (it runs on every POST answer
        and every ``status`` frame); one task does at most one GET /queue per
        ``QUEUE_REFRESH_INTERVAL_S``, and none when no job is still waiting by then."""
        self._refresh_again = True
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = self.loop.create_task(self._refresh_queue())

    async def _refresh_queue(self) -> None:
        while self._refresh_again:
            await asyncio.sleep(QUEUE_REFRESH_DELAY_S)
            while self.client.posting:  # a burst of POSTs: refresh once, after it
                await asyncio.sleep(QUEUE_REFRESH_DELAY_S)
            wait = self._last_refresh + QUEUE_REFRESH_INTERVAL_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._refresh_again = False
            await self._caught_up()
            queued = [job for job in self._posted_jobs() if job.waiting]
            if queued:
                self._last_refresh = time.monotonic()
                await self._reconcile_quietly(queued, LostPolicy.CANCEL_IF_LISTENING)
