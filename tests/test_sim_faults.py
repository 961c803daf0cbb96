"""Simulator knobs: failing nodes, dropped sockets, restarts, malformed frames, threads, CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.request

import aiohttp
import pytest

from comfy_widgets import sim
from comfy_widgets.sim.faults import MALFORMED_TEXT, UNKNOWN_BINARY
from tests.shared_data import REFERENCE

TRACES = REFERENCE / "traces"
SMALL = json.loads((TRACES / "b1_emptyimage_saveimage" / "workflow_api.json").read_text())
SAMPLER = json.loads((TRACES / "h_reconnect_mid_run" / "workflow_api.json").read_text())


@pytest.fixture
async def http(server):
    async with aiohttp.ClientSession(server.url) as session:
        yield session


async def post(http, prompt: dict, client_id: str | None = "c") -> str:
    body = {"prompt": prompt} | ({"client_id": client_id} if client_id else {})
    async with http.post("/prompt", json=body) as r:
        assert r.status == 200
        return (await r.json())["prompt_id"]


async def history(http, prompt_id: str) -> dict:
    while True:
        async with http.get(f"/history/{prompt_id}") as r:
            entry = await r.json()
        if entry:
            return entry[prompt_id]
        await asyncio.sleep(0.01)


async def texts_until(ws, kind: str) -> list[dict]:
    """Parsed text frames up to and including the first of type `kind` (junk kept as raw)."""
    frames = []
    while True:
        message = await ws.receive(timeout=10)
        if message.type != aiohttp.WSMsgType.TEXT:
            frames.append({"binary": message.data})
            continue
        try:
            frame = json.loads(message.data)
        except ValueError:
            frames.append({"raw": message.data})
            continue
        frames.append(frame)
        if frame.get("type") == kind:
            return frames


@pytest.mark.parametrize("target", ["SaveImage", "2"])
async def test_fail_node_sends_execution_error_once(server, http, target):
    server.faults.fail_node(target)
    async with http.ws_connect("/ws?clientId=c") as ws:
        failed = await post(http, SMALL)
        frames = await texts_until(ws, "execution_error")
        error = frames[-1]["data"]
        assert error["node_id"] == "2" and error["node_type"] == "SaveImage"
        assert error["exception_type"] == "SimulatedNodeError" and error["executed"] == ["1"]
        assert (await history(http, failed))["status"]["status_str"] == "error"
        ok = await post(http, SMALL)
        assert (await history(http, ok))["status"]["status_str"] == "success"


async def test_drop_sockets_closes_them_and_the_prompt_still_finishes(server, http):
    server.settings.seconds_per_step = 0.05
    async with http.ws_connect("/ws?clientId=c") as ws:
        prompt_id = await post(http, SAMPLER)
        await texts_until(ws, "progress")
        server.faults.drop_sockets()
        while (await ws.receive(timeout=10)).type not in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
        ):
            pass
    async with http.ws_connect("/ws?clientId=c") as ws:
        first = await texts_until(ws, "status")
        assert first[0]["data"]["sid"] == "c"
        entry = await history(http, prompt_id)
    assert entry["status"]["completed"] is True


async def test_real_restart_loses_queue_history_and_running_prompt(server, http):
    server.settings.seconds_per_step = 3600.0  # hold the sampler until the restart
    port = server.port
    done = await post(http, SMALL)
    await history(http, done)
    running = await post(http, SAMPLER)
    await post(http, SMALL)
    await server.arestart()
    assert server.port == port
    async with aiohttp.ClientSession(server.url) as fresh:
        async with fresh.get("/queue") as r:
            assert await r.json() == {"queue_running": [], "queue_pending": []}
        async with fresh.get("/history") as r:
            assert await r.json() == {}
        async with fresh.post("/prompt", json={"prompt": SMALL}) as r:
            assert (await r.json())["number"] == 0
        async with fresh.get(f"/history/{running}") as r:
            assert await r.json() == {}


async def test_restart_keeping_state_lets_the_prompt_finish_while_down(server, http):
    server.settings.seconds_per_step = 0.02
    prompt_id = await post(http, SAMPLER)
    await server.arestart(keep_state=True, down_for=0.3)
    async with aiohttp.ClientSession(server.url) as fresh:
        entry = await history(fresh, prompt_id)
    assert entry["status"]["completed"] is True and entry["outputs"]["9"]["images"]


async def test_malformed_frames_follow_execution_start(server, http):
    server.faults.malformed_frames(True)
    async with http.ws_connect("/ws?clientId=c") as ws:
        await post(http, SMALL)
        frames = await texts_until(ws, "execution_cached")
    kinds = [f.get("type") or ("raw" if "raw" in f else "binary") for f in frames]
    assert kinds[-5:] == [
        "execution_start",
        "raw",
        "sim_unknown_event",
        "binary",
        "execution_cached",
    ]
    assert frames[-4]["raw"] == MALFORMED_TEXT and frames[-2]["binary"] == UNKNOWN_BINARY


async def test_previews_can_be_switched_off():
    server = await sim.start(seconds_per_step=0.001, previews=False)
    try:
        async with (
            aiohttp.ClientSession(server.url) as http,
            http.ws_connect("/ws?clientId=c") as ws,
        ):
            await post(http, SAMPLER)
            frames = await texts_until(ws, "execution_success")
    finally:
        await server.astop()
    assert not [f for f in frames if "binary" in f]
    assert len([f for f in frames if f.get("type") == "progress"]) == 12


def test_threaded_server_is_usable_from_plain_code_and_other_threads():
    with sim.serve(seconds_per_step=0.001) as server:
        url = server.url
        errors = []

        def poke() -> None:
            try:
                server.faults.drop_sockets()
                server.restart()
            except Exception as ex:  # noqa: BLE001 - reported below
                errors.append(ex)

        thread = threading.Thread(target=poke)
        thread.start()
        thread.join(30)
        assert not errors and server.url == url
        with urllib.request.urlopen(url + "/prompt", timeout=10) as r:
            assert json.loads(r.read()) == {"exec_info": {"queue_remaining": 0}}
        server.settings.seconds_per_step = 3600.0  # hold the sampler until interrupted
        request = urllib.request.Request(
            url + "/prompt",
            data=json.dumps({"prompt": SAMPLER}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            prompt_id = json.loads(r.read())["prompt_id"]
        while not server.server.queue.running_ids():
            time.sleep(0.01)
        server.interrupt(prompt_id)
        while not server.server.queue.get_history(prompt_id):
            time.sleep(0.01)
        status = server.server.queue.get_history(prompt_id)[prompt_id]["status"]
        assert status["messages"][-1][0] == "execution_interrupted"
    server.stop()  # idempotent
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/prompt", timeout=2)


def test_command_line_serves_extra_models(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "comfy_widgets.sim",
            "--port",
            "0",
            "--checkpoint",
            "cli.ckpt",
            "--model",
            "vae/cli_vae.safetensors",
            "--data-dir",
            str(tmp_path),
            "--seconds-per-step",
            "0.01",
            "--no-previews",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = line.split(" listening on ")[1].split()[0]
        with urllib.request.urlopen(url + "/models/checkpoints", timeout=10) as r:
            assert "cli.ckpt" in json.loads(r.read())
        with urllib.request.urlopen(url + "/models/vae", timeout=10) as r:
            assert "cli_vae.safetensors" in json.loads(r.read())
        assert (tmp_path / "input" / "example.png").is_file()
    finally:
        process.terminate()
        process.wait(10)
