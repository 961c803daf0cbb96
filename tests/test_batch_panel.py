"""BatchPanel: the plan preview follows the controls; Run batch hands the plan to client.batch."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import traitlets

from comfy_widgets.engine.plan import Sweep, Values
from comfy_widgets.errors import ParameterError
from comfy_widgets.widgets.batch_panel import BatchPanel, plan_table
from comfy_widgets.widgets.batch_view import BatchView
from tests._batch_fakes import FakeBatch


def param(name, type_, value, **extra):
    base = dict(
        name=name,
        key=f"3.{name}",
        type=type_,
        value=value,
        min=None,
        max=None,
        step=None,
        is_integer=False,
        multiline=False,
        node_title="KSampler",
        node_class="KSampler",
        control_after_generate=None,
        options=None,
    )
    base.update(extra)
    return SimpleNamespace(**base)


class FakeWorkflow:
    """Parameters like Workflow.parameters(); apply() checks number limits like the real one."""

    def __init__(self):
        self.params = [
            param("seed", "seed", 42, control_after_generate="randomize"),
            param("steps", "number", 20, min=1, max=100, step=1, is_integer=True),
            param("cfg", "number", 7.0, min=0.0, max=30.0, step=0.5),
            param("prompt", "string", "a cat", multiline=True, node_title="Positive"),
        ]
        self.applied = 0

    def parameters(self):
        return self.params

    def apply(self, values):
        self.applied += 1
        errors = {}
        for p in self.params:
            v = values.get(p.name)
            if p.type == "number" and v is not None and not (p.min <= v <= p.max):
                errors[p.name] = f"{v} is outside {p.min}..{p.max}"
        if errors:
            raise ParameterError("invalid", errors=errors)
        return {"3": {"inputs": dict(values), "class_type": "KSampler"}}


class FakeForm(traitlets.HasTraits):
    values = traitlets.Dict()

    def __init__(self, client=None):
        super().__init__()
        self.workflow = FakeWorkflow()
        self.client = client
        self.values = {"seed": 42, "steps": 20, "cfg": 7.0, "prompt": "a cat"}


class FakeClient:
    """Records client.batch calls and answers with a FakeBatch of the planned size."""

    def __init__(self):
        self.calls = []
        self.loop = None

    def batch(self, workflow, count=1, **variations):
        self.calls.append((threading.current_thread().name, workflow, count, variations))
        batch = FakeBatch(count)
        batch.done = lambda: batch.status in ("completed", "partial", "cancelled", "failed")
        return batch


def test_preview_shows_the_plan_before_anything_is_queued():
    panel = BatchPanel(FakeForm())
    panel.count.value = 3
    assert "3 generations" in panel.summary.value
    assert panel.preview.value.count("<tr") == 1 + 3  # header + one row per item
    assert "seed" in panel.preview.value
    assert not panel.run_button.disabled


def test_prompt_lines_and_a_sweep_make_a_grid():
    panel = BatchPanel(FakeForm())
    panel.count.value = 2
    panel.prompts.value = "a cat\n\na dog\n"
    row = panel.add_sweep("cfg")
    row.start.value, row.stop.value, row.step.value = 5.0, 6.0, 0.5
    variations = panel.variations()
    assert variations["prompt"] == Values(("a cat", "a dog"))
    assert variations["cfg"] == Sweep(5.0, 6.0, 0.5)
    assert variations["seed"] == "random"
    assert variations["steps"] == 20  # untouched form values stay fixed
    plan = panel.plan()
    assert len(plan) == 2 * 3 * 2
    assert "12 generations (6 combinations × 2)" in panel.summary.value
    assert "a dog" in panel.preview.value and "5.5" in panel.preview.value


def test_integer_sweeps_give_integers_and_rows_can_be_removed():
    form = FakeForm()
    panel = BatchPanel(form)
    row = panel.add_sweep("steps")
    assert (row.start.value, row.stop.value, row.step.value) == (20.0, 24.0, 1.0)
    form.values = {**form.values, "steps": 30}
    assert panel.add_sweep("steps").start.value == 30.0  # starts from the form's value
    panel.remove_sweep(panel.sweeps.children[-1])
    assert panel.variations()["steps"] == Sweep(20, 24, 1)
    assert all(isinstance(v, int) for v in panel.plan().to_frame()["steps"])
    panel.remove_sweep(row)
    assert panel.sweeps.children == ()
    assert panel.variations()["steps"] == 30  # back to the form value, fixed


def test_seed_strategies_use_the_form_seed():
    panel = BatchPanel(FakeForm())
    panel.count.value = 3
    panel.seed.value = "increment"
    assert list(panel.plan().to_frame()["seed"]) == [42, 43, 44]
    panel.seed.value = "fixed"
    assert list(panel.plan().to_frame()["seed"]) == [42, 42, 42]
    panel.seed.value = "random"
    seeds = list(panel.plan().to_frame()["seed"])
    assert len(set(seeds)) == 3
    assert list(panel.plan().to_frame()["seed"]) == seeds  # same plan seed, same preview


def test_a_bad_sweep_shows_an_error_and_disables_run():
    panel = BatchPanel(FakeForm())
    row = panel.add_sweep("cfg")
    row.stop.value = 40.0
    assert "cfg" in panel.preview.value and "outside" in panel.preview.value
    assert panel.run_button.disabled
    row.stop.value = 9.0
    assert not panel.run_button.disabled


def test_the_preview_follows_the_form_values():
    form = FakeForm()
    panel = BatchPanel(form)
    panel.seed.value = "fixed"
    form.values = {**form.values, "seed": 7}
    assert list(panel.plan().to_frame()["seed"]) == [7] * panel.count.value


def test_run_batch_calls_client_batch_and_shows_a_batch_view():
    client = FakeClient()
    form = FakeForm(client)
    panel = BatchPanel(form)
    panel.count.value = 2
    panel.prompts.value = "a\nb"
    seed_used = panel.plan_seed
    panel.run_button.click()
    ((thread, workflow, count, variations),) = client.calls
    assert workflow is form.workflow and count == 2
    assert variations["plan_seed"] == seed_used and variations["mode"] == "grid"
    assert variations["prompt"] == Values(("a", "b"))
    assert isinstance(panel.results.children[0], BatchView)
    assert panel.view.batch is panel.batch
    assert panel.plan_seed != seed_used  # the next batch draws new seeds


def test_run_from_a_subshell_thread_is_handed_to_the_loop():
    import asyncio

    async def scenario():
        client = FakeClient()
        panel = BatchPanel(FakeForm(client))  # created on the loop, like the form does
        clicker = threading.Thread(target=panel.run_button.click, name="subshell-1")
        clicker.start()
        clicker.join()
        assert client.calls == []  # nothing ran on the subshell thread
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return client.calls

    calls = asyncio.run(scenario())
    assert [c[0] for c in calls] == ["MainThread"]


def test_a_finished_batch_adds_a_result_grid(monkeypatch):
    from tests._grid_fixtures import results_df

    client = FakeClient()
    panel = BatchPanel(FakeForm(client))
    batch = panel.run()
    batch.df = results_df()
    batch.status = "completed"
    batch.notify()
    from comfy_widgets.widgets.grid import ResultGrid

    assert isinstance(panel.results.children[1], ResultGrid)
    assert panel.results.children[1].total == 6


def test_plan_table_truncates_long_plans():
    import pandas as pd

    html = plan_table(pd.DataFrame({"batch_index": range(50), "cfg": [1.5] * 50}), max_rows=5)
    assert html.count("<tr") == 6 and "… and 45 more" in html and "1.5" in html


def test_default_sweeps_are_useful_for_fine_and_capped_parameters():
    from comfy_widgets.widgets.batch_panel import default_sweep

    cfg = param("cfg", "number", 8.0, min=0.0, max=100.0, step=0.1)
    denoise = param("denoise", "number", 1.0, min=0.0, max=1.0, step=0.01)
    steps = param("steps", "number", 20, min=1, max=100, step=1)
    assert default_sweep(cfg) == pytest.approx((8.0, 12.0, 1.0))
    assert default_sweep(denoise) == pytest.approx((0.96, 1.0, 0.01))
    assert default_sweep(steps) == (20.0, 24.0, 1.0)
    assert default_sweep(steps, current=4) == (4.0, 8.0, 1.0)
