"""Workflow.load: sources, format detection, identity, and the bad inputs it must reject."""

from __future__ import annotations

import json

import pytest

from comfy_widgets.errors import UnknownNodeTypeError, WorkflowError
from comfy_widgets.workflow.object_info import ObjectInfo
from comfy_widgets.workflow.workflow import Workflow, content_hash
from tests import shared_data

SHARED = shared_data.WORKFLOWS
UI_PATH = SHARED / "ui" / "sd15_txt2img_default.json"
API_PATH = SHARED / "api" / "sd15_txt2img_api.json"


def test_load_from_path_dict_and_text_agree():
    from_path = Workflow.load(UI_PATH)
    from_str_path = Workflow.load(str(UI_PATH))
    from_dict = Workflow.load(json.loads(UI_PATH.read_text()))
    from_text = Workflow.load(UI_PATH.read_text())
    assert from_path.name == from_str_path.name == "sd15_txt2img_default"
    assert from_dict.name == "workflow" and from_text.name == "workflow"
    assert Workflow.load(from_dict.source, name="mine").name == "mine"
    hashes = {wf.content_hash for wf in (from_path, from_str_path, from_dict, from_text)}
    assert len(hashes) == 1
    assert from_path.to_api() == from_dict.to_api() == from_text.to_api()


def test_format_detection():
    assert Workflow.load(UI_PATH).format == "ui"
    assert Workflow.load(API_PATH).format == "api"


def test_titles_are_kept():
    ui_api = Workflow.load(SHARED / "ui" / "sdxl_base_refiner.json").to_api()
    assert ui_api["4"]["_meta"]["title"] == "Load Checkpoint - BASE"
    wf = Workflow.load(SHARED / "ui" / "primitive_reroute_hidream_e1_1.json")
    assert {wf.node_title("6"), wf.node_title("7")} == {"Positive", "Negative"}
    assert Workflow.load(API_PATH).node_title("3") == "KSampler"


def test_content_hash_ignores_key_order_but_not_values():
    data = json.loads(API_PATH.read_text())
    reordered = dict(reversed(list(data.items())))
    changed = json.loads(API_PATH.read_text())
    changed["3"]["inputs"]["steps"] = 99
    assert content_hash(data) == content_hash(reordered) != content_hash(changed)
    assert len(content_hash(data)) == 64


def test_to_api_returns_a_new_dict_and_source_is_a_copy():
    data = json.loads(API_PATH.read_text())
    wf = Workflow.load(data)
    data["3"]["inputs"]["steps"] = 1
    first = wf.to_api()
    first["3"]["inputs"]["steps"] = 2
    assert wf.to_api()["3"]["inputs"]["steps"] == 20
    assert wf.source["3"]["inputs"]["steps"] == 20


def test_load_accepts_a_workflow_and_object_info_dict():
    wf = Workflow.load(API_PATH)
    assert Workflow.load(wf) is wf
    raw = ObjectInfo.bundled().raw
    other = Workflow.load(wf, raw)
    assert other.object_info.raw is raw and other.to_api() == wf.to_api()


def test_with_object_info_marks_a_server_source():
    wf = Workflow.load(UI_PATH).with_object_info(ObjectInfo.bundled().raw)
    assert wf.object_info.source == "server" and wf.object_info.trusts_model_lists
    assert Workflow.load(UI_PATH).object_info.source == "bundled"


def test_malformed_json_is_a_workflow_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"nodes": [1, 2,,]}')
    with pytest.raises(WorkflowError, match="not valid JSON.*line 1"):
        Workflow.load(path)
    with pytest.raises(WorkflowError, match="not valid JSON"):
        Workflow.load('{"3": {"class_type": ')


def test_json_that_is_neither_format_is_rejected():
    with pytest.raises(WorkflowError, match="neither"):
        Workflow.load({"hello": "world"})
    with pytest.raises(WorkflowError, match="neither"):
        Workflow.load({})
    with pytest.raises(WorkflowError, match="not a workflow"):
        Workflow.load("[1, 2, 3]")


def test_missing_file_is_a_workflow_error(tmp_path):
    with pytest.raises(WorkflowError, match="cannot read"):
        Workflow.load(tmp_path / "nope.json")


def test_unknown_node_type_in_ui_workflow():
    data = json.loads(UI_PATH.read_text())
    data["nodes"][0]["type"] = "NotARealNode"
    data["nodes"][0]["title"] = "Mystery"
    with pytest.raises(UnknownNodeTypeError) as info:
        Workflow.load(data)
    assert info.value.node_type == "NotARealNode" and info.value.title == "Mystery"
    assert info.value.node_id == str(data["nodes"][0]["id"])
    kept = Workflow.load(data, allow_unknown_nodes=True).to_api()
    assert "class_type" not in kept[str(data["nodes"][0]["id"])]


def test_api_link_to_a_missing_node():
    data = json.loads(API_PATH.read_text())
    data["3"]["inputs"]["model"] = ["99", 0]
    with pytest.raises(WorkflowError, match="'99'"):
        Workflow.load(data)


def test_api_cycle_is_reported_with_its_nodes():
    data = json.loads(API_PATH.read_text())
    data["4"]["inputs"]["ckpt_name"] = ["8", 0]  # checkpoint <- decode <- sampler <- checkpoint
    with pytest.raises(WorkflowError, match="cycle") as info:
        Workflow.load(data)
    assert "4" in str(info.value) and "8" in str(info.value)


def test_ui_cycle_of_real_nodes_is_rejected():
    data = json.loads(UI_PATH.read_text())
    ks = next(n for n in data["nodes"] if n["type"] == "KSampler")
    ckpt = next(n for n in data["nodes"] if n["type"] == "CheckpointLoaderSimple")
    ckpt["inputs"] = [
        {"name": "ckpt_name", "type": "COMBO", "widget": {"name": "ckpt_name"}, "link": 999}
    ]
    ks["outputs"][0]["links"].append(999)
    data["links"].append([999, ks["id"], 0, ckpt["id"], 0, "LATENT"])
    with pytest.raises(WorkflowError, match="cycle"):
        Workflow.load(data)


def test_repr_names_the_workflow():
    assert "sd15_txt2img_default" in repr(Workflow.load(UI_PATH))
