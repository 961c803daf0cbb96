"""Batch runner against the simulated ComfyUI server: results, stop, failures, a server pool."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest

import comfy_widgets as cw
from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.plan import sweep, values
from comfy_widgets.errors import BlockingCallError, ParameterError
from comfy_widgets.examples import __file__ as examples_init
from comfy_widgets.records.sqlite import Store
from comfy_widgets.results.frame import OutputRef, ResultsFrame
from comfy_widgets.workflow.workflow import Workflow

WORKFLOW_PATH = __import__("pathlib").Path(examples_init).parent / "sd15_txt2img_api.json"
SMALL = {"width": 64, "height": 64, "steps": 3}


@pytest.fixture
def workflow():
    return Workflow.load(WORKFLOW_PATH)


@pytest.fixture
async def server():
    server = await sim.start(seconds_per_step=0.0, previews=False)
    yield server
    await server.astop()


@pytest.fixture
async def client(server):
    client = connect(server.url)
    yield client
    await client.aclose()


async def history_ids(client) -> set[str]:
    return set(await client.get_history())


async def test_twenty_items_complete_with_twenty_correct_rows(client, workflow):
    batch = client.batch(
        workflow, count=20, seed=("increment", 100), prompt=["a red fox", "a blue owl"], **SMALL
    )
    assert batch.status == "pending" and batch.jobs == []  # plan ready before anything queued
    assert batch.plan["seed"].tolist() == list(range(100, 120))
    df = await batch
    assert isinstance(df, ResultsFrame) and len(df) == 20
    assert batch.status == "completed" and batch.completed_count == 20 and batch.failed_count == 0
    assert df["batch_index"].tolist() == list(range(20))
    assert set(df["batch_id"]) == {batch.id} and set(df["server"]) == {client.url}
    assert set(df["status"]) == {"completed"}
    assert df["seed"].tolist() == list(range(100, 120))
    assert df["prompt"].tolist() == ["a red fox", "a blue owl"] * 10
    assert df["prompt_id"].is_unique and set(df["prompt_id"]) == await history_ids(client)
    assert df["error"].isna().all() and df["duration_s"].notna().all()
    for job, row in zip(batch.jobs, df.itertuples(), strict=True):
        assert job.batch_id == batch.id and job.batch_index == row.batch_index
        assert job.prompt["3"]["inputs"]["seed"] == row.seed
        assert job.prompt["6"]["inputs"]["text"] == row.prompt
    assert all(isinstance(ref, OutputRef) and ref.kind == "image" for ref in df["image"])
    first, second = df["image"].iat[0], df["image"].iat[1]
    assert first.image.size == (64, 64)
    assert first.load() != second.load()  # the simulator draws from the parameters
    assert df["outputs"].map(len).tolist() == [1] * 20


async def test_grid_sweep_rows_carry_each_varied_parameter(client, workflow):
    batch = client.batch(
        workflow,
        count=1,
        seed=7,
        cfg=sweep(5, 7, 2),
        sampler_name=values(["euler", "ddim"]),
        **SMALL,
    )
    df = await batch
    assert list(df.columns[5:8]) == ["cfg", "sampler_name", "seed"]
    assert list(zip(df["cfg"], df["sampler_name"], strict=True)) == [
        (5, "euler"),
        (5, "ddim"),
        (7, "euler"),
        (7, "ddim"),
    ]
    assert batch.varied == ["cfg", "sampler_name"]
    for job in batch.jobs:
        inputs = job.prompt["3"]["inputs"]
        assert (inputs["cfg"], inputs["sampler_name"], inputs["seed"]) == (
            job.parameters["cfg"],
            job.parameters["sampler_name"],
            7,
        )


async def test_a_bad_value_queues_nothing(client, workflow):
    with pytest.raises(ParameterError) as info:
        client.batch(workflow, count=1, steps=values([10, 20, 0]))
    assert "batch item 2" in str(info.value) and "steps" in info.value.errors
    await asyncio.sleep(0.05)
    assert await history_ids(client) == set()
    queue = await client.get_queue()
    assert queue["queue_pending"] == [] and queue["queue_running"] == []


async def test_a_model_file_the_server_lacks_queues_nothing(client, workflow):
    """The workflow itself names a checkpoint this server does not have (a downloaded graph)."""
    await client.get_object_info()  # the server's model lists are known from here on
    prompt = workflow.to_api()
    loader = next(n for n in prompt.values() if n["class_type"] == "CheckpointLoaderSimple")
    loader["inputs"]["ckpt_name"] = "not_on_this_server.safetensors"
    with pytest.raises(ParameterError) as caught:
        client.batch(Workflow.load(prompt), count=3, seed="random", **SMALL)
    assert "not_on_this_server.safetensors" in str(caught.value)
    assert await history_ids(client) == set()
    assert (await client.get_queue())["queue_pending"] == []


async def test_a_missing_model_is_refused_once_even_without_object_info(client, workflow):
    """No object_info fetched: the model lists are fetched once and the batch refused before
    anything is queued (ComfyUI would otherwise reject every item on its own)."""
    assert client.backend.cached_object_info is None
    prompt = workflow.to_api()
    loader = next(n for n in prompt.values() if n["class_type"] == "CheckpointLoaderSimple")
    loader["inputs"]["ckpt_name"] = "not_on_this_server.safetensors"
    batch = client.batch(Workflow.load(prompt), count=3, seed="random", **SMALL)
    with pytest.raises(ParameterError) as caught:
        await batch
    message = str(caught.value)
    assert message.count("not_on_this_server.safetensors") == 1 and "nothing was queued" in message
    assert batch.status == "failed" and batch.error is caught.value and batch.jobs == []
    assert await history_ids(client) == set()
    assert (await client.get_queue())["queue_pending"] == []


async def test_stop_remaining_leaves_exactly_the_started_items(server, client, workflow):
    server.settings.seconds_per_step = 0.02
    batch = client.batch(workflow, count=12, seed="random", concurrency=4, **SMALL)
    started = asyncio.Event()
    batch.subscribe(lambda b: started.set() if b.running_count or b.completed_count else None)
    await asyncio.wait_for(started.wait(), 10)
    stopper = threading.Thread(target=batch.stop)  # a widget button runs on another thread
    stopper.start()
    stopper.join()
    df = await asyncio.wait_for(batch, 20)
    started_items = {j.batch_index for j in batch.jobs if j.timings["started_at"] is not None}
    completed = set(df.loc[df["status"] == "completed", "batch_index"])
    assert completed and completed == started_items
    assert set(df.loc[df["status"] != "completed", "status"]) == {"cancelled"}
    assert len(completed) < 12 and batch.status == "cancelled"
    assert batch.cancelled_count == 12 - len(completed)
    assert await history_ids(client) == set(df.loc[df["status"] == "completed", "prompt_id"])
    assert (await client.get_queue())["queue_pending"] == []


async def test_stop_with_interrupt_cancels_the_running_item(server, client, workflow):
    server.settings.seconds_per_step = 0.2
    batch = client.batch(workflow, count=3, seed="random", concurrency=2, steps=50)
    running = asyncio.Event()
    batch.subscribe(lambda b: running.set() if b.running_count else None)
    await asyncio.wait_for(running.wait(), 10)
    await batch.stop_async(interrupt=True)
    df = await asyncio.wait_for(batch, 20)
    assert set(df["status"]) == {"cancelled"} and batch.status == "cancelled"


async def test_stop_before_anything_was_sent_cancels_every_item(client, workflow):
    batch = client.batch(workflow, count=5, seed="random", **SMALL)
    batch.stop()
    df = await asyncio.wait_for(batch, 10)
    assert batch.jobs == [] and set(df["status"]) == {"cancelled"}
    assert batch.status == "cancelled" and batch.cancelled_count == 5
    assert await history_ids(client) == set()


async def test_a_failing_item_marks_only_itself(client, workflow):
    prefixes = ["ok", "../../outside_output_dir/bad", "ok"]
    batch = client.batch(workflow, seed="random", **{"9.filename_prefix": prefixes}, **SMALL)
    df = await batch
    assert df["status"].tolist() == ["completed", "failed", "completed"]
    assert batch.status == "partial" and (batch.completed_count, batch.failed_count) == (2, 1)
    assert "outside the output folder" in df["error"].iat[1]
    assert df["image"].iat[1] is None and df["error"].iloc[[0, 2]].isna().all()


async def test_a_failing_node_fault_marks_only_its_item(server, client, workflow):
    server.faults.fail_node("KSampler")
    batch = client.batch(workflow, count=3, seed="increment", concurrency=1, **SMALL)
    df = await batch
    assert df["status"].tolist() == ["failed", "completed", "completed"]
    assert "Simulated failure" in df["error"].iat[0]


async def test_every_item_failing_makes_a_failed_batch(server, client, workflow):
    server.faults.fail_node("KSampler", times=2)
    batch = client.batch(workflow, count=2, seed="increment", concurrency=1, **SMALL)
    await batch
    assert batch.status == "failed" and batch.failed_count == 2


async def test_two_server_pool_spreads_the_work(client, workflow):
    other = await sim.start(seconds_per_step=0.0, previews=False)
    try:
        batch = client.batch(
            workflow, count=10, seed="increment", servers=[client, other.url], **SMALL
        )
        df = await batch
        assert set(df["status"]) == {"completed"}
        counts = df["server"].value_counts().to_dict()
        assert counts == {client.url: 5, other.url: 5}
        pool_other = batch.servers[1]
        assert set(df.loc[df["server"] == other.url, "prompt_id"]) == set(
            await pool_other.get_history()
        )
        assert set(df.loc[df["server"] == client.url, "prompt_id"]) == await history_ids(client)
        row = df[df["server"] == other.url].iloc[0]
        assert row["image"].image.size == (64, 64)  # loads although the pool client closed
        await pool_other.aclose()
    finally:
        await other.astop()


async def test_items_of_an_unreachable_server_go_to_the_others(client, workflow):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    batch = client.batch(
        workflow, count=4, seed="increment", concurrency=2, servers=[client, dead], **SMALL
    )
    df = await asyncio.wait_for(batch, 60)
    assert df["status"].tolist() == ["completed"] * 4 and batch.status == "completed"
    assert set(df["server"]) == {client.url}
    assert set(df["prompt_id"]) == await history_ids(client)
    # the stats count each item once, where it ended: the re-sent ones left the dead server
    stats = {s.url: s for s in batch.server_stats()}
    assert (stats[client.url].completed, stats[client.url].failed) == (4, 0)
    assert (stats[dead].completed, stats[dead].failed, stats[dead].down) == (0, 0, True)


async def test_subscribers_run_on_the_loop_thread_and_see_the_end(client, workflow):
    batch = client.batch(workflow, count=2, seed="increment", **SMALL)
    seen = []
    batch.subscribe(lambda b: seen.append((threading.get_ident(), b.done(), b.status)))
    await batch
    assert {ident for ident, _, _ in seen} == {threading.get_ident()}
    assert seen[-1][1:] == (True, "completed")
    assert repr(batch).endswith("completed: 2/2 completed>")
    # displayed as the batch progress view (registered by the facade), with a static fallback
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    assert cw.register_display(shell)
    data, _ = shell.display_formatter.mimebundle_formatter(batch)
    assert "application/vnd.jupyter.widget-view+json" in data and "text/html" in data


async def test_df_while_running_and_blocking_result_is_refused(server, client, workflow):
    server.settings.seconds_per_step = 0.01
    batch = client.batch(workflow, count=4, seed="increment", concurrency=1, **SMALL)
    assert set(batch.df["status"]) == {"pending"}
    with pytest.raises(BlockingCallError):
        batch.result()
    await batch
    assert set(batch.df["status"]) == {"completed"}


async def test_batch_is_recorded_in_the_store(tmp_path, server, workflow):
    store = Store(tmp_path / "store.sqlite")
    client = connect(server.url, store=store)
    try:
        batch = client.batch(workflow, count=3, seed=("increment", 5), **SMALL)
        await batch
        record = store.batch_record(batch.id)
        assert record["status"] == "completed" and record["total_count"] == 3
        assert record["plan_seed"] == batch.plan_seed
        assert [row["seed"] for row in record["plan"]] == [5, 6, 7]
        generations = store.generation_records(batch_id=batch.id)
        assert [g["batch_index"] for g in generations] == [0, 1, 2]
        assert {g["status"] for g in generations} == {"completed"}
        folder = batch.export(tmp_path / "export")
        assert (folder / "results.csv").read_text().count("\n") == 4
    finally:
        await client.aclose()
        store.close()


async def test_items_with_more_to_come_let_their_records_wait_and_the_tail_does_not(
    tmp_path, server, workflow
):
    from comfy_widgets.engine.recording import GATHER_MORE_S

    store = Store(tmp_path / "store.sqlite")
    client = connect(server.url, store=store)
    try:
        batch = client.batch(workflow, count=6, seed="increment", concurrency=2, **SMALL)
        waits: dict[int, float | None] = {}
        finishing: list[int] = []  # the order in which the server was through with them

        def on_item(b, index):
            job = b.job(index) if index is not None else None
            if job is not None and index not in waits:
                waits[index] = job.final_record_wait  # as it was sent
            if job is not None and job.finishing and index not in finishing:
                finishing.append(index)

        batch.subscribe_items(on_item)
        await asyncio.wait_for(batch, 30)
        # sent while more items were left: nobody waits for their records (their slots were
        # freed when the server finished), so they may share writes; the last one may not,
        # and neither may any item still open when it was sent
        assert waits == {0: GATHER_MORE_S, 1: GATHER_MORE_S, 2: GATHER_MORE_S,
                         3: GATHER_MORE_S, 4: GATHER_MORE_S, 5: None}  # fmt: skip
        # the tail waits GATHER_S, but the last item to finish shares its write with nobody
        final_waits = [job.final_record_wait for job in batch.jobs]
        assert sorted(finishing) == list(range(6))
        assert [i for i, wait in enumerate(final_waits) if wait == 0.0] == [finishing[-1]]
        assert final_waits[5] in (None, 0.0)
        rows = store.generation_records(batch_id=batch.id)
        assert [(r["batch_index"], r["status"]) for r in rows] == [
            (i, "completed") for i in range(6)
        ]
    finally:
        await client.aclose()
        store.close()


def test_plain_script_mode_blocks_on_result():
    with sim.serve(seconds_per_step=0.0, previews=False) as server:
        client = connect(server.url)
        try:
            batch = client.batch(str(WORKFLOW_PATH), count=2, seed="increment", **SMALL)
            df = batch.result(timeout=30)
            assert df["status"].tolist() == ["completed", "completed"]
        finally:
            client.close()


async def test_a_server_without_model_lists_is_not_taken_to_lack_every_model():
    """v2 servers list no model folders (models() is empty): nothing to refuse on."""
    from comfy_widgets.engine.validation import check_models_on_server

    prompt = Workflow.load(WORKFLOW_PATH).to_api()

    async def empty(_folder):
        return []

    await check_models_on_server(Workflow.load(WORKFLOW_PATH), [prompt], empty)

    async def listed(_folder):
        return ["other.safetensors"]

    with pytest.raises(ParameterError, match="'checkpoints' folder has 'other.safetensors'"):
        await check_models_on_server(Workflow.load(WORKFLOW_PATH), [prompt], listed)


async def test_model_files_seen_on_the_server_are_not_listed_again_but_a_missing_one_is():
    from comfy_widgets.engine.validation import check_models_on_server

    workflow = Workflow.load(WORKFLOW_PATH)
    prompt = workflow.to_api()
    wanted = next(n["inputs"]["ckpt_name"] for n in prompt.values() if "ckpt_name" in n["inputs"])
    asked: list[str] = []
    listing = [wanted, "other.safetensors"]

    async def models(folder):
        asked.append(folder)
        return list(listing)

    seen: dict[str, frozenset[str]] = {}
    await check_models_on_server(workflow, [prompt], models, seen)
    await check_models_on_server(workflow, [prompt], models, seen)  # a second batch: no request
    assert asked == ["checkpoints"]
    assert seen == {"checkpoints": frozenset(listing)}

    other = json.loads(json.dumps(prompt))
    for node in other.values():
        if "ckpt_name" in node["inputs"]:
            node["inputs"]["ckpt_name"] = "new.safetensors"
    with pytest.raises(ParameterError, match="new.safetensors"):  # not seen: listed again
        await check_models_on_server(workflow, [other], models, seen)
    assert asked == ["checkpoints", "checkpoints"]
    listing.append("new.safetensors")  # copied to the server since
    await check_models_on_server(workflow, [other], models, seen)
    assert asked == ["checkpoints"] * 3


async def test_a_batch_opens_its_socket_while_it_checks_the_models(client, workflow):
    asked: list[str] = []
    models = client.models

    async def listing(folder=None):
        await asyncio.sleep(0)  # the loop turns once, as on any request
        monitor = client.backend._monitor
        asked.append("connecting" if monitor is not None and monitor._task else "not yet")
        return await models(folder)

    client.models = listing  # type: ignore[method-assign]
    df = await asyncio.wait_for(client.batch(workflow, count=2, **SMALL), 30)
    assert asked == ["connecting"]  # the handshake did not wait for the model list
    assert df["status"].tolist() == ["completed", "completed"]
