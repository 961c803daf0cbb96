"""A workflow with a V3 DynamicCombo (ResizeImageMaskNode's ``resize_type``, ComfyUI 0.27) in
real JupyterLab: loaded into the form, the option changed (its child fields change: one
``multiplier`` becomes ``width``/``height``/``crop``), a child edited, run against the simulator
(``--emulate 0.27``) and the prompt it sent checked. Screenshots in light and dark theme.

The workflow is model-free (EmptyImage → ResizeImageMaskNode → SaveImage): the templates of
ComfyUI that use DynamicCombo need models (MoGe, API nodes) the simulator does not have."""

from __future__ import annotations

import json

import pytest

from tests.browser.jlab import (
    DARK,
    LIGHT,
    cell_errors,
    hide_sidebar,
    open_notebook,
    run_cell,
    set_theme,
    widget_failures,
    write_notebook,
)

pytestmark = pytest.mark.browser

WORKFLOW = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 96, "height": 64, "batch_size": 1, "color": 3368652},
        "_meta": {"title": "Canvas"},
    },
    "2": {
        "class_type": "ResizeImageMaskNode",
        "inputs": {
            "input": ["1", 0],
            "resize_type": "scale by multiplier",
            "resize_type.multiplier": 0.5,
            "scale_method": "area",
        },
        "_meta": {"title": "Resize"},
    },
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "dynamic"},
        "_meta": {"title": "Save"},
    },
}

SETUP = """\
import json
from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.widgets.form import ParameterForm
from comfy_widgets.workflow.workflow import Workflow

server = sim.serve(seconds_per_step=0.01, emulate="0.27")
client = connect(server.url, store=False)
form = ParameterForm(Workflow.load(json.loads({source!r}), name="dynamic resize"), client)
form
"""

SENT = """\
job = form.last_job
print("SENT", json.dumps({"state": str(job.state.value), "inputs": job.prompt["2"]["inputs"]}))
"""


def test_dynamic_combo_option_changes_fields_and_runs(lab_server, page, artifacts):
    notebook = "dynamic/dynamic_combo.ipynb"
    write_notebook(
        lab_server.root_dir / notebook, [SETUP.format(source=json.dumps(WORKFLOW)), SENT]
    )
    open_notebook(page, lab_server, notebook)
    page.set_viewport_size({"width": 1280, "height": 1600})
    run_cell(page, 0)
    hide_sidebar(page)
    form = page.locator(".cw-form").first
    form.wait_for()
    children = form.locator(".cw-form-option-inputs .cw-field")
    children.first.wait_for(state="attached")
    if not children.first.is_visible():  # the resize node's inputs are under Advanced
        form.locator(".cw-form-advanced .jupyter-widget-Collapse-header").first.click()
    children.first.wait_for()
    assert children.count() == 1
    assert "multiplier" in children.first.inner_text().lower()
    for theme, name in ((LIGHT, "light"), (DARK, "dark")):
        set_theme(page, theme)
        form.screenshot(path=artifacts / f"dynamic-combo-before-{name}.png")
    set_theme(page, LIGHT)

    combo = form.locator("select").filter(has=page.locator("option", has_text="scale dimensions"))
    assert combo.count() == 1
    combo.select_option("scale dimensions")
    page.wait_for_function(
        "() => document.querySelectorAll('.cw-form-option-inputs .cw-field').length === 3",
        timeout=30_000,
    )
    texts = [t.lower() for t in children.all_inner_texts()]
    assert [any(n in t for t in texts) for n in ("width", "height", "crop")] == [True] * 3
    assert not any("multiplier" in t for t in texts)
    width = children.first.locator("input").first
    width.fill("40")
    width.press("Tab")

    form.locator(".cw-run").click()
    form.locator(".cw-progress[data-status='completed']").wait_for(timeout=60_000)
    run_cell(page, 1)
    out = page.locator(".jp-OutputArea-output", has_text="SENT").first.inner_text()
    sent = json.loads(out.split("SENT", 1)[1])
    assert sent["state"] == "completed"
    inputs = sent["inputs"]
    assert inputs["resize_type"] == "scale dimensions"
    assert (inputs["resize_type.width"], inputs["resize_type.height"]) == (40, 512)
    assert inputs["resize_type.crop"] == "center" and "resize_type.multiplier" not in inputs
    assert cell_errors(page) == []
    assert widget_failures(page) == []

    form.scroll_into_view_if_needed()
    for theme, name in ((LIGHT, "light"), (DARK, "dark")):
        set_theme(page, theme)
        form.screenshot(path=artifacts / f"dynamic-combo-{name}.png")
