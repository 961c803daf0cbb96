"""Simulator output nodes: previews, animations, videos, audio and text, served by /view."""

from __future__ import annotations

import asyncio
import io
import json
import re

import aiohttp
import pytest
from PIL import Image

from comfy_widgets import sim


def empty_image(batch: int = 1) -> dict:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": 40, "height": 24, "batch_size": batch, "color": 0xFF0000},
    }


@pytest.fixture
async def http():
    server = await sim.start(seconds_per_step=0.0)
    async with aiohttp.ClientSession(server.url) as session:
        yield session
    await server.astop()


async def outputs_of(http, prompt: dict) -> dict:
    async with http.post("/prompt", json={"prompt": prompt, "client_id": "c"}) as r:
        assert r.status == 200, await r.text()
        prompt_id = (await r.json())["prompt_id"]
    while True:
        async with http.get(f"/history/{prompt_id}") as r:
            entry = await r.json()
        if entry:
            assert entry[prompt_id]["status"]["status_str"] == "success"
            return entry[prompt_id]["outputs"]
        await asyncio.sleep(0.01)


async def view(http, ref: dict) -> bytes:
    async with http.get("/view", params=ref) as r:
        assert r.status == 200
        return await r.read()


async def test_preview_image_uses_a_temp_prefix_and_counts_the_batch(http):
    outputs = await outputs_of(
        http,
        {"1": empty_image(2), "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}},
    )
    refs = outputs["2"]["images"]
    assert [r["type"] for r in refs] == ["temp", "temp"]
    assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", refs[0]["filename"])
    assert refs[1]["filename"].endswith("_00002_.png")
    image = Image.open(io.BytesIO(await view(http, refs[1])))
    assert image.size == (40, 24) and image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)


def sampled_images(batch: int) -> dict:
    """Checkpoint -> text -> latent -> KSampler -> VAEDecode as node "1" (frames differ)."""
    return {
        "10": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "random_sd15.safetensors"},
        },
        "11": {"class_type": "CLIPTextEncode", "inputs": {"text": "waves", "clip": ["10", 1]}},
        "12": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": batch},
        },
        "13": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 3,
                "steps": 2,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["10", 0],
                "positive": ["11", 0],
                "negative": ["11", 0],
                "latent_image": ["12", 0],
            },
        },
        "1": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 2]}},
    }


async def test_animated_webp_holds_every_frame(http):
    outputs = await outputs_of(
        http,
        {
            **sampled_images(3),
            "2": {
                "class_type": "SaveAnimatedWEBP",
                "inputs": {
                    "images": ["1", 0],
                    "filename_prefix": "anim",
                    "fps": 6.0,
                    "lossless": False,
                    "quality": 80,
                    "method": "default",
                },
            },
        },
    )
    ui = outputs["2"]
    assert ui["animated"] == [True] and ui["images"][0]["filename"] == "anim_00001_.webp"
    animation = Image.open(io.BytesIO(await view(http, ui["images"][0])))
    assert animation.n_frames == 3


async def test_video_savers_write_files_with_comfyui_names(http):
    outputs = await outputs_of(
        http,
        {
            "1": empty_image(2),
            "2": {
                "class_type": "SaveWEBM",
                "inputs": {
                    "images": ["1", 0],
                    "filename_prefix": "clip",
                    "codec": "vp9",
                    "fps": 24.0,
                    "crf": 32.0,
                },
            },
            "3": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 12.0}},
            "4": {
                "class_type": "SaveVideo",
                "inputs": {
                    "video": ["3", 0],
                    "filename_prefix": "video/ComfyUI",
                    "format": "auto",
                    "codec": "auto",
                },
            },
        },
    )
    webm, video = outputs["2"]["images"][0], outputs["4"]["images"][0]
    # No video encoder in the simulator: the files are animated WebP and named so.
    assert webm == {"filename": "clip_00001_.webp", "subfolder": "", "type": "output"}
    assert video == {"filename": "ComfyUI_00001_.webp", "subfolder": "video", "type": "output"}
    assert outputs["4"]["animated"] == [True]
    with Image.open(io.BytesIO(await view(http, video))) as picture:
        assert picture.format == "WEBP"
        exif = picture.getexif()
    assert json.loads(exif[0x0110].removeprefix("prompt:"))["4"]["class_type"] == "SaveVideo"


async def test_audio_and_text_outputs(http):
    outputs = await outputs_of(
        http,
        {
            "1": {
                "class_type": "CheckpointLoaderSimple",
                "inputs": {"ckpt_name": "random_sd15.safetensors"},
            },
            "2": {"class_type": "EmptyLatentAudio", "inputs": {"seconds": 2.0, "batch_size": 1}},
            "3": {"class_type": "VAEDecodeAudio", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
            "4": {
                "class_type": "SaveAudio",
                "inputs": {"audio": ["3", 0], "filename_prefix": "audio/ComfyUI"},
            },
            "5": {
                "class_type": "StringConcatenate",
                "inputs": {"string_a": "a cat", "string_b": "a hat", "delimiter": ", "},
            },
            "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
            "7": {
                "class_type": "EmptyImage",
                "inputs": {"width": 80, "height": 48, "batch_size": 1, "color": 0},
            },
            "8": {"class_type": "GetImageSize", "inputs": {"image": ["7", 0]}},
            "9": {"class_type": "PreviewAny", "inputs": {"source": ["8", 0]}},
        },
    )
    audio = outputs["4"]["audio"][0]
    assert audio == {"filename": "ComfyUI_00001_.flac", "subfolder": "audio", "type": "output"}
    assert (await view(http, audio))[:4] == b"RIFF"
    assert outputs["6"] == {"text": ["a cat, a hat"]}
    assert outputs["9"] == {"text": ["80"]}


async def test_loaded_image_size_reaches_the_output(http):
    form = aiohttp.FormData()
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (1, 2, 3)).save(buf, format="PNG")
    form.add_field("image", buf.getvalue(), filename="small.png", content_type="image/png")
    async with http.post("/upload/image", data=form) as r:
        name = (await r.json())["name"]
    outputs = await outputs_of(
        http,
        {
            "1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        },
    )
    image = Image.open(io.BytesIO(await view(http, outputs["2"]["images"][0])))
    assert image.size == (48, 32)
