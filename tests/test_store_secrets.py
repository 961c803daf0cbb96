"""No token, password or auth header ever reaches the store folder (the bytes are grepped)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from comfy_widgets import sim
from comfy_widgets.engine.client import connect
from comfy_widgets.engine.resume import resume
from comfy_widgets.records.sqlite import Store

EXAMPLES = Path(__file__).resolve().parents[1] / "comfy_widgets" / "examples"
SECRETS = ["tok-SECRET-7f3a", "pw-SECRET-91bc", "hdr-SECRET-22de", "qs-SECRET-5e0f"]


def _wait_recorded(store: Store, prompt_id: str) -> None:
    """Wait until the store has the job's final record (its hook runs as the job resolves)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = store.generation_records(generation_id=prompt_id)
        if rows and rows[0]["status"] == "completed":
            return
        time.sleep(0.01)
    raise AssertionError(f"{prompt_id} was never recorded as completed")


def test_credentials_never_reach_the_store(tmp_path):
    store = Store(tmp_path / "home" / "store.sqlite")
    prompt = json.loads((EXAMPLES / "empty_image_api.json").read_text())
    prompt["1"]["inputs"].update(width=16, height=16)
    with sim.serve() as server:
        host = server.url.split("://", 1)[1]
        client = connect(
            f"http://alice:{SECRETS[1]}@{host}/?token={SECRETS[3]}",
            token=SECRETS[0],
            headers={"X-Api-Key": SECRETS[2]},
            store=store,
        )
        try:
            job = client.submit(prompt, parameters={"width": 16})
            job.result(timeout=30)
            _wait_recorded(store, job.prompt_id)
            second = copy.deepcopy(prompt)
            second["1"]["inputs"]["color"] = 5
            store.create_batch(
                "sb",
                None,
                1,
                prompts=[second],
                plan_rows=[{}],
                servers=[f"http://bob:{SECRETS[1]}@{host}/?key={SECRETS[3]}"],
            )
            df = resume("sb", client, store=store, poll_interval=0.01)
            assert list(df["status"]) == ["completed"]
        finally:
            client.close()
    store.close()
    files = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert any(p.name == "store.sqlite" for p in files) and any(p.suffix == ".png" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} found in {path}"
    assert Store(tmp_path / "home").generation_records()[0]["server"] == server.url
