"""Our Comfy API v2 client against the real comfy-api-proxy in front of the simulator.

Every test starts both on loopback (``v2_stack``); faults are injected in the client's httpx
transport (a lost answer, a dropped event stream, a full queue) or by killing the proxy, and
the simulator's own ``/history`` says what really ran.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from comfy_widgets.errors import AuthenticationError, QueueFullError
from comfy_widgets.transport.v2 import (
    OutputReady,
    PreviewImage,
    ProgressUpdate,
    StatusChange,
    V2Client,
    V2Event,
    V2Status,
    follow_job,
)

pytestmark = pytest.mark.timeout(90)

EXAMPLE = Path(__file__).parents[1] / "comfy_widgets" / "examples" / "sd15_txt2img_api.json"
DEADLINE = 60.0


def workflow(seed: int, steps: int = 10) -> dict:
    """The SD 1.5 example with its own seed (so the simulator's cache does not skip it)."""
    wf = json.loads(EXAMPLE.read_text())
    wf["3"]["inputs"]["seed"] = seed
    wf["3"]["inputs"]["steps"] = steps
    return wf


def runs_with_seed(history: dict, seed: int) -> int:
    """How many prompts the simulator ran with this KSampler seed."""
    return sum(1 for entry in history.values() if entry["prompt"][2]["3"]["inputs"]["seed"] == seed)


class _CutStream(httpx.AsyncByteStream):
    """A response body that breaks off after ``keep`` chunks, as a dropped connection does."""

    def __init__(self, inner: httpx.AsyncByteStream, keep: int):
        self.inner, self.keep = inner, keep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        count = 0
        async for chunk in self.inner:
            if count >= self.keep:
                raise httpx.ReadError("connection dropped (injected)")
            count += 1
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class FaultTransport(httpx.AsyncBaseTransport):
    """The real network, with faults chosen per request by ``fault(request, n)``.

    ``fault`` returns None (pass through), ``"lose-answer"`` (the server gets and handles the
    request, the client gets a ReadError), ``"cut-stream"`` (the body breaks off after one
    chunk) or an ``httpx.Response`` to answer instead of the server.
    """

    def __init__(self, fault: Callable[[httpx.Request, int], object] | None = None):
        self.inner = httpx.AsyncHTTPTransport()
        self.fault = fault or (lambda request, n: None)
        self.requests: list[httpx.Request] = []

    def count(self, method: str, path_suffix: str) -> int:
        return sum(
            1 for r in self.requests if r.method == method and r.url.path.endswith(path_suffix)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        action = self.fault(request, len(self.requests))
        if isinstance(action, httpx.Response):
            return action
        response = await self.inner.handle_async_request(request)
        if action == "lose-answer":
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("answer lost (injected)")
        if action == "cut-stream":
            assert isinstance(response.stream, httpx.AsyncByteStream)
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=_CutStream(response.stream, keep=1),
                request=request,
            )
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def client_for(stack, transport: httpx.AsyncBaseTransport | None = None, **kw) -> V2Client:
    return V2Client(stack.url, api_key=stack.token, transport=transport, **kw)


async def test_a_prompt_runs_end_to_end_with_live_events(v2_stack):
    client = client_for(v2_stack)
    events: list[V2Event] = []
    try:
        job = await client.submit(workflow(101), idempotency_key="item-101")
        assert job.status in (V2Status.QUEUED, V2Status.RUNNING)
        final = await asyncio.wait_for(follow_job(client, job.id, events.append), DEADLINE)
        assert final.status is V2Status.SUCCEEDED
        assert [o.node_id for o in final.outputs] == ["9"]
        data = await client.fetch(final.outputs[0].url)
    finally:
        await client.aclose()
    image = Image.open(io.BytesIO(data))
    assert image.size == (512, 512)
    kinds = {type(e) for e in events}
    assert {StatusChange, ProgressUpdate, PreviewImage, OutputReady} <= kinds
    assert [e.status for e in events if isinstance(e, StatusChange)][-1] is V2Status.SUCCEEDED
    assert any(isinstance(e, PreviewImage) and e.image[:2] == b"\xff\xd8" for e in events)
    assert runs_with_seed(v2_stack.sim_history(), 101) == 1


async def test_dropped_event_stream_completes_from_polling(v2_stack):
    streams = 0

    def drop_then_refuse(request: httpx.Request, n: int) -> object:
        nonlocal streams
        if not request.url.path.endswith("/events"):
            return None
        streams += 1
        if streams == 1:
            return "cut-stream"  # the first stream breaks off after its first chunk
        return httpx.Response(  # later ones are refused, as the proxy does past 8 streams
            429,
            headers={"Retry-After": "5"},
            json={"error": {"code": "too_many_streams", "message": "poll", "details": None}},
        )

    transport = FaultTransport(drop_then_refuse)
    client = client_for(v2_stack, transport)
    events: list[V2Event] = []
    try:
        job = await client.submit(workflow(202, steps=30), idempotency_key="item-202")
        final = await asyncio.wait_for(follow_job(client, job.id, events.append), DEADLINE)
    finally:
        await client.aclose()
    assert final.status is V2Status.SUCCEEDED and final.outputs
    assert events  # the first stream delivered something before it broke off
    assert not any(isinstance(e, StatusChange) and e.status.terminal for e in events)
    assert transport.count("GET", f"/jobs/{job.id}") >= 1  # polling found the end
    assert runs_with_seed(v2_stack.sim_history(), 202) == 1


async def test_lost_submit_answer_is_resent_and_runs_once(v2_stack):
    transport = FaultTransport(
        lambda r, n: "lose-answer" if r.method == "POST" and n == 1 else None
    )
    client = client_for(v2_stack, transport)
    try:
        job = await client.submit(workflow(303), idempotency_key="item-303", metadata="cw:item-303")
        final = await asyncio.wait_for(follow_job(client, job.id), DEADLINE)
    finally:
        await client.aclose()
    assert transport.count("POST", "/api/v2/jobs") == 2  # the re-send was refused as a reuse
    assert final.status is V2Status.SUCCEEDED
    assert runs_with_seed(v2_stack.sim_history(), 303) == 1


async def test_proxy_killed_mid_job_and_restarted_job_completes_once(v2_stack):
    client = client_for(v2_stack)
    progressed = asyncio.Event()

    def on_event(event: V2Event) -> None:
        if isinstance(event, ProgressUpdate) and event.progress.step:
            progressed.set()

    try:
        job = await client.submit(
            workflow(404, steps=150), idempotency_key="item-404", metadata="cw:item-404"
        )
        follower = asyncio.create_task(follow_job(client, job.id, on_event))
        await asyncio.wait_for(progressed.wait(), DEADLINE)
        await asyncio.to_thread(v2_stack.kill_proxy)
        await asyncio.sleep(0.5)
        assert not follower.done()
        # The item is sent again while the proxy is down: it must not run a second time.
        resend = asyncio.create_task(
            client.submit(
                workflow(404, steps=150), idempotency_key="item-404", metadata="cw:item-404"
            )
        )
        await asyncio.sleep(0.3)
        await asyncio.to_thread(v2_stack.start_proxy)
        again = await asyncio.wait_for(resend, DEADLINE)
        final = await asyncio.wait_for(follower, DEADLINE)
    finally:
        await client.aclose()
    assert again.id == job.id
    assert final.status is V2Status.SUCCEEDED and final.outputs
    assert runs_with_seed(v2_stack.sim_history(), 404) == 1


async def test_queue_full_waits_retry_after_then_submits(v2_stack):
    def queue_full(request: httpx.Request, n: int) -> object:
        if request.method == "POST" and n <= 2:
            return httpx.Response(
                429,
                headers={"Retry-After": "0.2"},
                json={"error": {"code": "queue_full", "message": "queue full", "details": None}},
            )
        return None

    transport = FaultTransport(queue_full)
    client = client_for(v2_stack, transport)
    try:
        job = await client.submit(workflow(505), idempotency_key="item-505")
        final = await asyncio.wait_for(follow_job(client, job.id), DEADLINE)
    finally:
        await client.aclose()
    assert transport.count("POST", "/api/v2/jobs") == 3
    assert final.status is V2Status.SUCCEEDED
    assert runs_with_seed(v2_stack.sim_history(), 505) == 1


async def test_queue_full_beyond_the_budget_raises_with_retry_after(v2_stack):
    full = httpx.Response(
        429,
        headers={"Retry-After": "7"},
        json={"error": {"code": "queue_full", "message": "queue full", "details": None}},
    )
    transport = FaultTransport(lambda r, n: copy.copy(full) if r.method == "POST" else None)
    client = client_for(v2_stack, transport, queue_full_budget=1.0)
    try:
        with pytest.raises(QueueFullError) as info:
            await client.submit(workflow(506), idempotency_key="item-506")
    finally:
        await client.aclose()
    assert info.value.retry_after == 7.0
    assert runs_with_seed(v2_stack.sim_history(), 506) == 0


async def test_wrong_api_key_is_refused_and_never_echoed(v2_stack):
    client = V2Client(v2_stack.url, api_key="wrong-secret-key")
    try:
        with pytest.raises(AuthenticationError) as info:
            await client.submit(workflow(606), idempotency_key="item-606")
    finally:
        await client.aclose()
    assert info.value.status_code == 401
    assert "wrong-secret-key" not in str(info.value) + repr(client)


async def test_cancel_a_running_job(v2_stack):
    client = client_for(v2_stack)
    running = asyncio.Event()

    def on_event(event: V2Event) -> None:
        if isinstance(event, ProgressUpdate) and event.progress.step:
            running.set()

    try:
        job = await client.submit(workflow(707, steps=400), idempotency_key="item-707")
        follower = asyncio.create_task(follow_job(client, job.id, on_event))
        await asyncio.wait_for(running.wait(), DEADLINE)
        answer = await client.cancel(job.id)
        final = await asyncio.wait_for(follower, DEADLINE)
    finally:
        await client.aclose()
    # the proxy may answer its cancel in the gap between ComfyUI's queue and history
    assert answer.status in (V2Status.CANCELING, V2Status.CANCELED, V2Status.EXPIRED)
    assert final.status is V2Status.CANCELED
    entry = next(e for e in v2_stack.sim_history().values() if e["prompt"][1] == job.id)
    assert entry["status"]["status_str"] == "error"  # interrupted, not run to the end


async def test_an_image_is_uploaded_once_and_used_through_its_asset_ref(v2_stack, tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, format="PNG")
    png = buf.getvalue()
    spy = FaultTransport()
    first = client_for(v2_stack, spy)
    second_spy = FaultTransport()
    second = client_for(v2_stack, second_spy)
    try:
        asset = await first.upload("green.png", png)
        assert await first.upload("green.png", png) == asset  # cached: no request at all
        assert spy.count("POST", "/api/v2/assets") == 1
        again = await second.upload("other-name.png", png)  # another kernel: hash known
        assert again.id == asset.id
        assert second_spy.count("POST", "/api/v2/assets") == 0
        assert second_spy.count("HEAD", "/by-hash/" + asset.hash) == 1
        wf = {
            "1": {"class_type": "LoadImage", "inputs": {"image": asset.ref}},
            "2": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "v2up"},
            },
        }
        job = await first.submit(wf, idempotency_key="item-upload")
        final = await asyncio.wait_for(follow_job(first, job.id), DEADLINE)
        out = await first.fetch(final.outputs[0].url)
    finally:
        await first.aclose()
        await second.aclose()
    assert final.status is V2Status.SUCCEEDED
    assert Image.open(io.BytesIO(out)).format == "PNG"
    ran = next(e for e in v2_stack.sim_history().values() if e["prompt"][1] == job.id)
    name = ran["prompt"][2]["1"]["inputs"]["image"]  # the proxy put the file name in the ref
    assert (v2_stack.workdir / "sim-data" / "input" / name).read_bytes() == png
