"""A hostile or broken server never hangs a job, kills the monitor or leaks a credential.

Built on the scriptable fake ComfyUI of test_client_fakeserver: each test makes it answer what a
proxy error page, a broken server or an attacker would, and checks what the user then sees.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from comfy_widgets.engine import job as job_module
from comfy_widgets.engine.client import connect
from comfy_widgets.errors import (
    AuthenticationError,
    ProtocolError,
    ResponseTooLargeError,
    ServerConnectionError,
)
from comfy_widgets.states import JobState
from comfy_widgets.transport import classic, monitor
from tests.test_client_fakeserver import PROMPT, FakeComfy, _msg

TOKEN = "s3cr3t-token-value"
API_KEY = "x-api-key-value-42"
DEADLINE_S = 20


async def until(predicate, timeout: float = DEADLINE_S) -> None:
    """Wait until ``predicate()`` is true, or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.02)


class HostileComfy(FakeComfy):
    """The fake with knobs for what a broken or malicious server answers."""

    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)
        self.queue_answer: tuple[int, str, str] | None = None  # (status, content type, body)
        self.history_answer: tuple[int, str, str] | None = None
        self.ws_status: int | None = None  # refuse the WebSocket handshake with this status
        self.ws_redirect: str | None = None
        self.view_redirect: str | None = None
        self.view_body: web.StreamResponse | None = None
        self.queue_gets = 0
        self.ws_attempts = 0
        self.on_connect_frames: list[str] = []
        self.prompt_answer: object = None  # a 200 answer to POST /prompt other than ComfyUI's

    async def start(self) -> HostileComfy:
        await super().start()
        return self

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        self.ws_attempts += 1
        if self.ws_status is not None:
            return web.Response(status=self.ws_status, text="no")
        if self.ws_redirect is not None:
            raise web.HTTPFound(self.ws_redirect)
        if self.on_connect_frames:
            frames = list(self.on_connect_frames)
            cid = request.query.get("clientId", "anon")

            async def later() -> None:
                await until(lambda: cid in self.sockets, 5)
                for frame in frames:
                    await self.send(cid, frame)

            asyncio.ensure_future(later())
        return await super()._ws(request)

    async def _prompt(self, request: web.Request) -> web.Response:
        if self.prompt_answer is not None:
            return web.json_response(self.prompt_answer)
        return await super()._prompt(request)

    async def _get_queue(self, request: web.Request) -> web.Response:
        self.queue_gets += 1
        if self.queue_answer is not None:
            status, kind, body = self.queue_answer
            return web.Response(status=status, content_type=kind, text=body)
        return await super()._get_queue(request)

    async def _history(self, request: web.Request) -> web.Response:
        if self.history_answer is not None:
            status, kind, body = self.history_answer
            return web.Response(status=status, content_type=kind, text=body)
        return await super()._history(request)

    async def _view(self, request: web.Request) -> web.StreamResponse:
        if self.view_redirect is not None:
            raise web.HTTPFound(self.view_redirect)
        if self.view_body is not None:
            return await self.view_body(request)
        return await super()._view(request)


async def other_origin() -> tuple[web.AppRunner, str, list[dict]]:
    """A second server on another port (another origin) that records request headers."""
    seen: list[dict] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(body=b"\x89PNG not really", content_type="image/png")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}", seen


@pytest.fixture
async def server():
    fake = await HostileComfy().start()
    yield fake
    await fake.stop()


def credentialed(url: str):
    return connect(url, token=TOKEN, headers={"X-Api-Key": API_KEY}, store=None)


# --- 1: one bad answer never kills the monitor -------------------------------------------------

MALFORMED = {
    "html-200": (200, "text/html", "<html><body>502 Bad Gateway</body></html>"),
    "json-list": (200, "application/json", "[1, 2, 3]"),
    "json-string": (200, "application/json", '"busy"'),
    "json-null": (200, "application/json", "null"),
    "wrong-items": (200, "application/json", '{"queue_running": "x", "queue_pending": [[1], 7]}'),
    "deep": (200, "application/json", "[" * 50_000 + "]" * 50_000),
    "status-500": (500, "text/plain", "internal error"),
    "truncated": (200, "application/json", '{"queue_running": ['),
}


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
async def test_bad_queue_and_history_answers_while_down_never_end_the_monitor(
    server, answer, monkeypatch
):
    monkeypatch.setattr(monitor, "POLL_WHILE_DOWN_S", 0.05)
    server.hold.clear()  # the prompt stays queued
    client = connect(server.url, store=None)
    job = client.submit(PROMPT)
    await until(lambda: job.posted)
    server.queue_answer = server.history_answer = answer
    server.ws_status = 503
    for ws in list(server.sockets.values()):
        await ws.close()
    gets = server.queue_gets
    await until(lambda: server.queue_gets >= gets + 3)  # polled while down, several times
    assert not client.backend.monitor._task.done(), "the monitor task died"
    server.queue_answer = server.history_answer = None
    server.ws_status = None
    server.hold.set()
    result = await asyncio.wait_for(job, DEADLINE_S)
    assert result.status == "completed" and len(result.outputs) == 1
    await client.aclose()


# --- 2: credentials never follow a redirect to another origin ----------------------------------


async def test_view_redirect_to_another_origin_drops_every_credential_header(server):
    runner, other, seen = await other_origin()
    server.view_redirect = f"{other}/elsewhere.png"
    client = credentialed(server.url)
    try:
        data = await client.backend.view("x.png")
        assert data.startswith(b"\x89PNG") and len(seen) == 1
        names = {k.lower() for k in seen[0]}
        assert "x-api-key" not in names and "authorization" not in names
        assert TOKEN not in json.dumps(seen) and API_KEY not in json.dumps(seen)
    finally:
        await client.aclose()
        await runner.cleanup()


async def test_same_origin_redirect_keeps_the_credentials(server):
    server.view_redirect = "/system_stats"
    client = credentialed(server.url)
    try:
        await client.backend.view("x.png")
        stats = [h for method, path, h in server.requests if path == "/system_stats"]
        assert stats and stats[-1].get("X-Api-Key") == API_KEY
    finally:
        await client.aclose()


async def test_websocket_redirect_to_another_origin_drops_every_credential_header(server):
    runner, other, seen = await other_origin()
    server.ws_redirect = other.replace("http", "ws") + "/ws"
    client = credentialed(server.url)
    try:
        assert not await client.backend.wait_connected(1.0)  # the other origin is no WebSocket
        await until(lambda: seen)
        assert all("x-api-key" not in {k.lower() for k in h} for h in seen)
        assert TOKEN not in json.dumps(seen) and API_KEY not in json.dumps(seen)
    finally:
        await client.aclose()
        await runner.cleanup()


# --- 6: limits on what is read -----------------------------------------------------------------


def streamed(total: int, chunk: int = 2**16, delay: float = 0.0, length: bool = False):
    """A /view handler that sends ``total`` zero bytes in chunks (no Content-Length unless set)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if length:
            response.content_length = total
        await response.prepare(request)
        sent = 0
        try:
            while sent < total:
                await response.write(b"\0" * min(chunk, total - sent))
                sent += chunk
                if delay:
                    await asyncio.sleep(delay)
        except (ConnectionError, RuntimeError):
            pass
        return response

    return handler


@pytest.mark.parametrize("length", [True, False], ids=["declared", "chunked"])
async def test_an_output_over_the_cap_is_refused_with_its_size(server, length):
    server.view_body = streamed(5 * 2**20, length=length)
    client = connect(server.url, store=None)
    client.backend.max_output_bytes = 2**20
    try:
        with pytest.raises(ResponseTooLargeError, match="1,048,576 bytes"):
            await client.backend.view("big.png")
        job = client.submit(PROMPT)
        with pytest.raises(ResponseTooLargeError):
            await asyncio.wait_for(job, DEADLINE_S)
        assert job.state == JobState.FAILED and "output" in job.error_message
    finally:
        await client.aclose()


async def test_an_output_dripping_forever_ends_at_the_deadline(server, monkeypatch):
    monkeypatch.setattr(classic, "OUTPUT_TIMEOUT_S", 0.5)
    server.view_body = streamed(10**6, chunk=1, delay=0.05)
    client = connect(server.url, store=None)
    try:
        with pytest.raises(ServerConnectionError, match="did not finish within"):
            await asyncio.wait_for(client.backend.view("slow.png"), DEADLINE_S)
    finally:
        await client.aclose()


# --- 8: frames that raise in the parser, and floods ----------------------------------------------


async def test_a_frame_that_would_overflow_on_every_connect_causes_no_reconnect_loop(server):
    overflow = '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1e400}}}}'
    deep = '{"type": "progress", "data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    server.on_connect_frames = [overflow, deep]
    client = connect(server.url, store=None)
    try:
        result = await asyncio.wait_for(client.submit(PROMPT), DEADLINE_S)
        await asyncio.sleep(0.5)
        assert result.status == "completed"
        assert server.ws_attempts == 1 and client.backend.monitor.connects == 1
    finally:
        await client.aclose()


async def test_a_flood_of_executing_null_frames_makes_few_queue_requests(server):
    server.hold.clear()
    client = connect(server.url, store=None)
    job = client.submit(PROMPT)
    try:
        await until(lambda: job.posted)
        await asyncio.sleep(0.3)
        before = server.queue_gets
        cid = client.backend.client_id
        for _ in range(3000):
            await server.send(cid, _msg("executing", node=None, prompt_id=job.prompt_id))
        await asyncio.sleep(1.0)
        assert server.queue_gets - before <= 10
        server.hold.set()
        assert (await asyncio.wait_for(job, DEADLINE_S)).status == "completed"
    finally:
        await client.aclose()


# --- 10: outcomes reported as what they are -------------------------------------------------------


async def test_a_websocket_refused_for_credentials_fails_the_job_once(server):
    server.ws_status = 401
    server.prompt_status, server.prompt_body = 401, {"error": "unauthorized"}
    client = credentialed(server.url)
    try:
        job = client.submit(PROMPT)
        with pytest.raises(AuthenticationError, match="refused the credentials"):
            await asyncio.wait_for(job, DEADLINE_S)
        await asyncio.sleep(1.0)
        assert server.ws_attempts <= 2  # no silent reconnect loop
        assert TOKEN not in job.error_message and API_KEY not in job.error_message
    finally:
        await client.aclose()


async def test_a_list_answer_to_post_prompt_is_a_failure_not_a_cancel(server):
    server.prompt_answer = []
    client = connect(server.url, store=None)
    try:
        job = client.submit(PROMPT)
        with pytest.raises(ProtocolError, match="POST /prompt"):
            await asyncio.wait_for(job, DEADLINE_S)
        assert job.state == JobState.FAILED
    finally:
        await client.aclose()


async def test_success_with_an_empty_history_completes_with_the_events_outputs(server, monkeypatch):
    monkeypatch.setattr(job_module, "SUCCESS_GRACE_S", 0.1)
    server.history_answer = (200, "application/json", "{}")
    original = server.send

    async def no_executing_null(cid: str, frame: object) -> None:
        if isinstance(frame, dict) and frame["type"] == "executing" and not frame["data"]["node"]:
            return
        await original(cid, frame)

    server.send = no_executing_null
    client = connect(server.url, store=None)
    try:
        result = await asyncio.wait_for(client.submit(PROMPT), DEADLINE_S)
        assert result.status == "completed" and len(result.outputs) == 1
    finally:
        await client.aclose()


async def test_an_error_page_echoing_headers_never_puts_the_token_in_the_error(server, tmp_path):
    from comfy_widgets.records.sqlite import Store

    server.prompt_status = 500
    server.prompt_body = {"echo": f"Authorization: Bearer {TOKEN}; X-Api-Key: {API_KEY}"}
    store = Store(tmp_path / "store.sqlite")
    client = connect(server.url, token=TOKEN, headers={"X-Api-Key": API_KEY}, store=store)
    try:
        job = client.submit(PROMPT)
        with pytest.raises(Exception, match="500"):
            await asyncio.wait_for(job, DEADLINE_S)
        assert "<redacted>" in job.error_message
        assert TOKEN not in job.error_message and API_KEY not in job.error_message
        store.close()
        for path in tmp_path.rglob("*"):
            if path.is_file():
                raw = path.read_bytes()
                assert TOKEN.encode() not in raw and API_KEY.encode() not in raw, path
    finally:
        await client.aclose()


# --- bad arguments are ParameterErrors naming them ------------------------------------------------


@pytest.mark.parametrize("concurrency", [0, -1, 2.5, "8", True])
def test_a_bad_concurrency_is_named(concurrency):
    from comfy_widgets.errors import ParameterError
    from comfy_widgets.workflow.workflow import Workflow

    client = connect("http://127.0.0.1:9", store=None)
    workflow = Workflow.load(PROMPT)
    with pytest.raises(ParameterError, match="concurrency must be a whole number"):
        client.batch(workflow, count=2, concurrency=concurrency)


def test_a_server_url_of_another_scheme_is_named():
    from comfy_widgets.errors import ParameterError

    with pytest.raises(ParameterError, match="unsupported URL scheme 'ftp' in 'ftp://host/x'"):
        connect("ftp://host/x", store=None)


# --- 5 and 7: names the server chooses, and a store that cannot record -------------------------


@pytest.mark.parametrize("name", ["a\0b.png", "x" * 300 + ".png", "../../etc/passwd", "ok.p\0ng"])
async def test_a_hostile_output_name_is_stored_under_a_safe_local_name(server, tmp_path, name):
    from comfy_widgets.records.sqlite import Store

    original = server._run

    async def run_with_name(pid: str, body: dict) -> None:
        await original(pid, body)
        node = next(iter(server.history[pid]["outputs"]))
        server.history[pid]["outputs"][node]["images"][0]["filename"] = name

    server._run = run_with_name
    send = server.send

    async def rename_executed(cid: str, frame: object) -> None:
        if isinstance(frame, dict) and frame["type"] == "executed":
            frame = json.loads(json.dumps(frame))
            frame["data"]["output"]["images"][0]["filename"] = name
        await send(cid, frame)

    server.send = rename_executed
    store = Store(tmp_path / "home")
    client = connect(server.url, store=store)
    try:
        result = await asyncio.wait_for(client.submit(PROMPT), DEADLINE_S)
        assert result.status == "completed"
        (generation,) = store.find_generations()
        assert generation.state == JobState.COMPLETED
        (saved,) = generation.saved_outputs
        assert saved.filename == name  # the server's name kept in the record
        local = saved.local_path
        assert local and "\0" not in local and len(local.rsplit("/", 1)[1]) < 255
        assert local.startswith(str(tmp_path / "home"))
    finally:
        await client.aclose()
        store.close()


def test_a_truncated_store_file_is_a_store_error_naming_it(tmp_path):
    from comfy_widgets.errors import StoreError
    from comfy_widgets.records.sqlite import Store

    path = tmp_path / "store.sqlite"
    Store(path).close()
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(StoreError, match=str(path)) as info:
        connect("http://127.0.0.1:9", store=path)
    assert "store=None" in str(info.value)


def test_a_read_only_store_is_refused_at_connect_not_run_unrecorded(tmp_path):
    import os

    from comfy_widgets.errors import StoreError
    from comfy_widgets.records.sqlite import Store

    path = tmp_path / "store.sqlite"
    Store(path).close()
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root writes read-only files anyway: make the file unopenable
            path.chmod(0o644)
            path.write_bytes(b"not a database at all, " * 100)
        with pytest.raises(StoreError, match="cannot be opened for recording"):
            connect("http://127.0.0.1:9", store=path)
    finally:
        tmp_path.chmod(0o755)


def test_one_garbage_json_cell_never_hides_the_other_rows(tmp_path):
    import sqlite3

    import comfy_widgets as cw
    from comfy_widgets.records.sqlite import Store
    from tests.store_fakes import FakeJob, record_finished

    store = Store(tmp_path / "store.sqlite")
    for i in range(3):
        record_finished(store, FakeJob(prompt_id=f"p{i}", state="completed"))
    store.close()
    conn = sqlite3.connect(tmp_path / "store.sqlite")
    conn.execute("UPDATE generations SET parameters_json = '{not json' WHERE prompt_id = 'p1'")
    conn.commit()
    conn.close()
    frame = cw.history(store=Store(tmp_path / "store.sqlite"))
    assert sorted(frame["prompt_id"]) == ["p0", "p1", "p2"]
