"""The run store with stand-in jobs: schema, hooks, idempotency, batches, filters, migrations."""

from __future__ import annotations

import json
import sqlite3

import pytest

from comfy_widgets.errors import StoreError
from comfy_widgets.records import migrations
from comfy_widgets.records.sqlite import Store, clean_url, default_store_path
from comfy_widgets.workflow import pngmeta
from comfy_widgets.workflow.workflow import Workflow
from comfy_widgets.workflow.writeback import ui_graph_with_values
from tests.shared_data import WORKFLOWS
from tests.store_fakes import (
    API_PROMPT,
    FakeClient,
    FakeJob,
    FakeWorkflow,
    finish,
    record_finished,
    record_queued,
    record_started,
)

UI_SOURCE = {"nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "s" / "store.sqlite")
    yield store
    store.close()


def test_default_path_follows_comfy_widgets_home(_isolated_store_home):
    assert default_store_path() == _isolated_store_home / "store.sqlite"
    store = Store.default()
    assert store.path == (_isolated_store_home / "store.sqlite").resolve()
    assert Store.default() is store
    assert store.path.exists()


def test_default_path_without_home_is_dot_comfy_widgets(monkeypatch, tmp_path):
    monkeypatch.delenv("COMFY_WIDGETS_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_store_path() == tmp_path / ".comfy_widgets" / "store.sqlite"


def test_store_uses_wal_foreign_keys_and_schema_version(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.LATEST
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"workflows", "generations", "batches"} <= tables
    assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_save_workflow_dedups_on_content_hash(store):
    a = store.save_workflow(FakeWorkflow(API_PROMPT, name="a"))
    b = store.save_workflow(FakeWorkflow(json.loads(json.dumps(API_PROMPT)), name="again"))
    c = store.save_workflow(FakeWorkflow(UI_SOURCE, name="ui", format="ui"))
    assert a == b != c
    assert store.workflow_record(a)["workflow"] == API_PROMPT
    assert store.workflow_record(c)["format"] == "ui"


def test_last_used_round_trips_and_job_queued_updates_it(store):
    wf = FakeWorkflow(API_PROMPT)
    assert store.last_used(wf) == {}
    store.set_last_used(wf, {"seed": 3, "prompt": "a cat"})
    assert store.last_used(wf) == {"seed": 3, "prompt": "a cat"}
    record_queued(store, FakeJob(workflow=wf, parameters={"seed": 11}))
    assert store.last_used(wf) == {"seed": 11}


def test_job_lifecycle_is_recorded_with_exact_prompt(store):
    wf = FakeWorkflow(API_PROMPT)
    job = FakeJob(workflow=wf, parameters={"seed": 7, "steps": 4})
    record_queued(store, job)
    [row] = store.generation_records()
    assert (row["status"], row["queued_at"], row["prompt"]) == ("queued", 1000.0, API_PROMPT)
    job.state = "running"
    job.timings["started_at"] = 1001.0
    record_started(store, job)
    assert store.generation_records()[0]["status"] == "running"
    record_finished(store, finish(job, images=2))
    [row] = store.generation_records()
    assert row["status"] == "completed"
    assert (row["started_at"], row["finished_at"]) == (1001.0, 1003.5)
    assert row["parameters"] == {"seed": 7, "steps": 4}
    assert row["workflow_name"] == "fake"
    assert [o["filename"] for o in row["outputs"]] == ["ComfyUI_00000_.png", "ComfyUI_00001_.png"]
    paths = [o["local_path"] for o in row["outputs"]]
    assert paths[0].endswith(f"{job.prompt_id}_0.png")
    assert all(p.startswith(str(store.outputs_dir)) for p in paths)


def test_saved_png_carries_comfyui_metadata(store):
    ui = Workflow.load(WORKFLOWS / "ui" / "sd15_txt2img_default.json", name="ui wf")
    job = finish(FakeJob(workflow=ui, parameters={"seed": 5}, prompt=ui.apply(seed=5)))
    record_finished(store, job)
    path = store.generation_records()[0]["outputs"][0]["local_path"]
    meta = pngmeta.read_comfy_metadata(path)
    assert meta == {
        "prompt": job.prompt,
        "workflow": ui_graph_with_values(ui, {"seed": 5}),
        "parameters": {"seed": 5},
    }
    sampler = next(n for n in meta["workflow"]["nodes"] if n["type"] == "KSampler")
    assert sampler["widgets_values"][0] == 5
    assert "/ui_wf/" in path


@pytest.mark.parametrize(
    "values, prompt_values",
    [
        ({"seed": 5}, {"seed": 6}),  # the prompt is not the workflow with these values
        ({"cfg_conds": 1.23456789}, {"cfg_conds": 1.23456789}),  # the frontend would round it
        ({"seed": "not a number"}, {}),  # values the workflow rejects
    ],
)
def test_png_has_no_workflow_chunk_when_the_graph_cannot_show_the_values(
    store, values, prompt_values
):
    name = "primitive_reroute_hidream_e1_1" if "cfg_conds" in values else "sd15_txt2img_default"
    ui = Workflow.load(WORKFLOWS / "ui" / f"{name}.json")
    job = finish(FakeJob(workflow=ui, parameters=values, prompt=ui.apply(prompt_values)))
    record_finished(store, job)
    meta = pngmeta.read_comfy_metadata(store.generation_records()[0]["outputs"][0]["local_path"])
    assert set(meta) == {"prompt", "parameters"}
    assert meta["prompt"] == job.prompt


def test_api_workflow_png_has_no_workflow_chunk(store):
    job = finish(FakeJob(workflow=FakeWorkflow(API_PROMPT)))
    record_finished(store, job)
    meta = pngmeta.read_comfy_metadata(store.generation_records()[0]["outputs"][0]["local_path"])
    assert set(meta) == {"prompt", "parameters"}


def test_job_finished_twice_writes_nothing_twice(store):
    job = finish(FakeJob(workflow=FakeWorkflow(API_PROMPT)))
    record_queued(store, job)
    record_finished(store, job)
    [path] = [o["local_path"] for o in store.generation_records()[0]["outputs"]]
    mtime = store.outputs_dir.joinpath(path).stat().st_mtime_ns
    job.outputs = job.outputs * 2
    record_finished(store, job)
    record_queued(store, job)
    rows = store.generation_records()
    assert len(rows) == 1 and rows[0]["status"] == "completed"
    assert len(rows[0]["outputs"]) == 1
    assert store.outputs_dir.joinpath(path).stat().st_mtime_ns == mtime
    assert len(list(store.outputs_dir.rglob("*.png"))) == 1


def test_failed_job_keeps_error_and_node(store):
    job = FakeJob(state="failed", error_message="boom", error_node="3")
    record_finished(store, job)
    [row] = store.generation_records(status="failed")
    assert (row["error"], row["error_node"], row["outputs"]) == ("boom", "3", [])
    assert row["workflow_id"] is None


def test_non_image_outputs_are_saved_as_files(store):
    job = FakeJob(state="completed")
    job.outputs = [
        type(
            "Out",
            (),
            {
                "node_id": "5",
                "filename": "clip.mp4",
                "subfolder": "v",
                "type": "output",
                "kind": "video",
                "mime": "video/mp4",
                "data": b"\x00\x01video",
            },
        )(),
        type(
            "Out",
            (),
            {
                "node_id": "6",
                "filename": None,
                "subfolder": "",
                "type": None,
                "kind": "text",
                "mime": "text/plain",
                "data": "hello",
            },
        )(),
    ]
    record_finished(store, job)
    outs = store.generation_records()[0]["outputs"]
    assert [o["local_path"][-4:] for o in outs] == [".mp4", ".txt"]
    assert open(outs[0]["local_path"], "rb").read() == b"\x00\x01video"
    assert open(outs[1]["local_path"]).read() == "hello"


def test_server_url_is_stored_without_credentials(store):
    job = FakeJob(client=FakeClient("https://alice:s3cret@example.org:8443/comfy/?token=abc#x"))
    record_queued(store, job)
    assert store.generation_records()[0]["server"] == "https://example.org:8443/comfy"
    assert clean_url("http://127.0.0.1:8188/") == "http://127.0.0.1:8188"


def test_batch_is_created_and_counts_follow_generations(store):
    wf = FakeWorkflow(API_PROMPT)
    plan = [{"seed": 1, "prompt": "cat"}, {"seed": 2, "prompt": "dog"}, {"seed": 3, "prompt": "x"}]
    store.create_batch("b1", wf, 3, {"seed": "random"}, 42, plan, ["http://u:p@h:1/"])
    jobs = [
        FakeJob(workflow=wf, batch_id="b1", batch_index=i, parameters=p) for i, p in enumerate(plan)
    ]
    for job in jobs:
        record_queued(store, job)
    record_finished(store, finish(jobs[0]))
    record_finished(store, finish(jobs[1], state="failed", images=0))
    store.update_batch("b1", status="partial")
    record = store.batch_record("b1")
    counts = (record["completed_count"], record["failed_count"], record["status"])
    assert counts == (1, 1, "partial")
    assert (record["plan"], record["spec"], record["plan_seed"]) == (plan, {"seed": "random"}, 42)
    assert record["servers"] == ["http://h:1"]
    assert sorted(r["batch_index"] for r in store.generation_records(batch_id="b1")) == [0, 1, 2]
    assert store.last_used(wf) == {}


def test_resent_batch_item_replaces_its_row(store):
    store.create_batch("b2", None, 1)
    first = FakeJob(batch_id="b2", batch_index=0)
    record_queued(store, first)
    record_finished(store, finish(first, images=0, state="lost"))
    second = FakeJob(batch_id="b2", batch_index=0)
    record_queued(store, second)
    rows = store.generation_records(batch_id="b2")
    assert [(r["prompt_id"], r["status"]) for r in rows] == [(second.prompt_id, "queued")]


def test_job_of_unrecorded_batch_creates_the_batch_row(store):
    record_queued(store, FakeJob(batch_id="late", batch_index=0))
    assert store.batch_record("late")["status"] == "running"


def test_filters_by_workflow_status_since_and_id(store):
    a, b = FakeWorkflow(API_PROMPT, name="a"), FakeWorkflow(UI_SOURCE, name="b", format="ui")
    old = FakeJob(workflow=a, timings={"queued_at": 100.0})
    new = FakeJob(workflow=b, timings={"queued_at": 2000.0})
    record_queued(store, old)
    record_finished(store, finish(new))
    assert [r["prompt_id"] for r in store.generation_records(workflow="a")] == [old.prompt_id]
    assert [r["prompt_id"] for r in store.generation_records(workflow=b)] == [new.prompt_id]
    assert [r["prompt_id"] for r in store.generation_records(since=1500)] == [new.prompt_id]
    assert [r["prompt_id"] for r in store.generation_records(status=["queued"])] == [old.prompt_id]
    gid = store.generation_records(workflow="b")[0]["id"]
    assert store.generation_records(generation_id=gid)[0]["prompt_id"] == new.prompt_id
    assert store.generation_records(generation_id=new.prompt_id)[0]["id"] == gid


def test_newer_schema_with_unknown_columns_and_tables_still_opens(tmp_path):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE generations ADD COLUMN future_col TEXT DEFAULT 'x'")
    conn.execute("ALTER TABLE workflows ADD COLUMN tags TEXT")
    conn.execute("CREATE TABLE future_table (id INTEGER PRIMARY KEY)")
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 5}")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version == migrations.LATEST + 5
    job = finish(FakeJob(workflow=FakeWorkflow(API_PROMPT)))
    record_queued(store, job)
    record_finished(store, job)
    [row] = store.generation_records()
    assert row["status"] == "completed" and row["future_col"] == "x"


def test_older_store_is_migrated_forward(tmp_path, monkeypatch):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    extra = (migrations.LATEST + 1, "ALTER TABLE batches ADD COLUMN note TEXT")
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, extra])
    monkeypatch.setattr(migrations, "LATEST", extra[0])
    store = Store(path)
    assert store.schema_version == extra[0]
    columns = {r["name"] for r in store.query("PRAGMA table_info(batches)")}
    assert "note" in columns
    assert Store(path).schema_version == extra[0]


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    bad = (migrations.LATEST + 1, "CREATE TABLE t2 (a INTEGER); THIS IS NOT SQL")
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, bad])
    monkeypatch.setattr(migrations, "LATEST", bad[0])
    with pytest.raises(StoreError, match="cannot be opened") as info:
        Store(path)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == bad[0] - 1
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 't2'").fetchall()
