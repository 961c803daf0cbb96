"""The store at scale: the plan in its own rows (migration 4), counts moved per item and right
under concurrent writers, many generations in one transaction, and the engine's RecordWriter."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading

from comfy_widgets.engine.recording import GATHER_MORE_S, RecordWriter
from comfy_widgets.records import migrations
from comfy_widgets.records.sqlite import IN_CHUNK, Store
from tests.store_fakes import API_PROMPT, FakeJob, FakeWorkflow, finish, record_queued


def _old_store(path, plan, prompts) -> None:
    """A store as version 2 wrote it: the whole plan and prompts inside the batches row."""
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in migrations.MIGRATIONS:
        if number <= 2:
            for statement in migrations._statements(script):
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO batches (id, total_count, completed_count, status, plan_json, prompts_json,"
        " created_at) VALUES ('old', 2, 1, 'partial', ?, ?, 1.0)",
        (json.dumps(plan), json.dumps(prompts)),
    )
    conn.close()


def test_migration_keeps_old_batches_readable_and_new_ones_use_item_rows(tmp_path):
    plan = [{"seed": 1}, {"seed": 2}]
    prompts = [{"3": {"inputs": {"seed": 1}}}, {"3": {"inputs": {"seed": 2}}}]
    _old_store(tmp_path / "store.sqlite", plan, prompts)
    store = Store(tmp_path / "store.sqlite")
    assert store.schema_version == migrations.LATEST >= 3
    old = store.batch("old")
    assert (old.plan, old.prompts, old.completed_count) == (plan, prompts, 1)

    store.create_batch("new", FakeWorkflow(API_PROMPT), 2, plan_rows=plan, prompts=prompts)
    row = store.query("SELECT plan_json, prompts_json FROM batches WHERE id = 'new'")[0]
    assert row == {"plan_json": None, "prompts_json": None}  # the batch row stays small
    items = store.query("SELECT COUNT(*) AS n FROM batch_items WHERE batch_id = 'new'")
    assert items[0]["n"] == 2
    new = store.batch("new")
    assert (new.plan, new.prompts) == (plan, prompts)


def test_recording_a_batch_again_replaces_its_item_rows(tmp_path):
    store = Store(tmp_path)
    store.create_batch("b", None, 3, plan_rows=[{"i": 0}, {"i": 1}, {"i": 2}])
    store.create_batch("b", None, 1, plan_rows=[{"i": 9}])
    assert store.batch("b").plan == [{"i": 9}]


def test_counts_move_with_each_status_change_and_a_resent_item(tmp_path):
    store = Store(tmp_path)
    wf = FakeWorkflow(API_PROMPT)
    store.create_batch("b", wf, 3)
    jobs = [FakeJob(workflow=wf, batch_id="b", batch_index=i) for i in range(3)]
    for job in jobs:
        record_queued(store, job)
    store.record_generation(finish(jobs[0]).to_record())
    store.record_generation(finish(jobs[0]).to_record())  # finishing twice counts once
    store.record_generation(finish(jobs[1], images=0, state="failed").to_record())
    store.record_generation(finish(jobs[2], images=0, state="lost").to_record())
    assert _counts(store, "b") == (1, 2)
    again = FakeJob(workflow=wf, batch_id="b", batch_index=2)  # resume re-sends the lost item
    record_queued(store, again)
    assert _counts(store, "b") == (1, 1)
    store.record_generation(finish(again).to_record())
    assert _counts(store, "b") == (2, 1) == _recounted(store, "b")


def test_counts_stay_right_under_concurrent_writers(tmp_path):
    wf = FakeWorkflow(API_PROMPT)
    Store(tmp_path).create_batch("shared", wf, 120)
    start = threading.Barrier(3)

    def writer(offset: int) -> None:
        store = Store(tmp_path)  # its own connection: another kernel or a resumed run
        start.wait(timeout=30)
        for i in range(offset, offset + 40):
            job = FakeJob(workflow=wf, batch_id="shared", batch_index=i)
            record_queued(store, job)
            state = "failed" if i % 4 == 0 else "completed"
            store.record_generations([finish(job, images=0, state=state).to_record()])
        store.close()

    threads = [threading.Thread(target=writer, args=(n * 40,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    store = Store(tmp_path)
    assert _counts(store, "shared") == (90, 30) == _recounted(store, "shared")


def test_many_generations_go_in_one_transaction_in_order(tmp_path):
    store = Store(tmp_path)
    store.create_batch("b", None, 2)
    job = FakeJob(batch_id="b", batch_index=0)
    other = FakeJob(batch_id="b", batch_index=1)
    store.record_generations(
        [job.to_record("queued"), job.to_record("running"), other.to_record("queued")]
        + [finish(job).to_record(), finish(job).to_record()]
    )
    rows = {r["prompt_id"]: r for r in store.generation_records(batch_id="b")}
    assert rows[job.prompt_id]["status"] == "completed"
    assert len(rows[job.prompt_id]["outputs"]) == 1  # the repeat wrote nothing
    assert rows[other.prompt_id]["status"] == "queued"
    assert _counts(store, "b") == (1, 0)


def test_a_write_looks_up_its_rows_in_one_query_per_chunk(tmp_path):
    # a write of many records asks for the rows it touches once (per IN_CHUNK // 2 records),
    # not once per record: each statement hands the GIL to the event loop and back
    store = Store(tmp_path)
    store.create_batch("b", None, 600)
    jobs = [FakeJob(batch_id="b", batch_index=i) for i in range(600)]
    store.record_generations([job.to_record("queued") for job in jobs[:30]])
    lookups: list[str] = []
    store._conn.set_trace_callback(
        lambda sql: lookups.append(sql) if "FROM generations" in sql else None
    )
    store.record_generations([finish(job).to_record() for job in jobs[:30]])
    assert len(lookups) == 1
    lookups.clear()
    store.record_generations([job.to_record("queued") for job in jobs[30:]])
    assert len(lookups) == -(-570 // (IN_CHUNK // 2))
    store._conn.set_trace_callback(None)
    rows = store.generation_records(batch_id="b")
    assert len(rows) == 600 and _counts(store, "b") == (30, 0)
    assert sum(r["status"] == "completed" and len(r["outputs"]) == 1 for r in rows) == 30


def test_a_resent_item_replaces_its_row_within_one_write(tmp_path):
    # the first attempt's row is found by its batch item, then the second attempt's final
    # record (same write) finds the row under its new prompt id: one row, counted once
    store = Store(tmp_path)
    store.create_batch("b", None, 1)
    first, second = FakeJob(batch_id="b", batch_index=0), FakeJob(batch_id="b", batch_index=0)
    store.record_generations(
        [first.to_record("queued"), second.to_record("queued"), finish(second).to_record()]
    )
    rows = store.generation_records(batch_id="b")
    assert [(r["prompt_id"], r["status"]) for r in rows] == [(second.prompt_id, "completed")]
    assert _counts(store, "b") == (1, 0) == _recounted(store, "b")


class SlowRecorder:
    """Counts calls; each write takes a while, so records pile up behind it."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def record_generations(self, records) -> None:
        self.calls.append([r.prompt_id for r in records])
        threading.Event().wait(0.05)

    def record_generation(self, record) -> None:  # pragma: no cover - the writer uses the above
        raise AssertionError("record_generations was there")


async def test_record_writer_batches_a_tick_and_keeps_order():
    recorder = SlowRecorder()
    writer = RecordWriter(recorder, asyncio.get_running_loop())
    first = [writer.submit(FakeJob(prompt_id=f"a{i}").to_record("queued")) for i in range(5)]
    await asyncio.wait_for(first[0], 10)
    later = [writer.submit(FakeJob(prompt_id=f"b{i}").to_record("queued")) for i in range(3)]
    await asyncio.wait_for(asyncio.gather(*first, *later), 10)
    assert recorder.calls == [[f"a{i}" for i in range(5)], [f"b{i}" for i in range(3)]]
    assert writer.writes == 2


async def test_a_final_record_takes_its_own_earlier_ones_and_flush_writes_the_rest():
    recorder = SlowRecorder()
    writer = RecordWriter(recorder, asyncio.get_running_loop())
    job = FakeJob(prompt_id="f")
    other = writer.submit(FakeJob(prompt_id="q").to_record("queued"))  # may wait LAZY_S
    queued = writer.submit(job.to_record("queued"))
    final = writer.submit(finish(job).to_record())  # due within GATHER_S
    await asyncio.wait_for(final, 10)
    # one write took the job's queued and final records (the final one only is written);
    # the other prompt's lazy record waits for its own time, to meet its later states
    assert queued.done() and not other.done() and recorder.calls == [["f"]]
    later = writer.submit(FakeJob(prompt_id="r").to_record("running"))
    await asyncio.wait_for(writer.flush(), 10)  # lazy records are written now, not skipped
    assert other.done() and later.done() and recorder.calls == [["f"], ["q", "r"]]


async def test_a_final_record_that_may_wait_goes_with_the_next_write():
    recorder = SlowRecorder()
    writer = RecordWriter(recorder, asyncio.get_running_loop())
    loop = asyncio.get_running_loop()
    start = loop.time()
    patient = writer.submit(finish(FakeJob(prompt_id="m")).to_record(), GATHER_MORE_S)
    await asyncio.sleep(0)
    urgent = writer.submit(finish(FakeJob(prompt_id="u")).to_record())  # GATHER_S
    await asyncio.wait_for(urgent, 10)
    # the urgent one's write took the patient one along: one write, long before its deadline
    assert patient.done() and recorder.calls == [["m", "u"]]
    alone = writer.submit(finish(FakeJob(prompt_id="a")).to_record(), GATHER_MORE_S)
    await asyncio.wait_for(alone, 10)  # nothing else comes: written by its own deadline
    assert recorder.calls == [["m", "u"], ["a"]] and loop.time() - start >= GATHER_MORE_S


async def test_a_lazy_record_is_written_by_its_deadline_on_its_own():
    recorder = SlowRecorder()
    writer = RecordWriter(recorder, asyncio.get_running_loop())
    queued = writer.submit(FakeJob(prompt_id="q").to_record("queued"))
    await asyncio.wait_for(queued, 10)  # nothing else comes: written after LAZY_S
    assert recorder.calls == [["q"]] and writer.writes == 1


async def test_record_writer_falls_back_to_one_by_one():
    written: list[str] = []

    class Flaky:
        def record_generations(self, records) -> None:
            raise RuntimeError("disk full")

        def record_generation(self, record) -> None:
            written.append(record.prompt_id)

    writer = RecordWriter(Flaky(), asyncio.get_running_loop())
    done = [writer.submit(FakeJob(prompt_id=f"p{i}").to_record("queued")) for i in range(3)]
    await asyncio.wait_for(asyncio.gather(*done), 10)
    assert written == ["p0", "p1", "p2"]


def _counts(store: Store, batch_id: str) -> tuple[int, int]:
    row = store.batch_record(batch_id)
    return row["completed_count"], row["failed_count"]


def _recounted(store: Store, batch_id: str) -> tuple[int, int]:
    rows = store.generation_records(batch_id=batch_id)
    completed = sum(r["status"] == "completed" for r in rows)
    return completed, sum(r["status"] in ("failed", "lost") for r in rows)


async def test_record_writer_writes_a_job_once_per_tick_in_its_latest_state(tmp_path):
    store = Store(tmp_path)
    job = FakeJob(batch_id=None)
    writer = RecordWriter(store, asyncio.get_running_loop())
    done = [
        writer.submit(job.to_record("queued")),
        writer.submit(job.to_record("running")),
        writer.submit(finish(job).to_record()),
    ]
    await asyncio.wait_for(asyncio.gather(*done), 10)
    rows = store.generation_records()
    assert [(r["prompt_id"], r["status"], len(r["outputs"])) for r in rows] == [
        (job.prompt_id, "completed", 1)
    ]
    assert rows[0]["prompt"] == job.prompt and writer.writes == 1


def test_many_final_records_at_once_write_each_file_once(tmp_path):
    # more finals in one call than one IN (...) query takes: each is checked, each written once
    store = Store(tmp_path)
    jobs = [finish(FakeJob(batch_id=None)) for _ in range(IN_CHUNK + 7)]
    store.record_generations([job.to_record() for job in jobs])
    files = sorted(p for p in (tmp_path / "outputs").rglob("*.png"))
    assert len(files) == len(jobs)
    contents = {p: p.read_bytes() for p in files}
    for job in jobs:  # finished a second time (a late duplicate): no file is written again
        job.outputs[0].data = b"\x89PNG changed"
    store.record_generations([job.to_record() for job in jobs])
    assert {p: p.read_bytes() for p in files} == contents
    assert len(store.query("SELECT id FROM generations WHERE status = 'completed'")) == len(jobs)


def test_the_final_record_stores_the_prompt_the_server_ran(tmp_path):
    # a 0.27 server may replace a node it lacks; the job then records the server's prompt
    store = Store(tmp_path)
    job = FakeJob(batch_id=None)
    record_queued(store, job)
    ran = json.loads(json.dumps(job.prompt))
    ran[next(iter(ran))]["class_type"] = "ReplacementNode"
    job.prompt = ran
    store.record_generation(finish(job).to_record())
    row = store.query("SELECT prompt_json FROM generations WHERE prompt_id = ?", (job.prompt_id,))
    assert json.loads(row[0]["prompt_json"]) == ran
