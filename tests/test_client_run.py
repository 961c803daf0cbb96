"""client.run with real Workflows against the simulator: validation, parameters, image uploads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.errors import ParameterError
from comfy_widgets.workflow.workflow import Workflow
from tests.shared_data import WORKFLOWS

WORKFLOWS = WORKFLOWS / "ui"


@pytest.fixture
async def client():
    # 0.3.64: conversion still uses 0.3.64's object_info, so sd15_img2img's ImageScaleToTotalPixels
    # lacks the resolution_steps input 0.27 requires (issue 12 part 1 converts with the server's).
    server = await sim.start(seconds_per_step=0.0, emulate="0.3.64")
    client = connect(server.url)
    yield client
    await client.aclose()
    await server.astop()


def count_uploads(client) -> list[str]:
    """Record the names the client really POSTs to /upload/image."""
    sent: list[str] = []
    original = client.backend._post_upload

    async def counting(upload):
        sent.append(upload.name)
        return await original(upload)

    client.backend._post_upload = counting
    return sent


async def test_run_applies_parameters_and_records_them(client):
    wf = Workflow.load(WORKFLOWS / "sd15_txt2img_default.json")
    job = client.run(wf, {"3.seed": 5}, prompt="a red fox", steps=3)
    assert job.state == "pending" and job.workflow is not None
    result = await job
    assert result.status == "completed" and len(result.images) == 1
    sampler = next(n for n in job.prompt.values() if n["class_type"] == "KSampler")
    assert sampler["inputs"]["seed"] == 5 and sampler["inputs"]["steps"] == 3
    assert result.parameters == {"seed": 5, "prompt": "a red fox", "steps": 3}


async def test_a_finished_job_keeps_no_image_bytes_once_the_store_has_them(client):
    wf = Workflow.load(WORKFLOWS / "sd15_txt2img_default.json")
    result = await client.run(wf, steps=1, width=64, height=64)
    output = result.outputs[0]
    assert output._data is None and output.local_path  # released: the store's file serves it
    assert output.data == Path(output.local_path).read_bytes() and output.image.size == (64, 64)
    bare = connect(client.url, store=None)  # nothing stored: the bytes stay in memory
    try:
        kept = (await bare.run(wf, steps=1, width=64, height=64)).outputs[0]
    finally:
        await bare.aclose()
    assert kept._data is not None and kept.local_path is None and kept.image.size == (64, 64)


async def test_bad_parameter_raises_before_anything_is_queued(client):
    wf = Workflow.load(WORKFLOWS / "sd15_txt2img_default.json")
    with pytest.raises(ParameterError) as info:
        client.run(wf, steps=-4, sampler_name="nope")
    assert {"steps", "sampler_name"} <= set(info.value.errors)
    queue = await client.get_queue()
    assert queue == {"queue_running": [], "queue_pending": []}


async def test_image_parameter_uploads_each_content_once(client, tmp_path):
    wf = Workflow.load(WORKFLOWS / "sd15_img2img.json")
    picture = Image.new("RGB", (24, 16), (200, 30, 90))
    path = tmp_path / "picture.png"
    picture.save(path)
    sent = count_uploads(client)
    forms = [picture, np.asarray(picture), path, path.read_bytes(), picture]
    jobs = [client.run(wf, image=form, seed=i, steps=1) for i, form in enumerate(forms)]
    results = await asyncio.gather(*jobs)
    names = {job.prompt["10"]["inputs"]["image"] for job in jobs}
    assert len(names) == 1 and next(iter(names)).startswith("cw_")
    assert sent == list(names)
    assert all(r.status == "completed" for r in results)
    assert results[0].parameters["image"] == next(iter(names))


async def test_unreadable_image_is_a_parameter_error(client):
    wf = Workflow.load(WORKFLOWS / "sd15_img2img.json")
    with pytest.raises(ParameterError) as info:
        client.run(wf, image=b"definitely not an image")
    assert "image" in info.value.errors


async def test_run_from_a_widget_thread(client):
    wf = Workflow.load(WORKFLOWS / "sd15_txt2img_default.json")
    jobs = []
    thread = threading.Thread(target=lambda: jobs.append(client.run(wf, seed=11, steps=1)))
    thread.start()
    await asyncio.to_thread(thread.join)
    assert (await jobs[0]).status == "completed"
