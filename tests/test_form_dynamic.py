"""The form and DynamicCombo inputs: the option chosen decides which fields show."""

from __future__ import annotations

import gzip
import json

from comfy_widgets.widgets.form import ParameterForm
from comfy_widgets.workflow.object_info import ObjectInfo
from comfy_widgets.workflow.workflow import Workflow
from tests import shared_data


def _dynamic_form():
    raw = json.loads(
        gzip.decompress((shared_data.REFERENCE / "object_info_0.27.0.json.gz").read_bytes())
    )
    path = shared_data.WORKFLOWS / "frontend-1.58" / "ui" / "3d_moge_panorama_to_mesh.json"
    return ParameterForm(Workflow.load(path, ObjectInfo(raw, source="user")))


def test_changing_a_dynamic_combo_option_changes_its_fields():
    form = _dynamic_form()
    combo = form._by_key["29:38.resize_type"]
    assert combo.param.dynamic and combo.param.value == "scale longer dimension"
    box = form._option_boxes["29:38.resize_type"]
    before = [f.param.key for f in form.fields.values() if f.param.parent == "29:38.resize_type"]
    assert before == ["29:38.resize_type.longer_size"]
    assert box.children == (form._by_key["29:38.resize_type.longer_size"].box,)
    longer = form._by_key["29:38.resize_type.longer_size"]
    assert (longer.control.min, longer.control.max) == (0, 16384)

    combo.control.value = "scale dimensions"
    keys = [
        f.param.key for f in form.fields.values() if f.param.key.startswith("29:38.resize_type.")
    ]
    assert keys == [
        "29:38.resize_type.width",
        "29:38.resize_type.height",
        "29:38.resize_type.crop",
    ]
    assert [c for c in box.children] == [form._by_key[k].box for k in keys]
    crop = form._by_key["29:38.resize_type.crop"]
    assert crop.control.value == "center" and "disabled" in [v for _, v in crop.control.options]
    form._by_key["29:38.resize_type.width"].control.value = 640
    sent = form.workflow.apply(form._changed_values())["29:38"]["inputs"]
    assert sent["resize_type"] == "scale dimensions"
    assert (sent["resize_type.width"], sent["resize_type.height"]) == (640, 512)
    assert "resize_type.longer_size" not in sent

    combo.control.value = "scale longer dimension"  # back: the old field, as it was
    assert box.children == (longer.box,) and "29:38.resize_type.width" not in form._by_key
