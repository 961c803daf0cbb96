"""UI -> API conversion: golden files from frontend 1.58.1 (and 1.27.10), and each rule on
small graphs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from comfy_widgets.errors import UnknownNodeTypeError, WorkflowError
from comfy_widgets.workflow.conversion import convert_ui_to_api, js_key_order
from comfy_widgets.workflow.object_info import ObjectInfo
from comfy_widgets.workflow.workflow import Workflow
from tests import shared_data

SHARED = shared_data.WORKFLOWS
UI_FILES = sorted((SHARED / "ui").glob("*.json"))
API_FILES = sorted((SHARED / "api").glob("*.json"))
FRONTEND_158 = SHARED / "frontend-1.58"
NEW_SOURCES = sorted((FRONTEND_158 / "ui").glob("*.json")) + sorted(
    (FRONTEND_158 / "resaved").glob("*.json")
)
OI = ObjectInfo.bundled()


def _object_info(name: str) -> ObjectInfo:
    raw = json.loads(gzip.decompress((shared_data.REFERENCE / name).read_bytes()))
    return ObjectInfo(raw, source="user")


OI_0_3_64 = _object_info("object_info.json.gz")
OI_0_27 = _object_info("object_info_0.27.0.json.gz")


def test_shared_workflows_are_found():
    assert len(UI_FILES) >= 10 and len(API_FILES) >= 2
    assert len(NEW_SOURCES) == 34


@pytest.mark.parametrize("path", NEW_SOURCES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_frontend_158_golden_exact(path: Path):
    """What frontend 1.58.1 sends on ComfyUI 0.27.0: nodes, inputs, values, links, key order,
    number formatting and ``_meta`` (title, cnr_id, ver)."""
    expected_text = (FRONTEND_158 / "expected" / f"{path.stem}.api.json").read_text(
        encoding="utf-8"
    )
    got = Workflow.load(path, OI_0_27).to_api()
    assert got == json.loads(expected_text)
    assert json.dumps(got, indent=2, ensure_ascii=False) == expected_text.rstrip("\n")


def _runnable(prompt: dict) -> str:
    """What the server runs (class_type and inputs), as JSON text: order and numbers count."""
    return json.dumps(
        {k: {"class_type": v.get("class_type"), "inputs": v["inputs"]} for k, v in prompt.items()}
    )


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_golden_on_0_3_64(path: Path):
    """The 1.27.10 goldens still hold with a 0.3.64 server's node definitions (titles aside)."""
    expected = json.loads((SHARED / "expected" / f"{path.stem}.api.json").read_text("utf-8"))
    assert _runnable(Workflow.load(path, OI_0_3_64).to_api()) == _runnable(expected)


@pytest.mark.parametrize("path", API_FILES, ids=lambda p: p.stem)
def test_api_golden_unchanged(path: Path):
    text = path.read_text(encoding="utf-8")
    wf = Workflow.load(path)
    assert wf.format == "api"
    assert json.dumps(wf.to_api(), indent=2, ensure_ascii=False) == json.dumps(
        json.loads(text), indent=2, ensure_ascii=False
    )


# --- small graphs --------------------------------------------------------------------------


def node(node_id, node_type, widgets=None, inputs=(), outputs=(), mode=0, title=None, **extra):
    """A UI node; inputs are (name, type, link[, widget]) and outputs (name, type, [links])."""
    raw = {
        "id": node_id,
        "type": node_type,
        "mode": mode,
        "properties": {},
        "inputs": [
            {
                "name": i[0],
                "type": i[1],
                "link": i[2],
                **({"widget": {"name": i[3]}} if len(i) > 3 else {}),
            }
            for i in inputs
        ],
        "outputs": [{"name": o[0], "type": o[1], "links": list(o[2])} for o in outputs],
    }
    if widgets is not None:
        raw["widgets_values"] = widgets
    if title is not None:
        raw["title"] = title
    raw.update(extra)
    return raw


def graph(nodes, links, subgraphs=None):
    data = {
        "last_node_id": 99,
        "last_link_id": 99,
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }
    if subgraphs:
        data["definitions"] = {"subgraphs": subgraphs}
    return data


KSAMPLER_IN = [
    ("model", "MODEL", 1),
    ("positive", "CONDITIONING", 2),
    ("negative", "CONDITIONING", 3),
    ("latent_image", "LATENT", 4),
]
KS_VALUES = [42, "randomize", 20, 7.0, "euler", "normal", 1.0]


def base_nodes(ks_inputs=None, ks_values=None, lora_mode=0):
    """Checkpoint -> LoRA -> two prompts + latent -> KSampler -> VAEDecode -> SaveImage."""
    return [
        node(
            1,
            "CheckpointLoaderSimple",
            ["model.safetensors"],
            outputs=[("MODEL", "MODEL", [10]), ("CLIP", "CLIP", [11]), ("VAE", "VAE", [8])],
        ),
        node(
            7,
            "LoraLoader",
            ["style.safetensors", 0.75, 1],
            mode=lora_mode,
            inputs=[("model", "MODEL", 10), ("clip", "CLIP", 11)],
            outputs=[("MODEL", "MODEL", [1]), ("CLIP", "CLIP", [12, 13])],
        ),
        node(
            2,
            "CLIPTextEncode",
            ["a cat"],
            inputs=[("clip", "CLIP", 12)],
            outputs=[("CONDITIONING", "CONDITIONING", [2])],
        ),
        node(
            3,
            "CLIPTextEncode",
            ["blurry"],
            inputs=[("clip", "CLIP", 13)],
            outputs=[("CONDITIONING", "CONDITIONING", [3])],
        ),
        node(4, "EmptyLatentImage", [512, 512, 1], outputs=[("LATENT", "LATENT", [4])]),
        node(
            10,
            "KSampler",
            ks_values or KS_VALUES,
            inputs=ks_inputs or KSAMPLER_IN,
            outputs=[("LATENT", "LATENT", [5])],
        ),
        node(
            5,
            "VAEDecode",
            inputs=[("samples", "LATENT", 5), ("vae", "VAE", 8)],
            outputs=[("IMAGE", "IMAGE", [6])],
        ),
        node(6, "SaveImage", ["out"], inputs=[("images", "IMAGE", 6)]),
    ]


BASE_LINKS = [
    [10, 1, 0, 7, 0, "MODEL"],
    [11, 1, 1, 7, 1, "CLIP"],
    [1, 7, 0, 10, 0, "MODEL"],
    [12, 7, 1, 2, 0, "CLIP"],
    [13, 7, 1, 3, 0, "CLIP"],
    [2, 2, 0, 10, 1, "CONDITIONING"],
    [3, 3, 0, 10, 2, "CONDITIONING"],
    [4, 4, 0, 10, 3, "LATENT"],
    [5, 10, 0, 5, 0, "LATENT"],
    [8, 1, 2, 5, 1, "VAE"],
    [6, 5, 0, 6, 0, "IMAGE"],
]


def convert(data, **kw):
    return convert_ui_to_api(data, OI, **kw)


def test_widgets_first_in_widget_order_then_links_and_control_value_skipped():
    api = convert(graph(base_nodes(), BASE_LINKS))
    ks = api["10"]
    assert list(ks["inputs"]) == [
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
        "model",
        "positive",
        "negative",
        "latent_image",
    ]
    assert ks["inputs"]["seed"] == 42 and ks["inputs"]["steps"] == 20
    assert ks["_meta"] == {"title": "KSampler"} and ks["class_type"] == "KSampler"


def test_link_inputs_follow_the_node_definition_not_the_stored_order():
    stored = [KSAMPLER_IN[3], KSAMPLER_IN[0], KSAMPLER_IN[2], KSAMPLER_IN[1]]
    api = convert(graph(base_nodes(ks_inputs=stored), BASE_LINKS))
    assert list(api["10"]["inputs"])[-4:] == ["model", "positive", "negative", "latent_image"]


def test_stale_widget_socket_is_dropped_with_its_link():
    inputs = [*KSAMPLER_IN, ("old_widget", "INT", 40, "old_widget")]
    nodes = base_nodes(ks_inputs=inputs)
    nodes.append(node(40, "PrimitiveInt", [7, "fixed"], outputs=[("INT", "INT", [40])]))
    api = convert(graph(nodes, [*BASE_LINKS, [40, 40, 0, 10, 4, "INT"]]))
    assert "old_widget" not in api["10"]["inputs"]


def test_integral_floats_written_as_ints_like_javascript():
    api = convert(graph(base_nodes(), BASE_LINKS))
    assert json.dumps(api["10"]["inputs"]["cfg"]) == "7"
    assert json.dumps(api["10"]["inputs"]["denoise"]) == "1"


def test_integer_keys_ascending_whatever_the_execution_order():
    api = convert(graph(base_nodes(), BASE_LINKS))
    assert list(api) == ["1", "2", "3", "4", "5", "6", "7", "10"]


def test_bypassed_node_is_passed_through_by_type():
    api = convert(graph(base_nodes(lora_mode=4), BASE_LINKS))
    assert "7" not in api
    assert api["10"]["inputs"]["model"] == ["1", 0]
    assert api["2"]["inputs"]["clip"] == ["1", 1]


def test_bypassed_node_without_matching_input_drops_the_link():
    nodes = base_nodes()
    nodes[6]["mode"] = 4  # VAEDecode: LATENT/VAE in, IMAGE out -> nothing of type IMAGE
    api = convert(graph(nodes, BASE_LINKS))
    assert "5" not in api and "images" not in api["6"]["inputs"]
    assert api["6"]["inputs"] == {"filename_prefix": "out"}


def test_muted_node_dropped_and_dangling_inputs_removed():
    nodes = base_nodes(lora_mode=2)
    api = convert(graph(nodes, BASE_LINKS))
    assert "7" not in api
    assert "model" not in api["10"]["inputs"]
    assert "clip" not in api["2"]["inputs"]


def test_reroute_is_resolved_to_the_real_source():
    nodes = base_nodes()
    nodes.append(node(20, "Reroute", inputs=[("", "*", 21)], outputs=[("", "MODEL", [22])]))
    nodes[5]["inputs"][0]["link"] = 22
    links = [lk for lk in BASE_LINKS if lk[0] != 1] + [
        [21, 7, 0, 20, 0, "*"],
        [22, 20, 0, 10, 0, "MODEL"],
    ]
    api = convert(graph(nodes, links))
    assert "20" not in api
    assert api["10"]["inputs"]["model"] == ["7", 0]


def test_primitive_node_value_wins_over_stale_widget_value():
    inputs = [*KSAMPLER_IN, ("steps", "INT", 30, "steps")]
    nodes = base_nodes(ks_inputs=inputs)
    nodes.append(
        node(30, "PrimitiveNode", [33, "fixed"], title="Steps", outputs=[("INT", "INT", [30])])
    )
    api = convert(graph(nodes, [*BASE_LINKS, [30, 30, 0, 10, 4, "INT"]]))
    assert "30" not in api
    assert api["10"]["inputs"]["steps"] == 33
    assert list(api["10"]["inputs"])[1] == "steps"


def test_primitive_without_a_stored_value_keeps_the_target_value():
    inputs = [*KSAMPLER_IN, ("steps", "INT", 30, "steps")]
    nodes = base_nodes(ks_inputs=inputs)
    nodes.append(node(30, "PrimitiveNode", outputs=[("INT", "INT", [30])]))
    api = convert(graph(nodes, [*BASE_LINKS, [30, 30, 0, 10, 4, "INT"]]))
    assert api["10"]["inputs"]["steps"] == 20


def test_primitive_text_replacement_on_request():
    nodes = base_nodes()
    nodes[2]["inputs"].append(
        {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 30}
    )
    nodes.append(
        node(
            30,
            "PrimitiveNode",
            ["seed %KSampler.seed%"],
            outputs=[("STRING", "STRING", [30])],
            properties={"Run widget replace on values": True},
        )
    )
    api = convert(graph(nodes, [*BASE_LINKS, [30, 30, 0, 2, 1, "STRING"]]))
    assert api["2"]["inputs"]["text"] == "seed 42"


def test_link_fixer_repairs_a_primitive_output_list():
    inputs = [*KSAMPLER_IN, ("steps", "INT", 30, "steps")]
    nodes = base_nodes(ks_inputs=inputs)
    nodes.append(node(30, "PrimitiveNode", [33, "fixed"], outputs=[("INT", "INT", [])]))
    api = convert(graph(nodes, [*BASE_LINKS, [30, 30, 0, 10, 4, "INT"]]))
    assert api["10"]["inputs"]["steps"] == 33


def test_missing_widget_values_fall_back_to_defaults():
    api = convert(graph([node(1, "KSampler", [5, "fixed"]), node(2, "EmptyLatentImage", [])], []))
    assert api["1"]["inputs"]["steps"] == 20 and api["1"]["inputs"]["sampler_name"] == "euler"
    assert api["2"]["inputs"] == {"width": 512, "height": 512, "batch_size": 1}


def test_primitive_values_go_through_the_number_widget_callbacks():
    inputs = [*KSAMPLER_IN, ("cfg", "FLOAT", 30, "cfg"), ("steps", "INT", 31, "steps")]
    nodes = base_nodes(ks_inputs=inputs)
    nodes.append(node(30, "PrimitiveNode", [5.34, "fixed"], outputs=[("FLOAT", "FLOAT", [30])]))
    nodes.append(node(31, "PrimitiveNode", [12.6, "fixed"], outputs=[("INT", "INT", [31])]))
    nodes.append(
        node(
            32,
            "EmptyLatentImage",
            [1000, 512, 1],
            inputs=[("width", "INT", 32, "width")],
            outputs=[("LATENT", "LATENT", [])],
        )
    )
    nodes.append(node(33, "PrimitiveNode", [1001, "fixed"], outputs=[("INT", "INT", [32])]))
    nodes.append(
        node(
            34,
            "DualCFGGuider",
            [3, 1.5, "regular"],
            inputs=[("cfg_conds", "FLOAT", 33, "cfg_conds")],
        )
    )
    nodes.append(node(35, "PrimitiveNode", [250.0, "fixed"], outputs=[("FLOAT", "FLOAT", [33])]))
    links = [
        *BASE_LINKS,
        [30, 30, 0, 10, 4, "FLOAT"],
        [31, 31, 0, 10, 5, "INT"],
        [32, 33, 0, 32, 0, "INT"],
        [33, 35, 0, 34, 0, "FLOAT"],
    ]
    api = convert(graph(nodes, links))
    assert api["10"]["inputs"]["cfg"] == 5.3  # round 0.01, shown with the step's 1 decimal
    assert api["10"]["inputs"]["steps"] == 13
    assert api["32"]["inputs"]["width"] == 1000  # nearest multiple of the step (8)
    assert api["34"]["inputs"]["cfg_conds"] == 100  # clamped to max


def test_combo_without_any_value_is_left_out():
    raw = {"N": {"input": {"required": {"m": [[], {}], "n": ["INT", {}]}}}}
    api = convert_ui_to_api(graph([node(1, "N", [])], []), ObjectInfo(raw, source="user"))
    assert api["1"]["inputs"] == {"n": 0}


def test_float_and_combo_primitive_values():
    inputs = [
        *KSAMPLER_IN,
        ("cfg", "FLOAT", 30, "cfg"),
        ("sampler_name", "COMBO", 31, "sampler_name"),
    ]
    nodes = base_nodes(ks_inputs=inputs)
    nodes.append(node(30, "PrimitiveNode", [4.5, "fixed"], outputs=[("FLOAT", "FLOAT", [30])]))
    nodes.append(
        node(31, "PrimitiveNode", ["dpmpp_2m", "fixed", ""], outputs=[("COMBO", "COMBO", [31])])
    )
    links = [*BASE_LINKS, [30, 30, 0, 10, 4, "FLOAT"], [31, 31, 0, 10, 5, "COMBO"]]
    api = convert(graph(nodes, links))
    assert api["10"]["inputs"]["cfg"] == 4.5
    assert api["10"]["inputs"]["sampler_name"] == "dpmpp_2m"


def test_widget_linked_from_a_real_node_keeps_its_position():
    inputs = [*KSAMPLER_IN, ("seed", "INT", 40, "seed")]
    nodes = base_nodes(ks_inputs=inputs)
    nodes.append(node(40, "PrimitiveInt", [7, "fixed"], outputs=[("INT", "INT", [40])]))
    api = convert(graph(nodes, [*BASE_LINKS, [40, 40, 0, 10, 4, "INT"]]))
    assert api["40"]["inputs"] == {"value": 7}
    assert api["10"]["inputs"]["seed"] == ["40", 0]
    assert list(api["10"]["inputs"])[0] == "seed"


def test_unconnected_widget_sockets_are_not_conversions():
    inputs = [*KSAMPLER_IN, ("seed", "INT", None, "seed"), ("steps", "INT", None, "steps")]
    api = convert(graph(base_nodes(ks_inputs=inputs), BASE_LINKS))
    assert api["10"]["inputs"]["seed"] == 42 and api["10"]["inputs"]["steps"] == 20


def test_notes_are_dropped():
    nodes = [*base_nodes(), node(50, "Note", ["hello"]), node(51, "MarkdownNote", ["# hi"])]
    api = convert(graph(nodes, BASE_LINKS))
    assert "50" not in api and "51" not in api


def test_hidden_control_values_of_other_seed_nodes():
    nodes = [
        node(1, "SamplerCustom", [True, 5, "increment", 6.5]),
        node(2, "RandomNoise", [11, "fixed"]),
        node(
            3,
            "KSamplerAdvanced",
            ["enable", 9, "randomize", 25, 8, "euler", "normal", 0, 20, "enable"],
        ),
    ]
    api = convert(graph(nodes, []))
    assert api["1"]["inputs"] == {"add_noise": True, "noise_seed": 5, "cfg": 6.5}
    assert api["2"]["inputs"] == {"noise_seed": 11}
    assert api["3"]["inputs"]["steps"] == 25 and api["3"]["inputs"]["end_at_step"] == 20
    assert api["3"]["inputs"]["return_with_leftover_noise"] == "enable"


def test_upload_widget_takes_a_position_but_is_not_sent():
    api = convert(graph([node(1, "LoadImage", ["photo.png", "image"])], []))
    assert api["1"]["inputs"] == {"image": "photo.png"}


def test_file_combo_of_an_upload_button():
    api = convert(
        graph(
            [
                node(1, "LoadImage", ["", "image"]),
                node(2, "LoadImageOutput", ["x.png", False, "refresh", "image"]),
                node(3, "LoadImageOutput", ["y.png [temp]", False, "B", "C"]),
            ],
            [],
        )
    )
    assert api["1"]["inputs"] == {"image": OI.input("LoadImage", "image").choices[0]}
    assert api["2"]["inputs"] == {"image": "x.png [output]", "refresh": "refresh"}
    assert api["3"]["inputs"] == {"image": "y.png [temp]", "refresh": "B"}


def test_old_values_of_force_input_inputs_are_dropped():
    raw = {
        "N": {
            "input": {
                "required": {
                    "m": ["MODEL", {}],
                    "f": ["INT", {"forceInput": True}],
                    "w": ["INT", {}],
                }
            }
        }
    }
    oi = ObjectInfo(raw, source="user")
    assert convert_ui_to_api(graph([node(1, "N", [7, 8])], []), oi)["1"]["inputs"] == {"w": 8}
    assert convert_ui_to_api(graph([node(1, "N", [7, 8, 9])], []), oi)["1"]["inputs"] == {"w": 7}


def test_list_values_are_wrapped():
    api = convert(graph([node(1, "EmptyLatentImage", [[512, 768], 512, 1])], []))
    assert api["1"]["inputs"]["width"] == {"__value__": [512, 768]}


def test_multiline_text_widgets_hold_strings_like_a_textarea():
    api = convert(graph([node(1, "CLIPTextEncode", [None]), node(2, "CLIPTextEncode", [5])], []))
    assert api["1"]["inputs"]["text"] == "" and api["2"]["inputs"]["text"] == "5"


def test_v1_and_v3_combo_specs():
    raw = {
        "V1": {"input": {"required": {"mode": [["a", "b"], {}], "n": ["INT", {"default": 1}]}}},
        "V3": {
            "input": {
                "required": {"mode": ["COMBO", {"options": ["x", "y"]}], "flag": ["BOOLEAN", {}]}
            }
        },
    }
    oi = ObjectInfo(raw, source="user")
    api = convert_ui_to_api(graph([node(1, "V1", ["b", 3]), node(2, "V3", ["y", True])], []), oi)
    assert api["1"]["inputs"] == {"mode": "b", "n": 3}
    assert api["2"]["inputs"] == {"mode": "y", "flag": True}
    assert oi.input("V3", "mode").choices == ("x", "y")


def test_unknown_node_type_error_names_id_type_and_title():
    nodes = [*base_nodes(), node(60, "FancyCustomNode", [1], title="My fancy node")]
    with pytest.raises(UnknownNodeTypeError) as info:
        convert(graph(nodes, BASE_LINKS))
    err = info.value
    assert (err.node_id, err.node_type, err.title) == ("60", "FancyCustomNode", "My fancy node")
    assert "60" in str(err) and "FancyCustomNode" in str(err) and "My fancy node" in str(err)


def test_unknown_node_types_can_be_kept_like_the_frontend():
    nodes = [
        *base_nodes(),
        node(60, "FancyCustomNode", [1, {"k": 2}], title="Fancy", inputs=[("image", "IMAGE", 61)]),
    ]
    api = convert(graph(nodes, [*BASE_LINKS, [61, 5, 0, 60, 0, "IMAGE"]]), allow_unknown_nodes=True)
    # frontend 1.58: the placeholder's widgets are UNKNOWN, UNKNOWN_1, … (1.27 sent the last)
    assert api["60"] == {
        "inputs": {"UNKNOWN": 1, "UNKNOWN_1": '{"k":2}', "image": ["5", 0]},
        "_meta": {"title": "Fancy"},
    }
    assert api["10"]["class_type"] == "KSampler"


def test_muted_unknown_node_is_not_an_error():
    nodes = [*base_nodes(), node(60, "FancyCustomNode", [1], mode=2)]
    assert "60" not in convert(graph(nodes, BASE_LINKS))


def test_link_to_a_missing_node_is_an_error():
    links = [*BASE_LINKS[:-1], [6, 77, 0, 6, 0, "IMAGE"]]
    with pytest.raises(WorkflowError, match="77"):
        convert(graph(base_nodes(), links))


def test_cycle_through_reroutes_is_an_error():
    nodes = [
        node(1, "Reroute", inputs=[("", "*", 2)], outputs=[("", "IMAGE", [1, 3])]),
        node(2, "Reroute", inputs=[("", "*", 1)], outputs=[("", "IMAGE", [2])]),
        node(3, "SaveImage", ["x"], inputs=[("images", "IMAGE", 3)]),
    ]
    links = [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 1, 0, "IMAGE"], [3, 1, 0, 3, 0, "IMAGE"]]
    with pytest.raises(WorkflowError, match="circular"):
        convert(graph(nodes, links))


def test_dynamic_prompt_comments_are_stripped_and_choices_resolved():
    api = convert(
        graph([node(1, "CLIPTextEncode", ["a {red|blue} cat // note\nsits /* x */"])], [])
    )
    assert api["1"]["inputs"]["text"] in ("a red cat \nsits ", "a blue cat \nsits ")


def test_filename_prefix_replacements():
    nodes = base_nodes()
    nodes[-1]["widgets_values"] = ["run_%KSampler.seed%_%Empty Latent Image.width%"]
    api = convert(graph(nodes, BASE_LINKS))
    assert api["6"]["inputs"]["filename_prefix"] == "run_42_512"


# --- subgraphs -----------------------------------------------------------------------------

INNER_ID = "11111111-2222-3333-4444-555555555555"
OUTER_ID = "99999999-2222-3333-4444-555555555555"


def inner_definition(instance_inputs_linked=(1, 2)):
    """A subgraph: text input -> CLIPTextEncode(text) and seed input -> KSampler(seed)."""
    return {
        "id": INNER_ID,
        "name": "Inner",
        "inputNode": {"id": -10},
        "outputNode": {"id": -20},
        "inputs": [
            {"id": "a", "name": "text", "type": "STRING", "linkIds": [101]},
            {"id": "b", "name": "seed", "type": "INT", "linkIds": [102]},
            {"id": "c", "name": "clip", "type": "CLIP", "linkIds": [103]},
        ],
        "outputs": [{"id": "d", "name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [104]}],
        "widgets": [],
        "nodes": [
            node(
                5,
                "CLIPTextEncode",
                ["inner text"],
                inputs=[("clip", "CLIP", 103), ("text", "STRING", 101, "text")],
                outputs=[("CONDITIONING", "CONDITIONING", [104])],
            ),
            node(
                6,
                "RandomNoise",
                [3, "fixed"],
                inputs=[("noise_seed", "INT", 102, "noise_seed")],
                outputs=[("NOISE", "NOISE", [])],
            ),
        ],
        "links": [
            {
                "id": 101,
                "origin_id": -10,
                "origin_slot": 0,
                "target_id": 5,
                "target_slot": 1,
                "type": "STRING",
            },
            {
                "id": 102,
                "origin_id": -10,
                "origin_slot": 1,
                "target_id": 6,
                "target_slot": 0,
                "type": "INT",
            },
            {
                "id": 103,
                "origin_id": -10,
                "origin_slot": 2,
                "target_id": 5,
                "target_slot": 0,
                "type": "CLIP",
            },
            {
                "id": 104,
                "origin_id": 5,
                "origin_slot": 0,
                "target_id": -20,
                "target_slot": 0,
                "type": "CONDITIONING",
            },
        ],
    }


#: An instance's inputs follow the definition's order (the frontend matches them by index).
INSTANCE_INPUTS = [
    ("text", "STRING", None, "text"),
    ("seed", "INT", None, "seed"),
    ("clip", "CLIP", 1),
]


def subgraph_workflow(instance_values, properties=None):
    nodes = [
        node(
            1,
            "CheckpointLoaderSimple",
            ["m.safetensors"],
            outputs=[("MODEL", "MODEL", []), ("CLIP", "CLIP", [1]), ("VAE", "VAE", [])],
        ),
        node(
            57,
            INNER_ID,
            instance_values,
            inputs=INSTANCE_INPUTS,
            outputs=[("CONDITIONING", "CONDITIONING", [2])],
            properties=properties or {},
        ),
        node(3, "ConditioningZeroOut", inputs=[("conditioning", "CONDITIONING", 2)]),
    ]
    links = [[1, 1, 1, 57, 2, "CLIP"], [2, 57, 0, 3, 0, "CONDITIONING"]]
    return graph(nodes, links, [inner_definition()])


def test_subgraph_inner_ids_and_links_through_the_instance():
    api = convert(subgraph_workflow([]))
    assert list(api) == ["1", "3", "57:5", "57:6"]
    assert api["3"]["inputs"]["conditioning"] == ["57:5", 0]
    assert api["57:5"]["inputs"] == {"text": "inner text", "clip": ["1", 1]}


def test_subgraph_proxy_widgets_use_inner_values():
    api = convert(subgraph_workflow([], {"proxyWidgets": [["5", "text"], ["6", "noise_seed"]]}))
    assert api["57:5"]["inputs"]["text"] == "inner text"
    assert api["57:6"]["inputs"]["noise_seed"] == 3


def test_subgraph_positional_instance_values_override_inner_values():
    api = convert(subgraph_workflow(["outer text", 99]))
    assert api["57:5"]["inputs"]["text"] == "outer text"
    assert api["57:6"]["inputs"]["noise_seed"] == 99


def test_subgraph_instance_inputs_are_matched_by_name():
    data = subgraph_workflow(["A", 5])
    data["nodes"][1]["inputs"] = [
        {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": None},
        {"name": "clip", "type": "CLIP", "link": 1},
    ]
    api = convert(data)
    assert api["57:5"]["inputs"] == {"text": "A", "clip": ["1", 1]}
    assert api["57:6"]["inputs"] == {"noise_seed": 5}


def test_promoted_value_is_sent_as_the_host_saved_it():
    """Frontend 1.58 keeps promoted values on the host (ADR 0009): a number saved for a text
    input is sent as that number (1.27's textarea made it "7"); the real frontend does so in
    image_qwen_image_2_1_image_edit (``on_false: 0``)."""
    api = convert(subgraph_workflow([7, 5]))
    assert api["57:5"]["inputs"]["text"] == 7


def test_subgraph_input_linked_outside_resolves_to_the_outer_source():
    data = subgraph_workflow(["outer text", 99])
    data["nodes"].append(node(8, "PrimitiveInt", [1234, "fixed"], outputs=[("INT", "INT", [9])]))
    data["nodes"][1]["inputs"][1]["link"] = 9
    data["links"].append([9, 8, 0, 57, 1, "INT"])
    api = convert(data)
    assert api["57:6"]["inputs"]["noise_seed"] == ["8", 0]


def primitive_inside_subgraph(link_id):
    """The subgraph's text comes from a PrimitiveNode inside it, over link ``link_id``."""
    data = subgraph_workflow(["outer", 5])
    sub = data["definitions"]["subgraphs"][0]
    sub["inputs"][0]["linkIds"] = []
    sub["links"] = [lk for lk in sub["links"] if lk["id"] != 101]
    sub["links"].append(
        {
            "id": link_id,
            "origin_id": 7,
            "origin_slot": 0,
            "target_id": 5,
            "target_slot": 1,
            "type": "STRING",
        }
    )
    sub["nodes"][0]["inputs"][1]["link"] = link_id
    sub["nodes"].append(
        node(
            7,
            "PrimitiveNode",
            ["from primitive", "fixed"],
            outputs=[("STRING", "STRING", [link_id])],
        )
    )
    return data


def test_primitive_inside_subgraph_uses_root_links_like_the_frontend():
    # link id 2 also exists in the root graph (57 -> 3), so the frontend writes nowhere
    assert convert(primitive_inside_subgraph(2))["57:5"]["inputs"]["text"] == "inner text"
    # an id the root lacks breaks the frontend; here the subgraph's own link is used
    assert convert(primitive_inside_subgraph(555))["57:5"]["inputs"]["text"] == "from primitive"


def test_nested_subgraphs_join_ids_with_colons():
    outer = {
        "id": OUTER_ID,
        "name": "Outer",
        "inputNode": {"id": -10},
        "outputNode": {"id": -20},
        "inputs": [{"id": "o1", "name": "clip", "type": "CLIP", "linkIds": [201]}],
        "outputs": [{"id": "o2", "name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [202]}],
        "widgets": [],
        "nodes": [
            node(
                33,
                INNER_ID,
                ["deep text", 5],
                inputs=[
                    ("text", "STRING", None, "text"),
                    ("seed", "INT", None, "seed"),
                    ("clip", "CLIP", 201),
                ],
                outputs=[("CONDITIONING", "CONDITIONING", [202])],
            )
        ],
        "links": [
            {
                "id": 201,
                "origin_id": -10,
                "origin_slot": 0,
                "target_id": 33,
                "target_slot": 2,
                "type": "CLIP",
            },
            {
                "id": 202,
                "origin_id": 33,
                "origin_slot": 0,
                "target_id": -20,
                "target_slot": 0,
                "type": "CONDITIONING",
            },
        ],
    }
    data = subgraph_workflow([])
    data["nodes"][1]["type"] = OUTER_ID
    data["nodes"][1]["inputs"] = [{"name": "clip", "type": "CLIP", "link": 1}]
    data["links"][0] = [1, 1, 1, 57, 0, "CLIP"]
    data["definitions"]["subgraphs"].append(outer)
    api = convert(data)
    assert api["57:33:5"]["inputs"] == {"text": "deep text", "clip": ["1", 1]}
    assert api["3"]["inputs"]["conditioning"] == ["57:33:5", 0]


def test_js_key_order_puts_integer_keys_first():
    assert list(js_key_order({"b": 1, "10": 2, "2": 3, "1:2": 4, "01": 5})) == [
        "2",
        "10",
        "b",
        "1:2",
        "01",
    ]


def test_converting_never_changes_the_input():
    data = subgraph_workflow(["outer text", 99])
    before = json.dumps(data, sort_keys=True)
    convert(data)
    assert json.dumps(data, sort_keys=True) == before
