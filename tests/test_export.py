"""export_batch(): a folder with CSV, Parquet, the images, the grid PNG and a static index.html."""

from __future__ import annotations

import re

import pandas as pd
from PIL import Image

from comfy_widgets.records.sqlite import Store
from comfy_widgets.results.export import export_batch
from comfy_widgets.results.recorded import load_batch
from tests.store_fakes import (
    API_PROMPT,
    FakeJob,
    FakeWorkflow,
    finish,
    record_finished,
    record_queued,
)


def _batch(store: Store) -> None:
    """A 2x2 cfg x prompt grid, all completed, one with two images; plus one failed item."""
    wf = FakeWorkflow(API_PROMPT, name="grid")
    plan = [{"cfg": c, "prompt": p, "seed": 1} for p in ("cat", "dog") for c in (5, 7)]
    plan.append({"cfg": 9, "prompt": "cat", "seed": 1})
    store.create_batch("bx", wf, 5, {}, 1, plan, [], columns=["cfg", "prompt", "seed"])
    for i, values in enumerate(plan):
        job = FakeJob(workflow=wf, batch_id="bx", batch_index=i, parameters=values)
        record_queued(store, job)
        state = "failed" if i == 4 else "completed"
        record_finished(
            store, finish(job, images=2 if i == 1 else (0 if i == 4 else 1), state=state)
        )


def test_export_writes_a_self_contained_folder(tmp_path):
    store = Store(tmp_path / "store" / "store.sqlite")
    _batch(store)
    out = export_batch("bx", tmp_path / "export", store=store)
    names = {p.name for p in out.iterdir()}
    assert {"results.csv", "results.parquet", "grid.png", "index.html", "images"} <= names
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["batch_index"]) == [0, 1, 2, 3, 4]
    assert list(csv["status"]) == ["completed"] * 4 + ["failed"]
    assert csv["image"].iloc[:4].map(lambda p: (out / p).is_file()).all()
    assert pd.isna(csv["image"].iloc[4])
    assert len(csv["outputs"].iloc[1].split(";")) == 2
    parquet = pd.read_parquet(out / "results.parquet")
    assert list(parquet["prompt"]) == ["cat", "cat", "dog", "dog", "cat"]
    assert str(parquet["finished_at"].dtype).startswith("datetime64")
    assert pd.Timestamp(csv["finished_at"].iloc[0]) == parquet["finished_at"].iloc[0]
    assert len(list((out / "images").iterdir())) == 5
    grid = Image.open(out / "grid.png")
    assert grid.width > 16 and grid.height > 16
    page = (out / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert "grid.png" in sources and len(sources) == 5
    assert all(not s.startswith(("/", "http", "data:")) and (out / s).is_file() for s in sources)


def test_export_accepts_a_dataframe(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    _batch(store)
    df = load_batch("bx", store)
    out = export_batch(df[df["prompt"] == "dog"], tmp_path / "dogs")
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["batch_index"]) == [2, 3]
    assert sorted(p.name[:4] for p in (out / "images").iterdir()) == ["0002", "0003"]
