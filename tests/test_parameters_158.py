"""Parameters of today's node kinds (ComfyUI 0.27): DynamicCombo options and the inputs they
add, Autogrow widget inputs, CustomCombo choices; switching an option through apply()."""

from __future__ import annotations

import pytest

from comfy_widgets.errors import ParameterError
from comfy_widgets.workflow.object_info import resolve_input
from comfy_widgets.workflow.workflow import Workflow
from tests.test_conversion import OI_0_27

PROMPT = {
    "1": {
        "class_type": "ResizeImageMaskNode",
        "inputs": {
            "resize_type": "scale by multiplier",
            "resize_type.multiplier": 1.5,
            "scale_method": "lanczos",
            "input": ["2", 0],
        },
    },
    "2": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
    "3": {
        "class_type": "GLSLShader",
        "inputs": {"floats.u_float0": 0.25, "ints.u_int0": 3},
    },
    "4": {
        "class_type": "CustomCombo",
        "inputs": {"choice": "b", "index": 1, "option1": "a", "option2": "b", "option3": ""},
    },
}


def params():
    return {p.key: p for p in Workflow.load(PROMPT, OI_0_27).parameters()}


def test_dynamic_combo_and_its_option_inputs_are_parameters_with_real_bounds():
    found = params()
    combo = found["1.resize_type"]
    assert combo.dynamic and combo.type == "select" and "scale dimensions" in combo.options
    child = found["1.resize_type.multiplier"]
    assert child.parent == "1.resize_type" and child.type == "number"
    assert (child.min, child.max, child.step) == (0.01, 8.0, 0.01)
    assert child.label == "Multiplier"


def test_autogrow_inputs_resolve_to_their_template_and_link_only_ones_are_no_fields():
    """0.27's Autogrow templates of value types are all forceInput (sockets, no widget): their
    spec resolves (name from the template) but they are not form fields."""
    spec = resolve_input(OI_0_27, "GLSLShader", "floats.u_float0", {})
    assert spec is not None and spec.type == "FLOAT" and spec.options.get("forceInput")
    images = resolve_input(OI_0_27, "ClaudeNode", "images.image_3", {})
    assert images is not None and images.type == "IMAGE"
    assert resolve_input(OI_0_27, "ClaudeNode", "images.image_99", {}) is None
    assert "3.floats.u_float0" not in params()


def test_custom_combo_choices_are_its_options():
    found = params()
    assert found["4.choice"].options == ["a", "b"]
    assert found["4.option3"].type == "string"


def test_switching_an_option_replaces_its_inputs():
    wf = Workflow.load(PROMPT, OI_0_27)
    api = wf.apply({"1.resize_type": "scale dimensions", "1.resize_type.width": 640})
    assert list(api["1"]["inputs"]) == [
        "resize_type",
        "resize_type.width",
        "resize_type.height",
        "resize_type.crop",
        "scale_method",
        "input",
    ]
    assert api["1"]["inputs"]["resize_type.width"] == 640
    with pytest.raises(ParameterError, match="above the maximum"):
        wf.apply({"1.resize_type": "scale dimensions", "1.resize_type.width": 10**6})
    with pytest.raises(ParameterError, match="resize_type.width"):
        wf.apply({"1.resize_type.width": 640})  # only with the option that has it
    assert [p.field for p in wf.option_parameters("1.resize_type", "scale width")] == [
        "resize_type.width"
    ]
