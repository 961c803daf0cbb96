"""The form's layout details in real JupyterLab: the batch panel's labels in the form's column,
the last result still on show under it, Advanced no wider than the rows, the dice icon drawn
without an emoji font, whole seeds on batch cards, and the two prompt nodes told apart in the
timeline. Screenshots in light and dark theme."""

from __future__ import annotations

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
from tests.shared_data import WORKFLOWS

pytestmark = pytest.mark.browser

SETUP = """\
from comfy_widgets import examples, sim
from comfy_widgets.engine.client import connect
from comfy_widgets.widgets.form import ParameterForm
from comfy_widgets.workflow.workflow import Workflow

server = sim.serve(seconds_per_step=0.01)
client = connect(server.url, store=False)
form = ParameterForm(Workflow.load(examples.path("sd15_txt2img")), client)
form
"""

ADVANCED = """\
other = ParameterForm(Workflow.load({path!r}))  # has an Advanced fold
other
"""
BOX = "el => { const r = el.getBoundingClientRect(); return [r.left, r.right, r.width]; }"


def test_form_layout_and_batch_panel(lab_server, page, artifacts):
    notebook = "polish/form_polish.ipynb"
    refiner = str(WORKFLOWS / "ui" / "sdxl_base_refiner.json")
    write_notebook(lab_server.root_dir / notebook, [SETUP, ADVANCED.format(path=refiner)])
    open_notebook(page, lab_server, notebook)
    page.set_viewport_size({"width": 1280, "height": 2400})
    run_cell(page, 0)
    hide_sidebar(page)
    form = page.locator(".cw-form").first
    form.wait_for()

    dice = form.locator(".cw-seed-randomize")
    assert "🎲" not in dice.inner_text()
    icon = dice.locator("i.fa-dice")
    assert icon.evaluate("i => getComputedStyle(i, '::before').content") == '"\uf522"'
    assert icon.evaluate("i => i.getBoundingClientRect().width") > 8, "the icon font is drawn"

    form.locator(".cw-run").click()
    progress = form.locator(".cw-progress[data-status='completed']")
    progress.wait_for(timeout=60_000)
    chips = progress.locator(".cw-chip").all_inner_texts()
    prompts = [c for c in chips if "CLIP Text Encode" in c]
    assert len(prompts) == 2 and len(set(prompts)) == 2, chips
    assert all("#" in c for c in prompts), "repeated titles carry their node id"

    run_cell(page, 1)
    other = page.locator(".cw-form").nth(1)
    other.locator(".cw-form-advanced .jupyter-widget-Collapse-header").first.click()
    advanced = other.locator(".cw-form-advanced")
    row_box = other.locator(".cw-field .widget-hbox").first.evaluate(BOX)
    advanced_box = advanced.evaluate(BOX)
    assert advanced_box[1] <= row_box[1] + 1, f"Advanced {advanced_box} wider than {row_box}"
    inner = advanced.locator(".cw-field .widget-hbox").first.evaluate(BOX)
    assert inner[1] <= advanced_box[1], "the fields inside stay inside the fold"
    advanced.screenshot(path=artifacts / "form-advanced-light.png")

    row = form.locator(".cw-field").first

    form.locator(".cw-batch").click()
    panel = form.locator(".cw-batch-panel")
    panel.wait_for()
    assert form.locator(".cw-form-output .cw-progress").is_visible(), "the last run stays"
    field_label = row.locator(".widget-html").first.evaluate(BOX)
    for label in panel.locator(".cw-batch-label").all():
        box = label.evaluate(BOX)
        assert abs(box[0] - field_label[0]) <= 1 and abs(box[2] - field_label[2]) <= 1, box

    panel.locator("button", has_text="Run batch").click()  # 4 items, random seeds
    page.wait_for_function(
        "() => document.querySelectorAll('.cw-batch-panel .cw-batch-card.cw-item-completed')"
        ".length === 4",
        timeout=60_000,
    )
    labels = panel.locator(".cw-batch-card-label")
    for label in labels.all():
        assert label.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
        assert "seed:" in label.inner_text()
    seeds = [t.split("seed:")[1].strip() for t in labels.all_inner_texts()]
    assert all(len(s) >= 6 and s.isdigit() for s in seeds), seeds
    assert cell_errors(page) == []
    assert widget_failures(page) == []

    form.scroll_into_view_if_needed()
    for theme, name in ((LIGHT, "light"), (DARK, "dark")):
        set_theme(page, theme)
        form.screenshot(path=artifacts / f"form-polish-{name}.png")
