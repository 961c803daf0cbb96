"""The compact notebook view of results and history: a few readable columns, small rows, the
full record one call away (``df.full`` / ``history(full=True)``)."""

from __future__ import annotations

import re

import pandas as pd

from comfy_widgets.results.frame import COMPACT_THUMB_SIZE, compact_view
from comfy_widgets.results.recorded import history, load_batch
from tests.test_results import frame
from tests.test_store_history import _record_batch, store  # noqa: F401  (fixture)


def test_history_shows_a_few_readable_columns(store):  # noqa: F811
    _record_batch(store)
    df = history(store=store)
    view = compact_view(df)
    assert list(view.columns) == [
        "time",
        "workflow",
        "batch",
        "#",
        "status",
        "parameters",
        "image",
        "duration",
        "error",
    ]
    assert view.index.name == "generation_id" and list(view.index) == list(df["generation_id"])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t) for t in view["time"])
    assert all(re.fullmatch(r"\d+\.\d s", d) for d in view["duration"] if d)
    assert set(view["parameters"].iloc[0].split(" · ")) == {"seed=10", "cfg=5", "prompt=cat"}
    assert view["batch"].iloc[0] == "b1" and view["#"].tolist() == ["0", "1", "2"]
    html = df._repr_html_()
    assert "&#x27;class_type&#x27;" not in html and "class_type" not in html, "no raw prompt"
    assert f"max-height:{COMPACT_THUMB_SIZE}px" in html and "max-height:128px" not in html
    assert "+00:00" not in html, "local time, not UTC with its offset"
    assert set(df.columns) >= {"prompt", "prompt_id", "queued_at", "outputs"}, "data kept"


def test_the_full_record_is_one_call_away(store):  # noqa: F811
    _record_batch(store)
    full = history(store=store, full=True)
    html = full._repr_html_()
    assert "class_type" in html and "prompt_id" in html
    assert history(store=store).full._repr_html_() == html
    assert isinstance(full, pd.DataFrame) and len(full) == 3


def test_load_batch_and_results_are_compact(store):  # noqa: F811
    _record_batch(store)
    html = load_batch("b1", store=store)._repr_html_()
    header = re.findall(r"<th>([^<]*)</th>", html.split("</thead>")[0])
    assert "prompt_id" not in header and "outputs" not in header and "server" not in header
    assert {"status", "cfg", "seed", "image"} <= set(header)
    compact = frame()._repr_html_()
    assert compact.count("data:image/jpeg;base64,") == 1  # the image, not the outputs list
    assert frame().full._repr_html_().count("data:image/jpeg;base64,") == 2


def test_output_ref_image_is_a_property_and_the_old_call_warns():
    import pytest

    from comfy_widgets.results.frame import OutputRef
    from tests.test_results import png_bytes

    ref = OutputRef(filename="a.png", _data=png_bytes())
    image = ref.image
    assert image.size == (300, 200) and image.getpixel((0, 0)) is not None
    with pytest.warns(DeprecationWarning, match="property"):
        again = ref.image()
    assert again.size == image.size
