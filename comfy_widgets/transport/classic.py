"""The classic ComfyUI protocol: HTTP (httpx) plus one WebSocket per client, as a ``Backend``.

All I/O happens on one event loop per backend: the loop that was running when it was made (the
kernel's, in Jupyter), or a shared daemon-thread loop in plain scripts. Calls from other threads
(widget callbacks on subshell threads) are handed over to that loop.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import logging
import os
import ssl
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from comfy_widgets.errors import HTTPStatusError, PromptValidationError, ServerConnectionError
from comfy_widgets.loops import background_loop, running_loop
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
from comfy_widgets.transport.events import ExecutionErrorEvent
from comfy_widgets.transport.outputs import OutputFileRef
from comfy_widgets.transport.uploads import PendingUpload, pending_upload

if TYPE_CHECKING:
    from comfy_widgets.transport.monitor import Monitor
    from comfy_widgets.workflow.object_info import ObjectInfo

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8188"
_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def _split_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """Normalise a server URL (http(s)/ws(s), no trailing slash) and pull out any userinfo."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}: use http(s) or ws(s)")
    userinfo = None
    if parts.username is not None:
        userinfo = (unquote(parts.username), unquote(parts.password or ""))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    path = parts.path.rstrip("/")
    for suffix in ("/ws", "/api"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return urlunsplit((scheme, netloc, path, "", "")), userinfo


def _auth_headers(
    token: str | None, auth: tuple[str, str] | None, headers: dict[str, str] | None
) -> dict[str, str]:
    out = dict(headers or {})
    if token:
        out["Authorization"] = f"Bearer {token}"
    elif auth:
        user, password = auth
        raw = f"{user}:{password}".encode()
        out["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
    return out


def _validation_message(body: dict[str, Any]) -> str:
    error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
    lines = [str(error.get("message") or "Prompt rejected by the server")]
    if error.get("details"):
        lines[0] += f": {error['details']}"
    node_errors: dict[str, Any] = (
        body["node_errors"] if isinstance(body.get("node_errors"), dict) else {}
    )
    for node_id, entry in node_errors.items():
        class_type = entry.get("class_type", "?") if isinstance(entry, dict) else "?"
        for err in (entry.get("errors") or []) if isinstance(entry, dict) else []:
            detail = err.get("details") or ""
            lines.append(f"  node {node_id} ({class_type}): {err.get('message')} {detail}".rstrip())
    return "\n".join(lines)


class ClassicBackend:
    """One ComfyUI server over the classic protocol, seen from one ``client_id``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.url, userinfo = _split_url(url or os.environ.get("COMFYUI_URL") or DEFAULT_URL)
        self.client_id = str(uuid.uuid4())
        self._headers = _auth_headers(token, auth or userinfo, headers)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = running_loop()
        self._http: httpx.AsyncClient | None = None
        self._monitor: Monitor | None = None
        self._object_info: ObjectInfo | None = None
        self._object_info_raw: dict[str, Any] | None = None
        self._uploads: dict[str, asyncio.Future[str]] = {}
        self._post_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ClassicBackend(url={self.url!r}, client_id={self.client_id!r})"

    def request_headers(self) -> dict[str, str]:
        """A copy of the headers (credentials included) for sync code that talks to this server
        directly, e.g. a plain ``httpx.get`` of ``/view``; never log or store them."""
        return dict(self._headers)

    # --- event loop ---------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop all of this client's I/O runs on (bound on first use, rebound if closed)."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = running_loop() or background_loop()
                self._http = None
                self._monitor = None
                self._uploads = {}
                self._post_lock = asyncio.Lock()
            return self._loop

    def on_loop_thread(self) -> bool:
        """True when called from code running on the client's loop."""
        return running_loop() is self.loop

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the client's loop, from any thread."""
        if self.on_loop_thread():
            self.loop.call_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start ``coro`` on the client's loop from any thread; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await ``coro`` on the client's loop, whichever loop the caller runs on."""
        if self.on_loop_thread():
            return await coro
        return await asyncio.wrap_future(self.spawn(coro))

    # --- HTTP ---------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.url,
                headers=self._headers,
                timeout=_TIMEOUT,
                follow_redirects=True,
                verify=_tls_context(),
            )
        return self._http

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client().request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerConnectionError(
                f"cannot reach ComfyUI at {self.url} ({method} {path}): {exc!r}"
            ) from exc
        if response.status_code >= 400:
            self._raise_for_status(method, path, response)
        return response

    @staticmethod
    def _raise_for_status(method: str, path: str, response: httpx.Response) -> None:
        body = response.text
        if response.status_code == 400 and path == "/prompt":
            try:
                data = response.json()
            except ValueError:
                data = None
            if isinstance(data, dict) and "error" in data:
                raise PromptValidationError(
                    _validation_message(data),
                    error=data.get("error") if isinstance(data.get("error"), dict) else {},
                    node_errors=data.get("node_errors") or {},
                )
        raise HTTPStatusError(
            f"{method} {path} answered {response.status_code}: {body[:300]}",
            status_code=response.status_code,
            body=body,
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one HTTP request on the client's loop; errors mapped to comfy_widgets.errors."""
        return await self._on_loop(self._send(method, path, **kwargs))

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        if not response.content:
            return None
        return response.json()

    async def queue_prompt(
        self,
        prompt: dict[str, Any],
        *,
        prompt_id: str | None = None,
        front: bool = False,
        extra_data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST /prompt with this client's id; returns ``{prompt_id, number, node_errors}``.

        POSTs are sent one at a time on a kept-alive connection, so prompts enter the server's
        queue in the order they were submitted.
        """
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        if front:
            body["front"] = True
        if extra_data:
            body["extra_data"] = extra_data
        return await self._on_loop(self._post_prompt(body))

    @property
    def posting(self) -> bool:
        """True while a POST /prompt is in flight or waiting its turn."""
        return self._post_lock.locked()

    async def _post_prompt(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self._post_lock:
            return (await self._send("POST", "/prompt", json=body)).json()

    async def get_queue(self) -> dict[str, Any]:
        """GET /queue: ``{"queue_running": [...], "queue_pending": [...]}`` (pending unsorted)."""
        return await self._json("GET", "/queue")

    async def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None
    ) -> dict[str, Any]:
        """GET /history or /history/{id}; an unknown or unfinished id gives ``{}``."""
        if prompt_id is not None:
            return await self._json("GET", f"/history/{quote(prompt_id, safe='')}")
        params = {"max_items": max_items} if max_items is not None else None
        return await self._json("GET", "/history", params=params)

    async def delete_queued(self, ids: Iterable[str]) -> None:
        """Remove pending prompts from the queue (a running one is not touched)."""
        await self.request("POST", "/queue", json={"delete": list(ids)})

    async def clear_queue(self) -> None:
        """Remove every pending prompt (of every client) from the queue."""
        await self.request("POST", "/queue", json={"clear": True})

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt; with ``prompt_id`` only if that one is running."""
        kwargs = {"json": {"prompt_id": prompt_id}} if prompt_id else {}
        await self.request("POST", "/interrupt", **kwargs)

    async def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """GET /view: the bytes of an output, temp or input file."""
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        return (await self.request("GET", "/view", params=params)).content

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """GET /object_info (or one class): raw node definitions."""
        path = "/object_info" if node_class is None else f"/object_info/{quote(node_class)}"
        return await self._json("GET", path)

    @property
    def cached_object_info(self) -> ObjectInfo | None:
        """The object_info fetched by ``get_object_info``, if it was."""
        return self._object_info

    async def get_object_info(self) -> ObjectInfo:
        """The server's object_info as an ObjectInfo, fetched once and cached."""
        from comfy_widgets.workflow.object_info import ObjectInfo

        if self._object_info is None:
            self._object_info = ObjectInfo(await self.object_info())
        return self._object_info

    async def system_stats(self) -> dict[str, Any]:
        """GET /system_stats: versions, devices, memory."""
        return await self._json("GET", "/system_stats")

    async def models(self, folder: str | None = None) -> list[str]:
        """GET /models (folder names) or /models/{folder} (file names)."""
        path = "/models" if folder is None else f"/models/{quote(folder)}"
        return await self._json("GET", path)

    async def features(self) -> dict[str, Any]:
        """GET /features: what the server supports (preview metadata, upload size)."""
        return await self._json("GET", "/features")

    # --- uploads ------------------------------------------------------------------------------

    async def _post_upload(self, upload: PendingUpload) -> str:
        files = {"image": (upload.name, upload.data, "application/octet-stream")}
        data = {"type": "input", "overwrite": "true"}
        answer = (await self.request("POST", "/upload/image", files=files, data=data)).json()
        name = answer.get("name", upload.name)
        return f"{answer['subfolder']}/{name}" if answer.get("subfolder") else name

    async def ensure_uploaded(self, upload: PendingUpload) -> str:
        """Upload ``upload`` unless this client already did (or is doing) it; returns its name."""
        if not self.on_loop_thread():
            return await self._on_loop(self.ensure_uploaded(upload))
        future = self._uploads.get(upload.name)
        if future is None or (future.done() and (future.cancelled() or future.exception())):
            future = asyncio.ensure_future(self._post_upload(upload))
            self._uploads[upload.name] = future
        return await asyncio.shield(future)

    def forget_uploads(self) -> None:
        """Forget what was uploaded (after a reconnect the server may have lost its files)."""
        self._uploads = {k: f for k, f in self._uploads.items() if not f.done()}

    async def upload_image(self, image: Any, data: bytes | None = None) -> str:
        """Upload an image under a content-addressed name: a PIL image, path, numpy array or
        bytes, or (the Backend form) a file ``name`` with its ``data``."""
        if data is not None:
            return await self.ensure_uploaded(PendingUpload(str(image), data))
        return await self.ensure_uploaded(pending_upload(image))

    # --- the Backend interface ---------------------------------------------------------------

    @property
    def monitor(self) -> Monitor:
        """This backend's WebSocket monitor (created on first use, started by the first watch)."""
        from comfy_widgets.transport.monitor import Monitor

        loop = self.loop
        with self._lock:
            if self._monitor is None:
                self._monitor = Monitor(self, loop)
            return self._monitor

    async def submit(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        *,
        front: bool = False,
        extra_data: dict[str, Any] | None = None,
    ) -> Submitted:
        """POST /prompt under ``prompt_id``; the queue is refreshed once the server answers."""
        answer = await self.queue_prompt(
            prompt, prompt_id=prompt_id, front=front, extra_data=extra_data
        )
        number = answer.get("number") if isinstance(answer, dict) else None
        return Submitted(prompt_id, number if isinstance(number, (int, float)) else None)

    async def queue_state(self) -> QueueState:
        """GET /queue as running and pending prompts (pending sorted into run order)."""
        return queue_state(await self.get_queue())

    async def outcome(self, prompt_id: str) -> PromptOutcome | None:
        """GET /history/{id}: how the prompt ended, or None if unknown or unfinished."""
        entry = (await self.get_history(prompt_id) or {}).get(prompt_id)
        return prompt_outcome(prompt_id, entry) if isinstance(entry, dict) else None

    async def outcomes(self, max_items: int | None = None) -> dict[str, PromptOutcome]:
        """GET /history: every finished prompt the server remembers."""
        history = await self.get_history(max_items=max_items) or {}
        return {
            str(pid): prompt_outcome(str(pid), entry)
            for pid, entry in history.items()
            if isinstance(entry, dict)
        }

    async def fetch_output(self, ref: OutputFileRef) -> bytes:
        """GET /view for one output file."""
        return await self.view(ref.filename, ref.subfolder, ref.type)

    def watch(self, watcher: PromptWatcher) -> None:
        """Route the WebSocket events of ``watcher.prompt_id`` to it."""
        self.monitor.watch(watcher)

    def unwatch(self, watcher: PromptWatcher) -> None:
        """Stop routing events to ``watcher``."""
        self.monitor.unwatch(watcher)

    async def wait_connected(self, timeout: float = 5.0) -> bool:
        """Wait until the WebSocket is open; False on timeout."""
        return await self.monitor.wait_connected(timeout)

    async def reconcile(self, watchers: Sequence[PromptWatcher], *, lost: LostPolicy) -> None:
        """Bring watchers up to date from /queue and /history (see ``Monitor.reconcile``)."""
        await self.monitor.reconcile(list(watchers), lost=lost)

    def request_queue_refresh(self) -> None:
        """Refresh the queue positions of waiting watchers soon (coalesced)."""
        self.monitor.request_queue_refresh()

    # --- lifetime -----------------------------------------------------------------------------

    async def _aclose_here(self) -> None:
        if self._monitor is not None:
            await self._monitor.stop()
            self._monitor = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def aclose(self) -> None:
        """Stop the WebSocket monitor and close HTTP connections."""
        if self._loop is None or self._loop.is_closed():
            return
        await self._on_loop(self._aclose_here())

    def close(self) -> None:
        """Blocking ``aclose`` for scripts (outside a running loop)."""
        if self._loop is None or self._loop.is_closed():
            return
        if running_loop() is not None:
            self.call_soon(lambda: asyncio.ensure_future(self._aclose_here()))
            return
        self.spawn(self._aclose_here()).result(timeout=10)

    async def __aenter__(self) -> ClassicBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> ClassicBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once per process: building one takes ~50 ms, and
    every client built its own, even for a plain http:// server."""
    return httpx.create_ssl_context()


def queue_state(queue: Any) -> QueueState:
    """A ``GET /queue`` answer (``[number, prompt_id, prompt, extra, outputs]`` items) as a
    QueueState, pending items sorted by number (ComfyUI sends them unsorted)."""
    queue = queue if isinstance(queue, dict) else {}

    def items(key: str) -> list[QueuedPrompt]:
        found = []
        for item in queue.get(key) or []:
            if isinstance(item, (list, tuple)) and len(item) >= 2:
                prompt = item[2] if len(item) > 2 and isinstance(item[2], dict) else None
                number = item[0] if isinstance(item[0], (int, float)) else 0
                found.append(QueuedPrompt(str(item[1]), number, prompt))
        return found

    pending = sorted(items("queue_pending"), key=lambda item: item.number)
    return QueueState(tuple(items("queue_running")), tuple(pending))


def prompt_outcome(prompt_id: str, entry: dict[str, Any]) -> PromptOutcome:
    """A ``/history`` entry as a PromptOutcome: final state, outputs, error, timings, prompt."""
    status: dict[str, Any] = entry["status"] if isinstance(entry.get("status"), dict) else {}
    messages: dict[str, dict[str, Any]] = {
        item[0]: item[1]
        for item in status.get("messages") or []
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)
    }
    started = messages.get("execution_start", {}).get("timestamp")
    finished = None
    for name in ("execution_success", "execution_error", "execution_interrupted"):
        if name in messages:
            finished = messages[name].get("timestamp", 0)
    outputs = tuple(
        NodeOutput.from_ui(str(node_id), ui)
        for node_id, ui in (entry.get("outputs") or {}).items()
        if isinstance(ui, dict)
    )
    prompt = entry.get("prompt")
    kept = prompt[2] if isinstance(prompt, list) and len(prompt) > 2 else None
    common: dict[str, Any] = {
        "outputs": outputs,
        "started_at": started / 1000 if isinstance(started, (int, float)) else None,
        "finished_at": finished / 1000 if isinstance(finished, (int, float)) else None,
        "prompt": kept if isinstance(kept, dict) else None,
    }
    if status.get("status_str") == "success":
        return PromptOutcome(prompt_id, JobState.COMPLETED, **common)
    if "execution_interrupted" in messages:
        node = messages["execution_interrupted"].get("node_id")
        return PromptOutcome(
            prompt_id,
            JobState.CANCELLED,
            interrupted_node=None if node is None else str(node),
            **common,
        )
    if "execution_error" in messages:
        data = messages["execution_error"]
        error = ExecutionErrorEvent(
            prompt_id,
            None if data.get("node_id") is None else str(data.get("node_id")),
            None if data.get("node_type") is None else str(data.get("node_type")),
            str(data.get("exception_message", "")),
            str(data.get("exception_type", "")),
            raw=dict(data),
        )
        return PromptOutcome(prompt_id, JobState.FAILED, error=error, **common)
    message = status.get("status_str") or "failed"
    return PromptOutcome(prompt_id, JobState.FAILED, message=str(message), **common)
