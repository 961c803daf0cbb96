"""The classic ComfyUI protocol: HTTP (httpx) plus one WebSocket per client, as a ``Backend``.

All I/O happens on one event loop per backend: the loop that was running when it was made (the
kernel's, in Jupyter), or a shared daemon-thread loop in plain scripts. Calls from other threads
(widget callbacks on subshell threads) are handed over to that loop.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import mimetypes
import os
import ssl
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from comfy_widgets.errors import (
    AuthenticationError,
    HTTPStatusError,
    ParameterError,
    PromptValidationError,
    ProtocolError,
    ResponseTooLargeError,
    ServerConnectionError,
    ServerError,
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
from comfy_widgets.transport.events import ExecutionErrorEvent
from comfy_widgets.transport.outputs import OutputFileRef
from comfy_widgets.transport.uploads import PendingUpload, pending_upload

if TYPE_CHECKING:
    from comfy_widgets.transport.monitor import Monitor
    from comfy_widgets.workflow.object_info import ObjectInfo

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8188"
_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
MAX_REDIRECTS = 5
# Answers are read into memory: JSON answers and output files are capped, and an output must
# arrive within OUTPUT_TIMEOUT_S however slowly it drips (httpx's timeout is per read).
MAX_JSON_BYTES = 64 * 2**20
DEFAULT_MAX_OUTPUT_BYTES = 64 * 2**20
OUTPUT_TIMEOUT_S = 120.0
_QUOTED = 200  # characters of a bad answer quoted in an error


def _split_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """Normalise a server URL (http(s)/ws(s), no trailing slash) and pull out any userinfo."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("http", "https"):
        message = f"unsupported URL scheme {parts.scheme!r} in {url!r}: use http(s) or ws(s)"
        raise ParameterError(message, errors={"url": message})
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


def _secrets_of(headers: dict[str, str], auth: tuple[str, str] | None) -> tuple[str, ...]:
    """The credential strings to redact from any text we keep: header values, bare tokens."""
    found = {auth[1]} if auth and auth[1] else set()
    for value in headers.values():
        found.add(value)
        scheme, _, rest = value.partition(" ")
        if scheme.lower() in ("bearer", "basic", "token") and rest:
            found.add(rest)
    return tuple(sorted((v for v in found if len(v) >= 4), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret replaced (an error page may echo request headers)."""
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


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


def _node_errors_of(body: dict[str, Any]) -> dict[str, Any]:
    """The answer's ``node_errors``, with a prompt-level error that names one node (0.27's
    ``missing_node_type``: ``extra_info.node_id``, empty ``node_errors``) filed under that node,
    so forms and ``job.error_node`` treat it like any other node error."""
    found = body.get("node_errors")
    node_errors: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
    error = body.get("error")
    found_extra = error.get("extra_info") if isinstance(error, dict) else None
    extra: dict[str, Any] = found_extra if isinstance(found_extra, dict) else {}
    node_id = extra.get("node_id")
    if not node_errors and isinstance(node_id, (str, int)) and isinstance(error, dict):
        class_type = extra.get("class_type")
        node_errors[str(node_id)] = {
            "errors": [
                {
                    "type": error.get("type"),
                    "message": error.get("message"),
                    "details": error.get("details") or "",
                    "extra_info": {k: v for k, v in extra.items() if k != "input_name"},
                }
            ],
            "dependent_outputs": [],
            "class_type": class_type,
        }
    return node_errors


def is_canonical_uuid(value: str) -> bool:
    """True for a lowercase hyphenated UUID, the only prompt id ComfyUI 0.27 accepts."""
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, TypeError, AttributeError):
        return False


class ClassicBackend(LoopBound):
    """One ComfyUI server over the classic protocol, seen from one ``client_id``.

    ComfyUI 0.27 added ``/api/jobs``; where the server has it (probed once per backend, again
    after a reconnect) the backend reads states and outputs from ``GET /api/jobs/{id}``, the
    queue for reconciling from ``GET /api/jobs``, and cancels through
    ``POST /api/jobs/{id}/cancel``. Older servers (0.3.64) get ``/queue``, ``/history``,
    ``/interrupt`` and ``POST /queue {"delete"}``: one code path, small per-capability branches.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ):
        self.url, userinfo = _split_url(url or os.environ.get("COMFYUI_URL") or DEFAULT_URL)
        self.client_id = str(uuid.uuid4())
        self._headers = _auth_headers(token, auth or userinfo, headers)
        self._secrets = _secrets_of(self._headers, auth or userinfo)
        self.max_output_bytes = max_output_bytes
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = running_loop()
        self._http: httpx.AsyncClient | None = None
        self._monitor: Monitor | None = None
        self._object_info: ObjectInfo | None = None
        self._object_info_raw: dict[str, Any] | None = None
        self._uploads: dict[str, asyncio.Future[str]] = {}
        self._post_lock = asyncio.Lock()
        self._posts_waiting = 0  # POSTs sent or waiting for the lock (``posting``)
        self._jobs_api: bool | None = None  # None: not probed yet

    def __repr__(self) -> str:
        return f"ClassicBackend(url={self.url!r}, client_id={self.client_id!r})"

    def request_headers(self) -> dict[str, str]:
        """A copy of the headers (credentials included) for sync code that talks to this server
        directly, e.g. a plain ``httpx.get`` of ``/view``; never log or store them."""
        return dict(self._headers)

    # --- event loop ---------------------------------------------------------------------------

    def _rebind(self) -> None:
        """Connections, the monitor and upload futures belong to the previous loop."""
        self._http = None
        self._monitor = None
        self._uploads = {}
        self._post_lock = asyncio.Lock()
        self._posts_waiting = 0

    # --- HTTP ---------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.url,
                headers=self._headers,
                timeout=_TIMEOUT,
                follow_redirects=False,  # followed in _send, credentials kept to this origin
                verify=_tls_context(),
            )
        return self._http

    async def _send(
        self, method: str, path: str, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One request, redirects followed here: httpx drops ``Authorization`` on a redirect to
        another origin but keeps custom headers (``X-Api-Key``), so every credential header is
        dropped there. With ``stream=True`` the body is left unread (the caller closes it)."""
        client = self._client()
        try:
            response = await client.send(client.build_request(method, path, **kwargs), stream=True)
            for _ in range(MAX_REDIRECTS):
                follow = response.next_request
                if follow is None:
                    break
                await response.aclose()
                if not _same_origin(follow.url, client.base_url):
                    for name in self._headers:
                        follow.headers.pop(name, None)
                response = await client.send(follow, stream=True)
            else:
                await response.aclose()
                raise ProtocolError(f"{method} {path}: more than {MAX_REDIRECTS} redirects")
            if response.status_code >= 400:
                await self._raise_for_status(method, path, response)
            if not stream:
                await response.aread()
        except httpx.TransportError as exc:
            raise ServerConnectionError(
                f"cannot reach ComfyUI at {self.url} ({method} {path}): {exc!r}"
            ) from exc
        return response

    async def _read_capped(self, response: httpx.Response, limit: int, what: str) -> bytes:
        """The body of a streamed response, refused as soon as it passes ``limit`` bytes."""
        try:
            declared = int(response.headers.get("content-length", "0"))
        except ValueError:
            declared = 0
        chunks, size = [], 0
        try:
            if declared > limit:
                raise ResponseTooLargeError(
                    f"{what} is {declared:,} bytes, more than the {limit:,} bytes this client "
                    "accepts (client.backend.max_output_bytes)"
                )
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ResponseTooLargeError(
                        f"{what} is more than the {limit:,} bytes this client accepts "
                        "(client.backend.max_output_bytes)"
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        return b"".join(chunks)

    async def _raise_for_status(self, method: str, path: str, response: httpx.Response) -> None:
        raw = await self._read_capped(response, MAX_JSON_BYTES, f"the {method} {path} error page")
        body = redact(raw.decode("utf-8", "replace"), self._secrets)
        if response.status_code in (401, 403):
            raise AuthenticationError(
                f"{method} {path} answered {response.status_code}: the server refused the "
                f"credentials (token, auth or headers given to cw.connect): {body[:_QUOTED]}",
                status_code=response.status_code,
                body=body,
            )
        if response.status_code == 400 and path == "/prompt":
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                data = None
            if isinstance(data, dict) and "error" in data:
                raise PromptValidationError(
                    _validation_message(data),
                    error=data.get("error") if isinstance(data.get("error"), dict) else {},
                    node_errors=_node_errors_of(data),
                )
        raise HTTPStatusError(
            f"{method} {path} answered {response.status_code}: {body[:300]}",
            status_code=response.status_code,
            body=body,
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one HTTP request on the client's loop; errors mapped to comfy_widgets.errors."""
        return await self._on_loop(self._send(method, path, **kwargs))

    async def _json(self, method: str, path: str, *, expect: type = dict, **kwargs: Any) -> Any:
        """The JSON answer of a request, which must be an ``expect`` (or empty: None).

        A proxy's HTML error page with status 200, or JSON of another shape, is a ProtocolError
        quoting the start of the answer, never a bare decoding error."""
        response = await self.request(method, path, stream=True, **kwargs)
        raw = await self._read_capped(response, MAX_JSON_BYTES, f"the answer to {method} {path}")
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = _NOT_JSON
        if not isinstance(data, expect):
            quoted = redact(raw[:_QUOTED].decode("utf-8", "replace"), self._secrets)
            kind = "not JSON" if data is _NOT_JSON else f"a JSON {type(data).__name__}"
            raise ProtocolError(
                f"{method} {path} on {self.url} answered {kind}, not the JSON "
                f"{expect.__name__} ComfyUI sends: {quoted!r}"
            )
        return data

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
            if not is_canonical_uuid(prompt_id):
                message = (
                    f"prompt_id {prompt_id!r} is not a lowercase hyphenated UUID, the only form "
                    "ComfyUI 0.27 accepts (str(uuid.uuid4()))"
                )
                raise ParameterError(message, errors={"prompt_id": message})
            body["prompt_id"] = prompt_id
        if front:
            body["front"] = True
        if extra_data:
            body["extra_data"] = extra_data
        return await self._on_loop(self._post_prompt(body))

    @property
    def posting(self) -> bool:
        """True while a POST /prompt is in flight or waiting its turn (counted: between two
        POSTs of a burst the lock itself is briefly free)."""
        return self._posts_waiting > 0

    async def _post_prompt(self, body: dict[str, Any]) -> dict[str, Any]:
        self._posts_waiting += 1
        try:
            async with self._post_lock:
                answer = await self._json("POST", "/prompt", json=body)
        finally:
            self._posts_waiting -= 1
        sent = body.get("prompt_id")
        if not isinstance(answer, dict) or (sent and answer.get("prompt_id") not in (None, sent)):
            got = "nothing" if answer is None else f"prompt_id {answer.get('prompt_id')!r}"
            raise ProtocolError(
                f"POST /prompt on {self.url} answered {got} for the prompt sent as {sent!r}: "
                "the server did not queue it under its id"
            )
        return answer

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
        """GET /view: the bytes of an output, temp or input file, read as a stream that is
        refused past ``max_output_bytes`` and must arrive within OUTPUT_TIMEOUT_S."""
        return await self._on_loop(self._view(filename, subfolder, type))

    async def _view(self, filename: str, subfolder: str, type: str) -> bytes:
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        what = f"output {filename!r}"

        async def read() -> bytes:
            response = await self._send("GET", "/view", stream=True, params=params)
            return await self._read_capped(response, self.max_output_bytes, what)

        try:
            return await within(OUTPUT_TIMEOUT_S, read())
        except asyncio.TimeoutError:
            raise ServerConnectionError(
                f"GET /view of {what} on {self.url} did not finish within {OUTPUT_TIMEOUT_S:.0f} s"
            ) from None

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
        """GET /models (folder names) or /models/{folder} (file names).

        An unknown folder (ComfyUI answers 404 with an empty body) raises HTTPStatusError
        naming the folder and the folders the server has.
        """
        if folder is None:
            return await self._json("GET", "/models", expect=list)
        try:
            return await self._json("GET", f"/models/{quote(folder, safe='')}", expect=list)
        except HTTPStatusError as exc:
            if exc.status_code != 404:
                raise
            try:
                folders = await self._json("GET", "/models", expect=list)
            except ServerError:
                folders = None
            known = ", ".join(str(f) for f in folders) if isinstance(folders, list) else "unknown"
            raise HTTPStatusError(
                f"{self.url} has no model folder {folder!r}; its folders are: {known}",
                status_code=404,
                body=exc.body,
            ) from None

    async def features(self) -> dict[str, Any]:
        """GET /features: what the server supports (preview metadata, upload size)."""
        return await self._json("GET", "/features")

    # --- /api/jobs (ComfyUI 0.27+) ------------------------------------------------------------

    async def has_jobs_api(self) -> bool:
        """True when the server answers ``GET /api/jobs`` (0.27+; 0.3.64 answers 404).

        Probed once and cached; ``forget_capabilities`` (after a reconnect: the server may have
        been replaced by another version) probes again. An error status or a malformed answer
        counts as "no jobs API"; refused credentials (AuthenticationError) and a server that
        cannot be reached (ServerConnectionError) raise, and nothing is cached."""
        if self._jobs_api is None:
            try:
                answer = await self._json("GET", "/api/jobs", params={"limit": 1})
            except AuthenticationError:
                raise
            except (HTTPStatusError, ProtocolError) as exc:
                # 404 on 0.3.64; any other refusal (a proxy's 502, an HTML page) also means
                # "use /queue and /history", which every version answers
                log.debug("%s: no /api/jobs (%s)", self.url, exc)
                answer = None
            self._jobs_api = isinstance(answer, dict) and isinstance(answer.get("jobs"), list)
            log.debug("%s has /api/jobs: %s", self.url, self._jobs_api)
        return self._jobs_api

    def forget_capabilities(self) -> None:
        """Probe the server's endpoints again on next use (it may have been restarted)."""
        self._jobs_api = None

    async def get_job(self, prompt_id: str) -> dict[str, Any] | None:
        """GET /api/jobs/{id}: the job (with outputs and prompt once finished), None on 404."""
        try:
            return await self._json("GET", f"/api/jobs/{quote(prompt_id, safe='')}")
        except HTTPStatusError as exc:
            if exc.status_code == 404:
                return None
            raise

    async def list_jobs(self, statuses: Iterable[str]) -> list[dict[str, Any]]:
        """GET /api/jobs?status=...: every job in those states (all pages), without outputs."""
        answer = await self._json("GET", "/api/jobs", params={"status": ",".join(statuses)})
        jobs = answer.get("jobs") if isinstance(answer, dict) else None
        if not isinstance(jobs, list):
            raise ProtocolError(f"GET /api/jobs on {self.url} answered no job list")
        return [job for job in jobs if isinstance(job, dict) and isinstance(job.get("id"), str)]

    async def cancel_job(self, prompt_id: str) -> bool:
        """POST /api/jobs/{id}/cancel: True if a waiting or running job was cancelled."""
        answer = await self._json("POST", f"/api/jobs/{quote(prompt_id, safe='')}/cancel")
        return bool(isinstance(answer, dict) and answer.get("cancelled"))

    # --- uploads ------------------------------------------------------------------------------

    async def _post_upload(self, upload: PendingUpload) -> str:
        files = {"image": (upload.name, upload.data, "application/octet-stream")}
        data = {"type": "input", "overwrite": "true"}
        answer = await self._json("POST", "/upload/image", files=files, data=data)
        name = answer.get("name", upload.name)
        if not isinstance(name, str) or not isinstance(answer.get("subfolder", ""), str):
            raise ProtocolError(f"POST /upload/image answered {answer!r:.200}")
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

    async def cancel(self, prompt_id: str) -> None:
        """Stop one prompt whether it waits or runs: ``POST /api/jobs/{id}/cancel`` where the
        server has it, else delete it from the queue and then interrupt it (in that order: a
        prompt that starts in between is still caught)."""
        if await self.has_jobs_api():
            await self.cancel_job(prompt_id)
            return
        await self.delete_queued([prompt_id])
        await self.interrupt(prompt_id)

    async def queue_state(self) -> QueueState:
        """GET /queue as running and pending prompts (pending sorted into run order), with the
        prompts as the server keeps them (``/api/jobs`` lists no prompts, resume needs them)."""
        return queue_state(await self.get_queue())

    async def queue_ids(self) -> QueueState:
        """What runs and waits, without the prompts: ``GET /api/jobs?status=in_progress,pending``
        where the server has it (an answer a few hundred bytes per item instead of every
        queued prompt), else ``GET /queue``."""
        if not await self.has_jobs_api():
            return await self.queue_state()
        jobs = await self.list_jobs(("in_progress", "pending"))
        return jobs_queue_state(jobs)

    async def outcome(self, prompt_id: str) -> PromptOutcome | None:
        """How the prompt ended (``GET /api/jobs/{id}``, else ``GET /history/{id}``), or None if
        it is unknown or unfinished."""
        if await self.has_jobs_api():
            job = await self.get_job(prompt_id)
            return job_outcome(prompt_id, job) if job is not None else None
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

    async def __aenter__(self) -> ClassicBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> ClassicBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def preload() -> None:
    """Do now what a client's first request would (import httpx's transport, build the TLS
    context), so that request is as quick as the next ones; and what its first output would:
    ``mimetypes`` reads the system's MIME tables on its first lookup (about 5 ms)."""
    import anyio._backends._asyncio  # noqa: F401  (httpx's first request imports it)
    import httpcore  # noqa: F401

    from comfy_widgets.transport import monitor  # noqa: F401  (the first watch imports it)

    _tls_context()
    if not mimetypes.inited:  # init() again would drop types the user added
        mimetypes.init()


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once per process: building one takes ~50 ms, and
    every client built its own, even for a plain http:// server."""
    return httpx.create_ssl_context()


_NOT_JSON = object()


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


def jobs_queue_state(jobs: list[dict[str, Any]]) -> QueueState:
    """``/api/jobs`` items in ``in_progress`` / ``pending`` as a QueueState (no prompts), the
    pending ones in run order (by ``priority``, the queue number)."""

    def items(status: str) -> list[QueuedPrompt]:
        found = []
        for job in jobs:
            if job.get("status") == status:
                number = job.get("priority")
                found.append(QueuedPrompt(job["id"], number if _is_number(number) else 0))
        return sorted(found, key=lambda item: item.number)

    return QueueState(tuple(items("in_progress")), tuple(items("pending")))


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_JOB_STATES = {
    "completed": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
}


def job_outcome(prompt_id: str, job: dict[str, Any]) -> PromptOutcome | None:
    """A ``GET /api/jobs/{id}`` answer as a PromptOutcome; None while it waits or runs.

    The job's ``status`` decides the state (an interrupted prompt is ``cancelled``); outputs,
    the status messages and the prompt as the server ran it (``workflow.prompt``) are read as
    ``prompt_outcome`` reads a ``/history`` entry; the job's own times (ms) win when present.
    """
    state = _JOB_STATES.get(str(job.get("status")))
    if state is None:
        return None
    found = job.get("workflow")
    workflow: dict[str, Any] = found if isinstance(found, dict) else {}
    entry = {
        "status": job.get("execution_status") or {},
        "outputs": job.get("outputs") or {},
        "prompt": [job.get("priority"), prompt_id, workflow.get("prompt")],
    }
    outcome = prompt_outcome(prompt_id, entry)
    error = outcome.error
    failure = job.get("execution_error")
    if state == JobState.FAILED and error is None and isinstance(failure, dict):
        error = _execution_error(prompt_id, failure)
    started, ended = job.get("execution_start_time"), job.get("execution_end_time")
    return replace(
        outcome,
        state=state,
        error=error if state == JobState.FAILED else None,
        message=outcome.message if state == JobState.FAILED and error is None else None,
        started_at=started / 1000 if _is_number(started) else outcome.started_at,
        finished_at=ended / 1000 if _is_number(ended) else outcome.finished_at,
    )


def _execution_error(prompt_id: str, data: dict[str, Any]) -> ExecutionErrorEvent:
    """An ``execution_error`` message (history status, or a job's ``execution_error``)."""
    return ExecutionErrorEvent(
        prompt_id,
        None if data.get("node_id") is None else str(data.get("node_id")),
        None if data.get("node_type") is None else str(data.get("node_type")),
        str(data.get("exception_message", "")),
        str(data.get("exception_type", "")),
        raw=dict(data),
    )


def prompt_outcome(prompt_id: str, entry: dict[str, Any]) -> PromptOutcome:
    """A ``/history`` entry as a PromptOutcome: final state, outputs, error, timings, prompt."""
    status: dict[str, Any] = entry["status"] if isinstance(entry.get("status"), dict) else {}
    listed = status.get("messages")
    messages: dict[str, dict[str, Any]] = {
        str(item[0]): item[1]
        for item in (listed if isinstance(listed, list) else ())
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)
    }
    started = messages.get("execution_start", {}).get("timestamp")
    finished = None
    for name in ("execution_success", "execution_error", "execution_interrupted"):
        if name in messages:
            finished = messages[name].get("timestamp", 0)
    found = entry.get("outputs")
    outputs = tuple(
        NodeOutput.from_ui(str(node_id), ui)
        for node_id, ui in (found.items() if isinstance(found, dict) else ())
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
        error = _execution_error(prompt_id, messages["execution_error"])
        return PromptOutcome(prompt_id, JobState.FAILED, error=error, **common)
    message = status.get("status_str") or "failed"
    return PromptOutcome(prompt_id, JobState.FAILED, message=str(message), **common)
