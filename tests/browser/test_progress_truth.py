"""Issue 15 in a real browser: mid-run, the ProgressView shows the step counter of the running
sampler, an ETA and a percent below 100; the batch view names the running item's step."""

from __future__ import annotations

import re

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
from comfy_widgets import examples, sim
from comfy_widgets.engine.client import connect
from comfy_widgets.workflow.workflow import Workflow

server = sim.serve(seconds_per_step=0.3)
client = connect(server.url, store=False)
wf = Workflow.load(examples.path("sd15_txt2img"))
job = client.run(wf, steps=20, width=64, height=64)
job
"""
BATCH = """\
batch = client.batch(wf, count=2, seed=("increment", 1), steps=20, width=64, height=64)
batch
"""


def test_mid_run_progress_shows_step_eta_and_no_early_100(lab_server, page, artifacts):
    notebook = "issue15/progress_truth.ipynb"
    write_notebook(lab_server.root_dir / notebook, [SETUP, BATCH])
    open_notebook(page, lab_server, notebook)
    run_cell(page, 0)
    hide_sidebar(page)
    progress = page.locator(".cw-progress").first
    progress.wait_for(timeout=60_000)
    detail = progress.locator(".cw-detail")
    page.wait_for_function(
        """() => /step ([5-9]|1[0-5])\\/20/.test(
            document.querySelector('.cw-progress .cw-detail')?.textContent || '')""",
        timeout=60_000,
    )
    text = detail.inner_text()
    step = int(re.search(r"step (\d+)/20", text).group(1))
    pct = int(progress.locator(".cw-pct").inner_text().split()[0])
    assert abs(pct - 100 * step / 20) <= 10, (pct, step)
    clock = progress.locator(".cw-clock").inner_text()
    assert re.search(r"ETA \d+s", clock), clock
    progress.screenshot(path=artifacts / "issue15-progress-mid-run.png")

    page.wait_for_selector(".cw-progress[data-status='completed']", timeout=60_000)
    assert progress.locator(".cw-pct").inner_text() == "100 %"

    run_cell(page, 1)
    summary = page.locator(".cw-batch").first
    summary.wait_for(timeout=60_000)
    page.wait_for_function(
        """() => /#\\d step \\d+\\/20/.test(
            document.querySelector('.cw-batch')?.textContent || '')""",
        timeout=60_000,
    )
    summary.screenshot(path=artifacts / "issue15-batch-mid-run.png")
    assert cell_errors(page) == []
    assert widget_failures(page) == []
