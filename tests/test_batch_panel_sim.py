"""Form → BatchPanel → Batch against the simulator: the view follows it, the grid shows it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.examples import __file__ as examples_init
from comfy_widgets.widgets.batch_view import BatchView
from comfy_widgets.widgets.form import ParameterForm
from comfy_widgets.widgets.grid import ResultGrid
from comfy_widgets.workflow.workflow import Workflow
from tests.conftest import until

WORKFLOW_PATH = __import__("pathlib").Path(examples_init).parent / "sd15_txt2img_api.json"
SMALL = {"width": 64, "height": 64, "steps": 3}


@pytest.fixture
async def client():
    server = await sim.start(seconds_per_step=0.0, previews=False)
    c = connect(server.url)
    yield c
    await c.aclose()
    await server.astop()


async def test_batch_button_to_result_grid(client, tmp_path):
    form = ParameterForm(Workflow.load(WORKFLOW_PATH), client)
    form.set_values(SMALL)
    panel = form.open_batch()
    panel.count.value = 2
    panel.prompts.value = "a red fox\na blue owl"
    row = panel.add_sweep("cfg")
    row.start.value, row.stop.value, row.step.value = 5.0, 6.0, 1.0
    planned = panel.plan().to_frame()
    panel.run_button.click()
    batch = panel.batch
    assert batch.total == 8 and batch.plan.equals(planned)  # the preview was the real plan
    df = await batch
    assert isinstance(panel.view, BatchView) and panel.view.batch is batch
    await until(lambda: not panel.view._throttle.pending, timeout=20.0)
    view = panel.view
    assert view.statuses == ["completed"] * 8 and view.completed == 8
    assert view.progress == [100.0] * 8
    await until(lambda: len(panel.results.children) == 2, timeout=20.0)
    grid = panel.results.children[1]
    assert isinstance(grid, ResultGrid) and grid.total == 8
    assert (grid.x, grid.y) == ("prompt", "cfg")
    assert all(c["src"].startswith("data:image/jpeg;base64,") for c in grid.cells)
    assert sorted(c["row"] for c in grid.cells) == list(range(8))
    assert set(df["prompt"]) == {"a red fox", "a blue owl"}


async def test_grid_of_real_results_compares_and_saves(client, tmp_path):
    workflow = Workflow.load(WORKFLOW_PATH)
    batch = client.batch(workflow, count=2, seed=3, prompt=["a red fox", "a blue owl"], **SMALL)
    df = await batch
    grid = ResultGrid(df, x="prompt")
    diff, changed = grid.diff_image(0, 1)
    assert diff.size == (64, 64) and 0 < changed <= 1
    data, mime = grid.full(1)
    assert mime == "image/png" and data == df["image"].iat[1].load()
    path = await asyncio.to_thread(grid.save, tmp_path / "grid.png")
    from PIL import Image

    with Image.open(path) as sheet:
        assert sheet.width > 2 * 64 and sheet.height > 64


async def test_stop_remaining_from_a_callback_thread(client):
    workflow = Workflow.load(WORKFLOW_PATH)
    batch = client.batch(workflow, count=12, seed="random", concurrency=2, **SMALL)
    view = BatchView(batch)
    await until(lambda: batch.completed_count >= 1, timeout=20.0)
    clicker = threading.Thread(target=view._on_msg, args=(view, {"type": "stop"}, []))
    clicker.start()
    clicker.join()
    df = await batch
    await until(lambda: not view._throttle.pending, timeout=20.0)
    assert view.stopping and batch.status == "cancelled"
    assert view.statuses == list(df["status"])
    assert view.statuses.count("completed") < 12 and "cancelled" in view.statuses
    assert view.completed == batch.completed_count
