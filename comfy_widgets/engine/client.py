"""The Client: the facade users hold (``cw.connect``), owning a Backend and a Recorder.

``client.run`` / ``client.submit`` / ``client.batch`` make Jobs and Batches (the engine) that
talk to the server through ``client.backend`` (``ClassicBackend`` for ComfyUI's own protocol,
``V2Backend`` for Comfy API v2: Comfy Cloud or ``comfy-api-proxy``; see
``comfy_widgets.transport.choose`` for how ``connect`` picks one) and record
through ``client.recorder`` (the SQLite store by default, ``NullRecorder`` with ``store=None``).
The server calls of the backend are also offered here (``get_queue``, ``view``, ...), so scripts
and notebooks keep one object per server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

import httpx

from comfy_widgets.engine.recording import writer_for
from comfy_widgets.engine.validation import check_server_models
from comfy_widgets.errors import BlockingCallError, ParameterError
from comfy_widgets.loops import running_loop
from comfy_widgets.records import NullRecorder, Recorder, open_recorder
from comfy_widgets.transport.choose import describe, open_backend
from comfy_widgets.transport.uploads import PendingUpload, prepare_image_values

if TYPE_CHECKING:
    from comfy_widgets.engine.batch import Batch
    from comfy_widgets.engine.job import Job
    from comfy_widgets.transport.classic import ClassicBackend
    from comfy_widgets.transport.monitor import Monitor
    from comfy_widgets.transport.v2 import Protocol
    from comfy_widgets.transport.v2_backend import V2Backend
    from comfy_widgets.workflow.object_info import ObjectInfo
    from comfy_widgets.workflow.workflow import Workflow


DEFAULT_CALL_TIMEOUT_S = 60.0


class Client:
    """One ComfyUI server, seen from one ``client_id``: runs workflows as Jobs and Batches."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        store: Any = None,
        backend: ClassicBackend | V2Backend | None = None,
        api_key: str | None = None,
        protocol: str | Protocol | None = None,
    ):
        self.backend: ClassicBackend | V2Backend = backend or open_backend(
            url, token=token, auth=auth, headers=headers, api_key=api_key, protocol=protocol
        )
        self.recorder: Recorder = open_recorder(store)
        # each model folder's files as the server last listed them for a batch's check: a
        # batch whose files were all there starts without asking again (check_models_on_server)
        self.models_seen: dict[str, frozenset[str]] = {}

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, protocol={self.protocol!r}, client_id={self.client_id!r})"

    @property
    def protocol(self) -> str:
        """``"classic"`` (ComfyUI's HTTP + WebSocket) or ``"v2"`` (Comfy API v2)."""
        return describe(self.backend)

    def for_server(self, url: str) -> Client:
        """A client for another server that records into this client's Recorder (a v2 server
        takes its key from ``$COMFY_API_KEY``; otherwise pass ``cw.connect(url, api_key=...)``)."""
        return Client(url, store=self.recorder)

    @property
    def store(self) -> Recorder | None:
        """The Recorder generations are recorded in, or None when recording is off."""
        return None if isinstance(self.recorder, NullRecorder) else self.recorder

    @store.setter
    def store(self, store: Any) -> None:
        self.recorder = open_recorder(store)

    # --- the backend's loop and identity -------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's base URL (no credentials)."""
        return self.backend.url

    @property
    def client_id(self) -> str:
        """The id this client's WebSocket announces."""
        return self.backend.client_id

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop all of this client's I/O runs on."""
        return self.backend.loop

    def on_loop_thread(self) -> bool:
        """True when called from code running on the client's loop."""
        return self.backend.on_loop_thread()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the client's loop, from any thread."""
        self.backend.call_soon(fn, *args)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start ``coro`` on the client's loop from any thread; returns a thread-safe future."""
        return self.backend.spawn(coro)

    def request_headers(self) -> dict[str, str]:
        """A copy of the request headers (credentials included); never log or store them."""
        return self.backend.request_headers()

    @property
    def monitor(self) -> Monitor:
        """The WebSocket monitor of the backend."""
        return self.backend.monitor

    @property
    def posting(self) -> bool:
        """True while a POST /prompt is in flight or waiting its turn."""
        return self.backend.posting

    def call(
        self,
        request: Callable[..., Coroutine[Any, Any, Any]] | Coroutine[Any, Any, Any],
        *args: Any,
        timeout: float | None = DEFAULT_CALL_TIMEOUT_S,
        **kwargs: Any,
    ) -> Any:
        """Run one of the client's coroutines to its result from plain (non-async) code.

        ``client.call(client.models, "checkpoints")`` or ``client.call(client.get_queue())``;
        like ``job.result()`` it raises BlockingCallError inside a running event loop (a
        notebook cell: ``await client.models("checkpoints")`` there), since blocking that loop
        would also block the socket and HTTP calls the answer depends on.
        """
        if running_loop() is not None:
            if asyncio.iscoroutine(request):
                request.close()  # never awaited: no "coroutine was never awaited" warning
            name = getattr(request, "__name__", None) or getattr(request, "__qualname__", "...")
            raise BlockingCallError(
                f"client.call() would block the running event loop; use "
                f"`await client.{name}(...)` instead"
            )
        coro = request if asyncio.iscoroutine(request) else request(*args, **kwargs)
        future = self.spawn(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer from {self.url} after {timeout} s") from None

    # --- server calls (the classic protocol's HTTP API) ---------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one HTTP request on the client's loop; errors mapped to comfy_widgets.errors."""
        return await self.backend.request(method, path, **kwargs)

    async def queue_prompt(
        self,
        prompt: dict[str, Any],
        *,
        prompt_id: str | None = None,
        front: bool = False,
        extra_data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST /prompt; returns ``{prompt_id, number, node_errors}``."""
        return await self.backend.queue_prompt(
            prompt, prompt_id=prompt_id, front=front, extra_data=extra_data
        )

    async def get_queue(self) -> dict[str, Any]:
        """GET /queue."""
        return await self.backend.get_queue()

    async def get_history(
        self, prompt_id: str | None = None, max_items: int | None = None
    ) -> dict[str, Any]:
        """GET /history or /history/{id}."""
        return await self.backend.get_history(prompt_id, max_items)

    async def delete_queued(self, ids: Iterable[str]) -> None:
        """Remove pending prompts from the queue."""
        await self.backend.delete_queued(ids)

    async def clear_queue(self) -> None:
        """Remove every pending prompt (of every client) from the queue."""
        await self.backend.clear_queue()

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt (only ``prompt_id`` if given)."""
        await self.backend.interrupt(prompt_id)

    async def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """GET /view: the bytes of an output, temp or input file."""
        return await self.backend.view(filename, subfolder, type)

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        """GET /object_info (or one class): raw node definitions."""
        return await self.backend.object_info(node_class)

    async def get_object_info(self) -> ObjectInfo:
        """The server's object_info as an ObjectInfo, fetched once and cached."""
        return await self.backend.get_object_info()

    async def system_stats(self) -> dict[str, Any]:
        """GET /system_stats."""
        return await self.backend.system_stats()

    async def models(self, folder: str | None = None) -> list[str]:
        """GET /models or /models/{folder}."""
        return await self.backend.models(folder)

    async def features(self) -> dict[str, Any]:
        """GET /features."""
        return await self.backend.features()

    async def upload_image(self, image: Any) -> str:
        """Upload a PIL image, path, numpy array or bytes under a content-addressed name."""
        return await self.backend.upload_image(image)

    async def ensure_uploaded(self, upload: PendingUpload) -> str:
        """Upload ``upload`` unless already done; returns its server name."""
        return await self.backend.ensure_uploaded(upload)

    def forget_uploads(self) -> None:
        """Forget what was uploaded."""
        self.backend.forget_uploads()

    # --- jobs ---------------------------------------------------------------------------------

    def _load_workflow(self, workflow: Any) -> Workflow:
        from comfy_widgets.workflow.workflow import Workflow

        wf = workflow if isinstance(workflow, Workflow) else Workflow.load(workflow)
        info = self.backend.cached_object_info
        if info is not None and wf.object_info is not info:
            wf = wf.with_object_info(info)
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
        used = {_recorded_name(wf, name): value for name, value in merged.items()}
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
        from comfy_widgets.engine.job import Job

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
        """Run many variations of a workflow (see comfy_widgets.engine.batch.Batch)."""
        from comfy_widgets.engine.batch import Batch

        return Batch(self, workflow, count=count, **variations)

    # --- lifetime -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Write the records still queued for the store, stop the WebSocket monitor and close
        HTTP connections."""
        if self.on_loop_thread():
            await writer_for(self.recorder, self.loop).flush()
        else:
            await asyncio.wrap_future(self.spawn(writer_for(self.recorder, self.loop).flush()))
        await self.backend.aclose()

    def close(self) -> None:
        """Blocking ``aclose`` for scripts (outside a running loop)."""
        if not self.on_loop_thread() and self.backend.loop.is_running():
            self.spawn(writer_for(self.recorder, self.loop).flush()).result(timeout=60)
        self.backend.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recorded_name(wf: Workflow, name: str) -> str:
    """The friendly name a value is recorded under. A child of the DynamicCombo option the
    values switch to (``2.resize_type.width`` with ``resize_type="scale dimensions"``) is no
    parameter of the workflow as loaded; ``apply`` accepted it, so it keeps its key."""
    try:
        return wf.parameter(name).name
    except ParameterError:
        return name


def connect(
    url: str | None = None,
    *,
    token: str | None = None,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    store: Any = "default",
    api_key: str | None = None,
    protocol: str | None = None,
) -> Client:
    """A Client for ``url`` (default ``$COMFYUI_URL``, else ComfyUI's 127.0.0.1:8188).

    The protocol is detected: ``protocol="v2"``/``"classic"`` if given, else Comfy API v2 for
    an ``api_key``, a ``…/api/v2`` URL, or a server answering v2 while ``$COMFY_API_KEY`` is
    set (used as its key), else the classic one. ``cw.connect("https://…", api_key=...)``
    reaches Comfy Cloud or a ``comfy-api-proxy``; runs, batches, forms and the store work the
    same on both.

    Every generation is recorded in ``store``: by default the SQLite store under
    ``$COMFY_WIDGETS_HOME`` or ``./.comfy_widgets``; pass a Recorder (e.g. a ``Store``), or
    None/False to record nothing (not even the form's last-used values). Credentials may come
    from ``token`` (Bearer), ``auth`` (basic), ``headers`` or
    the URL's userinfo (classic), or ``api_key`` (v2); they are kept in memory only.
    """
    client = Client(
        url,
        token=token,
        auth=auth,
        headers=headers,
        store=store,
        api_key=api_key,
        protocol=protocol,
    )
    _load_run_modules()
    return client


def _load_run_modules() -> None:
    """Load now what the first run would (the engine, the transport and its TLS context), so
    a session's first batch is as quick as the next ones.

    The ~40,000 objects these imports leave live as long as the process: one collection now
    settles them in the collector's oldest generation; left pending, they make it do a full
    pass (20-35 ms) in the middle of the first batch."""
    from comfy_widgets.engine import batch, job  # noqa: F401
    from comfy_widgets.transport import classic

    classic.preload()
    gc.collect()
