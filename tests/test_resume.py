"""resume() and rerun() against the simulated server: every way a batch item can be left behind."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path

import pytest

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.resume import rerun, resume
from comfy_widgets.records.sqlite import Store
from comfy_widgets.results.recorded import history
from comfy_widgets.workflow import pngmeta
from tests.shared_data import REFERENCE
from tests.store_fakes import FakeClient, FakeJob, FakeWorkflow, record_queued

EXAMPLES = Path(__file__).resolve().parents[1] / "comfy_widgets" / "examples"
TRACES = REFERENCE / "traces"
EMPTY_IMAGE = json.loads((EXAMPLES / "empty_image_api.json").read_text())


def empty_image(color: int) -> dict:
    """A model-free prompt whose image depends on ``color``."""
    prompt = copy.deepcopy(EMPTY_IMAGE)
    prompt["1"]["inputs"].update(width=32, height=32, color=color)
    return prompt


@pytest.fixture
def server():
    with sim.serve(seconds_per_step=0.01) as handle:
        yield handle


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    yield store
    store.close()


@pytest.fixture
def client(server, store):
    client = connect(server.url, store=store)
    yield client
    client.close()


def _call(client, coro):
    """Run a client coroutine from this (loop-less) test thread."""
    return client.spawn(coro).result(timeout=30)


def _finished(store, job, timeout: float = 30):
    """Wait for the job, then for its store record (the hook runs right after the job resolves)."""
    job.result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = store.generation_records(generation_id=job.prompt_id)
        if rows and rows[0]["status"] == "completed":
            return rows[0]
        time.sleep(0.01)
    raise AssertionError(f"job {job.prompt_id} was not recorded as completed")


def _item(store, client, batch_id: str, index: int, prompt: dict, prompt_id: str) -> FakeJob:
    """One batch item as a Job would record it, for writing states by hand."""
    return FakeJob(
        workflow=None,
        parameters={"color": index},
        prompt=prompt,
        client=client,
        prompt_id=prompt_id,
        batch_id=batch_id,
        batch_index=index,
        timings={},
    )


def test_resume_settles_every_kind_of_unfinished_item(server, store, client):
    prompts = [empty_image(1000 + i) for i in range(6)]
    workflow = FakeWorkflow(EMPTY_IMAGE, name="empty")
    store.create_batch(
        "b",
        workflow,
        6,
        {},
        0,
        [{"color": 1000 + i} for i in range(6)],
        [server.url],
        prompts=prompts,
        columns=["color"],
    )
    # 0: ran through a Job with store hooks (completed before the "crash")
    client.submit(prompts[0], batch_id="b", batch_index=0).result(timeout=30)
    # 1: queued and recorded, finished on the server while nobody listened
    ids = [str(uuid.uuid4()) for _ in range(6)]
    _call(client, client.queue_prompt(prompts[1], prompt_id=ids[1]))
    record_queued(store, _item(store, client, "b", 1, prompts[1], ids[1]))
    # 2: recorded as queued but the server never had it (lost, e.g. server restart)
    record_queued(store, _item(store, client, "b", 2, prompts[2], ids[2]))
    # 3: recorded pending, crashed before the POST
    store.record_generation(_item(store, client, "b", 3, prompts[3], ids[3]).to_record("pending"))
    # 4: POSTed, crashed before it was recorded
    _call(client, client.queue_prompt(prompts[4], prompt_id=ids[4]))
    # 5: never recorded, never sent

    df = resume("b", client, store=store, poll_interval=0.02)

    assert list(df["status"]) == [
        "completed",
        "completed",
        "lost",
        "completed",
        "completed",
        "completed",
    ]
    assert df["prompt_id"].iloc[3] == ids[3] and df["prompt_id"].iloc[4] == ids[4]
    assert store.batch_record("b")["status"] == "partial"
    done = df[df["status"] == "completed"]
    assert all(Path(ref.local_path).is_file() for ref in done["image"])
    server_history = _call(client, client.get_history())
    sent = [entry["prompt"][2] for entry in server_history.values()]
    assert [sent.count(p) for p in prompts] == [1, 1, 0, 1, 1, 1]

    again = resume("b", client, store=store, requeue_lost=True, poll_interval=0.02)
    assert set(again["status"]) == {"completed"}
    assert store.batch_record("b")["status"] == "completed"
    assert len(history(batch_id="b", store=store)) == 6
    files = list((store.outputs_dir / "b").glob("*.png"))
    assert len(files) == 6


def test_resume_follows_items_still_queued_and_records_failures(server, store, client):
    blocker = json.loads(
        (TRACES / "g1_ksampler_real_no_feature_flags" / "workflow_api.json").read_text()
    )
    blocker["3"]["inputs"]["steps"] = 40
    _call(client, client.queue_prompt(blocker))
    server.faults.fail_node("EmptyImage")
    prompts = [empty_image(7 + i) for i in range(3)]
    store.create_batch("r", None, 3, prompts=prompts, plan_rows=[{}, {}, {}])
    ids = [str(uuid.uuid4()) for _ in prompts]
    for i, (prompt, prompt_id) in enumerate(zip(prompts, ids, strict=True)):
        _call(client, client.queue_prompt(prompt, prompt_id=prompt_id))
        record_queued(store, _item(store, client, "r", i, prompt, prompt_id))
    df = resume("r", client, store=store, poll_interval=0.01)
    assert list(df["prompt_id"]) == ids
    assert list(df["status"]) == ["failed", "completed", "completed"]
    assert "Simulated failure" in df["error"].iloc[0]
    assert df["started_at"].iloc[1] <= df["finished_at"].iloc[1]
    assert store.batch_record("r")["status"] == "partial"


def test_saved_png_prompt_chunk_requeues_unchanged(server, store, client):
    prompt = empty_image(4242)
    row = _finished(store, client.submit(prompt))
    path = row["outputs"][0]["local_path"]
    meta = pngmeta.read_comfy_metadata(path)
    assert meta["prompt"] == prompt
    again = client.submit(meta["prompt"])
    _finished(store, again)
    entry = _call(client, client.get_history(again.prompt_id))[again.prompt_id]
    assert entry["prompt"][2] == prompt


def test_png_of_a_ui_workflow_carries_the_graph_and_the_prompt(server, store, client):
    from comfy_widgets.workflow.workflow import Workflow

    workflow = Workflow.load(EXAMPLES / "sd15_txt2img.json")
    assert workflow.format == "ui"
    job = client.run(workflow, seed=3, steps=1, width=64, height=64)
    row = _finished(store, job)
    meta = pngmeta.read_comfy_metadata(row["outputs"][0]["local_path"])
    sampler = next(n for n in meta["workflow"]["nodes"] if n["type"] == "KSampler")
    assert sampler["widgets_values"][0] == 3 and sampler["widgets_values"][2] == 1
    assert meta["workflow"] != workflow.source
    assert Workflow.load(meta["workflow"]).to_api() == job.prompt
    assert meta["prompt"] == job.prompt
    entry = _call(client, client.get_history(job.prompt_id))[job.prompt_id]
    assert entry["prompt"][3]["extra_pnginfo"] == {"workflow": meta["workflow"]}
    assert pngmeta.read_comfy_metadata(job.outputs[0].data)["workflow"] == meta["workflow"]
    assert meta["parameters"] == {"seed": 3, "steps": 1, "width": 64, "height": 64}
    again = client.submit(meta["prompt"])
    _finished(store, again)
    assert len(store.generation_records()) == 2
    entry = _call(client, client.get_history(again.prompt_id))[again.prompt_id]
    assert "extra_pnginfo" not in entry["prompt"][3]


def test_rerun_queues_the_recorded_prompt(server, store, client):
    prompt = empty_image(77)
    _finished(store, client.submit(prompt, workflow=FakeWorkflow(prompt, name="wf")))
    generation_id = history(store=store)["generation_id"].iloc[0]
    job = rerun(generation_id, client, store=store)
    _finished(store, job)
    df = history(store=store)
    assert len(df) == 2 and list(df["workflow"]) == ["wf", "wf"]
    assert df["prompt"].iloc[0] == df["prompt"].iloc[1] == prompt
    assert df["prompt_id"].iloc[1] == job.prompt_id


def test_resume_builds_prompts_from_the_stored_workflow(server, store, client):
    from comfy_widgets.workflow.workflow import Workflow

    workflow = Workflow.load(EXAMPLES / "sd15_txt2img_api.json")
    plan = [
        {"seed": 5, "steps": 1, "width": 64, "height": 64},
        {"seed": 6, "steps": 1, "width": 64, "height": 64},
    ]
    store.create_batch("w", workflow, 2, plan_rows=plan, columns=["seed"])
    df = resume("w", client, store=store, poll_interval=0.01)
    assert list(df["status"]) == ["completed", "completed"]
    assert list(df["seed"]) == [5, 6]
    sent = [r["prompt"] for r in store.generation_records(batch_id="w")]
    assert [p["3"]["inputs"]["seed"] for p in sent] == [5, 6]


async def test_resume_is_awaitable_inside_a_running_loop(server, store):
    prompt = empty_image(99)
    store.create_batch("a", None, 1, prompts=[prompt], plan_rows=[{}], servers=[server.url])
    df = await resume("a", store=store, poll_interval=0.01)
    assert list(df["status"]) == ["completed"]
    assert df["server"].iloc[0] == server.url


def test_resume_adopts_an_orphan_the_server_stored_with_converted_numbers(server, store, client):
    prompt = json.loads((EXAMPLES / "sd15_txt2img_api.json").read_text())
    prompt["3"]["inputs"].update(steps=1, cfg=8)
    prompt["5"]["inputs"].update(width=64, height=64)
    orphan_id = str(uuid.uuid4())
    _call(client, client.queue_prompt(prompt, prompt_id=orphan_id))
    store.create_batch("o", None, 1, prompts=[prompt], plan_rows=[{}])
    df = resume("o", client, store=store, poll_interval=0.01)
    assert list(df["prompt_id"]) == [orphan_id]
    assert list(df["status"]) == ["completed"]
    server_history = _call(client, client.get_history())
    assert list(server_history) == [orphan_id]
    assert server_history[orphan_id]["prompt"][2]["3"]["inputs"]["cfg"] == 8.0


def test_resume_reconciles_each_item_with_the_server_it_ran_on(store):
    prompts = [empty_image(300 + i) for i in range(3)]
    with sim.serve() as first, sim.serve() as second:
        store.create_batch(
            "two", None, 3, prompts=prompts, plan_rows=[{}, {}, {}], servers=[first.url, second.url]
        )
        for index, handle in ((0, first), (1, second)):
            sender = connect(handle.url)
            prompt_id = str(uuid.uuid4())
            _call(sender, sender.queue_prompt(prompts[index], prompt_id=prompt_id))
            record_queued(store, _item(store, sender, "two", index, prompts[index], prompt_id))
            sender.close()
        df = resume("two", store=store, poll_interval=0.01)
        assert list(df["status"]) == ["completed"] * 3
        assert list(df["server"]) == [first.url, second.url, first.url]
        assert all(Path(ref.local_path).is_file() for ref in df["image"])


def test_resume_leaves_items_of_a_server_that_is_down_and_sends_new_ones_elsewhere(store):
    prompts = [empty_image(400 + i) for i in range(2)]
    down = sim.serve()
    down.stop()
    with sim.serve() as live:
        store.create_batch(
            "d", None, 2, prompts=prompts, plan_rows=[{}, {}], servers=[down.url, live.url]
        )
        record_queued(
            store,
            FakeJob(client=FakeClient(down.url), prompt=prompts[0], batch_id="d", batch_index=0),
        )
        df = resume("d", store=store, poll_interval=0.01)
    assert list(df["status"]) == ["queued", "completed"]
    assert list(df["server"]) == [down.url, live.url]
    assert store.batch_record("d")["status"] == "partial"


def test_two_concurrent_resumes_of_one_batch_send_each_item_once(server, store, client):
    """The second resume waits on the batch's lease, then finds every item settled."""
    import concurrent.futures

    prompts = [empty_image(3000 + i) for i in range(5)]
    workflow = FakeWorkflow(EMPTY_IMAGE, name="empty")
    values = [{"color": 3000 + i} for i in range(5)]
    store.create_batch(
        "twice", workflow, 5, {}, 0, values, [server.url], prompts=prompts, columns=["color"]
    )
    other_store = Store(store.path)  # a second process's connection to the same file
    other = connect(server.url, store=other_store)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(resume, "twice", client, store=store)
            second = pool.submit(resume, "twice", other, store=other_store)
            frames = [first.result(timeout=60), second.result(timeout=60)]
        for frame in frames:  # neither returns while an item is still queued
            assert list(frame["status"]) == ["completed"] * 5
        server_history = _call(client, client.get_history())
        sent = [entry["prompt"][2] for entry in server_history.values()]
        assert [sent.count(p) for p in prompts] == [1] * 5
    finally:
        other.close()
        other_store.close()


def test_a_lease_is_exclusive_until_released_or_expired(store):
    assert store.acquire_lease("b", "one", 30)
    assert store.acquire_lease("b", "one", 30)  # renewing
    assert not store.acquire_lease("b", "two", 30)
    store.release_lease("b", "one")
    assert store.acquire_lease("b", "two", 0.05)
    time.sleep(0.1)
    assert store.acquire_lease("b", "three", 30)  # two's lease ran out
