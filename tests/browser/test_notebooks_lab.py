"""Every notebook in real JupyterLab: run all, interact with its widgets, save (with widget state),
screenshot in light and dark theme, then export to HTML and check the results show offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter

from tests.browser.jlab import (
    DARK,
    LIGHT,
    cell_errors,
    hide_sidebar,
    open_notebook,
    run_all,
    run_cell,
    save_notebook,
    set_theme,
    widget_failures,
)

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
VISIBLE_IMAGES = """() => [...document.images].filter(
    img => img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 0).length"""


@pytest.fixture(scope="module")
def lab_notebooks(lab_server) -> Path:
    """The repository's notebooks copied into the server's root (runs never touch the repo)."""
    target = lab_server.root_dir / "notebooks"
    target.mkdir(exist_ok=True)
    for path in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(path, target)
    return target


def _last_code_cell(page) -> int:
    return page.evaluate(
        "() => { const cells = window.jupyterapp.shell.currentWidget.content.widgets;"
        " let last = -1; cells.forEach((c, i) => { if (c.model.type === 'code') last = i; });"
        " return last; }"
    )


def interact_quickstart(page):
    """Set steps to 8 in the form, press Run, wait for the image; then the last cell awaits it."""
    form = page.locator(".cw-form").first
    steps = form.locator(".cw-field-number").filter(has_text="Steps").locator("input")
    steps.fill("8")
    steps.press("Enter")
    form.locator(".cw-run").click()
    page.wait_for_selector(
        ".cw-form .cw-progress[data-status='completed'] img.cw-thumb", timeout=60_000
    )
    assert form.locator(".cw-progress .cw-pct").inner_text() == "100 %"
    last = _last_code_cell(page)
    run_cell(page, last)
    output = page.locator(".jp-Notebook .jp-Cell").nth(last).locator(".jp-OutputArea-output")
    history = output.locator("tbody tr")
    assert history.count() == 2, "the code run and the form run are both on record"
    return form.locator(".cw-progress")


def shown_grid(page):
    """The first ResultGrid, scrolled into view with its thumbnails rendered."""
    grid = page.locator(".cw-grid").first
    grid.locator(".cw-grid-thumb").first.wait_for(state="attached", timeout=60_000)
    grid.scroll_into_view_if_needed()
    grid.locator(".cw-grid-thumb").first.wait_for()
    return grid


def interact_sweep(page):
    """The 20-image grid: open one image at full size (a round trip to the kernel)."""
    grid = shown_grid(page)
    assert grid.locator(".cw-grid-thumb").count() == 20
    assert grid.locator(".cw-grid-xlabel").all_inner_texts() == [f"cfg: {v}" for v in (4, 6, 8, 10)]
    grid.locator(".cw-grid-thumb").first.click()
    page.wait_for_selector(".cw-grid-viewer .cw-grid-full img", timeout=30_000)
    page.keyboard.press("Escape")  # closes the full view
    page.wait_for_selector(".cw-grid-viewer", state="hidden", timeout=10_000)
    grid.locator(".cw-grid-thumb").first.click()  # open again for the screenshot
    page.wait_for_selector(".cw-grid-viewer .cw-grid-full img", timeout=30_000)
    return grid


def interact_compare(page):
    """The two-batch grid: pick two images and compare them (difference view)."""
    grid = shown_grid(page)
    assert grid.locator(".cw-grid-thumb").count() == 8
    picks = grid.locator(".cw-grid-pick")
    picks.nth(0).check()
    picks.nth(4).check()
    grid.locator(".cw-grid-compare").click()
    page.wait_for_selector(".cw-grid-compare-view img", timeout=30_000)
    assert grid.locator(".cw-grid-compare-view img").count() == 3
    return grid


CASES = {
    "01_quickstart.ipynb": (interact_quickstart, 2),
    "02_parameter_sweep.ipynb": (interact_sweep, 20),
    "03_compare_batches.ipynb": (interact_compare, 8),
}


def export_html(notebook: Path, target: Path) -> Path:
    """nbconvert's HTML export of a saved notebook (no kernel involved)."""
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    target.write_text(body, encoding="utf-8")
    return target


def offline_images(browser, html: Path) -> tuple[int, list[str]]:
    """Open the export with every non-file request refused; count the images that rendered."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked: list[str] = []

    def refuse(route):
        blocked.append(route.request.url)
        route.abort()

    page.route("http*://**/*", refuse)
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    count = page.evaluate(VISIBLE_IMAGES)
    context.close()
    return count, blocked


@pytest.mark.parametrize("name", list(CASES))
def test_notebook_runs_in_jupyterlab_and_exports(
    name, lab_server, lab_notebooks, page, chromium, artifacts
):
    interact, min_images = CASES[name]
    stem = Path(name).stem
    path = lab_notebooks / name
    open_notebook(page, lab_server, f"notebooks/{name}")
    hide_sidebar(page)
    run_all(page, timeout=300)
    assert cell_errors(page) == []
    assert widget_failures(page) == []
    focus = interact(page)
    assert cell_errors(page) == []

    saved = save_notebook(page, path)
    state = saved["metadata"]["widgets"][WIDGET_STATE]["state"]
    assert any("_anywidget_id" in m["state"] for m in state.values()), "anywidget state saved"

    page.set_viewport_size({"width": 1280, "height": 1400})
    focus.scroll_into_view_if_needed()
    for theme, label in ((LIGHT, "light"), (DARK, "dark")):
        set_theme(page, theme)
        page.screenshot(path=artifacts / f"{stem}-{label}.png")
    set_theme(page, LIGHT)

    html = export_html(path, artifacts / f"{stem}.html")
    images, blocked = offline_images(chromium, html)
    mb = 1e6
    print(
        f"\n{name}: saved {path.stat().st_size / mb:.2f} MB, HTML {html.stat().st_size / mb:.2f}"
        f" MB, {images} images visible offline, {len(blocked)} network requests refused,"
        f" {len(state)} widget models saved"
    )
    assert images >= min_images, "the static fallbacks carry the results without network"
