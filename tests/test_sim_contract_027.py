"""Contract tests for `--emulate 0.27`: replay what a real ComfyUI 0.27.0 answered and sent
(tests/reference/comfyui-0.27, recorded with model-free graphs) against the simulator.

The frame comparison is the one of test_sim_contract (types, field names in order, ids and
times left out); HTTP bodies are compared exactly where they do not depend on time or ids.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import aiohttp
import pytest

from comfy_widgets import sim
from tests.test_sim_contract import Driver, Socket, assert_same, cid, is_msg, reference_frames
from tests.test_sim_http import long_lists_hidden, post_raw, shape, without

REF = Path(__file__).resolve().parent / "reference" / "comfyui-0.27"
TRACES = REF / "traces"
HTTP = REF / "http"


def workflow(trace: str, name: str = "workflow_api.json") -> dict:
    return json.loads((TRACES / trace / name).read_text())


def exchanges(trace: str) -> list[dict]:
    return [e for e in json.loads((TRACES / trace / "http.json").read_text()) if "label" in e]


@pytest.fixture
async def driver():
    server = await sim.start(seconds_per_step=0.01, emulate="0.27")
    async with aiohttp.ClientSession() as session:
        yield Driver(server, session)
    await server.astop()


async def get(driver: Driver, path: str) -> tuple[int, object]:
    async with driver.session.get(driver.server.url + path) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else None)


async def post(driver: Driver, path: str, body: object = None) -> tuple[int, object]:
    kwargs = {} if body is None else {"json": body}
    async with driver.session.post(driver.server.url + path, **kwargs) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else None)


# -- WebSocket traces -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "trace", ["b1_emptyimage_saveimage", "b2_emptyimage_previewimage", "d_execution_error"]
)
async def test_single_run_matches(driver, trace):
    if trace == "b2_emptyimage_previewimage":  # recorded right after b1: EmptyImage was cached
        await driver.warm_up(workflow("b1_emptyimage_saveimage"))
    client = cid()
    socket = await driver.connect(client)
    await driver.post(workflow(trace), client)
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))


async def test_client_chosen_prompt_id_is_used_in_every_frame(driver):
    trace = "b1id_client_prompt_id"
    await driver.warm_up(workflow("b1_emptyimage_saveimage"))  # as recorded: EmptyImage cached
    client, prompt_id = cid(), str(uuid.uuid4())
    socket = await driver.connect(client)
    assert await driver.post(workflow(trace), client, prompt_id=prompt_id) == prompt_id
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))
    ids = {f["msg"]["data"].get("prompt_id") for f in socket.frames if f["kind"] == "text"}
    assert ids == {None, prompt_id}


async def test_progress_text_frame_reaches_submitter_and_bystander(driver):
    trace = "b4_progress_text_binary_type3"
    a, b = cid(), cid()
    socket_a = await driver.connect(a)
    socket_b = await driver.connect(b)
    await driver.post(workflow(trace), a)
    await driver.finish(socket_a, socket_b)
    assert_same(socket_a.frames, reference_frames(TRACES / trace / "ws_client_A_submitter.jsonl"))
    assert_same(socket_b.frames, reference_frames(TRACES / trace / "ws_client_B_bystander.jsonl"))


async def test_same_prompt_twice_is_cached_then_partly_cached(driver):
    trace = "c_same_prompt_twice_cached"
    client = cid()
    socket = await driver.connect(client)
    for run in (1, 2, 3):
        await driver.post(workflow(trace, f"workflow_api_run{run}.json"), client)
        await driver.wait_done()
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))


async def test_prompt_without_client_id_sends_only_broadcasts(driver):
    trace = "i_prompt_without_client_id"
    listener = await driver.connect(cid())
    await driver.post(workflow(trace), None)
    await driver.finish(listener)
    assert_same(listener.frames, reference_frames(TRACES / trace / "ws_listener.jsonl"))


async def test_feature_flags_answer_has_the_new_keys(driver):
    socket = await driver.connect(cid(), flags=True)
    await driver.finish(socket)
    assert_same(
        socket.frames, reference_frames(TRACES / "a_connect_idle" / "ws_with_feature_flags.jsonl")
    )


async def _interrupt_during_node_11(driver: Driver, trace: str, stop) -> tuple[Socket, str]:
    """Hold node 11 of the blur chain, stop the prompt with `stop(prompt_id)`, finish."""
    client = cid()
    socket = await driver.connect(client)
    driver.server.faults.hold_node("11")
    prompt_id = await driver.post(workflow(trace), client)
    await socket.until(is_msg("executing", node="11"))
    status, job = await get(driver, f"/api/jobs/{prompt_id}")
    assert status == 200 and job["status"] == "in_progress"
    await stop(prompt_id)
    await driver.finish(socket)
    assert_same(socket.frames, reference_frames(TRACES / trace / "ws.jsonl"))
    return socket, prompt_id


async def test_interrupt_lands_at_the_next_node(driver):
    async def interrupt(prompt_id: str) -> None:
        await driver.post_json("/interrupt")

    _, prompt_id = await _interrupt_during_node_11(driver, "e1_interrupt_global", interrupt)
    status, job = await get(driver, f"/api/jobs/{prompt_id}")
    want = next(e for e in exchanges("e1_interrupt_global") if "(interrupted)" in e["label"])
    assert status == 200 and shape(job) == shape(want["response_body"])
    assert job["status"] == "cancelled" and job["outputs"] == {}


async def test_cancel_running_job_through_the_jobs_api(driver):
    answers = []

    async def cancel(prompt_id: str) -> None:
        answers.append(await post(driver, f"/api/jobs/{prompt_id}/cancel"))

    _, prompt_id = await _interrupt_during_node_11(driver, "e3_cancel_running_job", cancel)
    answers.append(await post(driver, f"/api/jobs/{prompt_id}/cancel"))
    recorded = [e for e in exchanges("e3_cancel_running_job") if "/cancel" in e["label"]]
    assert answers == [(e["status"], e["response_body"]) for e in recorded]
    assert (await get(driver, f"/api/jobs/{prompt_id}"))[1]["status"] == "cancelled"


async def test_queued_behind_and_cancel_pending(driver):
    trace = "f1_queued_behind"
    a, b = cid(), cid()
    socket_a = await driver.connect(a)
    socket_b = await driver.connect(b)
    driver.server.faults.hold_node("10")
    j1 = await driver.post(workflow(trace, "workflow_api_J1.json"), a)
    await socket_a.until(is_msg("executing", node="10"))
    j2 = await driver.post(workflow(trace, "workflow_api_J2.json"), b)
    j3 = await driver.post(workflow(trace, "workflow_api_J3.json"), a)
    recorded = {e["label"]: e for e in exchanges(trace)}
    status, queue = await get(driver, "/queue")
    assert shape(queue) == shape(recorded["GET /queue (1 running, 2 pending)"]["response_body"])
    status, listing = await get(driver, "/api/jobs")
    want = recorded["GET /api/jobs (running + pending)"]["response_body"]
    assert shape(listing) == shape(want)
    assert [j["status"] for j in listing["jobs"]] == [j["status"] for j in want["jobs"]][:3]
    assert {j["id"] for j in listing["jobs"]} == {j1, j2, j3}
    assert listing["jobs"][-1]["id"] == j1  # created first (J2 and J3 may share a millisecond)
    for label, job_id in (
        ("GET /api/jobs/{J2} (pending)", j2),
        ("GET /api/jobs/{J1} (in progress)", j1),
    ):
        status, job = await get(driver, f"/api/jobs/{job_id}")
        assert set(job) == set(recorded[label]["response_body"])
        assert job["status"] == recorded[label]["response_body"]["status"]
    answer = await post(driver, f"/api/jobs/{j3}/cancel")
    cancel = recorded["POST /api/jobs/{J3}/cancel (pending)"]
    assert answer == (cancel["status"], cancel["response_body"])
    driver.posted.remove(j3)
    driver.server.faults.hold_node("10", held=False)
    await driver.finish(socket_a, socket_b)
    gone = recorded["GET /api/jobs/{J3} (cancelled while pending)"]
    assert await get(driver, f"/api/jobs/{j3}") == (gone["status"], gone["response_body"])
    assert_same(socket_a.frames, reference_frames(TRACES / trace / "ws_client_A.jsonl"))
    assert_same(socket_b.frames, reference_frames(TRACES / trace / "ws_client_B.jsonl"))


async def test_replaced_node_is_validated_under_its_new_class(driver):
    recorded = exchanges("n_node_replacement")[0]
    status, body = await post(driver, "/prompt", recorded["request_json"])
    assert (status, without(body, "traceback")) == (
        recorded["status"],
        without(recorded["response_body"], "traceback"),
    )


# -- HTTP ---------------------------------------------------------------------------------------
PROMPT_CASES = json.loads((HTTP / "post_prompt_responses.json").read_text())


@pytest.fixture(scope="module")
def prompt_server():
    with sim.serve(seconds_per_step=0.001, emulate="0.27") as server:
        yield server


@pytest.mark.parametrize("case", PROMPT_CASES, ids=[c["label"] for c in PROMPT_CASES])
async def test_post_prompt_answers_like_comfyui_027(prompt_server, case):
    async with aiohttp.ClientSession(prompt_server.url) as http, await post_raw(http, case) as r:
        assert r.status == case["status"]
        assert r.headers["Content-Type"] == case["response_headers"]["Content-Type"]
        if r.status == 500:
            assert await r.text() == case["response_text"]
            return
        body = await r.json()
    want = case["response_body"]
    if r.status == 200:
        assert set(body) == set(want) and body["node_errors"] == {}
        request = case["request_json"]
        if request.get("prompt_id") is not None:
            assert body["prompt_id"] == request["prompt_id"]
        else:
            assert str(uuid.UUID(body["prompt_id"])) == body["prompt_id"]
        return
    assert without(long_lists_hidden(body), "traceback") == without(
        long_lists_hidden(want), "traceback"
    )


EXACT_GETS = [
    "features.json",
    "prompt_get.json",
    "queue_empty.json",
    "object_info_single_KSampler.json",
    "object_info_single_unknown.json",
    "node_replacements.json",
    "jobs_empty.json",
    "api_prefix_jobs.json",
    "jobs_unprefixed.json",
    "jobs_unknown_id.json",
    "jobs_not_a_uuid.json",
    "jobs_bad_status.json",
    "jobs_bad_limit.json",
    "jobs_bad_sort.json",
    "history_unknown_id.json",
]


@pytest.fixture(scope="module")
def idle_server():
    with sim.serve(emulate="0.27") as server:
        yield server


@pytest.mark.parametrize("name", EXACT_GETS)
async def test_get_answers_like_comfyui_027(idle_server, name):
    case = json.loads((HTTP / name).read_text())
    path = case["path"]
    if "/api/jobs/" in path and path.count("-") == 4:
        path = f"/api/jobs/{uuid.uuid4()}"
    if path.startswith("/history/"):
        path = f"/history/{uuid.uuid4()}"
    async with aiohttp.ClientSession(idle_server.url) as http, http.get(path) as r:
        assert r.status == case["status"]
        body = await r.json() if r.content_type == "application/json" else None
    assert body == case["response_body"]


async def test_system_stats_has_the_recorded_shape(idle_server):
    case = json.loads((HTTP / "system_stats.json").read_text())
    async with aiohttp.ClientSession(idle_server.url) as http, http.get("/system_stats") as r:
        body = await r.json()
    want = case["response_body"]
    assert set(body["system"]) <= set(want["system"]) | {"comfy_package_versions"}
    assert body["system"]["comfyui_version"] == want["system"]["comfyui_version"]
    assert shape(body["devices"]) == shape(want["devices"])


async def test_jobs_errors_and_cancels_answer_like_comfyui(driver):
    for case in json.loads((HTTP / "jobs_exchanges.json").read_text()):
        if case["method"] != "POST":
            continue
        kwargs = {}
        if "request_json" in case:
            kwargs["json"] = case["request_json"]
        elif "request_raw_body" in case:
            kwargs["data"] = case["request_raw_body"]
        async with driver.session.post(driver.server.url + case["path"], **kwargs) as r:
            assert r.status == case["status"], case["label"]
            body = await r.json() if r.content_type == "application/json" else None
        want = case["response_body"]
        if case["label"] == "POST /api/jobs/cancel invalid ids":  # a fresh random upper id
            body["invalid_ids"][-1] = want["invalid_ids"][-1]
        assert body == want, case["label"]


async def test_jobs_listing_pages_and_sorts(driver):
    client = cid()
    socket = await driver.connect(client)
    ids = [await driver.post(workflow("b1_emptyimage_saveimage"), client) for _ in range(3)]
    await driver.finish(socket)
    status, body = await get(driver, "/api/jobs?limit=2&offset=1")
    assert [j["id"] for j in body["jobs"]] == ids[1::-1]
    assert body["pagination"] == {"offset": 1, "limit": 2, "total": 3, "has_more": False}
    status, body = await get(driver, "/api/jobs?status=completed&sort_order=asc")
    assert [j["id"] for j in body["jobs"]] == ids
    recorded = json.loads((HTTP / "jobs_exchanges.json").read_text())[0]["response_body"]
    assert shape(body["jobs"][0]) == shape(recorded["jobs"][0])
    status, job = await get(driver, f"/api/jobs/{ids[0]}")
    want = exchanges("b1_emptyimage_saveimage")[-1]["response_body"]
    assert shape(job) == shape(want)
    assert job["preview_output"]["mediaType"] == "images" and job["outputs_count"] == 1
