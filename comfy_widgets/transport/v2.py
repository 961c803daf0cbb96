"""Comfy API v2 over HTTP + Server-Sent Events: the low-level client, its typed answers, and
protocol detection.

Comfy Cloud and ``comfy-api-proxy`` (in front of a self-hosted ComfyUI) serve it:

- ``POST /api/v2/jobs`` ``{"workflow": <API format>}`` with an ``Idempotency-Key`` header → 201
  Job. Keys are single-use: a second submit with the same key is refused with 422
  ``idempotency_key_reuse`` (no replay), so ``V2Client.submit`` finds the job it already made.
- ``GET /api/v2/jobs/{id}``: the job, the source of truth. ``GET /api/v2/jobs?status=&limit=``.
- ``POST /api/v2/jobs/{id}/cancel`` → the job (``canceling`` while the interrupt lands).
- ``GET /api/v2/jobs/{id}/events``: SSE ``status`` ``progress`` ``preview`` ``output`` (``log``
  reserved), no ids, no replay; the stream ends after the terminal ``status``.
- ``POST /api/v2/assets`` (multipart ``file`` + ``file_path``), ``HEAD
  /api/v2/assets/by-hash/blake3:<hex>``, ``POST /api/v2/assets/from-hash``, ``GET
  /api/v2/assets/{id}/content``.
- Errors: ``{"error": {"code", "message", "details"}}``; ``queue_full`` is 429 + ``Retry-After``.
- Auth: ``Authorization: Bearer <api key>``.

Why httpx and not ``comfy-sdk``: the SDK reads its server only from ``COMFY_BASE_URL`` (one
deployment per process; a pool needs several), sends ``metadata`` as an object where the proxy
wants a string, raises its own exception tree, and retries on its own schedule. This client runs
in the caller's event loop, maps every failure onto ``comfy_widgets.errors``, bounds every body
it reads and every wait, never follows a redirect with the key to another origin, and never puts
the key in a message, a repr or a log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from comfy_widgets.errors import (
    AuthenticationError,
    HTTPStatusError,
    PromptValidationError,
    QueueFullError,
    ServerConnectionError,
    ServerError,
    SubmitOutcomeUnknownError,
)
from comfy_widgets.transport.sse import SSEError, SSEParser

log = logging.getLogger(__name__)

API = "/api/v2"
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_CONTENT_BYTES = 512 * 1024 * 1024
MAX_REDIRECTS = 5
SSE_IDLE_SECONDS = 45.0
EXPIRED_CONFIRMATIONS = 3  # the proxy sends a keep-alive comment every 15 s


class Protocol(str, Enum):
    """Which protocol a server speaks."""

    CLASSIC = "classic"  # ComfyUI's own HTTP + WebSocket
    V2 = "v2"  # Comfy API v2: Comfy Cloud, comfy-api-proxy

    def __str__(self) -> str:
        return self.value


def detect_protocol(
    url: str, *, api_key: str | None = None, protocol: str | Protocol | None = None
) -> Protocol:
    """The protocol to speak to ``url``: ``protocol`` if given, else v2 for an API key or a URL
    whose path is ``/api/v2``, else the classic ComfyUI protocol."""
    if protocol is not None:
        try:
            return Protocol(str(protocol).lower())
        except ValueError:
            allowed = ", ".join(repr(p.value) for p in Protocol)
            raise ValueError(f"protocol={protocol!r} is not one of {allowed}") from None
    if api_key:
        return Protocol.V2
    path = urlsplit(url).path.rstrip("/")
    return Protocol.V2 if path.endswith(API) or (API + "/") in path else Protocol.CLASSIC


def v2_base_url(url: str) -> str:
    """``scheme://host[:port][/prefix]`` of a v2 server, without ``/api/v2`` or credentials.

    Refuses a URL that is not http(s) or that carries ``user:password@`` (credentials go in
    ``api_key``, never in a URL that could be logged)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a Comfy API v2 URL must be http(s)://host[:port], got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("put the API key in api_key=..., not in the URL")
    path = parts.path.rstrip("/")
    if path.endswith(API):
        path = path[: -len(API)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


# --- typed answers ---------------------------------------------------------------------------


class V2Status(str, Enum):
    """A v2 job's state: queued → running → succeeded | failed | expired; canceling → canceled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CANCELING = "canceling"
    CANCELED = "canceled"
    FAILED = "failed"
    EXPIRED = "expired"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        """True for the states a job never leaves (``canceling`` is not one)."""
        return self in (V2Status.SUCCEEDED, V2Status.CANCELED, V2Status.FAILED, V2Status.EXPIRED)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)[:10_000]


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _need(data: Any, key: str, kind: type, what: str) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise ServerError(f"the v2 server sent a {what} without a valid {key!r}")
    return data[key]


@dataclass(frozen=True)
class V2Progress:
    """A progress snapshot (complete: one re-syncs a client)."""

    value: float
    nodes_done: int = 0
    nodes_total: int = 0
    current_node: str | None = None
    step: int | None = None
    steps: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> V2Progress | None:
        if not isinstance(data, dict) or not isinstance(data.get("value"), (int, float)):
            return None
        value = float(data["value"])
        return cls(
            min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0,
            _opt_int(data, "nodes_done") or 0,
            _opt_int(data, "nodes_total") or 0,
            _opt_str(data, "current_node"),
            _opt_int(data, "step"),
            _opt_int(data, "steps"),
        )


@dataclass(frozen=True)
class V2Output:
    """One committed output: an asset (``id``) whose bytes are at ``url``."""

    node_id: str
    name: str
    type: str
    content_type: str
    id: str
    url: str

    @classmethod
    def from_json(cls, data: Any) -> V2Output:
        return cls(
            str(_need(data, "node_id", str, "job output")),
            str(_need(data, "name", str, "job output")),
            str(data.get("type") or "file"),
            str(data.get("content_type") or "application/octet-stream"),
            str(_need(data, "id", str, "job output")),
            str(_need(data, "url", str, "job output")),
        )


@dataclass(frozen=True)
class V2JobError:
    """Why a job failed (``job.error``): not an HTTP error."""

    code: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    traceback: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> V2JobError | None:
        if not isinstance(data, dict):
            return None
        return cls(
            str(data.get("code") or "error"),
            str(data.get("message") or "")[:10_000],
            _opt_str(data, "node_id"),
            _opt_str(data, "class_type"),
            _opt_str(data, "traceback"),
        )


@dataclass(frozen=True)
class V2Job:
    """One job as the server reports it."""

    id: str
    status: V2Status
    queue_position: int | None = None
    progress: V2Progress | None = None
    outputs: tuple[V2Output, ...] = ()
    error: V2JobError | None = None
    metadata: str | None = None
    outputs_reused: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> V2Job:
        job_id = _need(data, "id", str, "job")
        try:
            status = V2Status(_need(data, "status", str, "job"))
        except ValueError:
            raise ServerError(f"the v2 server sent job {job_id} with an unknown status") from None
        outputs = data.get("outputs") or []
        meta = data.get("metadata")
        return cls(
            job_id,
            status,
            _opt_int(data, "queue_position"),
            V2Progress.from_json(data.get("progress")),
            tuple(V2Output.from_json(o) for o in outputs) if isinstance(outputs, list) else (),
            V2JobError.from_json(data.get("error")),
            meta if isinstance(meta, str) else (json.dumps(meta) if meta else None),
            bool(data.get("outputs_reused", False)),
            data,
        )


@dataclass(frozen=True)
class V2Asset:
    """An uploaded asset: ``ref`` is what a workflow input carries to use it."""

    id: str
    hash: str | None
    file_path: str | None

    @property
    def ref(self) -> dict[str, Any]:
        """The ``core/ASSET`` reference a workflow carries in place of a file name."""
        info: dict[str, Any] = {"id": self.id}
        if self.hash:
            info["hash"] = self.hash
        if self.file_path:
            info["file_path"] = self.file_path
        return {"__type": "core/ASSET", "info": info}


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusChange:
    """SSE ``status``."""

    status: V2Status
    queue_position: int | None = None


@dataclass(frozen=True)
class ProgressUpdate:
    """SSE ``progress``."""

    progress: V2Progress


@dataclass(frozen=True)
class PreviewImage:
    """SSE ``preview``: a decoded preview image."""

    node_id: str | None
    content_type: str
    image: bytes = field(repr=False)


@dataclass(frozen=True)
class OutputReady:
    """SSE ``output``: one output was committed."""

    output: V2Output


@dataclass(frozen=True)
class LogLine:
    """SSE ``log`` (reserved; best-effort diagnostics)."""

    level: str
    message: str


V2Event = StatusChange | ProgressUpdate | PreviewImage | OutputReady | LogLine


def parse_event(name: str, data: str) -> V2Event | None:
    """One SSE event as a typed value; None for names this client does not know."""
    import base64
    import binascii

    try:
        payload = json.loads(data)
    except json.JSONDecodeError:
        raise ServerError(f"the v2 server sent a {name!r} event that is not JSON") from None
    if not isinstance(payload, dict):
        raise ServerError(f"the v2 server sent a {name!r} event that is not an object")
    if name == "status":
        try:
            status = V2Status(payload.get("status"))
        except ValueError:
            raise ServerError("the v2 server sent a status event with an unknown status") from None
        return StatusChange(status, _opt_int(payload, "queue_position"))
    if name == "progress":
        progress = V2Progress.from_json(payload)
        return ProgressUpdate(progress) if progress else None
    if name == "preview":
        try:
            image = base64.b64decode(str(payload.get("data_base64", "")), validate=True)
        except (binascii.Error, ValueError):
            raise ServerError("the v2 server sent a preview that is not base64") from None
        return PreviewImage(
            _opt_str(payload, "node_id") or None,
            str(payload.get("content_type") or "image/jpeg"),
            image,
        )
    if name == "output":
        return OutputReady(V2Output.from_json(payload))
    if name == "log":
        return LogLine(str(payload.get("level", "info")), str(payload.get("message", ""))[:10_000])
    return None


# --- the client ------------------------------------------------------------------------------


def _retry_after(response: httpx.Response, default: float) -> float:
    """The ``Retry-After`` seconds (bounded to [0.05, 60]), or ``default``."""
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        value = default
    if not math.isfinite(value):
        value = default
    return min(60.0, max(0.05, value))


class V2Client:
    """Talks Comfy API v2 to one server, in the running event loop.

    ``transport`` replaces httpx's network transport (tests inject faults with it). Every call
    raises a ``comfy_widgets.errors`` exception: ``ServerConnectionError`` when the server cannot
    be reached, ``AuthenticationError`` (401/403), ``QueueFullError``, ``PromptValidationError``
    (the workflow was refused), ``HTTPStatusError`` otherwise.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        queue_full_budget: float = 600.0,
        retry_budget: float = 60.0,
    ) -> None:
        self.url = v2_base_url(url)
        self._api_key = api_key or None
        self._timeout = httpx.Timeout(timeout, connect=min(10.0, timeout))
        self.queue_full_budget = queue_full_budget
        self.retry_budget = retry_budget
        self._http = httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=False, transport=transport
        )
        self._assets: dict[str, V2Asset] = {}  # blake3 hash -> asset: each upload once

    def __repr__(self) -> str:
        return f"V2Client({self.url!r}, authenticated={self._api_key is not None})"

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # -- plumbing -----------------------------------------------------------------------------

    def _absolute(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.url + (path_or_url if path_or_url.startswith(API) else API + path_or_url)

    def _headers(self, url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Request headers; the API key only for this server's own origin."""
        headers = {"Accept": "application/json"}
        if self._api_key and _origin(url) == _origin(self.url):
            headers["Authorization"] = f"Bearer {self._api_key}"
        headers.update(extra or {})
        return headers

    async def _send(
        self,
        method: str,
        path_or_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request, following up to MAX_REDIRECTS redirects by hand so the key never
        reaches another origin; the response is open (streamed): the caller reads and closes."""
        url = self._absolute(path_or_url)
        for _ in range(MAX_REDIRECTS + 1):
            request = self._http.build_request(
                method,
                url,
                headers=self._headers(url, headers),
                timeout=timeout or self._timeout,
                **kwargs,
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise ServerConnectionError(
                    f"cannot reach the v2 server {self.url}: {type(exc).__name__}"
                ) from None
            if response.status_code not in (301, 302, 303, 307, 308) or method not in (
                "GET",
                "HEAD",
            ):
                return response
            location = response.headers.get("Location", "")
            await response.aclose()
            if not location:
                break
            url = urljoin(url, location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise ServerError(f"the v2 server redirected to a non-http URL ({method})")
        raise ServerError(f"the v2 server sent too many or broken redirects for {method}")

    async def _read(self, response: httpx.Response, limit: int) -> bytes:
        """The body, at most ``limit`` bytes (else ServerError), and close the response."""
        try:
            declared = int(response.headers.get("Content-Length", "0"))
            if declared > limit:
                raise ServerError(f"the v2 server sent {declared} bytes (the limit is {limit})")
            if response.is_stream_consumed:  # built in memory (an injected answer)
                if len(response.content) > limit:
                    raise ServerError(f"the v2 server sent more than {limit} bytes")
                return response.content
            body = bytearray()
            async for chunk in response.aiter_bytes():  # decoded: the bound is on what we keep
                body += chunk
                if len(body) > limit:
                    raise ServerError(f"the v2 server sent more than {limit} bytes")
            return bytes(body)
        except httpx.TransportError as exc:
            raise ServerConnectionError(
                f"the v2 server {self.url} broke off an answer: {type(exc).__name__}"
            ) from None
        finally:
            await response.aclose()

    async def _json(self, response: httpx.Response) -> Any:
        body = await self._read(response, MAX_JSON_BYTES)
        try:
            return json.loads(body) if body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ServerError(
                f"the v2 server answered HTTP {response.status_code} with a body that is not JSON"
            ) from None

    async def _error(self, response: httpx.Response, what: str) -> ServerError:
        """The exception for a non-success answer, from the v2 error envelope."""
        status = response.status_code
        try:
            body = await self._json(response)
        except ServerError:
            body = None
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        code = str(err.get("code") or "")
        message = str(err.get("message") or "")[:2_000]
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
        text = (
            f"{what}: HTTP {status}"
            + (f" {code}" if code else "")
            + (f": {message}" if message else "")
        )
        raw = json.dumps(body)[:2_000] if body is not None else ""
        if status in (401, 403):
            return AuthenticationError(text + " (check the api_key)", status_code=status, body=raw)
        if code == "queue_full" or (status == 429 and code != "too_many_streams"):
            return QueueFullError(
                text,
                status_code=status,
                body=raw,
                retry_after=_retry_after(response, 1.0),
            )
        if code in ("invalid_workflow", "workflow_format_ui", "missing_asset"):
            node_errors = details.get("node_errors") if isinstance(details, dict) else None
            return PromptValidationError(
                text + _node_errors_summary(node_errors),
                error={"type": code, "message": message, "details": details},
                node_errors=node_errors if isinstance(node_errors, dict) else {},
            )
        error = HTTPStatusError(text, status_code=status, body=raw)
        error.code = code  # type: ignore[attr-defined]
        return error

    async def _call(
        self, method: str, path: str, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> Any:
        response = await self._send(method, path, **kwargs)
        if response.status_code not in ok:
            raise await self._error(response, what)
        return await self._json(response)

    # -- jobs ---------------------------------------------------------------------------------

    async def submit(
        self,
        workflow: dict[str, Any],
        *,
        idempotency_key: str,
        metadata: str | None = None,
        extra_data: dict[str, Any] | None = None,
    ) -> V2Job:
        """Queue ``workflow`` (API format) once, whatever the network does.

        A lost answer is retried with the same ``idempotency_key``; if the server says the key
        was used, the job it made is found by ``metadata`` (the proxy lists its jobs). A full
        queue is waited out (``Retry-After``) up to ``queue_full_budget`` seconds; a proxy that
        cannot reach its ComfyUI (503 ``upstream_unreachable``) is retried for
        ``retry_budget`` seconds under a derived key.
        """
        body: dict[str, Any] = {"workflow": workflow}
        if metadata is not None:
            body["metadata"] = metadata
        if extra_data:
            body["extra_data"] = extra_data
        started = time.monotonic()
        attempt = 0
        key = idempotency_key
        sent = False  # True once a request may have reached the server
        while True:
            attempt += 1
            try:
                response = await self._send(
                    "POST", "/jobs", json=body, headers={"Idempotency-Key": key}
                )
            except ServerConnectionError:
                sent = True
                if time.monotonic() - started > self.retry_budget:
                    raise
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status_code == 201:
                return V2Job.from_json(await self._json(response))
            error = await self._error(response, "submitting a job")
            code = getattr(error, "code", "")
            if isinstance(error, QueueFullError):
                if time.monotonic() - started + (error.retry_after or 0) > self.queue_full_budget:
                    raise error
                log.info("v2 queue full at %s; waiting %.2fs", self.url, error.retry_after)
                await asyncio.sleep(error.retry_after or 1.0)
                continue
            if code == "idempotency_key_reuse" and sent:
                return await self._recover(key, metadata)
            if code == "idempotency_key_reuse":
                raise SubmitOutcomeUnknownError(
                    f"the v2 server {self.url} says this item's Idempotency-Key was already "
                    "used by an earlier submit; not sending it again",
                    key=key,
                )
            if code == "upstream_unreachable" and time.monotonic() - started < self.retry_budget:
                # The proxy could not reach ComfyUI and holds the key (it cannot know whether
                # ComfyUI took the prompt), so the same key would only be refused: wait, then
                # send under a derived key. Its label (metadata) stays, for recovery.
                key = f"{idempotency_key}.u{attempt}"
                sent = False
                await asyncio.sleep(_backoff(attempt + 2))
                continue
            raise error

    async def _recover(self, key: str, metadata: str | None) -> V2Job:
        """The job an earlier, unanswered submit made (matched by its ``metadata`` label)."""
        if metadata is not None:
            for job in await self.list_jobs(limit=100):
                if job.metadata == metadata:
                    return job
        raise SubmitOutcomeUnknownError(
            f"a submit to {self.url} may have reached the server but it lists no job for it; "
            "not sending it again (it could run twice)",
            key=key,
        )

    async def get_job(self, job_id: str) -> V2Job:
        """The job's current state (the source of truth).

        ``expired`` is read again before it is believed: the proxy reads ComfyUI's history
        before its queue, so a job that finishes between the two reads is briefly in neither
        and reported ``expired`` (seen at the end of runs and cancels on the simulator)."""
        job = await self._get_job(job_id)
        for _ in range(EXPIRED_CONFIRMATIONS):
            if job.status is not V2Status.EXPIRED:
                break
            await asyncio.sleep(0.25)
            job = await self._get_job(job_id)
        return job

    async def _get_job(self, job_id: str) -> V2Job:
        body = await self._call("GET", f"/jobs/{_segment(job_id)}", "reading a job")
        return V2Job.from_json(body)

    async def list_jobs(self, status: str | None = None, limit: int = 100) -> list[V2Job]:
        """Recent jobs, newest first (``status``: comma-separated states)."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        body = await self._call("GET", "/jobs", "listing jobs", params=params)
        jobs = body.get("jobs") if isinstance(body, dict) else None
        return [V2Job.from_json(j) for j in jobs] if isinstance(jobs, list) else []

    async def cancel(self, job_id: str) -> V2Job:
        """Ask the server to cancel the job; it answers ``canceling`` until the interrupt lands.

        The answer is what the server saw right after the cancel (``expired`` included, see
        ``get_job``); follow the job to learn how it ended."""
        body = await self._call("POST", f"/jobs/{_segment(job_id)}/cancel", "cancelling a job")
        return V2Job.from_json(body)

    async def events(self, job_id: str) -> AsyncIterator[V2Event]:
        """The job's live events, on one connection, until the server ends the stream.

        Raises ServerConnectionError when the connection drops or stays silent longer than
        SSE_IDLE_SECONDS (keep-alives count): the caller polls ``get_job`` then, as SSE has no
        replay.
        """
        timeout = httpx.Timeout(self._timeout.connect or 10.0, read=SSE_IDLE_SECONDS)
        response = await self._send(
            "GET",
            f"/jobs/{_segment(job_id)}/events",
            headers={"Accept": "text/event-stream"},
            timeout=timeout,
        )
        if response.status_code != 200:
            raise await self._error(response, "opening the job's events")
        parser = SSEParser()
        try:
            async for chunk in response.aiter_bytes():
                for sse in parser.feed(chunk):
                    event = parse_event(sse.event, sse.data)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise ServerConnectionError(
                f"the event stream of job {job_id} broke off: {type(exc).__name__}"
            ) from None
        except SSEError as exc:
            raise ServerError(f"the event stream of job {job_id} is malformed: {exc}") from None
        finally:
            await response.aclose()

    # -- assets -------------------------------------------------------------------------------

    async def upload(self, name: str, data: bytes, content_type: str | None = None) -> V2Asset:
        """Upload ``data`` as an input asset once: a hash the server has is reused, not sent."""
        import mimetypes

        import blake3

        digest = "blake3:" + blake3.blake3(data).hexdigest()
        if digest in self._assets:
            return self._assets[digest]
        head = await self._send("HEAD", f"/assets/by-hash/{digest}")
        await head.aclose()
        if head.status_code == 200:
            body = await self._call(
                "POST",
                "/assets/from-hash",
                "reusing an asset",
                ok=(200, 201),
                json={"hash": digest},
            )
        else:
            mime = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
            body = await self._call(
                "POST",
                "/assets",
                "uploading an asset",
                ok=(200, 201),
                files={"file": (name, data, mime)},
                data={"file_path": name, "expected_hash": digest},
            )
        asset = V2Asset(
            str(_need(body, "id", str, "asset")),
            body.get("hash") if isinstance(body.get("hash"), str) else digest,
            body.get("file_path") if isinstance(body.get("file_path"), str) else None,
        )
        self._assets[digest] = asset
        return asset

    async def fetch(self, url_or_path: str, limit: int = MAX_CONTENT_BYTES) -> bytes:
        """The bytes of an output (its ``url``, or ``/assets/{id}/content``), at most ``limit``."""
        response = await self._send("GET", url_or_path, headers={"Accept": "*/*"})
        if response.status_code != 200:
            raise await self._error(response, "fetching an output")
        return await self._read(response, limit)

    async def health(self) -> bool:
        """True if the server answers its health probe."""
        try:
            response = await self._send("GET", "/health")
        except ServerConnectionError:
            return False
        await response.aclose()
        return response.status_code == 200


def _node_errors_summary(node_errors: Any, limit: int = 5) -> str:
    """``; node 3 (KSampler): <reason>`` for the first few of ComfyUI's node_errors."""
    if not isinstance(node_errors, dict):
        return ""
    parts = []
    for node_id, entry in list(node_errors.items())[:limit]:
        entry = entry if isinstance(entry, dict) else {}
        found = entry.get("errors")
        errors: list[Any] = found if isinstance(found, list) else []
        reasons = ", ".join(
            str(e.get("message", "")) + (f" ({e['details']})" if e.get("details") else "")
            for e in errors[:3]
            if isinstance(e, dict)
        )
        parts.append(f"node {node_id} ({entry.get('class_type', '?')}): {reasons or 'invalid'}")
    return "".join("; " + part[:300] for part in parts)


def _segment(job_id: str) -> str:
    """A job id as one URL path segment; refuses anything that could change the path."""
    if not job_id or any(c in job_id for c in "/?#%\\") or job_id in (".", ".."):
        raise ValueError(f"not a v2 job id: {job_id!r}")
    return job_id


def _backoff(attempt: int) -> float:
    """Seconds before retry ``attempt``: 0.2, 0.4 … capped at 3 s, with jitter."""
    return min(3.0, 0.1 * 2**attempt) * (0.75 + random.random() / 2)


async def follow_job(
    client: V2Client,
    job_id: str,
    on_event: Callable[[V2Event], None] | None = None,
    *,
    on_poll: Callable[[V2Job], None] | None = None,
    use_sse: bool = True,
    poll_interval: float = 0.5,
    unreachable_for: float = 300.0,
) -> V2Job:
    """Follow a job to its end and return it as ``GET /jobs/{id}`` reports it (the truth).

    SSE brings status, progress, previews and outputs as they happen (``on_event``); the job
    read back over plain HTTP decides the end (``on_poll`` sees each read). SSE has no replay,
    so after a dropped stream the job is polled, and the stream is reopened (with growing
    pauses) while it still runs. A server
    that stays unreachable for ``unreachable_for`` seconds ends the wait with
    ServerConnectionError.
    """
    sse_failures = 0
    sse_at = 0.0  # when the stream may be (re)opened
    down_since: float | None = None
    job: V2Job | None = None
    while True:
        if use_sse and time.monotonic() >= sse_at and _worth_streaming(job):
            try:
                async for event in client.events(job_id):
                    if on_event is not None:
                        on_event(event)
                    if isinstance(event, StatusChange) and event.status.terminal:
                        break
                sse_failures = 0
            except (ServerConnectionError, HTTPStatusError, ServerError) as exc:
                sse_failures += 1
                sse_at = time.monotonic() + _backoff(sse_failures + 2)
                log.debug("v2 event stream of %s ended (%s); polling", job_id, type(exc).__name__)
        try:
            job = await client.get_job(job_id)
            down_since = None
        except ServerConnectionError:
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > unreachable_for:
                raise
            await asyncio.sleep(_backoff(3))
            continue
        if job.status.terminal:
            return job
        if on_poll is not None:
            on_poll(job)
        await asyncio.sleep(_poll_pause(job, poll_interval))


def _poll_pause(job: V2Job, base: float) -> float:
    """Seconds until the next read: ``base`` for a running or next job, longer the deeper it
    waits (each read costs the proxy two ComfyUI requests), at most 5 s."""
    position = job.queue_position or 0
    if job.status is not V2Status.QUEUED or position <= 1:
        return base
    return min(5.0, base * (1 + position / 4))


def _worth_streaming(job: V2Job | None) -> bool:
    """Open a stream for a job that runs or is next: streams are few (the proxy allows 8), and
    a job deep in the queue has nothing to stream but its place, which polling gives."""
    if job is None or job.status in (V2Status.RUNNING, V2Status.CANCELING):
        return True
    return job.status == V2Status.QUEUED and (job.queue_position or 0) <= 1
