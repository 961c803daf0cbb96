"""The user-facing flows through every store (SQLite and PostgreSQL): a run remembers its values,
a batch is recorded and loaded back, a half-sent batch is resumed, and a PostgreSQL URL given to
``connect(store=...)`` or ``$COMFY_WIDGETS_STORE`` selects the team store."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path

import pytest

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.resume import resume
from comfy_widgets.errors import ComfyWidgetsError
from comfy_widgets.records import BatchRecord, GenerationRecord, WorkflowRecord, open_recorder
from comfy_widgets.records.postgres import PostgresStore
from comfy_widgets.records.sqlite import Store
from comfy_widgets.results.recorded import history, load_batch
from comfy_widgets.states import BatchState, JobState
from comfy_widgets.workflow.workflow import Workflow

EXAMPLES = Path(__file__).resolve().parents[1] / "comfy_widgets" / "examples"
EMPTY_IMAGE = json.loads((EXAMPLES / "empty_image_api.json").read_text())
SMALL = {"steps": 1, "width": 64, "height": 64}


@pytest.fixture
def server():
    with sim.serve(seconds_per_step=0.01) as handle:
        yield handle


@pytest.fixture
def client(server, recorder):
    client = connect(server.url, store=recorder)
    yield client
    client.close()


@pytest.fixture
def shared_stores(monkeypatch):
    """PostgresStore.shared's cache for this test only, its connections closed afterwards."""
    cache: dict[str, PostgresStore] = {}
    monkeypatch.setattr(PostgresStore, "_shared", cache)
    yield cache
    for store in cache.values():
        store.close()


def _empty_image(color: int) -> dict:
    prompt = copy.deepcopy(EMPTY_IMAGE)
    prompt["1"]["inputs"].update(width=32, height=32, color=color)
    return prompt


def _wait_for(check, what: str, timeout: float = 60):
    """Poll ``check`` until it returns something truthy (the store hooks run as jobs resolve)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _completed(recorder, prompt_id: str):
    rows = recorder.find_generations(generation_id=prompt_id)
    return rows if rows and rows[0].state == JobState.COMPLETED else None


def test_a_run_remembers_its_values_and_a_batch_loads_back(recorder, client):
    wf = Workflow.load(EXAMPLES / "sd15_txt2img_api.json")
    job = client.run(wf, seed=3, **SMALL)
    job.result(timeout=60)
    [row] = _wait_for(lambda: _completed(recorder, job.prompt_id), "the run's record")
    assert recorder.last_used(WorkflowRecord.of(wf)) == {"seed": 3, **SMALL}
    assert row.prompt == job.prompt and row.server == client.url
    # both stores note their copy on the job's outputs, so the job can let go of the bytes
    assert job.outputs and all(Path(str(o.local_path)).is_file() for o in job.outputs)
    batch = client.batch(wf, count=3, seed="increment", cfg=[5, 6, 7], **SMALL)
    batch.result(timeout=120)
    record = _wait_for(
        lambda: (b := recorder.batch(batch.id)) and b.state == BatchState.COMPLETED and b,
        "the batch's final state",
    )
    assert (record.completed_count, record.failed_count, record.total_count) == (3, 0, 3)
    df = load_batch(batch.id, recorder)
    assert list(df["status"]) == ["completed"] * 3 and list(df["cfg"]) == [5, 6, 7]
    assert {ref.image.size for ref in df["image"]} == {(64, 64)}
    assert len(history(store=recorder)) == 4
    assert recorder.last_used(WorkflowRecord.of(wf)) == {"seed": 3, **SMALL}  # batches don't


def test_resume_finishes_a_half_sent_batch(recorder, client):
    prompts = [_empty_image(300 + i) for i in range(4)]
    recorder.record_batch(BatchRecord("half", None, 4, prompts=prompts, plan=[{}] * 4))
    ids = [str(uuid.uuid4()) for _ in prompts]
    for index in (0, 1):  # sent and recorded as queued; the kernel died
        client.spawn(client.queue_prompt(prompts[index], prompt_id=ids[index])).result(timeout=30)
        recorder.record_generation(
            GenerationRecord(
                ids[index],
                JobState.QUEUED,
                client.url,
                prompt=prompts[index],
                batch_id="half",
                batch_index=index,
            )  # fmt: skip
        )
    recorder.record_generation(  # recorded as about to be sent, never arrived
        GenerationRecord(
            ids[2], JobState.PENDING, client.url, prompt=prompts[2], batch_id="half", batch_index=2
        )  # fmt: skip
    )
    df = resume("half", client, store=recorder, poll_interval=0.02)  # item 3: never recorded
    assert list(df["status"]) == ["completed"] * 4
    assert list(df["prompt_id"])[:3] == ids[:3]
    assert all(Path(ref.local_path).is_file() for ref in df["image"])
    sent = [e["prompt"][2] for e in client.spawn(client.get_history()).result(timeout=30).values()]
    assert [sent.count(p) for p in prompts] == [1, 1, 1, 1]
    assert recorder.batch("half").state == BatchState.COMPLETED


def test_a_postgresql_url_selects_the_team_store(
    server, postgres_url, postgres_server, monkeypatch, shared_stores, _isolated_store_home
):
    client = connect(server.url, store=postgres_url)
    try:
        assert isinstance(client.recorder, PostgresStore)
        assert open_recorder(postgres_url) is client.recorder  # one connection per URL
        job = client.submit(_empty_image(5), parameters={"color": 5})
        job.result(timeout=60)
        _wait_for(lambda: _completed(client.recorder, job.prompt_id), "the record")
    finally:
        client.close()
    assert isinstance(open_recorder("default"), Store)  # the embedded default stays SQLite
    assert history().empty
    monkeypatch.setenv("COMFY_WIDGETS_STORE", "sqlite")
    assert open_recorder("default") is Store.default()
    monkeypatch.setenv("COMFY_WIDGETS_STORE", "/some/where.sqlite")
    with pytest.raises(ComfyWidgetsError, match="COMFY_WIDGETS_STORE must be a postgresql://"):
        open_recorder("default")
    monkeypatch.setenv("COMFY_WIDGETS_STORE", postgres_url)
    assert open_recorder("default") is client.recorder
    df = history()
    assert list(df["prompt_id"]) == [job.prompt_id]
    assert postgres_server.password not in repr(client.recorder)
    assert Path(df["image"].iloc[0].local_path).is_relative_to(_isolated_store_home / "outputs")
