"""The Recorder contract, one suite run against every store: SQLite and a real PostgreSQL.

Each test gets a fresh store from the ``recorder`` fixture (tests/conftest.py): an SQLite file in
a temp folder, or a new database on the session's throwaway PostgreSQL server.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from comfy_widgets.records import BatchRecord, GenerationRecord, Recorder, WorkflowRecord
from comfy_widgets.states import BatchState, JobState
from comfy_widgets.transport.outputs import Output
from comfy_widgets.workflow import pngmeta
from comfy_widgets.workflow.workflow import Workflow
from comfy_widgets.workflow.writeback import ui_graph_with_values
from tests.shared_data import WORKFLOWS
from tests.store_fakes import API_PROMPT, png_bytes

UI_SOURCE = {"nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}
SERVER = "http://127.0.0.1:8188"


def _workflow(source=None, name="fake", fmt="api") -> WorkflowRecord:
    return WorkflowRecord(name, json.loads(json.dumps(source or API_PROMPT)), fmt)


def _generation(state=JobState.QUEUED, **fields) -> GenerationRecord:
    fields.setdefault("prompt_id", str(uuid.uuid4()))
    fields.setdefault("server", SERVER)
    fields.setdefault("parameters", {"seed": 7})
    fields.setdefault("prompt", json.loads(json.dumps(API_PROMPT)))
    fields.setdefault("queued_at", 1000.0)
    return GenerationRecord(state=state, **fields)


def _finished(gen: GenerationRecord, *, images=1, state=JobState.COMPLETED) -> GenerationRecord:
    """The same generation, final, with fetched outputs (as the engine hands it over)."""
    gen.state = state
    gen.outputs = [
        Output("9", f"ComfyUI_{n:05d}_.png", "", "output", "image", "image/png", png_bytes())
        for n in range(images)
    ]
    gen.started_at, gen.finished_at = 1001.0, 1003.5
    return gen


def _ids(records) -> list[str]:
    return [r.prompt_id for r in records]


def test_every_store_is_a_recorder(recorder):
    assert isinstance(recorder, Recorder)


def test_last_used_round_trips_per_workflow(recorder):
    wf, other = _workflow(), _workflow(UI_SOURCE, "ui", "ui")
    assert recorder.last_used(wf) == {}
    recorder.set_last_used(wf, {"seed": 3, "prompt": "a cat", "cfg": 7.5})
    recorder.set_last_used(other, {"seed": 4})
    assert recorder.last_used(wf) == {"seed": 3, "prompt": "a cat", "cfg": 7.5}
    recorder.set_last_used(_workflow(name="renamed"), {"seed": 11})  # same content, same row
    assert recorder.last_used(wf) == {"seed": 11}
    assert recorder.last_used(other) == {"seed": 4}


def test_generation_lifecycle_keeps_the_exact_prompt(recorder):
    prompt = {"9": API_PROMPT["9"], "3": API_PROMPT["3"], "10": {"class_type": "X", "inputs": {}}}
    gen = _generation(workflow=_workflow(), parameters={"seed": 7, "steps": 4}, prompt=prompt)
    recorder.record_generation(gen)
    [row] = recorder.find_generations()
    assert (row.state, row.queued_at, row.prompt) == ("queued", 1000.0, prompt)
    assert list(row.prompt) == ["9", "3", "10"]  # the order sent
    gen.state, gen.started_at = JobState.RUNNING, 1001.0
    recorder.record_generation(gen)
    assert recorder.find_generations()[0].state == JobState.RUNNING
    recorder.record_generation(_finished(gen, images=2))
    [row] = recorder.find_generations()
    assert row.state == JobState.COMPLETED and row.id is not None
    assert (row.started_at, row.finished_at) == (1001.0, 1003.5)
    assert row.parameters == {"seed": 7, "steps": 4}
    assert row.workflow.name == "fake" and row.workflow.source == API_PROMPT
    assert row.server == SERVER
    names = [o.filename for o in row.saved_outputs]
    assert names == ["ComfyUI_00000_.png", "ComfyUI_00001_.png"]
    paths = [Path(o.local_path) for o in row.saved_outputs]
    assert paths[0].name == f"{gen.prompt_id}_0.png" and all(p.is_file() for p in paths)
    assert all(p.is_relative_to(recorder.outputs_dir) for p in paths)


def test_saved_png_carries_comfyui_metadata(recorder):
    ui = Workflow.load(WORKFLOWS / "ui" / "sd15_txt2img_default.json", name="ui wf")
    graph = ui_graph_with_values(ui, {"seed": 5})
    gen = _generation(
        workflow=WorkflowRecord.of(ui), parameters={"seed": 5}, prompt=ui.apply(seed=5)
    )
    gen.ui_graph = graph
    recorder.record_generation(_finished(gen))
    path = recorder.find_generations()[0].saved_outputs[0].local_path
    meta = pngmeta.read_comfy_metadata(path)
    assert meta == {"prompt": gen.prompt, "workflow": graph, "parameters": {"seed": 5}}
    assert "/ui_wf/" in path


def test_finishing_twice_writes_nothing_twice(recorder):
    gen = _generation(workflow=_workflow())
    recorder.record_generation(gen)
    recorder.record_generation(_finished(gen))
    [path] = [Path(o.local_path) for o in recorder.find_generations()[0].saved_outputs]
    mtime = path.stat().st_mtime_ns
    gen.outputs = gen.outputs * 2
    recorder.record_generation(gen)
    gen.state = JobState.QUEUED
    recorder.record_generation(gen)
    [row] = recorder.find_generations()
    assert row.state == JobState.COMPLETED and len(row.saved_outputs) == 1
    assert path.stat().st_mtime_ns == mtime
    assert len(list(Path(recorder.outputs_dir).rglob("*.png"))) == 1


def test_failed_generation_keeps_error_and_node(recorder):
    gen = _generation(JobState.FAILED, error="boom", error_node="3", workflow=None)
    recorder.record_generation(gen)
    [row] = recorder.find_generations(status="failed")
    assert (row.error, row.error_node, row.saved_outputs, row.workflow) == ("boom", "3", [], None)


def test_non_image_outputs_are_saved_as_files(recorder):
    gen = _generation(JobState.COMPLETED)
    gen.outputs = [
        Output("5", "clip.mp4", "v", "output", "video", "video/mp4", b"\x00\x01video"),
        Output("6", "", "", "", "text", "text/plain", b"hello"),
    ]
    recorder.record_generation(gen)
    outs = recorder.find_generations()[0].saved_outputs
    assert [o.local_path[-4:] for o in outs] == [".mp4", ".txt"]
    assert Path(outs[0].local_path).read_bytes() == b"\x00\x01video"
    assert Path(outs[1].local_path).read_text() == "hello"
    assert (outs[0].subfolder, outs[0].kind, outs[0].node_id) == ("v", "video", "5")


def test_server_url_is_stored_without_credentials(recorder):
    gen = _generation(server="https://alice:s3cret@example.org:8443/comfy/?token=abc#x")
    recorder.record_generation(gen)
    assert recorder.find_generations()[0].server == "https://example.org:8443/comfy"


def test_batch_round_trips_and_counts_follow_generations(recorder):
    wf = _workflow()
    plan = [{"seed": 1, "prompt": "cat"}, {"seed": 2, "prompt": "dog"}, {"seed": 3, "prompt": "x"}]
    prompts = [{**API_PROMPT, "n": {"i": i}} for i in range(3)]
    batch = BatchRecord(
        "b1",
        wf,
        3,
        spec={"seed": "random"},
        plan_seed=2**40 + 5,
        plan=plan,
        prompts=prompts,
        columns=["prompt", "seed"],
        servers=["http://u:p@h:1/"],
    )
    recorder.record_batch(batch)
    gens = [
        _generation(workflow=wf, batch_id="b1", batch_index=i, parameters=p)
        for i, p in enumerate(plan)
    ]
    for gen in gens:
        recorder.record_generation(gen)
    recorder.record_generation(_finished(gens[0]))
    recorder.record_generation(_finished(gens[1], state=JobState.FAILED, images=0))
    recorder.set_batch_state("b1", BatchState.PARTIAL)
    record = recorder.batch("b1")
    counts = (record.completed_count, record.failed_count, record.state)
    assert counts == (1, 1, BatchState.PARTIAL)
    assert (record.plan, record.prompts, record.spec) == (plan, prompts, {"seed": "random"})
    assert (record.plan_seed, record.columns, record.total_count) == (
        2**40 + 5,
        ["prompt", "seed"],
        3,
    )
    assert record.servers == ["http://h:1"]
    assert record.workflow.content_hash == wf.content_hash
    assert sorted(r.batch_index for r in recorder.find_generations(batch_id="b1")) == [0, 1, 2]
    assert recorder.batch("nope") is None


def test_recording_a_batch_again_replaces_its_plan_and_keeps_counts(recorder):
    recorder.record_batch(BatchRecord("b", None, 1, plan=[{"seed": 1}]))
    recorder.record_generation(_finished(_generation(batch_id="b", batch_index=0), images=0))
    recorder.record_batch(BatchRecord("b", None, 2, BatchState.RUNNING, plan=[{"a": 1}, {"a": 2}]))
    record = recorder.batch("b")
    assert (record.total_count, record.plan, record.state) == (2, [{"a": 1}, {"a": 2}], "running")
    assert record.completed_count == 1


def test_lost_items_count_as_failed(recorder):
    recorder.record_batch(BatchRecord("b", None, 2))
    first = _generation(batch_id="b", batch_index=0)
    recorder.record_generation(first)
    recorder.record_generation(replace(first, state=JobState.LOST, error="gone"))
    [row] = recorder.find_generations(batch_id="b")
    assert (row.state, row.error, row.parameters) == (JobState.LOST, "gone", {"seed": 7})
    assert (recorder.batch("b").failed_count, recorder.batch("b").completed_count) == (1, 0)


def test_resent_batch_item_replaces_its_row(recorder):
    recorder.record_batch(BatchRecord("b2", None, 1))
    first = _generation(batch_id="b2", batch_index=0)
    recorder.record_generation(first)
    recorder.record_generation(replace(first, state=JobState.LOST))
    second = _generation(batch_id="b2", batch_index=0, parameters={"seed": 8})
    recorder.record_generation(second)
    rows = recorder.find_generations(batch_id="b2")
    assert [(r.prompt_id, r.state, r.parameters) for r in rows] == [
        (second.prompt_id, "queued", {"seed": 8})
    ]
    assert recorder.batch("b2").failed_count == 0


def test_generation_of_an_unrecorded_batch_creates_the_batch(recorder):
    recorder.record_generation(_generation(batch_id="late", batch_index=0))
    assert recorder.batch("late").state == BatchState.RUNNING


def test_filters_by_workflow_status_since_and_id(recorder):
    a, b = _workflow(name="a"), _workflow(UI_SOURCE, "b", "ui")
    old = _generation(workflow=a, queued_at=100.0)
    new = _generation(workflow=b, queued_at=2000.0)
    recorder.record_generation(old)
    recorder.record_generation(_finished(new))
    assert _ids(recorder.find_generations(workflow="a")) == [old.prompt_id]
    assert _ids(recorder.find_generations(workflow=b)) == [new.prompt_id]
    assert _ids(recorder.find_generations(workflow=b.content_hash)) == [new.prompt_id]
    assert _ids(recorder.find_generations(since=1500)) == [new.prompt_id]
    assert _ids(recorder.find_generations(since="1970-01-01T00:25:00+00:00")) == [new.prompt_id]
    assert _ids(recorder.find_generations(status=["queued"])) == [old.prompt_id]
    assert _ids(recorder.find_generations(status=JobState.COMPLETED)) == [new.prompt_id]
    assert _ids(recorder.find_generations()) == [old.prompt_id, new.prompt_id]
    row = recorder.find_generations(workflow="b")[0]
    assert _ids(recorder.find_generations(generation_id=row.id)) == [new.prompt_id]
    assert recorder.find_generations(generation_id=new.prompt_id)[0].id == row.id
    assert _ids(recorder.find_generations(workflow=row.workflow.id)) == [new.prompt_id]
    assert recorder.find_generations(workflow="none", status="queued") == []


@pytest.mark.parametrize("value", ["ünïcödé ✓ 猫", "line\nbreak", 'quote"s', 10**15, -0.5, True])
def test_parameter_values_round_trip(recorder, value):
    gen = _generation(parameters={"p": value, "nested": {"list": [value, None]}})
    recorder.record_generation(gen)
    assert recorder.find_generations()[0].parameters == {
        "p": value,
        "nested": {"list": [value, None]},
    }


def test_a_batch_lease_is_held_by_one_resume_at_a_time(recorder):
    assert recorder.acquire_lease("b", "one", 30)
    assert recorder.acquire_lease("b", "one", 30)  # the holder renews it
    assert not recorder.acquire_lease("b", "two", 30)
    assert recorder.acquire_lease("other-batch", "two", 30)
    recorder.release_lease("b", "two")  # not two's to give back
    assert not recorder.acquire_lease("b", "two", 30)
    recorder.release_lease("b", "one")
    assert recorder.acquire_lease("b", "two", 0.2)
    time.sleep(0.4)
    assert recorder.acquire_lease("b", "three", 30)  # two's lease ran out
