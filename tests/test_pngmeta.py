"""PNG text chunks in ComfyUI's layout: written losslessly, read back, compatible with ComfyUI's."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from comfy_widgets.workflow import pngmeta
from tests.shared_data import REFERENCE
from tests.store_fakes import API_PROMPT, png_bytes

REFERENCE_PNG = REFERENCE / "http/view_sample_ref_g1_00001_.png"


def test_chunks_round_trip_and_pixels_are_untouched():
    original = png_bytes((1, 2, 3), size=16)
    workflow = {"nodes": [{"id": 1}], "links": []}
    texts = pngmeta.comfy_text_chunks(API_PROMPT, workflow, {"seed": 7, "prompt": "a cat"})
    tagged = pngmeta.with_text_chunks(original, texts)
    assert pngmeta.read_comfy_metadata(tagged) == {
        "prompt": API_PROMPT,
        "workflow": workflow,
        "parameters": {"seed": 7, "prompt": "a cat"},
    }
    before = Image.open(io.BytesIO(original))
    after = Image.open(io.BytesIO(tagged))
    assert after.tobytes() == before.tobytes() and after.size == before.size


def test_prompt_chunk_is_comfyui_serialisation():
    tagged = pngmeta.with_text_chunks(png_bytes(), pngmeta.comfy_text_chunks(API_PROMPT))
    assert pngmeta.read_text_chunks(tagged)["prompt"] == json.dumps(API_PROMPT)


def test_existing_chunk_of_same_key_is_replaced_not_duplicated():
    first = pngmeta.with_text_chunks(png_bytes(), {"prompt": "{}", "other": "keep"})
    second = pngmeta.with_text_chunks(first, {"prompt": json.dumps({"a": 1})})
    assert second.count(b"tEXtprompt\x00") == 1
    assert pngmeta.read_text_chunks(second) == {"prompt": '{"a": 1}', "other": "keep"}


def test_non_latin1_text_goes_into_itxt():
    text = json.dumps({"prompt": "кот 猫"}, ensure_ascii=False)
    tagged = pngmeta.with_text_chunks(png_bytes(), {"parameters": text})
    assert b"iTXtparameters" in tagged
    assert pngmeta.read_text_chunks(tagged)["parameters"] == text


def test_reads_a_png_written_by_real_comfyui():
    meta = pngmeta.read_comfy_metadata(REFERENCE_PNG)
    assert meta["prompt"]["3"]["class_type"] == "KSampler"
    retagged = pngmeta.with_text_chunks(REFERENCE_PNG.read_bytes(), {"parameters": "{}"})
    assert pngmeta.read_comfy_metadata(retagged)["prompt"] == meta["prompt"]


def test_rejects_non_png():
    with pytest.raises(ValueError):
        pngmeta.with_text_chunks(b"GIF89a....", {"prompt": "{}"})
