"""ObjectInfo: the bundled snapshot, input specs (V1 and V3), and the widget lists they imply."""

from __future__ import annotations

import gzip
import json

import pytest

from comfy_widgets.workflow.object_info import ObjectInfo
from tests.shared_data import REFERENCE

OI = ObjectInfo.bundled()


def names(class_type: str, oi: ObjectInfo = OI) -> list[str]:
    return [w.name for w in oi.widgets(class_type)]


#: What the bundled snapshot leaves out of each class: text no conversion or form reads.


def test_bundled_snapshot_is_the_0_27_server_and_cached():
    reference = json.loads(gzip.decompress((REFERENCE / "object_info_0.27.0.json.gz").read_bytes()))
    assert OI.raw == reference
    assert ObjectInfo.bundled() is OI
    assert OI.source == "bundled" and not OI.trusts_model_lists
    assert OI.has("KSampler") and not OI.has("PrimitiveNode")
    assert OI.node("KSampler")["name"] == "KSampler"
    with pytest.raises(KeyError):
        OI.node("NoSuchNode")


def test_server_object_info_trusts_its_model_lists():
    served = ObjectInfo({"A": {"input": {}}})
    assert served.source == "server" and served.trusts_model_lists
    with pytest.raises(TypeError):
        ObjectInfo(["not", "a", "dict"])  # type: ignore[arg-type]


def test_seed_inputs_get_a_hidden_control_widget():
    assert names("KSampler") == [
        "seed",
        "control_after_generate",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
    ]
    assert names("RandomNoise") == ["noise_seed", "control_after_generate"]
    assert names("PrimitiveInt") == ["value", "control_after_generate"]
    assert names("PrimitiveFloat") == ["value"]


def test_explicit_false_control_flag_wins_over_the_seed_name():
    oi = ObjectInfo(
        {
            "N": {
                "input": {
                    "required": {
                        "seed": ["INT", {"control_after_generate": False}],
                        "mode": [["a", "b"], {"control_after_generate": True}],
                        "strength": ["FLOAT", {"control_after_generate": True}],
                    }
                }
            }
        }
    )
    assert names("N", oi) == [
        "seed",
        "mode",
        "control_after_generate",
        "control_filter_list",
        "strength",
    ]


def test_upload_and_ui_only_widgets():
    assert names("LoadImage") == ["image", "upload"]
    assert [w.in_prompt for w in OI.widgets("LoadImage")] == [True, False]
    assert names("LoadAudio") == ["audio", "audioUI", "upload"]
    audio_ui = OI.widgets("SaveAudio")[-1]
    # frontend 1.58: the audio player is neither saved nor sent, nor is PreviewAny's text
    assert (audio_ui.name, audio_ui.stored, audio_ui.in_prompt) == ("audioUI", False, False)
    assert names("PreviewAny") == []
    save_glb = OI.widgets("SaveGLB")
    assert [(w.name, w.stored, w.default) for w in save_glb] == [
        ("filename_prefix", True, None),
        ("image", True, ""),
    ]
    compare = OI.widgets("ImageCompare")[0]
    assert (compare.name, compare.stored, compare.fixed) == ("compare_view", False, ["", ""])


def test_force_input_and_socket_types_make_no_widget():
    oi = ObjectInfo(
        {
            "N": {
                "input": {
                    "required": {
                        "image": ["IMAGE"],
                        "steps": ["INT", {"forceInput": True}],
                        "text": ["STRING", {}],
                    }
                }
            }
        }
    )
    assert names("N", oi) == ["text"]


def test_input_order_decides_widget_order():
    oi = ObjectInfo(
        {
            "N": {
                "input": {
                    "required": {"b": ["INT", {}], "a": ["INT", {}]},
                    "optional": {"c": ["BOOLEAN", {}]},
                },
                "input_order": {"required": ["a", "b"], "optional": ["c"]},
            }
        }
    )
    assert names("N", oi) == ["a", "b", "c"]


def test_v1_and_v3_combo_specs():
    v1 = OI.input("KSampler", "sampler_name")
    assert v1.type == "COMBO" and "euler" in v1.choices
    v3 = OI.input("LatentCut", "dim")
    assert v3.type == "COMBO" and v3.choices and v3.is_widget


def test_display_names_follow_the_frontend():
    assert OI.display_name("ImageScaleToTotalPixels") == "Scale Image to Total Pixels"
    assert OI.display_name("CheckpointLoaderSimple") == "Load Checkpoint"
    assert ObjectInfo({"X": {"display_name": "Mine"}}).display_name("X") == "Mine"
    assert ObjectInfo({}).display_name("Unknown") == "Unknown"


def test_model_folders():
    assert OI.model_folder("CheckpointLoaderSimple", "ckpt_name") == "checkpoints"
    assert OI.model_folder("LoraLoader", "lora_name") == "loras"
    assert OI.model_folder("LoadImage", "image") == "input"
    assert OI.model_folder("KSampler", "sampler_name") is None
    assert OI.model_folder("KSampler", "steps") is None
