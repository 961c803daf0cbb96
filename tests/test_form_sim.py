"""ParameterForm against the simulated ComfyUI server: real workflow, real client, real job."""

from __future__ import annotations

import json

import ipywidgets as w
import pytest

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.widgets.fields import SeedField, SelectField
from comfy_widgets.widgets.form import ParameterForm
from comfy_widgets.widgets.progress import ProgressView
from comfy_widgets.workflow.workflow import Workflow
from tests.conftest import until
from tests.shared_data import WORKFLOWS

UI = str(WORKFLOWS / "ui/sd15_txt2img_default.json")
API = str(WORKFLOWS / "api/sd15_txt2img_api.json")


@pytest.fixture
async def client():
    server = await sim.start(seconds_per_step=0.005)
    c = connect(server.url)
    yield c
    await c.aclose()
    await server.astop()


async def test_form_for_a_real_ui_workflow_builds_the_right_widgets():
    form = ParameterForm(Workflow.load(UI))
    f = form.fields
    assert isinstance(f["seed"], SeedField) and f["seed"].mode.value == "randomize"
    assert isinstance(f["prompt"].control, w.Textarea)
    assert isinstance(f["negative_prompt"].control, w.Textarea)
    assert isinstance(f["width"].control, w.BoundedIntText)
    assert (f["width"].control.min, f["width"].control.step) == (16, 8)
    assert isinstance(f["sampler_name"], SelectField)
    assert len(f["sampler_name"].control.options) > 10
    assert form.values["prompt"].startswith("beautiful scenery")
    assert form.values["seed"] == 685468484323813


async def test_server_lists_fill_dropdowns_and_run_completes(client):
    wf = Workflow.load(UI)
    form = ParameterForm(wf, client)
    await until(lambda: form.workflow is not wf)
    options = [v for _, v in form.fields["ckpt_name"].control.options]
    assert "v1-5-pruned-emaonly-fp16.safetensors" in options and len(options) > 1
    form.set_values({"steps": 3, "prompt": "a lighthouse at dusk"})
    seed_before = form.values["seed"]
    job = form.run()
    result = await job
    assert result.status == "completed" and result.images
    assert job.parameters["steps"] == 3 and job.parameters["prompt"] == "a lighthouse at dusk"
    assert form.values["seed"] != seed_before  # control-after-generate: randomize
    view = form.output.children[0]
    assert isinstance(view, ProgressView)
    await until(lambda: view.status == "completed" and view.thumbnails)
    assert view.progress == 100.0


async def test_our_validation_error_lands_on_the_seed_and_nothing_is_queued(client):
    form = ParameterForm(Workflow.load(UI), client)
    form.fields["seed"].control.value = "not a number"
    assert form.run() is None
    assert "nothing was queued" in form.message.value
    assert form.fields["seed"].error.layout.display == "block"
    assert form.fields["steps"].error.value == ""
    queue = await client.get_queue()
    assert queue["queue_running"] == [] and queue["queue_pending"] == []
    assert await client.get_history() == {}


async def test_server_node_error_lands_on_the_checkpoint_field(client):
    source = json.load(open(API))
    source["4"]["inputs"]["ckpt_name"] = "missing_model.safetensors"
    form = ParameterForm(Workflow.load(source, name="missing_ckpt"))  # bundled lists only
    form.client = client
    job = form.run()
    with pytest.raises(Exception, match="validation"):
        await job
    await until(lambda: form.fields["ckpt_name"].error.value != "")
    assert "missing_model.safetensors" in form.fields["ckpt_name"].error.value
    assert form.fields["steps"].error.value == ""
    assert await client.get_history() == {}


async def test_last_used_values_return_when_the_workflow_is_loaded_again(client):
    wf = Workflow.load(UI)
    form = ParameterForm(wf, client)
    await until(lambda: form.workflow is not wf)
    server_only = "dreamshaper_8.safetensors"  # on the simulator, not in the bundled lists
    assert not form.set_values(
        {"steps": 4, "prompt": "remember me", "sampler_name": "dpmpp_2m", "ckpt_name": server_only}
    )
    await form.run()
    again = ParameterForm(Workflow.load(UI))
    assert again.values["steps"] == 4
    assert again.values["prompt"] == "remember me"
    assert again.values["sampler_name"] == "dpmpp_2m"
    assert again.values["ckpt_name"] == "v1-5-pruned-emaonly-fp16.safetensors"
    connected = ParameterForm(Workflow.load(UI), client)
    await until(lambda: connected.values["ckpt_name"] == server_only)
    other = ParameterForm(Workflow.load(str(WORKFLOWS / "ui/sd15_img2img.json")))
    assert other.values["steps"] == 15


async def test_batch_button_opens_the_batch_panel_below_the_form():
    from comfy_widgets.widgets.batch_panel import BatchPanel

    form = ParameterForm(Workflow.load(UI))
    form.batch_button.click()
    (panel,) = form.panel_area.children
    assert isinstance(panel, BatchPanel) and panel.form is form
    assert form.children.index(form.panel_area) < form.children.index(form.output)
    form.batch_button.click()
    assert form.panel_area.children == (), "a second press closes the panel"
    form.batch_button.click()
    assert form.panel_area.children == (panel,), "and it opens again as it was left"


async def test_picked_image_is_uploaded_on_run(client):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buf, format="PNG")
    wf = Workflow.load(str(WORKFLOWS / "ui/sd15_img2img.json"))
    form = ParameterForm(wf, client)
    await until(lambda: form.workflow is not wf)
    form.fields["image"].set_value(buf.getvalue())
    form.set_values({"steps": 2})
    job = form.run()
    result = await job
    assert result.status == "completed"
    uploaded = job.prompt["10"]["inputs"]["image"]
    assert uploaded != "image2image_input_image.jpg"
    assert await client.view(uploaded, type="input") == buf.getvalue()
