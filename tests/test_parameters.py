"""Parameters: detection table, friendly names, real ranges and options, validation on apply."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from comfy_widgets.errors import ParameterError
from comfy_widgets.workflow.detection import DETECTION_TABLE
from comfy_widgets.workflow.object_info import ObjectInfo
from comfy_widgets.workflow.workflow import Workflow, apply_parameters, extract_parameters
from tests import shared_data

SHARED = shared_data.WORKFLOWS
ALL_FILES = sorted((SHARED / "ui").glob("*.json")) + sorted((SHARED / "api").glob("*.json"))
OI = ObjectInfo.bundled()


def load(name: str) -> Workflow:
    folder = "api" if name.endswith("_api") else "ui"
    return Workflow.load(SHARED / folder / f"{name}.json")


def by_key(wf: Workflow) -> dict:
    return {p.key: p for p in wf.parameters()}


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.stem)
def test_every_table_field_is_extracted_with_value_range_and_options(path: Path):
    wf = Workflow.load(path)
    api = wf.to_api()
    params = by_key(wf)
    grouped = {k for p in params.values() for k in p.linked_keys}
    checked = 0
    for node_id, node in api.items():
        for field in DETECTION_TABLE.get(node.get("class_type"), ()):
            value = node["inputs"].get(field)
            key = f"{node_id}.{field}"
            if value is None or isinstance(value, list) or key in grouped:
                continue
            param = params[key]
            spec = OI.input(node["class_type"], field)
            assert param.value == value and not param.advanced
            assert (param.node_id, param.field, param.node_class) == (
                node_id,
                field,
                node["class_type"],
            )
            if spec.type in ("INT", "FLOAT"):
                assert (param.min, param.max) == (spec.options.get("min"), spec.options.get("max"))
            if spec.type == "COMBO":
                assert param.options == list(spec.choices)
            checked += 1
    assert checked > 0


def test_classic_txt2img_parameters():
    params = {p.name: p for p in load("sd15_txt2img_default").parameters()}
    seed = params["seed"]
    assert (seed.type, seed.value, seed.min, seed.max) == (
        "seed",
        685468484323813,
        0,
        18446744073709551615,
    )
    assert seed.control_after_generate == "randomize" and seed.is_integer
    assert (params["steps"].value, params["steps"].min, params["steps"].max) == (20, 1, 10000)
    assert params["cfg"].step == 0.1 and not params["cfg"].is_integer
    assert "dpmpp_2m" in params["sampler_name"].options and params["sampler_name"].type == "select"
    assert (params["width"].value, params["width"].step) == (512, 8)
    assert params["ckpt_name"].model_list == "checkpoints"
    assert params["prompt"].value.startswith("beautiful scenery") and params["prompt"].multiline
    assert params["negative_prompt"].value == "text, watermark"
    assert params["filename_prefix"].value == "SD1.5"


def test_advanced_sampler_uses_noise_seed_and_steps_window():
    params = by_key(load("sdxl_base_refiner"))
    base = params["10.noise_seed"]
    assert base.name == "seed" and base.value == 721897303308196
    assert params["11.noise_seed"].control_after_generate == "fixed"
    assert params["10.start_at_step"].value == 0 and not params["10.start_at_step"].advanced
    assert params["10.end_at_step"].value == 20


def test_prompts_are_found_through_conditioning_nodes():
    flux = {p.name: p for p in load("flux_dev_redux_custom_sampler").parameters()}
    assert flux["prompt"].node_class == "CLIPTextEncode"
    assert flux["seed"].field == "noise_seed" and flux["seed"].node_class == "RandomNoise"
    hidream = {p.name: p for p in load("primitive_reroute_hidream_e1_1").parameters()}
    assert hidream["prompt"].node_title == "Positive"
    assert hidream["negative_prompt"].node_title == "Negative"
    wan = {p.name: p for p in load("wan22_ksampler_advanced").parameters()}
    assert wan["prompt"].value.startswith("A dreamy scene")
    assert wan["negative_prompt"].value.startswith("色调艳丽")
    assert wan["seed"].value == 221824495232956
    zimage = {p.name: p for p in load("subgraph_z_image_turbo").parameters()}
    assert zimage["prompt"].key == "57:27.text" and "negative_prompt" not in zimage


def test_inputs_fed_by_one_primitive_are_one_parameter():
    wf = load("sdxl_base_refiner")
    params = {p.name: p for p in wf.parameters()}
    assert params["steps"].key == "10.steps" and params["steps"].linked_keys == ("11.steps",)
    assert params["prompt"].linked_keys == ("15.text",)
    for name in ("steps", "11.steps"):
        api = wf.apply({name: 30})
        assert api["10"]["inputs"]["steps"] == api["11"]["inputs"]["steps"] == 30


def test_ambiguous_name_lists_the_qualified_names():
    wf = load("sd15_hiresfix_latent_upscale")
    with pytest.raises(ParameterError) as info:
        wf.apply(steps=10)
    message = info.value.errors["steps"]
    assert "ambiguous" in message and "3.steps" in message and "11.steps" in message
    assert wf.apply({"11.steps": 10})["11"]["inputs"]["steps"] == 10


def test_unknown_name_suggests_close_names():
    with pytest.raises(ParameterError) as info:
        load("sd15_txt2img_default").apply(sed=1, stepz=3)
    assert "did you mean" in info.value.errors["sed"] and "'seed'" in info.value.errors["sed"]
    assert "'steps'" in info.value.errors["stepz"]


def test_unknown_field_of_a_known_node_names_its_inputs():
    with pytest.raises(ParameterError) as info:
        load("sd15_txt2img_default").apply({"3.model": 1})
    assert "node 3" in info.value.errors["3.model"] and "steps" in info.value.errors["3.model"]


def test_all_bad_values_reported_in_one_error():
    wf = load("sd15_txt2img_default")
    with pytest.raises(ParameterError) as info:
        wf.apply(steps=0, cfg="high", sampler_name="nope", seed=1.5, denoise=True, prompt=3)
    errors = info.value.errors
    assert set(errors) == {"steps", "cfg", "sampler_name", "seed", "denoise", "prompt"}
    assert "minimum 1" in errors["steps"] and "node 3" in errors["steps"]
    assert "not a number" in errors["cfg"]
    assert "allowed values" in errors["sampler_name"] and "'euler'" in errors["sampler_name"]
    assert "whole number" in errors["seed"]
    assert "not a string" in errors["prompt"]
    for name in errors:
        assert name in str(info.value)


def test_bundled_model_lists_do_not_reject_files_but_a_server_list_does():
    wf = load("sd15_txt2img_default")
    api = wf.apply(ckpt_name="my_model.safetensors")
    assert api["4"]["inputs"]["ckpt_name"] == "my_model.safetensors"
    reference = json.loads(
        gzip.decompress((shared_data.REFERENCE / "object_info.json.gz").read_bytes())
    )
    served = wf.with_object_info(ObjectInfo(reference, source="server"))  # 0.3.64 had models
    with pytest.raises(ParameterError) as info:
        served.apply(ckpt_name="my_model.safetensors")
    assert "random_sd15.safetensors" in info.value.errors["ckpt_name"]
    assert (
        served.apply(ckpt_name="random_sd15.safetensors")["4"]["inputs"]["ckpt_name"]
        == "random_sd15.safetensors"
    )


def test_image_parameter_takes_a_file_name():
    wf = load("sd15_img2img")
    image = wf.parameter("image")
    assert image.type == "image" and image.value == "image2image_input_image.jpg"
    assert wf.apply(image="upload_abc.png")["10"]["inputs"]["image"] == "upload_abc.png"
    with pytest.raises(ParameterError):
        wf.apply(image=b"bytes")


def test_widget_inputs_outside_the_table_are_advanced():
    params = {p.key: p for p in load("sd2_inpaint").parameters()}
    grow = next(p for p in params.values() if p.field == "grow_mask_by")
    assert grow.advanced and grow.value == 6 and grow.max == 64
    assert not params["3.seed"].advanced


def test_custom_nodes_in_api_format_are_exposed_by_value_type():
    params = by_key(load("ltxav_embedded_extra_prompt_api"))
    assert params["11.noise_seed"].name == "seed" and params["11.noise_seed"].value == 10
    custom = [p for p in params.values() if not OI.has(p.node_class)]
    assert custom and all(p.advanced for p in custom)
    assert {p.type for p in custom} <= {"string", "number", "boolean", "seed", "image"}


def test_functions_accept_dicts_and_never_mutate_them():
    data = json.loads((SHARED / "ui" / "sd15_lora.json").read_text())
    before = json.dumps(data)
    names = [p.name for p in extract_parameters(data)]
    assert "lora_name" in names and "strength_model" in names
    api = apply_parameters(data, {"seed": 5}, steps=12)
    assert api["3"]["inputs"]["seed"] == 5 and api["3"]["inputs"]["steps"] == 12
    assert json.dumps(data) == before


def test_custom_node_values_keep_their_type():
    wf = Workflow.load(
        {"1": {"class_type": "MyListNode", "inputs": {"items": "a"}, "_meta": {"title": "x"}}}
    )
    assert wf.apply({"1.items": "b"})["1"]["inputs"]["items"] == "b"
    with pytest.raises(ParameterError, match="not a string"):
        wf.apply({"1.items": 3})


def test_parameters_are_copies():
    wf = load("sd15_txt2img_default")
    wf.parameters()[0].value = "changed"
    assert wf.parameters()[0].value != "changed"


def test_numpy_scalars_are_numbers_and_sent_as_plain_json_numbers():
    """Values taken from a DataFrame (np.int64, np.float32) are accepted, sent as int/float."""
    import numpy as np

    prompt = load("sd15_txt2img_default").apply(
        {"seed": np.int64(7), "steps": np.int32(12), "cfg": np.float32(6.5)}
    )
    sampler = next(n["inputs"] for n in prompt.values() if n["class_type"] == "KSampler")
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (7, 12, 6.5)
    assert [type(sampler[k]) for k in ("seed", "steps", "cfg")] == [int, int, float]
    json.dumps(prompt)  # no NumPy scalar left in the prompt


def test_numpy_values_out_of_range_are_still_refused():
    import numpy as np

    with pytest.raises(ParameterError, match="above the maximum"):
        load("sd15_txt2img_default").apply({"steps": np.int64(10**6)})
