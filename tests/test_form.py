"""ParameterForm with stand-in workflow/client objects: widgets per type, values, errors, memory."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import ipywidgets as w
import pytest

from comfy_widgets.errors import ParameterError, PromptValidationError
from comfy_widgets.records import NullRecorder
from comfy_widgets.records.sqlite import Store
from comfy_widgets.widgets.fields import ImageField, SeedField, SelectField
from comfy_widgets.widgets.form import ParameterForm, node_error_messages
from comfy_widgets.workflow.parameters import WorkflowParameter
from tests.shared_data import REFERENCE


def param(name: str, node_id: str, field: str, type: str, value: Any, **fields: Any):
    """A real WorkflowParameter, with the canonical key derived as the workflow core does."""
    return WorkflowParameter(
        name=name,
        key=f"{node_id}.{field}",
        node_id=node_id,
        field=field,
        label=fields.pop("label", ""),
        type=type,
        value=value,
        **fields,
    )


PARAMS = [
    param(
        "ckpt_name",
        "4",
        "ckpt_name",
        "select",
        "v1-5.safetensors",
        options=["a.safetensors", "b.safetensors"],
        node_title="Load Checkpoint",
        model_list="checkpoints",
    ),
    param(
        "seed",
        "3",
        "seed",
        "seed",
        156680208700286,
        min=0,
        max=2**64 - 1,
        node_title="KSampler",
        control_after_generate="increment",
    ),
    param(
        "steps",
        "3",
        "steps",
        "number",
        20,
        min=1,
        max=10000,
        step=1,
        is_integer=True,
        node_title="KSampler",
    ),
    param("cfg", "3", "cfg", "number", 8.0, min=0.0, max=100.0, step=0.1, node_title="KSampler"),
    param(
        "sampler_name",
        "3",
        "sampler_name",
        "select",
        "euler",
        options=["euler", "dpmpp_2m"],
        node_title="KSampler",
    ),
    param(
        "denoise", "3", "denoise", "number", 1.0, min=0.0, max=1.0, step=0.01, node_title="KSampler"
    ),
    param(
        "negative_prompt", "7", "text", "string", "blurry", multiline=True, node_title="Negative"
    ),
    param("prompt", "6", "text", "string", "a castle", multiline=True, node_title="Positive"),
    param("image", "10", "image", "image", "example.png", node_title="Load Image"),
    param("10.upload", "10", "upload", "boolean", True, node_title="Load Image", advanced=True),
    param(
        "5.batch_size",
        "5",
        "batch_size",
        "number",
        1,
        min=1,
        max=4096,
        step=1,
        is_integer=True,
        node_title="Empty Latent",
        advanced=True,
    ),
]


@dataclass
class FakeWorkflow:
    """Workflow surface the form uses: parameters(), name/source/format/content_hash."""

    params: list[WorkflowParameter] = field(default_factory=lambda: list(PARAMS))
    name: str = "fake"
    format: str = "api"

    @property
    def source(self) -> dict:
        return {p.key: p.value for p in self.params}

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.source, sort_keys=True).encode()).hexdigest()

    def parameters(self) -> list[WorkflowParameter]:
        return [replace(p) for p in self.params]


class FakeJob:
    def __init__(self):
        self.state = "queued"
        self.error = None
        self.callbacks = []
        self.prompt_id = "job-1"
        self.nodes = {}
        self.outputs = []
        self.timings = {}
        self.progress = 0.0

    def subscribe(self, cb):
        self.callbacks.append(cb)
        return lambda: None

    def emit(self):
        for cb in self.callbacks:
            cb(self)


class FakeClient:
    """Records run() calls; raises ``error`` instead when set. Records into the default store
    (the test's own home folder) unless given another Recorder."""

    def __init__(self, error: Exception | None = None, recorder: Any = None):
        self.calls: list[dict] = []
        self.error = error
        self.recorder = recorder if recorder is not None else Store.default()

    def run(self, workflow, values=None, /, **params):
        if self.error is not None:
            raise self.error
        self.calls.append(dict(values or {}))
        self.job = FakeJob()
        return self.job


def make(client=None) -> ParameterForm:
    form = ParameterForm(FakeWorkflow(), client=None)
    form.client = client
    return form


def test_each_parameter_type_gets_its_widget():
    form = make()
    f = form.fields
    assert isinstance(f["prompt"].control, w.Textarea)
    assert isinstance(f["negative_prompt"].control, w.Textarea)
    assert isinstance(f["steps"].control, w.BoundedIntText)
    assert (f["steps"].control.min, f["steps"].control.max) == (1, 10000)
    assert isinstance(f["cfg"].control, w.BoundedFloatText)
    assert f["cfg"].control.step == pytest.approx(0.1)
    assert isinstance(f["denoise"].control, w.FloatSlider)
    assert isinstance(f["sampler_name"], SelectField)
    assert isinstance(f["seed"], SeedField)
    assert f["seed"].mode.value == "increment"
    assert isinstance(f["image"], ImageField)
    assert isinstance(f["10.upload"].control, w.Checkbox)


def test_sections_put_prompts_first_and_advanced_in_a_fold():
    form = make()
    titles = [c.children[0].value for c in form.children if "cw-form-section" in c._dom_classes]
    assert titles[0].startswith("<b>Positive") and titles[1].startswith("<b>Negative")
    assert len(titles) == len(set(titles)) == len({p.node_id for p in PARAMS if not p.advanced})
    fold = [c for c in form.children if isinstance(c, w.Accordion)]
    assert len(fold) == 1 and fold[0].titles == ("Advanced",)
    inner = fold[0].children[0]
    advanced_fields = [b for s in inner.children for b in s.children[1:]]
    assert form.fields["5.batch_size"].box in advanced_fields


def test_current_value_stays_selectable_when_missing_from_the_list():
    form = make()
    dropdown = form.fields["ckpt_name"].control
    assert dropdown.value == "v1-5.safetensors"
    assert dropdown.label == "v1-5.safetensors (not in the server's list)"
    form.fields["ckpt_name"].set_options(["x.safetensors"])
    assert dropdown.value == "v1-5.safetensors"
    assert ("x.safetensors", "x.safetensors") in dropdown.options


def test_values_round_trip_and_observe_fires():
    form = make()
    seen = []
    form.observe(lambda change: seen.append(change["new"]), names="values")
    new = {
        "prompt": "a dragon",
        "steps": 30,
        "cfg": 6.5,
        "sampler_name": "dpmpp_2m",
        "seed": 2**63 + 5,
        "denoise": 0.5,
        "5.batch_size": 2,
    }
    form.set_values(new)
    for name, value in new.items():
        assert form.values[name] == value
    form.fields["steps"].control.value = 12
    assert seen and seen[-1]["steps"] == 12
    assert form.values["image"] == "example.png"


def test_out_of_range_value_is_not_forced_into_a_field():
    form = make()
    form.set_values({"steps": 0, "sampler_name": "not-a-sampler"})
    assert form.values["steps"] == 20
    assert form.values["sampler_name"] == "euler"


def test_run_sends_changed_values_and_applies_control_after_generate():
    client = FakeClient()
    form = make(client)
    form.set_values({"prompt": "a ship"})
    job = form.run()
    assert job is client.job
    assert client.calls == [{"prompt": "a ship"}]
    assert form.values["seed"] == 156680208700286 + 1
    assert form.output.children[0].__class__.__name__ == "ProgressView"


def test_randomize_button_picks_a_seed_in_range():
    form = make()
    seed = form.fields["seed"]
    seed.dice.click()
    assert 0 <= form.values["seed"] <= 2**50


def test_parameter_error_lands_on_its_field_and_nothing_is_queued():
    client = FakeClient(ParameterError("bad", errors={"steps": "must be >= 1", "3.cfg": "too big"}))
    form = make(client)
    assert form.run() is None
    assert "must be &gt;= 1" in form.fields["steps"].error.value
    assert "var(--jp-error-color1)" in form.fields["steps"].error.value
    assert form.fields["steps"].error.layout.display == "block"
    assert "too big" in form.fields["cfg"].error.value
    assert form.fields["seed"].error.value == ""
    assert form.output.children == ()


def test_server_node_errors_land_on_their_fields():
    recorded = json.load(open(REFERENCE / "http/post_prompt_responses.json"))
    case = next(c for c in recorded if "two errors on one node" in c["label"])
    node_errors = case["response_body"]["node_errors"]
    assert node_error_messages(node_errors).keys() == {"3.steps", "3.cfg"}
    client = FakeClient()
    form = make(client)
    job = form.run()
    job.state = "failed"
    job.error = PromptValidationError("Prompt outputs failed validation", node_errors=node_errors)
    job.emit()
    assert "smaller than min of 1" in form.fields["steps"].error.value
    assert "bigger than max" in form.fields["cfg"].error.value
    assert form.fields["seed"].error.value == ""


def test_last_used_values_come_back_for_the_same_workflow():
    client = FakeClient()
    form = make(client)
    form.set_values({"prompt": "remembered", "steps": 42})
    form.run()
    again = make()
    assert again.values["prompt"] == "remembered"
    assert again.values["steps"] == 42
    other = ParameterForm(FakeWorkflow(params=PARAMS[:3]))
    assert other.values["steps"] == 20


def test_a_client_that_records_nothing_leaves_no_last_used_values():
    """connect(url, store=None/False): running from the form records nothing either (the
    form used to fall back to the default store)."""
    form = make(FakeClient(recorder=NullRecorder()))
    form.set_values({"prompt": "forgotten", "steps": 42})
    form.run()
    assert form.client.calls  # it did run
    again = make()
    assert again.values["steps"] == 20 and again.values["prompt"] != "forgotten"


def test_uploaded_image_becomes_the_value():
    form = make()
    field = form.fields["image"]
    field.set_value(b"\x89PNG fake bytes")
    assert form.values["image"] == b"\x89PNG fake bytes"
    assert field.preview.value == b"\x89PNG fake bytes"


async def test_run_clicked_on_a_subshell_thread_runs_on_the_main_loop():
    import asyncio
    import threading

    client = FakeClient()
    threads: list[str] = []
    original = client.run

    def run(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    client.run = run
    form = make(client)

    def click_from_subshell():
        async def clicked():  # a second loop on another thread, like ipykernel's subshells
            form.run_button.click()

        asyncio.run(clicked())

    worker = threading.Thread(target=click_from_subshell, name="subshell-test")
    worker.start()
    await asyncio.to_thread(worker.join)
    for _ in range(100):
        if threads:
            break
        await asyncio.sleep(0.01)
    assert threads == [threading.main_thread().name]


def test_static_fallback_lists_parameters_and_values():
    form = make()
    form.set_values({"prompt": "a <castle>"})
    form.fields["image"].set_value(b"12345")
    data = form._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    html = data["text/html"]
    assert "<code>steps</code></td><td>20</td>" in html
    assert "a &lt;castle&gt;" in html
    assert "&lt;image, 5 bytes&gt;" in html
