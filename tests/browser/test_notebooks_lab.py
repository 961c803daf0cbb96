"""Every notebook in real JupyterLab: run all, interact with its widgets, save (with widget state),
screenshot in light and dark theme; export it with `jupyter nbconvert --to html` and open the
HTML offline: every widget's static twin shows its images and status; reopen the saved notebook
with a fresh kernel: the twins again, and no dead control or widget error anywhere."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
JUPYTER = Path(sys.executable).with_name("jupyter")
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


# Per notebook: the interaction, the images visible offline at least, and each static twin in
# document order as (images in it, a text its status shows).
CASES = {
    "01_quickstart.ipynb": (
        interact_quickstart,
        2,
        [(1, "completed"), (1, "completed"), (0, "not run yet")],  # form, job, %comfy_form
    ),
    "02_parameter_sweep.ipynb": (
        interact_sweep,
        20,
        [(20, "completed: 20 completed, 0 failed of 20"), (1, "20 results"), (1, "3 results")],
    ),
    "03_compare_batches.ipynb": (interact_compare, 8, [(1, "8 results")]),
}

TWINS = """() => [...document.querySelectorAll('.cw-twin')].map(twin => {
    const box = twin.getBoundingClientRect();
    const images = [...twin.querySelectorAll('img')];
    return {
        visible: box.width > 0 && box.height > 0,
        text: twin.textContent,
        images: images.length,
        decoded: images.filter(img => img.complete && img.naturalWidth > 0
            && img.getBoundingClientRect().width > 0).length,
    };
})"""
DEAD_WIDGETS = """() => [...document.querySelectorAll('.jupyter-widgets-disconnected')]
    .filter(el => el.getBoundingClientRect().width > 0).length"""


def export_html(notebook: Path, target: Path) -> Path:
    """`jupyter nbconvert --to html` of a saved notebook, as a user runs it (no kernel)."""
    subprocess.run(
        [
            str(JUPYTER),
            "nbconvert",
            "--to",
            "html",
            str(notebook),
            "--output-dir",
            str(target.parent),
            "--output",
            target.stem,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


def offline_page(browser, html: Path):
    """The export opened from a file:// URL with every other request refused."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.blocked = []

    def refuse(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            page.blocked.append(route.request.url)
            route.abort()

    page.route("**/*", refuse)
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    return page


def scroll_through(page) -> None:
    """Bring every twin on screen once (lazy layout and decoding), then back to the top."""
    page.evaluate(
        "async () => { for (const t of document.querySelectorAll('.cw-twin')) {"
        " t.scrollIntoView(); await new Promise(r => requestAnimationFrame(r)); } }"
    )


def check_twins(page, expected: list[tuple[int, str]], where: str) -> list[dict]:
    """Every twin visible, with its images decoded and its status text, as expected."""
    scroll_through(page)
    twins = page.evaluate(TWINS)
    assert len(twins) == len(expected), f"{where}: {len(twins)} twins, {twins}"
    for i, (twin, (images, text)) in enumerate(zip(twins, expected, strict=True)):
        assert twin["visible"], f"{where}: twin {i} is hidden"
        assert twin["images"] == twin["decoded"] >= images, f"{where}: twin {i}: {twin}"
        assert text in twin["text"], f"{where}: twin {i} lacks {text!r}: {twin['text'][:300]}"
    return twins


def assert_no_dead_widgets(page, where: str) -> None:
    text = page.inner_text("body")
    assert page.evaluate(DEAD_WIDGETS) == 0, f"{where}: a disconnected control is on show"
    for message in ("Error displaying widget", "Loading widget", "disconnected"):
        assert message not in text, f"{where}: {message!r} on the page"


@pytest.mark.parametrize("name", list(CASES))
def test_notebook_runs_in_jupyterlab_and_exports(
    name, lab_server, lab_notebooks, page, chromium, artifacts
):
    interact, min_images, twins = CASES[name]
    stem = Path(name).stem
    path = lab_notebooks / name
    open_notebook(page, lab_server, f"notebooks/{name}")
    hide_sidebar(page)
    run_all(page, timeout=300)
    assert cell_errors(page) == []
    assert widget_failures(page) == []
    focus = interact(page)
    assert cell_errors(page) == []
    live_twins = page.evaluate(TWINS)
    assert len(live_twins) == len(twins)
    assert not any(t["visible"] for t in live_twins), "twins stay hidden next to live widgets"

    saved = save_notebook(page, path)
    saved_size = path.stat().st_size
    state = saved["metadata"]["widgets"][WIDGET_STATE]["state"]
    assert any("_anywidget_id" in m["state"] for m in state.values()), "anywidget state saved"

    page.set_viewport_size({"width": 1280, "height": 1400})
    focus.scroll_into_view_if_needed()
    for theme, label in ((LIGHT, "light"), (DARK, "dark")):
        set_theme(page, theme)
        page.screenshot(path=artifacts / f"{stem}-{label}.png")
    set_theme(page, LIGHT)

    html = export_html(path, artifacts / f"{stem}.html")
    offline = offline_page(chromium, html)
    shown = check_twins(offline, twins, f"{name} exported")
    images = offline.evaluate(VISIBLE_IMAGES)
    assert images >= min_images, "the static twins carry the results without network"
    assert_no_dead_widgets(offline, f"{name} exported")
    offline.evaluate("() => window.scrollTo(0, 0)")
    offline.screenshot(path=artifacts / f"{stem}-export-offline.png", full_page=True)
    blocked = offline.blocked
    offline.context.close()

    reopened = reopen_with_fresh_kernel(page, lab_server, f"notebooks/{name}")
    check_twins(reopened, twins, f"{name} reopened")
    assert_no_dead_widgets(reopened, f"{name} reopened")
    reopened.evaluate("() => document.querySelector('.cw-twin').scrollIntoView()")
    reopened.screenshot(path=artifacts / f"{stem}-reopened.png")
    set_theme(reopened, DARK)
    reopened.screenshot(path=artifacts / f"{stem}-reopened-dark.png")
    set_theme(reopened, LIGHT)

    # Saved again without running: the manager keeps only live models, so the file loses the
    # widget state and every widget output says "Error displaying widget" -- behind its twin.
    resaved = save_notebook(reopened, path)
    assert not resaved["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state")
    again = reopen_with_fresh_kernel(reopened, lab_server, f"notebooks/{name}")
    check_twins(again, twins, f"{name} saved again and reopened")
    assert_no_dead_widgets(again, f"{name} saved again and reopened")

    mb = 1e6
    print(
        f"\n{name}: saved {saved_size / mb:.2f} MB, HTML {html.stat().st_size / mb:.2f}"
        f" MB, {images} images visible offline in {len(shown)} twins, {len(blocked)} network"
        f" requests refused, {len(state)} widget models saved"
    )


def reopen_with_fresh_kernel(page, server, notebook: str):
    """Stop the notebook's kernel, open the saved file again (a new kernel starts) and wait until
    the widget manager has restored what the file saved."""
    page.goto("about:blank")
    server.shutdown_kernels()
    open_notebook(page, server, notebook)
    hide_sidebar(page)
    page.wait_for_function(
        "() => ![...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some(o => o.innerText.includes('Loading widget'))",
        timeout=60_000,
    )
    page.wait_for_timeout(1000)  # the manager restores models after the kernel connects
    return page
