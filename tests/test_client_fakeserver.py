"""A scriptable ComfyUI stand-in for client tests that need exact control of every frame.

The simulator (comfy_widgets.sim) is the faithful server; this fake exists to send what a good
server never would (malformed and unknown frames), to record what the client sent, and to test
HTTP error mapping. It replays the message order of the recorded traces for a simple run.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct

from aiohttp import WSMsgType, web
from PIL import Image

from comfy_widgets.engine.client import connect
from comfy_widgets.errors import (
    HTTPStatusError,
    JobCancelledError,
    PromptValidationError,
    ServerConnectionError,
)


def png_bytes(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeComfy:
    """Minimal ComfyUI: one worker, every node 'runs' instantly, previews as legacy frames."""

    def __init__(self, *, feature_flags_reply: bool = True):
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.first_messages: list[dict] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.prompts: dict[str, dict] = {}
        self.history: dict[str, dict] = {}
        self.queue: list[tuple[int, str]] = []
        self.uploads: dict[str, bytes] = {}
        self.number = 0
        self.running: str | None = None
        self.hold = asyncio.Event()
        self.hold.set()
        self.feature_flags_reply = feature_flags_reply
        self.extra_frames: list[str | bytes] = []
        self.prompt_status = 200
        self.prompt_body: dict | None = None
        self._runner = None
        self.url = ""
        self._wake = asyncio.Event()
        self._worker: asyncio.Task | None = None

    async def start(self) -> FakeComfy:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/queue", self._get_queue)
        app.router.add_post("/queue", self._post_queue)
        app.router.add_get("/history/{pid}", self._history)
        app.router.add_get("/view", self._view)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_post("/interrupt", self._interrupt)
        app.router.add_get("/system_stats", self._stats)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._worker = asyncio.ensure_future(self._work())
        return self

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        await self._runner.cleanup()

    async def send(self, client_id: str, frame: str | bytes | dict) -> None:
        ws = self.sockets.get(client_id)
        if ws is None or ws.closed:
            return
        if isinstance(frame, dict):
            await ws.send_str(json.dumps(frame))
        elif isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)

    async def broadcast_status(self) -> None:
        for cid in list(self.sockets):
            status = {"status": {"exec_info": {"queue_remaining": len(self.queue)}}}
            await self.send(cid, {"type": "status", "data": status})

    # --- handlers -----------------------------------------------------------------------------

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        cid = request.query.get("clientId", "anon")
        self.requests.append(("WS", "/ws", dict(request.headers)))
        self.sockets[cid] = ws
        status = {"status": {"exec_info": {"queue_remaining": len(self.queue)}}, "sid": cid}
        await ws.send_str(json.dumps({"type": "status", "data": status}))
        first = True
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if first:
                self.first_messages.append(data)
                if data.get("type") == "feature_flags" and self.feature_flags_reply:
                    flags = {"supports_preview_metadata": True, "max_upload_size": 104857600}
                    await ws.send_str(json.dumps({"type": "feature_flags", "data": flags}))
            first = False
        if self.sockets.get(cid) is ws:
            del self.sockets[cid]
        return ws

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("POST", "/prompt", dict(request.headers)))
        if self.prompt_status != 200:
            return web.json_response(self.prompt_body, status=self.prompt_status)
        self.number += 1
        pid = body["prompt_id"]
        self.prompts[pid] = body
        self.queue.append((self.number, pid))
        await self.broadcast_status()
        self._wake.set()
        return web.json_response({"prompt_id": pid, "number": self.number, "node_errors": {}})

    async def _get_queue(self, request: web.Request) -> web.Response:
        def item(number: int, pid: str) -> list:
            body = self.prompts[pid]
            return [number, pid, body["prompt"], {"client_id": body.get("client_id")}, []]

        running = [item(*q) for q in self.queue if q[1] == self.running]
        pending = [item(*q) for q in self.queue if q[1] != self.running]
        return web.json_response({"queue_running": running, "queue_pending": pending[::-1]})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.queue = [q for q in self.queue if q[1] not in body.get("delete", [])]
        await self.broadcast_status()
        return web.Response()

    async def _history(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _view(self, request: web.Request) -> web.Response:
        return web.Response(body=png_bytes("blue"), content_type="image/png")

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        field = form["image"]
        self.uploads[field.filename] = field.file.read()
        return web.json_response({"name": field.filename, "subfolder": "", "type": "input"})

    async def _interrupt(self, request: web.Request) -> web.Response:
        return web.Response()

    async def _stats(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", "/system_stats", dict(request.headers)))
        return web.json_response({"system": {"comfyui_version": "fake"}, "devices": []})

    # --- the worker ---------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                await self.hold.wait()
                if not self.queue:
                    break
                _, pid = self.queue[0]
                self.running = pid
                await self._run(pid, self.prompts[pid])
                self.running = None
                self.queue.pop(0)
                await self.broadcast_status()
                await self.send(
                    self.prompts[pid]["client_id"], _msg("executing", node=None, prompt_id=pid)
                )

    async def _run(self, pid: str, body: dict) -> None:
        cid = body["client_id"]
        await self.send(cid, _msg("execution_start", prompt_id=pid, timestamp=1))
        await self.send(cid, _msg("execution_cached", nodes=[], prompt_id=pid, timestamp=1))
        for frame in self.extra_frames:
            await self.send(cid, frame)
        outputs = {}
        for node_id, node in body["prompt"].items():
            await self.send(
                cid, _msg("executing", node=node_id, display_node=node_id, prompt_id=pid)
            )
            if node["class_type"] == "KSampler":
                steps = node["inputs"].get("steps", 2)
                for step in range(1, steps + 1):
                    await self.send(
                        cid, _msg("progress", value=step, max=steps, prompt_id=pid, node=node_id)
                    )
                    await self.send(cid, struct.pack(">II", 1, 2) + png_bytes("green"))
            if node["class_type"] == "SaveImage":
                out = {
                    "images": [{"filename": f"{pid[:8]}.png", "subfolder": "", "type": "output"}]
                }
                outputs[node_id] = out
                await self.send(
                    cid,
                    _msg("executed", node=node_id, display_node=node_id, output=out, prompt_id=pid),
                )
        await self.send(cid, _msg("execution_success", prompt_id=pid, timestamp=2))
        self.history[pid] = {
            "prompt": [0, pid, body["prompt"], {}, []],
            "outputs": outputs,
            "status": {"status_str": "success", "completed": True, "messages": []},
        }


def _msg(kind: str, **data: object) -> dict:
    return {"type": kind, "data": data}


PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}, "_meta": {"title": "E"}},
    "2": {"class_type": "KSampler", "inputs": {"steps": 3}, "_meta": {"title": "Sampler"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}, "_meta": {"title": "Save"}},
}


async def fake_server(**kwargs: object) -> FakeComfy:
    return await FakeComfy(**kwargs).start()


# --- tests of the client's HTTP layer against the fake ----------------------------------------


async def test_run_completes_with_outputs_and_previews():
    server = await fake_server()
    client = connect(server.url)
    try:
        job = client.submit(PROMPT)
        result = await job
        assert result.status == "completed"
        assert job.progress == 100.0
        assert [o.filename for o in result.outputs] == [f"{job.prompt_id[:8]}.png"]
        assert result.images[0].size == (8, 8)
        assert job.preview is not None and job.preview_mime == "image/png"
        assert server.first_messages[0] == {
            "type": "feature_flags",
            "data": {"supports_preview_metadata": True},
        }
        assert server.prompts[job.prompt_id]["client_id"] == client.client_id
    finally:
        await client.aclose()
        await server.stop()


async def test_credentials_sent_but_not_in_url_or_repr():
    server = await fake_server()
    client = connect(server.url.replace("http://", "http://alice:s3cret@"))
    try:
        assert "s3cret" not in client.url and "alice" not in client.url
        assert "s3cret" not in repr(client)
        await client.system_stats()
        headers = server.requests[-1][2]
        assert headers["Authorization"].startswith("Basic ")
    finally:
        await client.aclose()
        await server.stop()


async def test_bearer_token_reaches_http_and_websocket():
    server = await fake_server()
    client = connect(server.url, token="tok-123", headers={"X-Extra": "1"})
    try:
        await client.submit(PROMPT)
        ws_headers = [h for kind, _, h in server.requests if kind == "WS"][0]
        post_headers = [h for kind, path, h in server.requests if path == "/prompt"][0]
        assert ws_headers["Authorization"] == "Bearer tok-123"
        assert post_headers["Authorization"] == "Bearer tok-123"
        assert post_headers["X-Extra"] == "1"
        assert "tok-123" not in repr(client) and "tok-123" not in client.url
    finally:
        await client.aclose()
        await server.stop()


async def test_credentials_never_logged(caplog):
    server = await fake_server()
    client = connect(server.url, token="tok-secret-1", headers={"X-Api-Key": "key-secret-2"})
    try:
        with caplog.at_level(logging.DEBUG):
            await client.submit(PROMPT)
            await client.system_stats()
        assert caplog.records
        assert "tok-secret-1" not in caplog.text and "key-secret-2" not in caplog.text
    finally:
        await client.aclose()
        await server.stop()


async def test_cancel_right_after_submit():
    server = await fake_server()
    client = connect(server.url)
    try:
        job = client.submit(PROMPT)
        job.cancel()
        try:
            await job
        except JobCancelledError:
            pass
        assert job.state == "cancelled"
        assert job.prompt_id not in server.history
    finally:
        await client.aclose()
        await server.stop()


async def test_upload_deduplicated_per_client():
    server = await fake_server()
    client = connect(server.url)
    try:
        image = Image.new("RGB", (4, 4), "white")
        names = await asyncio.gather(*(client.upload_image(image) for _ in range(5)))
        assert len(set(names)) == 1 and list(server.uploads) == [names[0]]
    finally:
        await client.aclose()
        await server.stop()


async def test_validation_error_maps_node_errors():
    server = await fake_server()
    server.prompt_status = 400
    node_errors = {
        "3": {
            "errors": [
                {
                    "type": "value_smaller_than_min",
                    "message": "Value -1 smaller than min of 1",
                    "details": "steps",
                    "extra_info": {},
                }
            ],
            "dependent_outputs": ["9"],
            "class_type": "KSampler",
        }
    }
    server.prompt_body = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": node_errors,
    }
    client = connect(server.url)
    try:
        job = client.submit(PROMPT)
        try:
            await job
        except PromptValidationError as exc:
            assert exc.node_errors == node_errors
            assert "node 3 (KSampler)" in str(exc)
        else:
            raise AssertionError("expected PromptValidationError")
        assert job.state == "failed" and isinstance(job.error, PromptValidationError)
    finally:
        await client.aclose()
        await server.stop()


async def test_http_status_and_connection_errors():
    server = await fake_server()
    server.prompt_status = 500
    server.prompt_body = {"oops": True}
    client = connect(server.url)
    try:
        try:
            await client.queue_prompt(PROMPT)
        except HTTPStatusError as exc:
            assert exc.status_code == 500
        else:
            raise AssertionError("expected HTTPStatusError")
    finally:
        await client.aclose()
        await server.stop()
    dead = connect(server.url)
    try:
        await dead.get_queue()
    except ServerConnectionError as exc:
        assert server.url in str(exc)
    else:
        raise AssertionError("expected ServerConnectionError")
    finally:
        await dead.aclose()
