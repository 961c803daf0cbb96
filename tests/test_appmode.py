"""App Mode (frontend 1.58): the inputs the author chose in ``extra.linearData`` come first.

The format, from the frontend's source (``LinearData`` in comfyWorkflow.ts, appModeStore.ts):
``extra.linearData = {"inputs": [[node_id, widget_name, {"height": n}?], ...], "outputs": [id]}``;
a renamed widget's label is the ``label`` of the node input carrying that widget.
"""

from __future__ import annotations

import copy
import json

import ipywidgets as w

from comfy_widgets.widgets.fields import label_text
from comfy_widgets.widgets.form import ParameterForm
from comfy_widgets.workflow.appmode import app_mode_inputs
from comfy_widgets.workflow.workflow import Workflow
from tests import shared_data

UI = json.loads((shared_data.WORKFLOWS / "ui" / "sd15_txt2img_default.json").read_text("utf-8"))
SUBGRAPH_UI = json.loads(
    (shared_data.WORKFLOWS / "ui" / "subgraph_z_image_turbo.json").read_text("utf-8")
)


def app_workflow() -> dict:
    """sd15 text-to-image as an App Mode author would save it: steps, then the positive prompt
    (renamed "Describe your picture"), then width; a seed control and a deleted node are
    ignored, and outputs name the SaveImage node."""
    ui = copy.deepcopy(UI)
    positive = next(n for n in ui["nodes"] if n["id"] == 6)
    positive["inputs"].append(
        {
            "name": "text",
            "type": "STRING",
            "widget": {"name": "text"},
            "link": None,
            "label": "Describe your picture",
        }
    )
    ui["extra"]["linearData"] = {
        "inputs": [
            [3, "steps"],
            ["6", "text", {"height": 160}],
            [5, "width"],
            [3, "control_after_generate"],
            [999, "seed"],
            [3, "steps"],
        ],
        "outputs": [9],
    }
    return ui


def test_app_inputs_come_first_in_the_authors_order_with_their_labels():
    wf = Workflow.load(app_workflow())
    params = wf.parameters()
    assert [p.key for p in params[:3]] == ["3.steps", "6.text", "5.width"]
    assert all(p.app_input and not p.advanced for p in params[:3])
    assert params[1].label == "Describe your picture"
    assert label_text(params[1]) == "Describe your picture"
    assert label_text(params[0]) == "Steps"
    rest = params[3:]
    assert rest and all(p.advanced and not p.app_input for p in rest)
    assert {p.key for p in rest} >= {"3.seed", "3.cfg", "7.text", "5.height"}
    # names and values still work as before
    assert wf.apply(steps=4)["3"]["inputs"]["steps"] == 4


def test_without_app_mode_nothing_changes():
    plain = Workflow.load(UI).parameters()
    assert not any(p.app_input for p in plain)
    assert [p.key for p in plain] != [p.key for p in Workflow.load(app_workflow()).parameters()]
    assert not all(p.advanced for p in plain)


def test_entries_of_the_wrong_shape_are_skipped():
    ui = app_workflow()
    ui["extra"]["linearData"]["inputs"] += [None, [3], [True, "cfg"], [3, 7], "3.cfg"]
    assert [k for k, _ in app_mode_inputs(ui, Workflow.load(ui).to_api())] == [
        "3.steps",
        "6.text",
        "5.width",
        "3.control_after_generate",
        "3.steps",
    ]
    ui["extra"]["linearData"] = {"inputs": "nope"}
    assert not any(p.app_input for p in Workflow.load(ui).parameters())


def test_an_input_inside_a_subgraph_is_found_by_its_inner_node():
    ui = copy.deepcopy(SUBGRAPH_UI)
    prompt = Workflow.load(ui).to_api()
    inner_key = next(
        f"{node_id}.steps" for node_id, node in prompt.items() if "steps" in node["inputs"]
    )
    instance, inner = inner_key.split(".")[0].split(":")
    ui.setdefault("extra", {})["linearData"] = {"inputs": [[int(inner), "steps"]], "outputs": []}
    params = Workflow.load(ui).parameters()
    assert params[0].app_input and inner_key in (params[0].key, *params[0].linked_keys)
    assert instance and all(p.advanced for p in params[1:])


def test_the_form_shows_app_inputs_first_and_the_rest_under_advanced():
    form = ParameterForm(Workflow.load(app_workflow()))
    first, *others = form.children
    assert "cw-form-app" in first._dom_classes
    by_box = {id(field.box): name for name, field in form.fields.items()}
    shown = [by_box[id(child)] for child in first.children if id(child) in by_box]
    assert [form.fields[name].param.key for name in shown] == ["3.steps", "6.text", "5.width"]
    assert "Describe your picture" in form.fields[shown[1]].box.children[0].children[0].value
    folds = [c for c in others if isinstance(c, w.Accordion)]
    assert len(folds) == 1 and folds[0].titles == ("Advanced",)
