"""A server that vanishes in the middle of a batch: what finished stays recorded, nothing hangs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.examples import path as example_path
from comfy_widgets.records.sqlite import Store
from comfy_widgets.workflow.workflow import Workflow

SMALL = {"width": 64, "height": 64, "steps": 3}


async def test_server_vanishing_mid_batch_keeps_what_was_recorded(tmp_path):
    server = await sim.start(seconds_per_step=0.05, previews=False)
    store = Store(tmp_path / "store.sqlite")
    client = connect(server.url, store=store)
    try:
        batch = client.batch(
            Workflow.load(example_path("sd15_txt2img_api")),
            count=10,
            seed="random",
            concurrency=2,
            **SMALL,
        )
        two_done = asyncio.Event()
        batch.subscribe(lambda b: two_done.set() if b.completed_count >= 2 else None)
        await asyncio.wait_for(two_done.wait(), 30)
        await server.astop()  # the server is gone for good: no restart

        batch.stop(interrupt=True)  # must end the batch although nobody answers any more
        df = await asyncio.wait_for(batch, 30)

        completed = df[df["status"] == "completed"]
        assert 2 <= len(completed) < 10
        assert set(df["status"]) <= {"completed", "cancelled", "failed"}
        records = {g["prompt_id"]: g for g in store.generation_records(batch_id=batch.id)}
        for prompt_id in completed["prompt_id"]:
            record = records[prompt_id]
            assert record["status"] == "completed"
            paths = [o["local_path"] for o in record["outputs"]]
            assert paths and all(Path(p).is_file() for p in paths)
        assert store.batch_record(batch.id)["completed_count"] == len(completed)
    finally:
        await client.aclose()
        store.close()
