"""An async client for ComfyUI's HTTP API, and the entry point that runs workflows as Jobs.

All I/O happens on one event loop per client: the loop that was running when the client was
made (the kernel's, in Jupyter), or a shared daemon-thread loop in plain scripts. Calls from
other threads (widget callbacks on subshell threads) are handed over to that loop.
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
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from comfy_widgets.errors import (
    HTTPStatusError,
    ParameterError,
    PromptValidationError,
    ServerConnectionError,
)
from comfy_widgets.uploads import PendingUpload, pending_upload, prepare_image_values

if TYPE_CHECKING:
    from comfy_widgets.batch import Batch
    from comfy_widgets.jobs import Job
    from comfy_widgets.monitor import Monitor
    from comfy_widgets.workflow.object_info import ObjectInfo
    from comfy_widgets.workflow.workflow import Workflow

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8188"
_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

_background_lock = threading.Lock()
_background: asyncio.AbstractEventLoop | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared event loop on a daemon thread, used when no loop is running (plain scripts)."""
    global _background
    with _background_lock:
        if _background is None or _background.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="comfy_widgets-loop", daemon=True
            )
            thread.start()
            _background = loop
        return _background


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    lines = [str(error.get("message") or "Prompt rejected by the server")]
    if error.get("details"):
        lines[0] += f": {error['details']}"
    node_errors = body.get("node_errors") if isinstance(body.get("node_errors"), dict) else {}
    for node_id, entry in node_errors.items():
        class_type = entry.get("class_type", "?") if isinstance(entry, dict) else "?"
        for err in (entry.get("errors") or []) if isinstance(entry, dict) else []:
            detail = err.get("details") or ""
            lines.append(f"  node {node_id} ({class_type}): {err.get('message')} {detail}".rstrip())
    return "\n".join(lines)


def check_server_models(workflow: Workflow, prompt: dict[str, Any]) -> None:
    """Raise ParameterError if ``prompt`` names model files the server does not list.

    Only with the server's own object_info (``trusts_model_lists``): it catches, before anything
    is queued, what ComfyUI would reject as ``value_not_in_list`` (e.g. a downloaded workflow's
    checkpoint this server lacks). Input images are not checked: uploads add to that list.
    """
    if not workflow.object_info.trusts_model_lists:
        return
    errors: dict[str, str] = {}
    for param in workflow.parameters():
        if param.model_list in (None, "input") or param.options is None:
            continue
        value = (prompt.get(param.node_id) or {}).get("inputs", {}).get(param.field)
        if isinstance(value, str) and value not in param.options:
            shown = ", ".join(repr(o) for o in param.options[:10]) or "nothing"
            more = " …" if len(param.options) > 10 else ""
            errors[param.name] = (
                f"{param.name}: {value!r} ({param.field!r} of node {param.node_id}, "
                f"{param.node_class}) is not on the server; its {param.model_list!r} folder "
                f"has {shown}{more}"
            )
    if errors:
        lines = "\n".join(f"  - {msg}" for msg in errors.values())
        raise ParameterError(
            f"{len(errors)} model file(s) missing on the server:\n{lines}", errors=errors
        )


class Client:
    """One ComfyUI server, seen from one ``client_id`` (one WebSocket)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        store: Any = None,
    ):
        self.url, userinfo = _split_url(url or os.environ.get("COMFYUI_URL") or DEFAULT_URL)
        self.client_id = str(uuid.uuid4())
        self.store = store
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
        return f"Client(url={self.url!r}, client_id={self.client_id!r})"

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

    async def upload_image(self, image: Any) -> str:
        """Upload a PIL image, path, numpy array or bytes under a content-addressed name."""
        return await self.ensure_uploaded(pending_upload(image))

    # --- jobs ---------------------------------------------------------------------------------

    @property
    def monitor(self) -> Monitor:
        """This client's WebSocket monitor (created on first use, started by the first job)."""
        from comfy_widgets.monitor import Monitor

        loop = self.loop
        with self._lock:
            if self._monitor is None:
                self._monitor = Monitor(self, loop)
            return self._monitor

    def _load_workflow(self, workflow: Any) -> Workflow:
        from comfy_widgets.workflow.workflow import Workflow

        wf = workflow if isinstance(workflow, Workflow) else Workflow.load(workflow)
        if self._object_info is not None and wf.object_info is not self._object_info:
            wf = wf.with_object_info(self._object_info)
        return wf

    def run(self, workflow: Any, values: dict[str, Any] | None = None, /, **params: Any) -> Job:
        """Validate the values, then queue the workflow; returns a Job at once (any thread).

        Raises ParameterError before anything is queued. Image parameters may be PIL images,
        paths, numpy arrays or bytes: they are uploaded first, once per content.
        """
        wf = self._load_workflow(workflow)
        merged = {**(values or {}), **params}
        image_names = {n for p in wf.parameters() if p.type == "image" for n in (p.name, p.key)}
        merged, uploads = prepare_image_values(image_names, merged)
        prompt = wf.apply(merged)
        check_server_models(wf, prompt)
        used = {wf.parameter(name).name: value for name, value in merged.items()}
        return self.submit(prompt, workflow=wf, parameters=used, uploads=uploads)

    def submit(
        self,
        prompt: dict[str, Any],
        *,
        workflow: Workflow | None = None,
        parameters: dict[str, Any] | None = None,
        uploads: list[PendingUpload] | None = None,
        batch_id: str | None = None,
        batch_index: int | None = None,
        front: bool = False,
    ) -> Job:
        """Queue an already-built API prompt as a Job (the low-level half of ``run``)."""
        from comfy_widgets.jobs import Job

        job = Job(
            self,
            prompt,
            workflow=workflow,
            parameters=parameters,
            uploads=uploads,
            batch_id=batch_id,
            batch_index=batch_index,
            front=front,
        )
        job.start()
        return job

    def batch(self, workflow: Any, count: int | None = None, **variations: Any) -> Batch:
        """Run many variations of a workflow (see comfy_widgets.batch.Batch)."""
        from comfy_widgets.batch import Batch

        return Batch(self, workflow, count=count, **variations)

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

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once per process: building one takes ~50 ms, and
    every client built its own, even for a plain http:// server."""
    return httpx.create_ssl_context()


def connect(
    url: str | None = None,
    *,
    token: str | None = None,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    store: Any = "default",
) -> Client:
    """A Client for ``url`` (default ``$COMFYUI_URL``, else ComfyUI's 127.0.0.1:8188).

    Every generation is recorded in ``store``: by default ``Store.default()`` (the SQLite file
    under ``$COMFY_WIDGETS_HOME`` or ``./.comfy_widgets``); pass a Store, or None/False for no
    recording. Credentials may come from ``token`` (Bearer), ``auth`` (basic), ``headers`` or
    the URL's userinfo; they are kept in memory only.
    """
    if store == "default":
        from comfy_widgets.store import Store

        store = Store.default()
    return Client(url, token=token, auth=auth, headers=headers, store=store)
