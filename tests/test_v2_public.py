"""The public API over Comfy API v2: ``cw.connect`` detection, run, batch, form, views, store,
resume and pools across classic and v2 servers, through the real ``comfy-api-proxy`` in front of
the simulator (the ``v2_stack`` fixture)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

import comfy_widgets as cw
from comfy_widgets import examples, sim
from comfy_widgets.engine.client import Client, connect
from comfy_widgets.records.sqlite import Store
from comfy_widgets.states import JobState
from comfy_widgets.transport.classic import ClassicBackend
from comfy_widgets.transport.v2 import V2Client
from comfy_widgets.transport.v2_backend import V2Backend
from tests.test_v2_proxy import DEADLINE, FaultTransport
from tests.v2_servers import free_port

pytestmark = pytest.mark.timeout(180)

SECRET = "sekrit-key-0123456789"


@pytest.fixture
def wf():
    return cw.Workflow.load(examples.path("sd15_txt2img"))


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store.sqlite")


def seeds_run(history: dict) -> Counter[int]:
    """How often the simulator ran each KSampler seed."""
    return Counter(entry["prompt"][2]["3"]["inputs"]["seed"] for entry in history.values())


def sim_history(url: str) -> dict:
    return httpx.get(url + "/history", timeout=5.0).json()


async def wait_for(predicate, what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} not within {deadline}s")
        await asyncio.sleep(0.05)


def no_secret_in(path: Path, secret: str) -> bool:
    return all(secret.encode() not in p.read_bytes() for p in path.rglob("*") if p.is_file())


# --- detection -------------------------------------------------------------------------------


def test_detection_rules_without_a_server(monkeypatch):
    monkeypatch.delenv("COMFY_API_KEY", raising=False)
    dead = f"http://127.0.0.1:{free_port()}"
    by_path = connect(dead + "/api/v2/", store=None)
    assert by_path.protocol == "v2" and by_path.url == dead + "/api/v2"
    by_key = connect("https://cloud.example", api_key=SECRET, store=None)
    assert isinstance(by_key.backend, V2Backend) and by_key.url == "https://cloud.example/api/v2"
    assert SECRET not in repr(by_key) + repr(by_key.backend) + str(by_key.request_headers())
    assert connect(dead, protocol="v2", store=None).protocol == "v2"
    assert connect(dead, store=None).protocol == "classic"
    with pytest.raises(ValueError, match="api_key= is for Comfy API v2"):
        connect(dead, api_key=SECRET, protocol="classic", store=None)
    with pytest.raises(ValueError, match="auth= and headers= are for the classic"):
        connect(dead, api_key=SECRET, auth=("u", "p"), store=None)
    with pytest.raises(ValueError, match="protocol="):
        connect(dead, protocol="v3", store=None)
    with pytest.raises(ValueError, match="api_key"):
        connect("http://user:pw@127.0.0.1:1/api/v2", store=None)
    monkeypatch.setenv("COMFY_API_KEY", SECRET)  # a server that does not answer stays classic
    assert connect(dead, store=None).protocol == "classic"


def test_env_key_picks_v2_for_the_proxy_and_is_never_given_to_classic(v2_stack, monkeypatch):
    monkeypatch.setenv("COMFY_API_KEY", v2_stack.token)
    monkeypatch.setenv("COMFYUI_URL", v2_stack.url)
    proxied = connect(store=None)  # as the notebooks do
    direct = connect(v2_stack.sim_url, store=None)
    try:
        assert proxied.protocol == "v2" and proxied.url == v2_stack.url + "/api/v2"
        assert isinstance(direct.backend, ClassicBackend)
        assert v2_stack.token not in str(direct.request_headers())
    finally:
        proxied.close()
        direct.close()


# --- the public API through v2 ---------------------------------------------------------------


async def test_run_batch_views_grid_form_and_store_through_v2(v2_stack, wf, store, tmp_path):
    from comfy_widgets.widgets.batch_view import BatchView
    from comfy_widgets.widgets.form import ParameterForm
    from comfy_widgets.widgets.progress import ProgressView

    client = connect(v2_stack.url, api_key=v2_stack.token, store=store)
    try:
        job = client.run(wf, seed=11, steps=4)
        view = ProgressView(job)
        result = await asyncio.wait_for(job, DEADLINE)
        assert result.status == "completed" and result.images[0].size == (512, 512)
        await wait_for(lambda: view.status == "completed", "the progress view's end")
        assert view.thumbnails

        batch = client.batch(wf, seed="21, 22, 23", steps=4)
        batch_view = BatchView(batch)
        df = await asyncio.wait_for(batch, DEADLINE)
        assert list(df["status"]) == ["completed"] * 3
        assert set(df["server"]) == {client.url}
        grid = cw.ResultGrid(df, x="seed")
        assert grid is not None
        await wait_for(lambda: batch_view.batch_status == "completed", "the batch view's end")
        assert batch_view.item_servers == [client.url] * 3
        (line,) = batch_view.servers
        assert (line["protocol"], line["completed"], line["sent"]) == ("v2", 3, 3)

        form = ParameterForm(wf, client)
        form.set_values({"seed": 31, "steps": 4})
        form_job = form.run()
        assert form_job is not None
        await asyncio.wait_for(form_job, DEADLINE)
        assert form_job.state == "completed"
    finally:
        await client.aclose()

    rows = store.find_generations()
    assert len(rows) == 5 and {r.server for r in rows} == {v2_stack.url + "/api/v2"}
    assert {r.state for r in rows} == {JobState.COMPLETED}
    assert all(r.saved_outputs for r in rows)
    assert seeds_run(v2_stack.sim_history()) == Counter({11: 1, 21: 1, 22: 1, 23: 1, 31: 1})
    assert no_secret_in(tmp_path, v2_stack.token)


async def test_resume_adopts_v2_jobs_after_the_kernel_lost_them(v2_stack, wf, store, monkeypatch):
    monkeypatch.setenv("COMFY_API_KEY", v2_stack.token)  # resume reconnects to the recorded URL
    client = connect(v2_stack.url, store=store)
    batch = client.batch(wf, seed="41, 42, 43, 44", steps=20, concurrency=4)
    await wait_for(lambda: len(batch.jobs) == 4 and all(j.posted for j in batch.jobs), "posts")
    await client.aclose()  # the kernel dies: nobody follows the four jobs any more
    recorded = store.find_generations(batch_id=batch.id)
    unfinished = [r for r in recorded if r.state != JobState.COMPLETED]
    assert unfinished, "the batch was cut off before it finished"

    df = await asyncio.wait_for(cw.resume(batch.id, store=store), DEADLINE)
    assert list(df["status"]) == ["completed"] * 4
    assert set(df["server"]) == {v2_stack.url + "/api/v2"}
    assert seeds_run(v2_stack.sim_history()) == Counter({41: 1, 42: 1, 43: 1, 44: 1})


# --- pools across backends -------------------------------------------------------------------


async def test_twenty_items_split_over_a_simulator_and_a_proxied_one(v2_stack, wf, store):
    with sim.serve(seconds_per_step=0.02) as direct:
        v2 = connect(v2_stack.url, api_key=v2_stack.token, store=store)
        local = connect(direct.url, store=store)
        try:
            seeds = ", ".join(str(1000 + i) for i in range(20))
            batch = local.batch(wf, seed=seeds, steps=6, servers=[direct.url, v2], concurrency=3)
            df = await asyncio.wait_for(batch, 2 * DEADLINE)
            stats = {s.url: s for s in batch.server_stats()}
        finally:
            await v2.aclose()
            await local.aclose()
        ran = seeds_run(sim_history(direct.url)) + seeds_run(v2_stack.sim_history())
    assert list(df["status"]) == ["completed"] * 20
    servers = Counter(df["server"])
    assert set(servers) == {direct.url, v2.url} and min(servers.values()) >= 3
    rows = store.find_generations(batch_id=batch.id)
    assert sorted(r.batch_index for r in rows) == list(range(20))
    assert {r.batch_index: r.server for r in rows} == dict(enumerate(df["server"]))
    assert ran == Counter(1000 + i for i in range(20))  # each item ran once, somewhere
    assert (stats[v2.url].protocol, stats[direct.url].protocol) == ("v2", "classic")
    assert stats[v2.url].completed + stats[direct.url].completed == 20
    assert stats[v2.url].per_minute > 0 and stats[direct.url].per_minute > 0


async def test_pool_routes_around_a_v2_server_that_refuses_the_key(v2_stack, wf, store):
    bad = connect(v2_stack.url, api_key="wrong-key", store=store)
    good = connect(v2_stack.sim_url, store=store)
    try:
        batch = good.batch(wf, seed="51, 52, 53, 54", steps=4, servers=[bad, good])
        df = await asyncio.wait_for(batch, DEADLINE)
        stats = {s.url: s for s in batch.server_stats()}
    finally:
        await bad.aclose()
        await good.aclose()
    assert list(df["status"]) == ["completed"] * 4
    assert set(df["server"]) == {good.url}
    assert stats[bad.url].down and stats[bad.url].completed == 0


async def test_proxy_killed_mid_batch_and_restarted_every_item_runs_once(v2_stack, wf, store):
    client = connect(v2_stack.url, api_key=v2_stack.token, store=store)
    try:
        batch = client.batch(wf, seed="61, 62, 63, 64, 65, 66", steps=40, concurrency=2)

        def mid_batch() -> bool:  # two done, the next two posted and one of them running
            live = [j for j in batch.jobs if not j.done()]
            return (
                batch.completed_count >= 2
                and len(live) == 2
                and all(j.posted for j in live)
                and any(j.state == "running" for j in live)
            )

        await wait_for(mid_batch, "two items done and two in flight")
        await asyncio.to_thread(v2_stack.kill_proxy)
        await asyncio.sleep(1.0)  # followers meet a dead port meanwhile
        await asyncio.to_thread(v2_stack.start_proxy)
        df = await asyncio.wait_for(batch, 2 * DEADLINE)
    finally:
        await client.aclose()
    assert list(df["status"]) == ["completed"] * 6, df[["status", "error"]].to_string()
    assert all(isinstance(row, list) and row for row in df["outputs"])
    assert seeds_run(v2_stack.sim_history()) == Counter(range(61, 67))
    assert len(store.find_generations(batch_id=batch.id)) == 6


async def test_a_submit_whose_outcome_cannot_be_known_is_lost_not_resent(v2_stack, wf, store):
    posts = 0

    def unknowable(request: httpx.Request, n: int) -> object:
        nonlocal posts
        if request.method != "POST" or not request.url.path.endswith("/api/v2/jobs"):
            return None
        posts += 1
        if posts == 1:  # the connection breaks: the proxy may or may not have the job
            raise httpx.ReadError("connection reset (injected)")
        return httpx.Response(  # it took the key but lists no job (killed in between)
            422,
            json={"error": {"code": "idempotency_key_reuse", "message": "used", "details": None}},
        )

    transport = FaultTransport(unknowable)
    backend = V2Backend(
        v2_stack.url, client=V2Client(v2_stack.url, api_key=v2_stack.token, transport=transport)
    )
    client = Client(backend=backend, store=store)
    try:
        job = client.run(wf, seed=111, steps=4)
        await wait_for(job.done, "the job's end")
    finally:
        await client.aclose()
    assert job.state == "lost" and "not sending it again" in (job.error_message or "")
    assert posts == 2  # never sent a third time under a new key
    assert seeds_run(v2_stack.sim_history())[111] == 0


async def test_batch_completes_from_polling_when_every_event_stream_drops(v2_stack, wf, store):
    def cut_streams(request: httpx.Request, n: int) -> object:
        return "cut-stream" if request.url.path.endswith("/events") else None

    transport = FaultTransport(cut_streams)
    backend = V2Backend(
        v2_stack.url,
        client=V2Client(v2_stack.url, api_key=v2_stack.token, transport=transport),
    )
    client = Client(backend=backend, store=store)
    try:
        batch = client.batch(wf, seed="71, 72, 73", steps=20)
        df = await asyncio.wait_for(batch, DEADLINE)
    finally:
        await client.aclose()
    assert list(df["status"]) == ["completed"] * 3
    assert all(image is not None for image in df["image"])
    assert transport.count("GET", "/events") >= 3  # a stream per item, each cut off
    assert seeds_run(v2_stack.sim_history()) == Counter({71: 1, 72: 1, 73: 1})


async def test_cancel_a_running_job_and_stop_a_batch_through_v2(v2_stack, wf, store):
    client = connect(v2_stack.url, api_key=v2_stack.token, store=store)
    try:
        job = client.run(wf, seed=81, steps=200)  # 4 s at the stack's 0.02 s/step
        await wait_for(lambda: job.state == "running", "the job running")
        await job.cancel_async()
        await wait_for(job.done, "the cancelled job's end")
        assert job.state == "cancelled"

        batch = client.batch(wf, seed="91, 92, 93, 94, 95", steps=100, concurrency=5)
        await wait_for(lambda: batch.running_count == 1, "the first item running")
        await asyncio.wait_for(batch.stop_async(), DEADLINE)
        df = await asyncio.wait_for(batch, DEADLINE)
    finally:
        await client.aclose()
    assert batch.status == "cancelled"
    assert Counter(df["status"])["cancelled"] == 4  # the running one finishes, queued ones go
    ran = seeds_run(v2_stack.sim_history())
    assert ran[81] <= 1 and sum(ran[s] for s in (92, 93, 94, 95)) == 0


async def test_pool_routes_around_a_v2_server_that_never_answers(v2_stack, wf, store):
    dead = connect(f"http://127.0.0.1:{free_port()}", api_key=SECRET, store=store)
    good = connect(v2_stack.url, api_key=v2_stack.token, store=store)
    try:
        batch = good.batch(wf, seed="101, 102, 103", steps=4, servers=[dead, good])
        # within DEADLINE: the client's 60 s retry budget would not fit, a dead server is
        # given up at its first refused connection
        df = await asyncio.wait_for(batch, DEADLINE)
        stats = {s.url: s for s in batch.server_stats()}
    finally:
        await dead.aclose()
        await good.aclose()
    assert list(df["status"]) == ["completed"] * 3
    assert set(df["server"]) == {good.url}
    assert stats[dead.url].down and stats[dead.url].sent >= 1
