"""The simulator's HTTP API compared with the recorded real-server exchanges."""

from __future__ import annotations

import asyncio
import copy
import io
import json

import aiohttp
import pytest
from PIL import Image

from comfy_widgets import sim
from tests.conftest import png_bytes
from tests.shared_data import REFERENCE

HTTP = REFERENCE / "http"
TRACES = REFERENCE / "traces"
JSON_TYPE = "application/json; charset=utf-8"


@pytest.fixture
async def server():
    server = await sim.start(seconds_per_step=0.01, emulate="0.3.64")
    yield server
    await server.astop()


@pytest.fixture
async def http(server):
    async with aiohttp.ClientSession(server.url) as session:
        yield session


@pytest.fixture(scope="module")
def prompt_server():
    """One threaded server for the POST /prompt cases (they only read its state)."""
    with sim.serve(seconds_per_step=0.001, emulate="0.3.64") as server:
        yield server


@pytest.fixture(scope="module")
def idle_server():
    """One threaded server that never runs anything, for the GET cases."""
    with sim.serve(emulate="0.3.64") as server:
        yield server


def shape(value: object) -> object:
    """The structure of a JSON value: keys and value types, not values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["list", shape(value[0])] if value else ["list"]
    return type(value).__name__


def without(value: object, key: str) -> object:
    """A copy of a JSON value with `key` removed from every dict."""
    if isinstance(value, dict):
        return {k: without(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [without(v, key) for v in value]
    return value


def long_lists_hidden(body: dict) -> dict:
    """value_not_in_list errors with the option list itself left out (it lists our files)."""
    body = copy.deepcopy(body)
    for node in body.get("node_errors", {}).values():
        for error in node["errors"]:
            if error["type"] == "value_not_in_list":
                error["details"] = error["details"].split(" not in ")[0]
                if error["extra_info"]["input_config"] is not None:
                    error["extra_info"]["input_config"][0] = "<options>"
    return body


async def post_raw(http: aiohttp.ClientSession, case: dict) -> aiohttp.ClientResponse:
    if "request_json" in case:
        return await http.post("/prompt", json=case["request_json"])
    return await http.post(
        "/prompt",
        data=case["request_raw_body"].encode(),
        headers={"Content-Type": "application/json"},
    )


PROMPT_CASES = json.loads((HTTP / "post_prompt_responses.json").read_text())


@pytest.mark.parametrize("case", PROMPT_CASES, ids=[c["label"] for c in PROMPT_CASES])
async def test_post_prompt_answers_like_comfyui(prompt_server, case):
    async with aiohttp.ClientSession(prompt_server.url) as http, await post_raw(http, case) as r:
        assert r.status == case["status"]
        assert r.headers["Content-Type"] == case["response_headers"]["Content-Type"]
        if r.status == 500:
            assert await r.text() == case["response_body"]
            return
        body = await r.json()
    want = case["response_body"]
    if r.status == 200:
        assert set(body) == set(want) and body["node_errors"] == {}
        request = case["request_json"]
        if "prompt_id" in request:
            assert body["prompt_id"] == request["prompt_id"]
        if "number" in request:
            assert body["number"] == request["number"]
        assert body["number"] <= 0 if request.get("front") else body["number"] >= 0
        return
    assert without(long_lists_hidden(body), "traceback") == without(
        long_lists_hidden(want), "traceback"
    )


async def test_value_not_in_list_names_the_served_files(http):
    case = next(c for c in PROMPT_CASES if c["label"] == "validation: unknown ckpt_name")
    async with await post_raw(http, case) as r:
        error = (await r.json())["node_errors"]["4"]["errors"][0]
    async with http.get("/models/checkpoints") as r:
        checkpoints = await r.json()
    assert error["details"] == f"ckpt_name: 'does_not_exist.safetensors' not in {checkpoints}"
    assert error["extra_info"]["input_config"][0] == checkpoints


async def test_number_counts_every_post_and_front_is_negative(http):
    prompt = json.loads((TRACES / "b1_emptyimage_saveimage" / "workflow_api.json").read_text())
    numbers = []
    for body in (
        {"prompt": prompt},
        {"prompt": {}},
        {"prompt": prompt, "front": True},
        {"prompt": prompt},
    ):
        async with http.post("/prompt", json=body) as r:
            numbers.append((await r.json()).get("number"))
    assert numbers == [0, None, -2, 3]


GET_CASES = json.loads((HTTP / "all_get_exchanges.json").read_text())


@pytest.mark.parametrize("case", GET_CASES, ids=[c["label"] for c in GET_CASES])
async def test_get_endpoints_have_the_recorded_shape(idle_server, case):
    async with aiohttp.ClientSession(idle_server.url) as http, http.get(case["path"]) as r:
        assert r.status == case["status"]
        if r.status == 404:
            assert await r.read() == b"" and "Content-Type" not in r.headers
            return
        assert r.headers["Content-Type"] == JSON_TYPE
        body = await r.json()
    want = case["response_body"]
    if case["path"] in ("/models/checkpoints", "/models/loras"):
        assert set(want) <= set(body)
    elif case["path"] in (
        "/models",
        "/object_info/KSampler",
        "/features",
        "/prompt",
        "/queue",
        "/api/queue",
        "/object_info/NoSuchNode",
        "/embeddings",
    ) or case["path"].startswith("/history/"):
        assert body == want
    else:
        assert shape(body) == shape(want)


async def test_model_lists_hold_every_file_the_workflows_name(http):
    async with http.get("/object_info") as r:
        info = await r.json()
    for path in sorted((REFERENCE.parent / "workflows" / "expected").glob("*.api.json")):
        prompt = json.loads(path.read_text())
        async with http.post("/prompt", json={"prompt": prompt}) as r:
            assert r.status == 200, (path.name, await r.text())
    lora_list = info["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert "MoXinV1.safetensors" in lora_list  # only in the bypassed node of sd15_lora.json
    assert (
        "v1-5-pruned-emaonly-fp16.safetensors"
        in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    )


async def test_extra_models_from_arguments_are_served():
    server = await sim.start(
        checkpoints=["mine.safetensors"],
        loras=["style.safetensors"],
        models={"vae": ["my_vae.safetensors"]},
    )
    try:
        async with aiohttp.ClientSession(server.url) as http:
            async with http.get("/object_info/VAELoader") as r:
                vae = (await r.json())["VAELoader"]["input"]["required"]["vae_name"][0]
            async with http.get("/models/checkpoints") as r:
                checkpoints = await r.json()
            async with http.get("/api/models/loras") as r:
                loras = await r.json()
    finally:
        await server.astop()
    assert "mine.safetensors" in checkpoints and "style.safetensors" in loras
    assert vae[0] == "ae.safetensors" and "my_vae.safetensors" in vae and vae[-1] == "pixel_space"


async def test_unknown_model_folder_is_404_with_empty_body(http):
    async with http.get("/models/unet") as r:
        assert r.status == 404 and await r.read() == b""


async def upload(http, data: bytes, name: str, **fields) -> dict:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    async with http.post("/upload/image", data=form) as r:
        assert r.status == 200
        return await r.json()


async def test_upload_lists_the_image_in_load_image_and_dedupes(http):
    assert await upload(http, png_bytes((255, 0, 0)), "red.png") == {
        "name": "red.png",
        "subfolder": "",
        "type": "input",
    }
    again = await upload(http, png_bytes((255, 0, 0)), "red.png")
    other = await upload(http, png_bytes((0, 0, 255)), "red.png")
    forced = await upload(http, png_bytes((0, 255, 0)), "red.png", overwrite="true")
    assert again["name"] == "red.png" and other["name"] == "red (1).png"
    assert forced["name"] == "red.png"
    async with http.get("/object_info/LoadImage") as r:
        names = (await r.json())["LoadImage"]["input"]["required"]["image"][0]
    assert {"red.png", "red (1).png", "example.png"} <= set(names) and names == sorted(names)
    for params in ({"filename": "red.png", "type": "input"}, {"filename": "red.png [input]"}):
        async with http.get("/view", params=params) as r:
            assert Image.open(io.BytesIO(await r.read())).getpixel((0, 0)) == (0, 255, 0)


async def test_load_image_of_a_missing_file_fails_validation(http):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    async with http.post("/prompt", json={"prompt": prompt}) as r:
        body = await r.json()
    assert r.status == 400
    error = body["node_errors"]["1"]["errors"][0]
    assert error["type"] == "custom_validation_failed"
    assert error["details"] == "image - Invalid image file: nope.png"
    assert error["extra_info"] == {"input_name": "image"}


async def test_view_rejects_bad_names_and_unknown_files(http):
    for params, status in (
        ({"filename": "../x.png"}, 400),
        ({"filename": "x.png"}, 404),
        ({"filename": "x.png", "type": "nope"}, 400),
        ({"filename": "x.png", "subfolder": "../.."}, 403),
    ):
        async with http.get("/view", params=params) as r:
            assert r.status == status, params


async def run_and_wait(http, prompt: dict, **extra) -> tuple[str, dict]:
    async with http.post("/prompt", json={"prompt": prompt, **extra}) as r:
        prompt_id = (await r.json())["prompt_id"]
    while True:
        async with http.get(f"/history/{prompt_id}") as r:
            entry = await r.json()
        if entry:
            return prompt_id, entry[prompt_id]
        await asyncio.sleep(0.01)


async def test_saved_png_carries_prompt_and_workflow_and_history_shape(http):
    prompt = json.loads(
        (TRACES / "g1_ksampler_real_no_feature_flags" / "workflow_api.json").read_text()
    )
    workflow = {"nodes": [], "links": [], "version": 0.4}
    prompt_id, entry = await run_and_wait(
        http, prompt, client_id="c1", extra_data={"extra_pnginfo": {"workflow": workflow}}
    )
    reference = next(iter(json.loads((HTTP / "history_by_id.json").read_text())["body"].values()))
    assert list(entry) == list(reference)
    assert shape(entry["status"]) == shape(reference["status"])
    for key in ("outputs", "meta"):
        assert shape(list(entry[key].values())) == shape(list(reference[key].values()))
    assert entry["meta"]["9"]["node_id"] == "9"
    assert entry["prompt"][1] == prompt_id and entry["prompt"][3] == {
        "extra_pnginfo": {"workflow": workflow},
        "client_id": "c1",
    }
    image = entry["outputs"]["9"]["images"][0]
    assert image["filename"] == "ref_g1_00001_.png"
    async with http.get("/view", params=image) as r:
        assert r.headers["Content-Type"] == "image/png"
        assert r.headers["Content-Disposition"] == 'filename="ref_g1_00001_.png"'
        saved = Image.open(io.BytesIO(await r.read()))
    async with http.get("/view", params={**image, "preview": "jpeg;50"}) as r:
        assert r.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(await r.read())).format == "JPEG"
    assert json.loads(saved.info["prompt"]) == prompt
    assert json.loads(saved.info["workflow"]) == workflow
    assert saved.size == (64, 64)


async def test_history_max_items_delete_and_clear(http):
    prompt = json.loads((TRACES / "b1_emptyimage_saveimage" / "workflow_api.json").read_text())
    ids = [(await run_and_wait(http, prompt))[0] for _ in range(3)]
    async with http.get("/history", params={"max_items": "2"}) as r:
        assert list(await r.json()) == ids[1:]
    async with http.post("/history", json={"delete": [ids[0]]}) as r:
        assert r.status == 200 and await r.read() == b""
    async with http.get("/api/history") as r:
        assert list(await r.json()) == ids[1:]
    async with http.post("/api/history", json={"clear": True}) as r:
        assert r.status == 200
    async with http.get("/history") as r:
        assert await r.json() == {}


async def test_queue_lists_pending_in_heap_order_and_deletes(http, server):
    server.settings.seconds_per_step = 3600.0  # hold the sampler until interrupted
    slow = json.loads((TRACES / "e1_interrupt_global" / "workflow_api.json").read_text())
    small = json.loads((TRACES / "b1_emptyimage_saveimage" / "workflow_api.json").read_text())
    async with http.post("/prompt", json={"prompt": slow}) as r:
        running = (await r.json())["prompt_id"]
    pending = []
    for front in (False, False, True):
        async with http.post("/prompt", json={"prompt": small, "front": front}) as r:
            pending.append(await r.json())
    async with http.get("/queue") as r:
        queue = await r.json()
    assert [item[1] for item in queue["queue_running"]] == [running]
    order = sorted(queue["queue_pending"], key=lambda item: item[0])
    assert [item[1] for item in order] == [
        pending[2]["prompt_id"],
        pending[0]["prompt_id"],
        pending[1]["prompt_id"],
    ]
    assert all(len(item) == 5 and item[4] == ["2"] for item in queue["queue_pending"])
    async with http.post("/queue", json={"delete": [pending[0]["prompt_id"]]}) as r:
        assert r.status == 200
    async with http.get("/prompt") as r:
        assert await r.json() == {"exec_info": {"queue_remaining": 3}}
    async with http.post("/queue", json={"clear": True}) as r:
        assert r.status == 200
    async with http.post("/interrupt", json={"prompt_id": running}) as r:
        assert r.status == 200 and await r.read() == b""
    _, entry = await run_and_wait(http, small)
    async with http.get(f"/history/{running}") as r:
        interrupted = (await r.json())[running]
    assert interrupted["status"]["status_str"] == "error" and interrupted["outputs"] == {}
    assert [m[0] for m in interrupted["status"]["messages"]][-1] == "execution_interrupted"
    assert entry["status"]["completed"] is True


async def test_misc_posts_answer_empty_200(http):
    cases = json.loads((HTTP / "misc_post_responses.json").read_text())
    for case in cases:
        if case["path"] == "/upload/image":
            continue
        kwargs = {"json": case["request_json"]} if "request_json" in case else {}
        async with http.post(case["path"], **kwargs) as r:
            assert r.status == case["status"] and await r.read() == b""


async def test_queue_changes_broadcast_status_like_comfyui(http, server):
    """Each put, take, finish, delete and clear announces; deleting the last item twice."""
    server.settings.seconds_per_step = 3600.0  # hold the sampler until interrupted
    slow = json.loads((TRACES / "e1_interrupt_global" / "workflow_api.json").read_text())
    small = json.loads((TRACES / "b1_emptyimage_saveimage" / "workflow_api.json").read_text())
    async with http.ws_connect("/ws") as ws:
        counts = [
            (await ws.receive_json(timeout=10))["data"]["status"]["exec_info"]["queue_remaining"]
        ]
        async with http.post("/prompt", json={"prompt": slow}) as r:
            running = (await r.json())["prompt_id"]
        async with http.post("/prompt", json={"prompt": small}) as r:
            pending = (await r.json())["prompt_id"]
        async with http.post("/queue", json={"delete": [pending]}):
            pass
        async with http.post("/queue", json={"clear": True}):
            pass
        async with http.post("/interrupt", json={"prompt_id": running}):
            pass
        while len(counts) < 8:
            frame = await ws.receive_json(timeout=10)
            if frame["type"] == "status":
                counts.append(frame["data"]["status"]["exec_info"]["queue_remaining"])
    assert counts == [0, 1, 1, 2, 1, 1, 1, 0]


async def test_history_offset_pages_from_the_oldest(http):
    prompt = json.loads((TRACES / "b1_emptyimage_saveimage" / "workflow_api.json").read_text())
    ids = []
    for color in range(3):
        prompt["1"]["inputs"]["color"] = color
        ids.append((await run_and_wait(http, prompt))[0])
    async with http.get("/history", params={"offset": "1", "max_items": "1"}) as r:
        assert list(await r.json()) == ids[1:2]
    async with http.get("/history", params={"offset": "1"}) as r:
        assert list(await r.json()) == ids[1:]


async def test_free_memory_forgets_the_cache_and_history_keeps_cached_outputs(http):
    prompt = json.loads((TRACES / "b1_emptyimage_saveimage" / "workflow_api.json").read_text())
    _, first = await run_and_wait(http, prompt)
    _, cached = await run_and_wait(http, prompt)  # no client_id: outputs come from the cache
    async with http.post("/free", json={"unload_models": True, "free_memory": True}) as r:
        assert r.status == 200
    _, cold = await run_and_wait(http, prompt)
    assert cached["status"]["messages"][1][1]["nodes"] == ["1", "2"]
    assert cached["outputs"] == first["outputs"]
    assert cold["status"]["messages"][1][1]["nodes"] == []


async def test_new_style_combo_values_are_not_checked_like_comfyui(http):
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "SaveWEBM",
            "inputs": {
                "images": ["1", 0],
                "filename_prefix": "x",
                "codec": "not-a-codec",
                "fps": 24.0,
                "crf": 32.0,
            },
        },
    }
    async with http.post("/prompt", json={"prompt": prompt}) as r:
        assert r.status == 200
