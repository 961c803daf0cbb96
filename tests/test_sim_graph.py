"""Simulator graph logic: ComfyUI's execution order, cache keys and parameter flow."""

from __future__ import annotations

import json

from comfy_widgets.sim import catalog, graph, nodes
from tests.shared_data import REFERENCE

G1 = json.loads(
    (REFERENCE / "traces" / "g1_ksampler_real_no_feature_flags" / "workflow_api.json").read_text()
)
INFO = catalog.bundled_object_info()


def is_output(prompt: dict):
    return lambda n: bool(INFO[prompt[n]["class_type"]].get("output_node"))


def test_order_matches_the_recorded_real_run():
    assert graph.execution_order(G1, ["9"], set(), is_output(G1)) == [
        "4",
        "5",
        "7",
        "6",
        "3",
        "8",
        "9",
    ]


def test_cached_nodes_are_left_out_but_outputs_stay():
    cached = {"3", "4", "5", "6", "7", "8", "9"}
    assert graph.execution_order(G1, ["9"], cached, is_output(G1)) == ["9"]
    assert graph.execution_order(G1, ["9"], {"4", "5", "6", "7"}, is_output(G1)) == ["3", "8", "9"]


def test_output_nodes_run_as_soon_as_they_can():
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}},
    }
    assert graph.execution_order(prompt, ["4", "2"], set(), is_output(prompt)) == [
        "1",
        "2",
        "3",
        "4",
    ]


def test_signatures_ignore_node_ids_and_titles_but_follow_ancestors():
    def salt(node_id, node):
        return None

    renumbered = {
        k + "0": {
            **v,
            "_meta": {"title": "x"},
            "inputs": {
                f: [val[0] + "0", val[1]] if graph.is_link(val) else val
                for f, val in v["inputs"].items()
            },
        }
        for k, v in G1.items()
    }
    a = graph.signatures(G1, salt)
    b = graph.signatures(renumbered, salt)
    assert a["3"] == b["30"] and a["9"] == b["90"]
    changed = json.loads(json.dumps(G1))
    changed["6"]["inputs"]["text"] = "something else"
    c = graph.signatures(changed, salt)
    assert c["4"] == a["4"] and c["6"] != a["6"] and c["9"] != a["9"]


def test_parameters_flow_from_widgets_to_the_sampler_output():
    encode = nodes.evaluate(
        "CLIPTextEncode", {"text": "a cat", "clip": {"ckpt": "x"}}, INFO["CLIPTextEncode"]
    )[0]
    negative = nodes.evaluate("CLIPTextEncode", {"text": "blurry"}, INFO["CLIPTextEncode"])[0]
    latent = nodes.evaluate(
        "EmptyLatentImage", {"width": 80, "height": 48, "batch_size": 2}, INFO["EmptyLatentImage"]
    )[0]
    sampled = nodes.evaluate(
        "KSampler",
        {
            "seed": 5,
            "steps": 3,
            "cfg": 6.0,
            "positive": encode,
            "negative": negative,
            "latent_image": latent,
        },
        INFO["KSampler"],
    )[0]
    assert sampled["prompt"] == "a cat" and sampled["negative"] == "blurry"
    assert (sampled["width"], sampled["height"], sampled["batch_size"]) == (80, 48, 2)
    assert sampled["seed"] == 5 and sampled["sampled"] is True
    assert nodes.evaluate("GetImageSize", {"image": latent}, INFO["GetImageSize"]) == (80, 48, 2)


def test_sampler_step_counts():
    assert nodes.sampler_steps("KSampler", {"steps": 7}) == 7
    assert (
        nodes.sampler_steps(
            "KSamplerAdvanced", {"steps": 25, "start_at_step": 20, "end_at_step": 10000}
        )
        == 5
    )
    assert nodes.sampler_steps("SamplerCustomAdvanced", {"steps": 4}) == 4
    assert nodes.sampler_steps("VAEDecode", {"steps": 4}) == 0
