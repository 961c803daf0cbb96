"""Simulator pictures: every generation parameter visibly changes the output."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import pytest
from PIL import Image, ImageChops, ImageStat

from comfy_widgets import sim
from comfy_widgets.sim import images
from tests.shared_data import REFERENCE

TRACES = REFERENCE / "traces"
BASE = {
    "seed": 1,
    "prompt": "a red fox in the snow",
    "steps": 12,
    "cfg": 7.0,
    "width": 96,
    "height": 64,
    "sampled": True,
    "sampler_name": "euler",
    "scheduler": "normal",
}


def differs(a: Image.Image, b: Image.Image) -> bool:
    return a.size != b.size or ImageChops.difference(a, b).getbbox() is not None


def test_same_parameters_give_the_same_picture():
    assert not differs(images.render(BASE), images.render(dict(BASE)))


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 2},
        {"prompt": "a blue whale"},
        {"steps": 30},
        {"cfg": 2.0},
        {"negative": "blurry"},
        {"sampler_name": "dpmpp_2m"},
        {"scheduler": "karras"},
    ],
)
def test_each_parameter_changes_the_picture(change):
    assert differs(images.render(BASE), images.render({**BASE, **change}))


def test_size_is_capped_keeping_the_aspect_ratio():
    assert images.render({**BASE, "width": 4096, "height": 2048}).size == (1024, 512)
    assert images.output_size(640, 480) == (640, 480)


def test_empty_image_colour_is_solid():
    picture = images.render({"width": 8, "height": 4, "color": 0x3366CC})
    assert picture.size == (8, 4) and picture.getcolors() == [(32, (0x33, 0x66, 0xCC))]


def test_previews_move_towards_the_final_picture():
    final = images.render(BASE, cap=images.PREVIEW_SIDE)
    previewer = images.Previewer(final, seed=1)
    frames = [Image.open(io.BytesIO(previewer.jpeg(step, 4))).convert("RGB") for step in (1, 4)]
    distance = [sum(ImageStat.Stat(ImageChops.difference(f, final)).sum) for f in frames]
    assert distance[1] < distance[0]


async def fetch_output(http: aiohttp.ClientSession, prompt: dict) -> Image.Image:
    async with http.post("/prompt", json={"prompt": prompt}) as r:
        prompt_id = (await r.json())["prompt_id"]
    while True:
        async with http.get(f"/history/{prompt_id}") as r:
            entry = await r.json()
        if entry:
            break
        await asyncio.sleep(0.01)
    image = entry[prompt_id]["outputs"]["9"]["images"][0]
    async with http.get("/view", params=image) as r:
        return Image.open(io.BytesIO(await r.read())).convert("RGB")


async def test_workflow_parameters_reach_the_saved_image():
    base = json.loads(
        (TRACES / "g1_ksampler_real_no_feature_flags" / "workflow_api.json").read_text()
    )
    variants = [
        ("3", "seed", 7),
        ("6", "text", "a lighthouse"),
        ("3", "steps", 9),
        ("3", "cfg", 1.5),
        ("5", "width", 128),
    ]
    server = await sim.start(seconds_per_step=0.0, previews=False)
    try:
        async with aiohttp.ClientSession(server.url) as http:
            reference = await fetch_output(http, base)
            for node, field, value in variants:
                prompt = json.loads(json.dumps(base))
                prompt[node]["inputs"][field] = value
                assert differs(await fetch_output(http, prompt), reference), field
            again = await fetch_output(
                http,
                json.loads(json.dumps(base))
                | {"9": {**base["9"], "inputs": {**base["9"]["inputs"], "filename_prefix": "x"}}},
            )
    finally:
        await server.astop()
    assert reference.size == (64, 64) and not differs(again, reference)


def share_differing(a: Image.Image, b: Image.Image, threshold: int = 16) -> float:
    """Share of pixels whose largest channel difference exceeds `threshold` (of 255)."""
    diff = ImageChops.difference(a, b).split()
    mask = ImageChops.lighter(ImageChops.lighter(diff[0], diff[1]), diff[2])
    return sum(mask.point(lambda v: 255 if v > threshold else 0).histogram()[255:]) / (
        a.width * a.height
    )


def test_more_steps_refine_the_same_composition():
    """Issue 15: 8 vs 24 steps differ in detail only; a new seed or prompt is a new picture."""
    base = {**BASE, "width": 256, "height": 256, "sampled": True}
    eight = images.render({**base, "steps": 8})
    assert share_differing(eight, images.render({**base, "steps": 24})) < 0.10
    assert share_differing(eight, images.render({**base, "steps": 8, "seed": 7})) > 0.50
    assert share_differing(eight, images.render({**base, "steps": 8, "prompt": "a cat"})) > 0.50
