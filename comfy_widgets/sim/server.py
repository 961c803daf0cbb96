"""The simulated ComfyUI server: state, lifecycle, the worker and WebSocket delivery.

Message routing follows ComfyUI's server.py: frames go through one ordered outbox; a frame with
a `sid` goes only to the socket registered under that clientId, a frame without one to every
registered socket. A second socket with the same clientId replaces the first; when the older one
closes it removes the registration, leaving the newer socket deaf, exactly like ComfyUI 0.3.64.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import logging
import shutil
import struct
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from PIL import Image

from comfy_widgets.sim import catalog, frontend, images
from comfy_widgets.sim.executor import Executor
from comfy_widgets.sim.faults import Faults
from comfy_widgets.sim.outputs import OutputWriter
from comfy_widgets.sim.queue import PromptQueue
from comfy_widgets.sim.routes import build_app
from comfy_widgets.sim.versions import NEWEST, Emulate, Profile

log = logging.getLogger(__name__)

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
JPEG = 1
HOLD_POLL = 0.05  # how often a waiting step re-reads its duration
CLOSE_WAIT_S = 1.0  # how long closing a socket waits for the client's reply (stop, restart)


@dataclass
class SimSettings:
    """Knobs of a simulated server (mutable while it runs)."""

    host: str = "127.0.0.1"
    port: int = 0
    seconds_per_step: float = 0.05
    seconds_per_node: float = 0.0
    previews: bool = True
    models: dict[str, list[str]] = field(default_factory=dict)
    data_dir: Path | None = None
    emulate: Emulate = NEWEST  # the ComfyUI version whose protocol and node set are served
    front_end_root: Path | None = None  # serve a web frontend from here (sim/frontend.py)
    object_info_file: Path | None = None  # serve this /object_info (.json or .json.gz) as is


class SimServer:
    """One simulated ComfyUI on an aiohttp site; create and use it inside its event loop."""

    def __init__(self, settings: SimSettings | None = None) -> None:
        self.settings = settings or SimSettings()
        self.settings.emulate = Emulate.parse(self.settings.emulate)
        self.faults = Faults(self)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = self.settings.port
        self._owned_dir: Path | None = None
        self.root = Path(self.settings.data_dir) if self.settings.data_dir else None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._open_sockets: set[web.WebSocketResponse] = set()
        self._object_info_cache: tuple[tuple, bytes, dict] | None = None  # (key, body, dict)
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.sockets_metadata: dict[str, dict] = {}
        # Called with the aiohttp app after the API routes, before "/": add routes (a frontend).
        self.route_hooks: list[Callable[[web.Application], None]] = []
        if self.settings.front_end_root is not None:
            root = frontend.check_root(self.settings.front_end_root)
            self.route_hooks.append(lambda app: frontend.install(app, self, root))

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def profile(self) -> Profile:
        """What the emulated ComfyUI version serves and how it behaves."""
        return self.settings.emulate.profile

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8188."""
        return f"http://{self.settings.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """WebSocket URL without clientId."""
        return f"ws://{self.settings.host}:{self.port}/ws"

    async def start(self) -> SimServer:
        """Create the folders, reset the state and start listening."""
        self.loop = asyncio.get_running_loop()
        if self.root is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="comfy_sim_"))
            self.root = self._owned_dir
            atexit.register(self._remove_owned_dir)  # also when never stopped (notebooks)
        for name in ("input", "output", "temp"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self._seed_input_images()
        self._reset_state()
        await self._listen()
        return self

    async def astop(self) -> None:
        """Stop listening, close sockets, end the worker; remove the data folder if ours."""
        await self._stop_tasks()
        await self._unlisten()
        if self._owned_dir is not None:
            atexit.unregister(self._remove_owned_dir)
            self._remove_owned_dir()

    def _remove_owned_dir(self) -> None:
        """Delete the temporary data folder this server created."""
        shutil.rmtree(self._owned_dir, ignore_errors=True)

    async def arestart(self, keep_state: bool = False, down_for: float = 0.0) -> None:
        """Go down and come back on the same port.

        keep_state=False is a real restart: queue, running prompt, history and cache are lost
        (files already written stay). keep_state=True only drops the listener and the sockets
        (a network outage): prompts keep running and history is kept.
        """
        if not keep_state:
            await self._stop_tasks()
        await self._unlisten()
        if down_for > 0:
            await asyncio.sleep(down_for)
        if not keep_state:
            self._reset_state()
        await self._listen()

    def _reset_state(self) -> None:
        self.queue = PromptQueue(self.queue_updated)
        self.number = 0
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.interrupt_flag = asyncio.Event()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.executor = Executor(self)
        self._free_after_prompt = False
        shutil.rmtree(self.root / "temp", ignore_errors=True)
        (self.root / "temp").mkdir(parents=True, exist_ok=True)
        self.writer = OutputWriter(self.root / "output", self.root / "temp")
        self._tasks = [asyncio.create_task(self._publish()), asyncio.create_task(self._work())]

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _listen(self) -> None:
        self._runner = web.AppRunner(build_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        await self.close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close_sockets(self) -> None:
        """Close every open WebSocket (registered or orphaned), all at once."""
        await asyncio.gather(
            *(ws.close(code=1001, message=b"server going away") for ws in list(self._open_sockets))
        )

    def call_in_loop(self, coro_fn) -> None:
        """Run `coro_fn()` on the server loop from any thread (waits if called from another)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            asyncio.ensure_future(coro_fn())
            return
        future = asyncio.run_coroutine_threadsafe(coro_fn(), self.loop)
        try:
            future.result(timeout=10)
        except concurrent.futures.TimeoutError:
            log.warning("simulator call %s did not finish in 10 s", coro_fn)

    # -- files ----------------------------------------------------------------------------
    def _seed_input_images(self) -> None:
        for index, name in enumerate(catalog.DEFAULT_INPUT_IMAGES):
            path = self.root / "input" / name
            if not path.exists():
                picture = images.render(
                    {"seed": 1000 + index, "prompt": name, "steps": 3, "width": 128, "height": 128}
                )
                if path.suffix == ".jpg":
                    picture.save(path, format="JPEG")
                else:
                    picture.save(path, format="PNG", compress_level=1)

    def folder(self, kind: str) -> Path | None:
        """The input, output or temp folder (None for any other type)."""
        return self.root / kind if kind in ("input", "output", "temp") else None

    def annotated_path(self, name: str) -> Path:
        """Path of an input file name, honouring ComfyUI's ` [output]`/` [temp]` suffixes."""
        for kind in ("input", "output", "temp"):
            suffix = f" [{kind}]"
            if name.endswith(suffix):
                return self.root / kind / name[: -len(suffix)]
        return self.root / "input" / name

    def input_file_exists(self, name: str) -> bool:
        """LoadImage's check that an input image exists."""
        return ".." not in name and self.annotated_path(name).is_file()

    def input_file_stamp(self, name: str) -> object:
        """Size and mtime of an input file (part of LoadImage's cache key), None if absent."""
        path = self.annotated_path(name)
        if not path.is_file():
            return None
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def input_image_size(self, name: str) -> dict:
        """{"width", "height"} of an input image ({} if it cannot be read)."""
        try:
            with Image.open(self.annotated_path(name)) as image:
                return {"width": image.width, "height": image.height}
        except (OSError, ValueError):
            return {}

    # -- object info ----------------------------------------------------------------------
    def models(self) -> dict[str, list[str]]:
        """Model lists by folder (defaults plus the ones given in the settings)."""
        newer = self.settings.emulate is not Emulate.V0_3_64
        return catalog.model_lists(self.settings.models, newer)

    def object_info(self) -> dict:
        """The served /object_info (shared and cached: callers must not modify it)."""
        return self._served_object_info()[1]

    def object_info_body(self) -> bytes:
        """The /object_info JSON body."""
        return self._served_object_info()[0]

    def _served_object_info(self) -> tuple[bytes, dict]:
        """Body and dict, rebuilt only when the input folder or the model lists change."""
        input_dir = self.root / "input"
        key = (
            input_dir.stat().st_mtime_ns,
            json.dumps(self.settings.models, sort_keys=True),
            self.settings.emulate,
            str(self.settings.object_info_file),
        )
        if self._object_info_cache is None or self._object_info_cache[0] != key:
            names = catalog.input_image_names(input_dir)
            if self.settings.object_info_file is not None:
                info = catalog.read_object_info(self.settings.object_info_file)
            else:
                info = catalog.served_object_info(
                    self.models(), names, self.profile.object_info_file
                )
            self._object_info_cache = (key, json.dumps(info).encode("utf-8"), info)
        return self._object_info_cache[1], self._object_info_cache[2]

    def node_info(self, class_type: str) -> dict:
        """Bundled NodeInfo of a class in the emulated version ({} if unknown)."""
        return catalog.bundled_object_info(self.profile.object_info_file).get(class_type, {})

    # -- queue ----------------------------------------------------------------------------
    def queue_info(self) -> dict:
        """`{"exec_info": {"queue_remaining": N}}`."""
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    def queue_updated(self) -> None:
        """Broadcast `status` (called on every queue change)."""
        self.send_sync("status", {"status": self.queue_info()})

    def enqueue(
        self, number: float, prompt_id: str, prompt: dict, extra_data: dict, outputs: list[str]
    ) -> None:
        """Put a validated prompt in the queue."""
        self.queue.put([number, prompt_id, prompt, extra_data, outputs])

    def free_memory(self) -> None:
        """POST /free {"free_memory": true}: forget the cache (after the running prompt)."""
        if self.queue.running:
            self._free_after_prompt = True
        else:
            self.executor.cache.clear()

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt (only if it is `prompt_id`, when one is given)."""
        if prompt_id and prompt_id not in self.queue.running_ids():
            return
        self.interrupt_flag.set()

    async def step_delay(self) -> None:
        """Wait one sampler step, or less if an interrupt comes."""
        await self._interruptible_sleep("seconds_per_step")

    async def node_delay(self, node_id: str = "") -> None:
        """Wait the configured time of a non-sampler node (and while the node is held)."""
        await self._interruptible_sleep("seconds_per_node", node_id)

    async def _interruptible_sleep(self, setting: str, node_id: str = "") -> None:
        """Sleep for the named setting, re-read while waiting so a change applies at once.

        Setting a huge value, or holding the node (faults.hold_node), holds the running prompt;
        an interrupt still ends the wait.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not self.interrupt_flag.is_set():
            remaining = start + getattr(self.settings, setting) - loop.time()
            if remaining <= 0 and node_id not in self.faults.held:
                break
            try:
                wait = min(remaining, HOLD_POLL) if remaining > 0 else HOLD_POLL
                await asyncio.wait_for(self.interrupt_flag.wait(), wait)
            except TimeoutError:
                pass
        await asyncio.sleep(0)

    async def _work(self) -> None:
        """The single worker: take the next prompt, run it, record it, say it is done."""
        while True:
            task_id, item = await self.queue.get()
            _, prompt_id, prompt, extra_data, outputs = item
            try:
                success, messages, result = await self.executor.execute(
                    prompt, prompt_id, extra_data, outputs
                )
            except Exception:  # noqa: BLE001 - a simulator bug must not stop the queue
                log.exception("simulator failed to execute %s", prompt_id)
                success, messages, result = False, [], {"outputs": {}, "meta": {}}
            status = {
                "status_str": "success" if success else "error",
                "completed": success,
                "messages": messages,
            }
            self.queue.task_done(task_id, result["outputs"], result["meta"], status)
            if self.client_id is not None:
                self.send_sync("executing", {"node": None, "prompt_id": prompt_id}, self.client_id)
            if self._free_after_prompt:
                self.executor.cache.clear()
                self._free_after_prompt = False

    # -- sending --------------------------------------------------------------------------
    def send_sync(self, event: str, data: dict, sid: str | None = None) -> None:
        """Queue a JSON frame `{"type": event, "data": data}` (sid None: every socket)."""
        self.outbox.put_nowait((json.dumps({"type": event, "data": data}), sid))

    def send_raw(self, payload: str | bytes, sid: str | None = None) -> None:
        """Queue a frame exactly as given (used for fault injection)."""
        self.outbox.put_nowait((payload, sid))

    def send_preview(self, jpeg: bytes, sid: str | None) -> None:
        """Binary event 1: `u32 1 | u32 format (1 = JPEG) | image`."""
        self.send_raw(struct.pack(">II", PREVIEW_IMAGE, JPEG) + jpeg, sid)

    def send_preview_with_metadata(self, jpeg: bytes, metadata: dict, sid: str | None) -> None:
        """Binary event 4: `u32 4 | u32 metadata length | metadata JSON | image`."""
        meta = json.dumps(metadata).encode("utf-8")
        self.send_raw(struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + jpeg, sid)

    def send_progress_text(self, text: str, node_id: str) -> None:
        """Binary event 3 to every socket: `u32 3 | u32 node id length | node id | text`."""
        node = node_id.encode("utf-8")
        self.send_raw(struct.pack(">II", TEXT, len(node)) + node + text.encode("utf-8"))

    def supports_preview_metadata(self, sid: str | None) -> bool:
        """Whether the socket of `sid` negotiated supports_preview_metadata."""
        flags = self.sockets_metadata.get(sid, {}).get("feature_flags", {})
        return flags.get("supports_preview_metadata") is True

    async def _publish(self) -> None:
        """Deliver queued frames in order."""
        while True:
            payload, sid = await self.outbox.get()
            await self.deliver(payload, sid)

    async def deliver(self, payload: str | bytes, sid: str | None) -> None:
        """Send one frame now to the socket of `sid`, or to every registered socket."""
        if sid is None:
            targets = list(self.sockets.values())
        else:
            targets = [self.sockets[sid]] if sid in self.sockets else []
        for ws in targets:
            try:
                if isinstance(payload, bytes):
                    await ws.send_bytes(payload)
                else:
                    await ws.send_str(payload)
            except (ConnectionError, RuntimeError) as ex:
                log.debug("dropped a frame for a closing socket: %s", ex)

    # -- websocket ------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """GET /ws: register the socket under its clientId and read client messages."""
        ws = web.WebSocketResponse(timeout=CLOSE_WAIT_S)
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        self.sockets_metadata[sid] = {"feature_flags": {}}
        self._open_sockets.add(ws)
        try:
            await self.deliver(
                json.dumps({"type": "status", "data": {"status": self.queue_info(), "sid": sid}}),
                sid,
            )
            if self.client_id == sid and self.last_node_id is not None:
                await self.deliver(
                    json.dumps({"type": "executing", "data": {"node": self.last_node_id}}), sid
                )
            await self._read_client(ws, sid)
        finally:
            self._open_sockets.discard(ws)
            self.sockets.pop(sid, None)
            self.sockets_metadata.pop(sid, None)
        return ws

    async def _read_client(self, ws: web.WebSocketResponse, sid: str) -> None:
        """Only a feature_flags message sent first is honoured; everything else is ignored."""
        first = True
        async for msg in ws:
            if msg.type != web.WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
                if first and data.get("type") == "feature_flags":
                    self.sockets_metadata[sid]["feature_flags"] = data.get("data", {})
                    await self.deliver(
                        json.dumps({"type": "feature_flags", "data": self.profile.features}), sid
                    )
                first = False
            except (ValueError, AttributeError) as ex:
                log.debug("ignored a client message: %s", ex)
