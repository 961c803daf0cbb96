"""One browser test per JS module (js/progress.js, js/batch.js, js/grid.js): each widget is shown
in real JupyterLab, through the public API only, and its rendered DOM is checked (bar widths,
percent text, card count and states, decoded images), not just its presence.

The three widgets share one notebook and one kernel (module-scoped page), which keeps the suite
short: the first cell starts the simulator, the others each display one widget.
"""

from __future__ import annotations

import pytest

from tests.browser.jlab import (
    cell_errors,
    hide_sidebar,
    open_notebook,
    run_cell,
    widget_failures,
    write_notebook,
)

pytestmark = pytest.mark.browser

SETUP = """\
import comfy_widgets as cw

server = cw.sim.serve(seconds_per_step=0.01)
client = cw.connect(server.url, store=False)
wf = cw.Workflow.load(cw.examples.path("sd15_txt2img"))
"""
PROGRESS = """\
job = client.run(wf, steps=5, seed=1)
await job
cw.ProgressView(job)
"""
BATCH = """\
batch = client.batch(wf, cfg=[5, 6, 7], steps=3, seed="increment")
df = await batch
cw.BatchView(batch)
"""
GRID = """\
grid_batch = client.batch(wf, cfg=[4, 5, 6, 7], steps=3, seed=7)
frame = await grid_batch
assert len(frame) == 4
cw.ResultGrid(frame, x="cfg")
"""
CELLS = [SETUP, PROGRESS, BATCH, GRID]

DECODED = "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"


@pytest.fixture(scope="module")
def widgets_page(chromium, lab_server):
    """The notebook of the three widgets, every cell run, on one page for this module."""
    notebook = "widget_modules/widgets.ipynb"
    write_notebook(lab_server.root_dir / notebook, CELLS)
    context = chromium.new_context(viewport={"width": 1280, "height": 2400})
    page = context.new_page()
    open_notebook(page, lab_server, notebook)
    hide_sidebar(page)
    for index in range(len(CELLS)):
        run_cell(page, index)
    assert cell_errors(page) == []
    yield page
    context.close()
    lab_server.shutdown_kernels()


def output_of(page, index: int):
    """The output area of code cell ``index``."""
    return page.locator(".jp-CodeCell").nth(index).locator(".jp-OutputArea-output")


def test_progress_js_shows_a_finished_job(widgets_page):
    view = output_of(widgets_page, 1).locator(".cw-progress")
    view.wait_for(timeout=30_000)
    assert view.get_attribute("data-status") == "completed"
    assert view.locator(".cw-pct").inner_text() == "100 %"
    assert view.locator(".cw-bar-fill").evaluate("e => e.style.width") == "100%"
    assert view.locator(".cw-badge").text_content() == "completed"
    chips = view.locator(".cw-chip")
    assert chips.count() == 7, "one chip per node of sd15_txt2img"
    thumb = view.locator("img.cw-thumb").first
    thumb.wait_for(timeout=30_000)
    widgets_page.wait_for_function("img => img.complete", arg=thumb.element_handle())
    assert thumb.evaluate("img => img.naturalWidth") > 0
    assert widget_failures(widgets_page) == []


def test_batch_js_shows_one_card_per_item(widgets_page):
    view = output_of(widgets_page, 2).locator(".cw-batch")
    view.wait_for(timeout=30_000)
    cards = view.locator(".cw-batch-card")
    assert cards.count() == 3
    assert (
        cards.evaluate_all("cs => cs.map(c => c.className)")
        == ["cw-batch-card cw-item-completed"] * 3
    )
    assert cards.locator(".cw-batch-card-status").all_inner_texts() == [
        f"#{i} completed" for i in range(3)
    ]
    assert view.locator(".cw-batch-counts").inner_text() == "3/3 completed"
    assert view.locator(".cw-batch-bar-fill").evaluate("e => e.style.width") == "100%"
    assert view.locator(".cw-batch-stop").is_disabled()
    images = view.locator(".cw-batch-thumb img")
    widgets_page.wait_for_function(
        "root => [...root.querySelectorAll('.cw-batch-thumb img')]"
        ".every(i => !i.hidden && i.complete && i.naturalWidth > 0)",
        arg=view.element_handle(),
        timeout=30_000,
    )
    assert images.evaluate_all(DECODED) == [True] * 3


def test_grid_js_lays_out_four_decoded_images(widgets_page):
    grid = output_of(widgets_page, 3).locator(".cw-grid")
    grid.wait_for(timeout=30_000)
    assert grid.locator(".cw-grid-xlabel").all_inner_texts() == [f"cfg: {v}" for v in (4, 5, 6, 7)]
    thumbs = grid.locator("img.cw-grid-thumb")
    assert thumbs.count() == 4
    thumbs.first.scroll_into_view_if_needed()
    widgets_page.wait_for_function(
        "root => { const imgs = [...root.querySelectorAll('img.cw-grid-thumb')];"
        " return imgs.length === 4 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=grid.element_handle(),
        timeout=30_000,
    )
    assert thumbs.evaluate_all(DECODED) == [True] * 4
