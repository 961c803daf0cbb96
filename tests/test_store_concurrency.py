"""Two processes and several threads writing to one store at once: no corruption, no lost rows."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from comfy_widgets.records.sqlite import Store
from tests.store_fakes import (
    API_PROMPT,
    FakeJob,
    FakeWorkflow,
    finish,
    record_finished,
    record_queued,
)

REPO = Path(__file__).resolve().parents[1]
JOBS_PER_WRITER = 60

WRITER = """
import sys
from comfy_widgets.records.sqlite import Store
from tests.store_fakes import (
    API_PROMPT, FakeJob, FakeWorkflow, finish, record_finished, record_queued, record_started
)

store = Store(sys.argv[1])
tag = sys.argv[2]
wf = FakeWorkflow(API_PROMPT, name="shared")
store.create_batch("shared-batch", wf, 2 * int(sys.argv[3]))
offset = 0 if tag == "a" else int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[3])):
    job = FakeJob(workflow=wf, batch_id="shared-batch", batch_index=offset + i,
                  parameters={"seed": i, "writer": tag})
    record_queued(store, job)
    record_started(store, job)
    record_finished(store, finish(job))
    store.set_last_used(wf, {"seed": i, "writer": tag})
print("done", flush=True)
"""


def _start_writer(path: Path, tag: str) -> subprocess.Popen:
    """Start a writer process that waits for a line on stdin before writing."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), tag, str(JOBS_PER_WRITER)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_two_processes_write_one_store_without_losing_rows(tmp_path):
    path = tmp_path / "store.sqlite"
    writers = [_start_writer(path, "a"), _start_writer(path, "b")]
    for proc in writers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in writers:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "done"
    store = Store(path)
    assert store.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
    rows = store.generation_records(batch_id="shared-batch")
    assert sorted(r["batch_index"] for r in rows) == list(range(2 * JOBS_PER_WRITER))
    assert {r["status"] for r in rows} == {"completed"}
    assert all(Path(r["outputs"][0]["local_path"]).is_file() for r in rows)
    record = store.batch_record("shared-batch")
    assert (record["completed_count"], record["failed_count"]) == (2 * JOBS_PER_WRITER, 0)
    assert len(store.query("SELECT id FROM workflows")) == 1


def test_threads_share_one_store_instance(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    wf = FakeWorkflow(API_PROMPT)

    def write(n: int) -> None:
        for i in range(20):
            job = FakeJob(workflow=wf, parameters={"n": n, "i": i})
            record_queued(store, job)
            record_finished(store, finish(job, images=0))
            store.generation_records(status="completed")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.generation_records(status="completed")) == 80
