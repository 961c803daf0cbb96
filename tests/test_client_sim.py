"""Integration tests: Client, Monitor and Job against the simulated ComfyUI on loopback."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Callable

import pytest

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.job import Job
from comfy_widgets.errors import (
    ExecutionError,
    JobCancelledError,
    ParameterError,
    PromptValidationError,
)
from tests.shared_data import REFERENCE

TRACES = REFERENCE / "traces"
KSAMPLER = json.loads(
    (TRACES / "g1_ksampler_real_no_feature_flags" / "workflow_api.json").read_text()
)
EMPTY_IMAGE = json.loads((TRACES / "b1_emptyimage_saveimage" / "workflow_api.json").read_text())


def ksampler(steps: int = 4, seed: int = 1, prefix: str = "t") -> dict:
    prompt = copy.deepcopy(KSAMPLER)
    prompt["3"]["inputs"].update(steps=steps, seed=seed)
    prompt["9"]["inputs"]["filename_prefix"] = prefix
    return prompt


@pytest.fixture
async def server(request):
    """The simulator in ``--emulate 0.27`` (default) or the version a test asks for through
    ``@both_versions`` (the protocol paths that differ: jobs API or /queue + /history)."""
    emulate = getattr(request, "param", "0.27")
    server = await sim.start(seconds_per_step=0.02, emulate=emulate)
    yield server
    await server.astop()


@pytest.fixture
async def client(server):
    client = connect(server.url)
    client.sent = []  # "METHOD /path" of every HTTP request, to check the version's routes
    http = client.backend._client()

    async def note(request) -> None:
        client.sent.append(f"{request.method} {request.url.path}")

    http.event_hooks["request"].append(note)
    yield client
    await client.aclose()


both_versions = pytest.mark.parametrize("server", ["0.27", "0.3.64"], indirect=True)


def used_jobs_api(client, server) -> bool:
    """True when the client spoke /api/jobs, which it must do exactly on 0.27."""
    jobs = any(s.split(" ", 1)[1].startswith("/api/jobs/") for s in client.sent)
    return jobs


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (polling the loop) until predicate() holds; fail after timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.005)


def record(job: Job) -> list[dict]:
    seen: list[dict] = []
    job.subscribe(
        lambda j: seen.append(
            {
                "state": j.state,
                "progress": j.progress,
                "node": j.current_node,
                "title": j.current_node_title,
                "position": j.queue_position,
                "preview": j.preview is not None,
            }
        )
    )
    return seen


@both_versions
async def test_run_with_progress_previews_and_outputs(client):
    job = client.submit(ksampler(steps=6))
    seen = record(job)
    result = await job
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert len(set(progress)) > 6
    assert ("3", "KSampler") in {(s["node"], s["title"]) for s in seen}
    assert any(s["preview"] for s in seen) and job.preview_mime == "image/jpeg"
    assert [s["state"] for s in seen][-1] == "completed" and "running" in [s["state"] for s in seen]
    assert result.status == "completed" and len(result.images) == 1
    assert result.outputs[0].filename.startswith("t_") and result.outputs[0].kind == "image"
    assert job.nodes["3"].max == 6 and job.nodes["3"].state == "done"
    assert job.nodes["3"].started_at <= job.nodes["3"].finished_at
    t = job.timings
    assert t["queued_at"] <= t["started_at"] <= t["finished_at"] and t["run_s"] >= 0


async def test_queued_behind_shows_queue_positions(client, server):
    first = client.submit(ksampler(steps=15, seed=1))
    second = client.submit(ksampler(steps=100, seed=2))
    third = client.submit(ksampler(steps=2, seed=3))
    seen2, seen3 = record(second), record(third)
    await until(lambda: third.queue_position == 0)
    server.settings.seconds_per_step = 0.0
    await asyncio.gather(first, second, third)
    assert 0 in {s["position"] for s in seen2}
    assert {0, 1} <= {s["position"] for s in seen3}
    positions = [s["position"] for s in seen3 if s["position"] is not None]
    assert positions == sorted(positions, reverse=True)
    assert third.queue_position is None and third.state == "completed"


async def test_cached_rerun_marks_nodes_cached(client):
    first = await client.submit(EMPTY_IMAGE)
    again = client.submit(EMPTY_IMAGE)
    result = await again
    assert {n.state for n in again.nodes.values()} == {"cached"}
    assert again.progress == 100.0
    assert [o.filename for o in result.outputs] == [o.filename for o in first.outputs]


@both_versions
async def test_execution_error_fails_the_job(client, server):
    server.faults.fail_node("SaveImage")
    job = client.submit(EMPTY_IMAGE)
    with pytest.raises(ExecutionError) as info:
        await job
    assert info.value.node_type == "SaveImage" and info.value.prompt_id == job.prompt_id
    assert job.state == "failed" and job.error_node == info.value.node_id
    assert "Simulated failure" in job.error_message


@both_versions
async def test_validation_error_before_anything_runs(client):
    bad = ksampler()
    bad["3"]["inputs"]["steps"] = -1
    job = client.submit(bad)
    with pytest.raises(PromptValidationError) as info:
        await job
    assert "3" in info.value.node_errors and job.state == "failed"
    assert list(info.value.node_errors) == ["3"] and job.error_node == "3", "one node named"


@both_versions
async def test_cancel_pending_deletes_it(client, server):
    running = client.submit(ksampler(steps=20, seed=5))
    waiting = client.submit(ksampler(steps=2, seed=6))
    await until(lambda: waiting.state == "queued" and running.state == "running")
    waiting.cancel()
    with pytest.raises(JobCancelledError):
        await waiting
    assert waiting.state == "cancelled"
    assert (await running).status == "completed"
    queue = await client.get_queue()
    assert not queue["queue_pending"] and waiting.prompt_id not in await client.get_history()
    on_027 = server.profile.jobs_api
    assert (f"POST /api/jobs/{waiting.prompt_id}/cancel" in client.sent) == on_027
    assert ("POST /queue" in client.sent) != on_027


@both_versions
async def test_cancel_running_interrupts_it(client, server):
    job = client.submit(ksampler(steps=200, seed=7))
    await until(lambda: job.nodes["3"].value >= 2)
    job.cancel()
    with pytest.raises(JobCancelledError):
        await job
    assert job.state == "cancelled" and 0 < job.progress < 100
    on_027 = server.profile.jobs_api
    assert (f"POST /api/jobs/{job.prompt_id}/cancel" in client.sent) == on_027
    assert ("POST /interrupt" in client.sent) != on_027


@both_versions
async def test_server_restart_mid_run_still_completes(client, server, caplog):
    """A real restart loses queue and history: the job is queued again and completes."""
    job = client.submit(ksampler(steps=30, seed=8))
    await until(lambda: job.nodes["3"].value >= 3)
    connects = client.monitor.connects
    with caplog.at_level(logging.INFO, logger="comfy_widgets.transport.monitor"):
        await server.arestart(keep_state=False, down_for=0.2)
        result = await job
    assert "lost by the server" in caplog.text
    assert result.status == "completed" and len(result.images) == 1
    assert client.monitor.connects > connects
    assert job.prompt_id in await client.get_history()


@both_versions
async def test_network_outage_job_finishes_while_away(client, server, caplog):
    """The socket is down while the prompt finishes: /history fills in the outputs."""
    job = client.submit(ksampler(steps=10, seed=9))
    await until(lambda: job.nodes["3"].value >= 2)
    with caplog.at_level(logging.INFO, logger="comfy_widgets.transport.monitor"):
        await server.arestart(keep_state=True, down_for=0.5)
        result = await job
    assert result.status == "completed" and len(result.outputs) == 1
    assert "lost by the server" not in caplog.text
    # the outputs came from the version's record of the prompt
    assert used_jobs_api(client, server) == server.profile.jobs_api
    assert (f"GET /history/{job.prompt_id}" in client.sent) != server.profile.jobs_api


async def test_dropped_socket_reconnects_and_keeps_following(client, server):
    job = client.submit(ksampler(steps=30, seed=10))
    await until(lambda: job.nodes["3"].value >= 2)
    connects = client.monitor.connects
    server.faults.drop_sockets()
    await until(lambda: client.monitor.connects > connects)
    result = await job
    assert result.status == "completed"
    assert job.nodes["3"].value == 30


async def test_malformed_frames_are_skipped(client, server, caplog):
    server.faults.malformed_frames(True)
    with caplog.at_level(logging.INFO, logger="comfy_widgets.transport.events"):
        result = await client.submit(ksampler(steps=3, seed=11))
        server.faults.send_malformed()
        second = await client.submit(EMPTY_IMAGE)
    assert result.status == second.status == "completed"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "not JSON" in messages and "unknown WebSocket message type" in messages
    assert "unknown event type 99" in messages
    assert client.monitor.connects == 1


async def test_upload_image_is_content_addressed(client):
    from PIL import Image

    image = Image.new("RGB", (16, 16), "purple")
    name = await client.upload_image(image)
    assert name.startswith("cw_") and name.endswith(".png")
    assert await client.upload_image(image) == name
    info = await client.object_info("LoadImage")
    assert name in info["LoadImage"]["input"]["required"]["image"][0]


async def test_client_side_reconnect_keeps_live_progress(client):
    """The client closes its own socket mid-run; the new socket (same clientId, opened only
    after the old one closed) still gets the live frames."""
    job = client.submit(ksampler(steps=60, seed=12))
    await until(lambda: job.nodes["3"].value >= 3)
    connects = client.monitor.connects
    await client.monitor.drop_connection()
    await until(lambda: client.monitor.connects > connects)
    value_after_reconnect = job.nodes["3"].value
    await until(lambda: job.nodes["3"].value > value_after_reconnect)
    assert (await job).status == "completed"


async def test_orphaned_socket_is_caught_by_the_watchdog(client, server, monkeypatch):
    """Another socket with our clientId opens and closes: ComfyUI then routes nothing to ours.
    The quiet-socket watchdog finishes the job from /history anyway."""
    import websockets

    from comfy_widgets.transport import monitor as monitor_module

    monkeypatch.setattr(monitor_module, "QUIET_CHECK_S", 0.3)
    await client.monitor.wait_connected()
    ws_url = server.url.replace("http", "ws", 1) + f"/ws?clientId={client.client_id}"
    async with websockets.connect(ws_url) as intruder:
        await intruder.recv()
    job = client.submit(ksampler(steps=3, seed=13))
    result = await job
    assert result.status == "completed" and len(result.images) == 1
    assert job.nodes["3"].started_at is None  # no live frame reached the orphaned socket


async def test_run_rejects_a_checkpoint_the_server_lacks_before_queueing(client):
    """With the server's object_info cached, a workflow naming a model file the server does not
    list fails as a ParameterError (ComfyUI would answer value_not_in_list) and queues nothing."""
    await client.get_object_info()
    prompt = ksampler()
    prompt["4"]["inputs"]["ckpt_name"] = "not_on_this_server.safetensors"
    with pytest.raises(ParameterError) as caught:
        client.run(prompt)
    assert list(caught.value.errors) == ["ckpt_name"]
    assert "not_on_this_server.safetensors" in caught.value.errors["ckpt_name"]
    assert await client.get_history() == {}
    queue = await client.get_queue()
    assert queue["queue_running"] == [] and queue["queue_pending"] == []


DYNAMIC = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 96, "height": 64, "batch_size": 1, "color": 3368652},
    },
    "2": {
        "class_type": "ResizeImageMaskNode",
        "inputs": {
            "input": ["1", 0],
            "resize_type": "scale by multiplier",
            "resize_type.multiplier": 0.5,
            "scale_method": "area",
        },
    },
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "dyn"}},
}


async def test_run_switching_a_dynamic_combo_sends_the_new_options_children(client):
    values = {"2.resize_type": "scale dimensions", "2.resize_type.width": 40}
    job = client.run(DYNAMIC, values)
    result = await job
    assert result.status == "completed" and len(result.images) == 1
    inputs = job.prompt["2"]["inputs"]
    assert inputs["resize_type"] == "scale dimensions" and inputs["resize_type.width"] == 40
    assert "resize_type.multiplier" not in inputs
    assert job.parameters["2.resize_type.width"] == 40
