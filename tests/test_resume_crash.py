"""Crash test with real processes: a batch runner is SIGKILLed halfway, a new process resumes it.

The simulated ComfyUI runs as its own process (``python -m comfy_widgets.sim``), so it keeps
working through the crash, like a real server would. The end state must be all 20 generations
recorded with their images on disk, and no item run or recorded twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from comfy_widgets.records.sqlite import Store

REPO = Path(__file__).resolve().parents[1]
TOTAL = 20
KILL_AFTER = 8

RUNNER = """
import sys
from comfy_widgets.engine.client import connect
from comfy_widgets.records.sqlite import Store
from comfy_widgets.workflow.workflow import Workflow

store = Store(sys.argv[2])
client = connect(sys.argv[1], store=store)
wf = Workflow.load("comfy_widgets/examples/sd15_txt2img_api.json")
batch = client.batch(wf, count=int(sys.argv[3]), seed="random", steps=2, width=64, height=64,
                     concurrency=3)
print(batch.id, flush=True)
batch.result(timeout=300)
print("finished", flush=True)
"""

RESUMER = """
import json, sys
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.resume import resume
from comfy_widgets.records.sqlite import Store

store = Store(sys.argv[2])
client = connect(sys.argv[1], store=store)
df = resume(sys.argv[3], client, store=store, poll_interval=0.05)
print(json.dumps(list(df["status"])), flush=True)
client.close()
"""


@pytest.fixture
def sim_process(tmp_path):
    """The simulator in its own process; yields its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "comfy_widgets.sim",
            "--port",
            "0",
            "--seconds-per-step",
            "0.02",
            "--no-previews",
            "--data-dir",
            str(tmp_path / "sim"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert match, f"simulator did not start: {line!r}"
    yield match.group(0)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _completed(path: Path) -> int:
    """Completed generations in the store, read with a plain sqlite3 connection."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute(
            "SELECT COUNT(*) FROM generations WHERE status = 'completed'"
        ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_sigkilled_batch_is_resumed_by_a_new_process(tmp_path, sim_process):
    store_path = tmp_path / "home" / "store.sqlite"
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, sim_process, str(store_path), str(TOTAL)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    batch_id = runner.stdout.readline().strip()
    deadline = time.monotonic() + 120
    while _completed(store_path) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=10)
    assert runner.returncode == -signal.SIGKILL
    before = Store(store_path)
    at_kill = [r["status"] for r in before.generation_records(batch_id=batch_id)]
    before.close()
    assert KILL_AFTER <= at_kill.count("completed") and len(at_kill) < TOTAL, at_kill

    resumer = subprocess.run(
        [sys.executable, "-c", RESUMER, sim_process, str(store_path), batch_id],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumer.returncode == 0, resumer.stderr[-2000:]
    assert json.loads(resumer.stdout.strip().splitlines()[-1]) == ["completed"] * TOTAL

    store = Store(store_path)
    assert store.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
    rows = store.generation_records(batch_id=batch_id)
    assert sorted(r["batch_index"] for r in rows) == list(range(TOTAL))
    assert len({r["prompt_id"] for r in rows}) == TOTAL
    assert {r["status"] for r in rows} == {"completed"}
    paths = [Path(r["outputs"][0]["local_path"]) for r in rows]
    assert all(p.is_file() for p in paths)
    assert len(list((store.outputs_dir / batch_id).glob("*.png"))) == TOTAL
    record = store.batch_record(batch_id)
    assert (record["status"], record["completed_count"]) == ("completed", TOTAL)
    server_history = httpx.get(f"{sim_process}/history", timeout=10).json()
    sent = [entry["prompt"][2] for entry in server_history.values()]
    assert len(sent) == TOTAL
    assert all(sent.count(p) == 1 for p in record["prompts"])
