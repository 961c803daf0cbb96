"""history() and load_batch(): recorded generations back as DataFrames with OutputRefs."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from comfy_widgets.errors import ComfyWidgetsError
from comfy_widgets.records.sqlite import Store
from comfy_widgets.results.frame import OutputRef, columns_for
from comfy_widgets.results.recorded import history, load_batch
from tests.store_fakes import (
    API_PROMPT,
    FakeJob,
    FakeWorkflow,
    finish,
    record_finished,
    record_queued,
)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    yield store
    store.close()


def _record_batch(store: Store, batch_id: str = "b1") -> list[FakeJob]:
    """A 4-item batch: two completed, one failed, one never sent."""
    wf = FakeWorkflow(API_PROMPT, name="sweep")
    plan = [{"seed": 10 + i, "cfg": 5 + i % 2, "prompt": "cat"} for i in range(4)]
    store.create_batch(
        batch_id, wf, 4, {"cfg": [5, 6]}, 7, plan, ["http://127.0.0.1:1"], columns=["cfg", "seed"]
    )
    jobs = [
        FakeJob(workflow=wf, batch_id=batch_id, batch_index=i, parameters=plan[i]) for i in range(3)
    ]
    for job in jobs:
        record_queued(store, job)
    record_finished(store, finish(jobs[0]))
    record_finished(store, finish(jobs[1], images=2))
    jobs[2].error_message = "node 3 failed"
    record_finished(store, finish(jobs[2], state="failed", images=0))
    return jobs


def test_load_batch_has_the_results_columns_and_planned_rows(store):
    jobs = _record_batch(store)
    df = load_batch("b1", store)
    assert list(df.columns) == columns_for(["cfg"])
    assert list(df["status"]) == ["completed", "completed", "failed", "pending"]
    assert list(df["seed"]) == [10, 11, 12, 13]
    assert list(df["cfg"]) == [5, 6, 5, 6]
    assert df["prompt_id"].iloc[0] == jobs[0].prompt_id and pd.isna(df["prompt_id"].iloc[3])
    assert isinstance(df["image"].iloc[0], OutputRef)
    assert len(df["outputs"].iloc[1]) == 2 and df["outputs"].iloc[3] == []
    assert df["image"].iloc[1].image().size == (8, 8)
    assert df["error"].iloc[2] == "node 3 failed"
    assert df["duration_s"].iloc[0] == pytest.approx(2.5)
    assert df["finished_at"].iloc[0] == pd.Timestamp(1003.5, unit="s", tz="UTC")


def test_unsent_items_of_an_ended_batch_are_cancelled(store):
    _record_batch(store)
    store.update_batch("b1", status="cancelled")
    assert list(load_batch("b1", store)["status"]) == [
        "completed",
        "completed",
        "failed",
        "cancelled",
    ]


def test_load_batch_unknown_id_raises(store):
    with pytest.raises(ComfyWidgetsError, match="no batch"):
        load_batch("nope", store)


def test_load_batch_without_recorded_columns_uses_plan_keys_that_vary(store):
    store.create_batch(
        "b2",
        None,
        2,
        plan_rows=[{"seed": 1, "steps": 4, "cfg": 5}, {"seed": 2, "steps": 4, "cfg": 6}],
    )
    df = load_batch("b2", store)
    assert list(df.columns) == columns_for(["cfg"])


def test_history_filters_and_columns(store):
    jobs = _record_batch(store)
    single = finish(
        FakeJob(workflow=FakeWorkflow({"other": {}}, name="solo"), parameters={"3.seed": 99})
    )
    record_finished(store, single)
    df = history(store=store)
    assert len(df) == 4
    assert {
        "generation_id",
        "prompt_id",
        "workflow",
        "parameters",
        "seed",
        "image",
        "prompt",
        "duration_s",
    } <= set(df.columns)
    assert list(history(status="failed", store=store)["prompt_id"]) == [jobs[2].prompt_id]
    solo = history(workflow="solo", store=store)
    assert list(solo["seed"]) == [99] and solo["batch_id"].isna().all()
    assert len(history(batch_id="b1", store=store)) == 3
    assert history(since="2100-01-01", store=store).empty
    gid = df["generation_id"].iloc[-1]
    assert store.generation_records(generation_id=gid)[0]["prompt_id"] == single.prompt_id


def test_history_uses_default_store(_isolated_store_home):
    record_finished(Store.default(), finish(FakeJob()))
    df = history()
    assert len(df) == 1 and df["status"].iloc[0] == "completed"


def test_cw_history_is_the_function_after_anything_in_a_fresh_process(tmp_path):
    """A module named ``history`` once shadowed the function: in a fresh process,
    ``cw.load_batch`` (or importing resume) then ``cw.history()`` raised TypeError."""
    script = """
import comfy_widgets as cw
import comfy_widgets.engine.resume
store = cw.Store()
store.create_batch("fresh", None, 1)
assert len(cw.load_batch("fresh")) == 1
df = cw.history()
assert callable(cw.history) and len(df) == 0, df
cw.export_batch("fresh", "exported")
print("history ok")
"""
    env = {**os.environ, "COMFY_WIDGETS_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "history ok" in done.stdout
