"""Issue 4 in a real browser: the ParameterForm's Run button drives a job whose ProgressView
reaches 100 % and shows the image, in JupyterLab with headless Chromium, light and dark theme."""

from __future__ import annotations

import pytest

from tests.browser.jlab import (
    DARK,
    LIGHT,
    CommRecorder,
    cell_errors,
    hide_sidebar,
    open_notebook,
    run_cell,
    set_theme,
    widget_failures,
    write_notebook,
)

pytestmark = pytest.mark.browser

SETUP = """\
from comfy_widgets import examples, sim
from comfy_widgets.engine.client import connect
from comfy_widgets.widgets.form import ParameterForm
from comfy_widgets.workflow.workflow import Workflow

server = sim.serve(seconds_per_step=0.05)
client = connect(server.url, store=False)  # this test is about the views, not the record
form = ParameterForm(Workflow.load(examples.path("sd15_txt2img")), client)
form
"""
CHECK = """\
job = form.last_job
print("job", job.state, int(job.progress), len(job.images), "steps", form.values["steps"])
"""

LUMINANCE = """(sel) => {
    const [r, g, b] = getComputedStyle(document.querySelector(sel)).color
        .match(/\\d+/g).map(Number);
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
}"""


def test_run_button_shows_progress_to_100_percent_and_the_image(lab_server, page, artifacts):
    notebook = "issue4/form_progress.ipynb"
    write_notebook(lab_server.root_dir / notebook, [SETUP, CHECK])
    comms = CommRecorder(page)
    open_notebook(page, lab_server, notebook)
    run_cell(page, 0)
    hide_sidebar(page)

    form = page.locator(".cw-form")
    form.wait_for()
    assert form.locator("textarea").first.input_value().startswith("beautiful scenery")
    steps_before = len(comms.messages)
    form.locator(".cw-run").click()

    progress = page.locator(".cw-form .cw-progress")
    progress.wait_for(timeout=30_000)
    page.wait_for_selector(".cw-form .cw-progress[data-status='completed']", timeout=60_000)
    assert progress.locator(".cw-pct").inner_text() == "100 %"
    assert progress.locator(".cw-badge").text_content() == "completed"
    thumb = progress.locator("img.cw-thumb").first
    thumb.wait_for()
    assert thumb.evaluate("img => img.complete && img.naturalWidth") > 0
    chips = progress.locator(".cw-chip")
    assert chips.count() >= 6
    assert all(
        s in ("done", "cached") for s in chips.evaluate_all("els => els.map(e => e.dataset.state)")
    )

    progress_comms = comms.comm_ids("ProgressView")
    assert len(progress_comms) == 1, "the click opened exactly one ProgressView"
    updates = comms.updates(progress_comms)
    assert updates, "the progress view received updates"
    print(
        f"\ncomm messages to the ProgressView for one 20-step run: {len(updates)} "
        f"(all widget comm messages after the click: {len(comms.messages) - steps_before})"
    )

    run_cell(page, 1)
    assert "job completed 100 1 steps 20" in page.locator(".jp-CodeCell").nth(1).inner_text()
    assert cell_errors(page) == []
    assert widget_failures(page) == []

    page.set_viewport_size({"width": 1280, "height": 2000})  # the whole form fits on screen
    form.scroll_into_view_if_needed()
    shots = {}
    for theme in (LIGHT, DARK):
        set_theme(page, theme)
        name = "light" if theme == LIGHT else "dark"
        form.screenshot(path=artifacts / f"issue4-form-{name}.png")
        progress.screenshot(path=artifacts / f"issue4-progress-{name}.png")
        shots[name] = page.evaluate(LUMINANCE, ".cw-form .cw-progress .cw-pct")
    assert shots["light"] < 0.5 < shots["dark"], "the text follows the theme (--jp-* colours)"
