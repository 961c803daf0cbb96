"""ResultGrid: what the widget sends to the browser for given DataFrames, and its exports."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
import traitlets
from PIL import Image

from comfy_widgets.results import gridimage
from comfy_widgets.widgets.grid import ResultGrid
from tests._grid_fixtures import FakeRef, color, results_df


class Recorder:
    """Captures what the widget sends as custom messages (content, buffers)."""

    def __init__(self, grid: ResultGrid):
        self.sent: list[tuple[dict, list[bytes]]] = []
        grid.send = lambda content, buffers=None: self.sent.append((content, buffers or []))


def _decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_default_axes_labels_and_cells():
    grid = ResultGrid(results_df())
    assert (grid.x, grid.y, grid.page) == ("cfg", "prompt", None)
    assert grid.x_labels == ["cfg: 5", "cfg: 7.5", "cfg: 9"]
    assert grid.y_labels == ["prompt: a cat", "prompt: a dog"]
    assert grid.page_labels == [""]
    assert grid.total == 6
    where = {c["row"]: (c["xi"], c["yi"]) for c in grid.cells}
    assert where == {0: (0, 0), 1: (1, 0), 2: (2, 0), 3: (0, 1), 4: (1, 1), 5: (2, 1)}
    assert "seed" in grid.axis_options and "batch_id" not in grid.axis_options


def test_cells_carry_small_jpeg_thumbnails_and_labels():
    df = results_df(size=(600, 400))
    grid = ResultGrid(df, x="cfg", y="prompt", thumb_size=128)
    cell = grid.cells[0]
    thumb = _decode(cell["src"])
    assert thumb.format == "JPEG" and thumb.size == (128, 85)
    assert np.allclose(thumb.getpixel((40, 40)), color(0), atol=6)
    assert cell["caption"] == "seed: 1000"  # varying, not on an axis
    assert "cfg: 5" in cell["title"] and "prompt: a cat" in cell["title"]
    assert cell["status"] == "completed" and cell["kind"] == "image"
    assert df["image"][0].loads == 0  # thumbnails only: no full image was loaded


def test_changing_an_axis_relays_out():
    grid = ResultGrid(results_df(), x="cfg", y="prompt")
    grid.x = "prompt"
    grid.y = None
    assert grid.x_labels == ["prompt: a cat", "prompt: a dog"]
    assert grid.y_labels == [""]
    assert {c["xi"] for c in grid.cells} == {0, 1}
    assert sorted(c["k"] for c in grid.cells if c["xi"] == 0) == [0, 1, 2]


def test_unknown_axis_is_rejected():
    with pytest.raises(traitlets.TraitError, match="colour"):
        ResultGrid(results_df(), x="colour")
    grid = ResultGrid(results_df(), x="cfg")
    with pytest.raises(traitlets.TraitError, match="colour"):
        grid.y = "colour"
    assert grid.y is None and len(grid.cells) == 6


def test_captions_follow_the_axes():
    grid = ResultGrid(results_df(), x="cfg", y="prompt")
    assert grid.cells[0]["caption"] == "seed: 1000"
    grid.x = "seed"
    assert grid.cells[0]["caption"] == "cfg: 5"


def test_pages_show_one_page_value_at_a_time():
    grid = ResultGrid(results_df(), x="cfg", page="prompt")
    assert grid.page_labels == ["prompt: a cat", "prompt: a dog"]
    assert sorted(c["row"] for c in grid.cells) == [0, 1, 2]
    grid.page_index = 1
    assert sorted(c["row"] for c in grid.cells) == [3, 4, 5]
    grid.page = None
    assert grid.page_index == 0 and len(grid.cells) == 6


def test_batch_filter_keeps_positions_in_the_full_dataframe():
    df = pd.concat(
        [results_df(batch_id="first"), results_df(batch_id="second", start=6)], ignore_index=True
    )
    grid = ResultGrid(df, x="cfg", y="prompt", batch="second")
    assert grid.batches == ["first", "second"]
    assert grid.total == 6
    assert sorted(c["row"] for c in grid.cells) == list(range(6, 12))
    grid.batch = None
    assert grid.total == 12

    class Batch:
        id = "first"

    assert ResultGrid(df, x="cfg", batch=Batch()).total == 6


def test_diff_image_highlights_exactly_the_changed_region():
    base = Image.new("RGB", (64, 64), (100, 100, 100))
    changed = base.copy()
    changed.paste((100, 160, 100), (8, 8, 24, 24))
    df = results_df(prompts=("a",), cfgs=(1.0, 2.0))
    df.at[0, "image"] = FakeRef(base)
    df.at[1, "image"] = FakeRef(changed)
    grid = ResultGrid(df, x="cfg")
    diff, fraction = grid.diff_image(0, 1)
    assert fraction == pytest.approx(16 * 16 / (64 * 64))
    inside, outside = diff.getpixel((10, 10)), diff.getpixel((40, 40))
    assert inside[0] > 200 and inside[1] < 100  # red where they differ
    assert outside[0] == outside[1] == outside[2]  # grey elsewhere
    assert grid.diff_image(0, 0)[1] == 0.0


def test_compare_resizes_the_second_image_to_the_first():
    df = results_df(prompts=("a",), cfgs=(1.0, 2.0))
    df.at[1, "image"] = FakeRef(Image.new("RGB", (32, 24), color(0)))
    grid = ResultGrid(df, x="cfg")
    result = grid.compare(0, 1)
    assert result["size"] == [64, 48]
    assert result["changed"] == 0.0
    assert [Image.open(io.BytesIO(b)).size for b in result["images"]] == [(64, 48)] * 3


def test_full_size_and_compare_requests_are_answered_with_buffers():
    df = results_df(size=(300, 200))
    grid = ResultGrid(df)
    sent = Recorder(grid).sent
    grid._on_msg(grid, {"type": "full", "row": 4}, [])
    content, buffers = sent[-1]
    assert content == {"type": "full", "row": 4, "mime": "image/png", "filename": "out.png"}
    assert Image.open(io.BytesIO(buffers[0])).size == (300, 200)
    grid._on_msg(grid, {"type": "compare", "a": 0, "b": 5}, [])
    content, buffers = sent[-1]
    assert content["type"] == "compare" and (content["a"], content["b"]) == (0, 5)
    assert content["changed"] == 1.0 and len(buffers) == 3


def test_a_failed_request_reports_an_error_message():
    df = results_df()
    df.at[2, "image"] = None
    grid = ResultGrid(df)
    sent = Recorder(grid).sent
    grid._on_msg(grid, {"type": "compare", "a": 0, "b": 2}, [])
    content, _ = sent[-1]
    assert content["type"] == "error" and "row 2" in content["message"]


def test_failed_rows_and_videos_have_placeholders():
    df = results_df()
    df.at[1, "image"] = None
    df.at[1, "status"] = "failed"
    df.at[1, "error"] = "boom"
    video = FakeRef(Image.new("RGB", (8, 8)), kind="video", mime="video/mp4")
    video.thumbnail = video.image = lambda *a: (_ for _ in ()).throw(OSError("not an image"))
    df.at[2, "image"] = video
    cells = {c["row"]: c for c in ResultGrid(df).cells}
    assert cells[1]["src"] == "" and cells[1]["placeholder"] == "failed: boom"
    assert cells[1]["status"] == "failed" and cells[1]["error"] == "boom"
    assert cells[2]["playable"] and cells[2]["placeholder"] == "video"
    assert not cells[0]["playable"]


def test_animated_webp_is_marked_playable():
    df = results_df(prompts=("a",), cfgs=(1.0,))
    df.at[0, "image"] = FakeRef(Image.new("RGB", (8, 8)), kind="image", mime="image/webp")
    assert ResultGrid(df).cells[0]["playable"]


def test_save_writes_one_labelled_png(tmp_path):
    grid = ResultGrid(results_df(size=(96, 64)), x="cfg", y="prompt")
    path = grid.save(tmp_path / "grid.png")
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        assert saved.width > 3 * 96 and saved.height > 2 * 64
        header = saved.convert("RGB").crop((saved.width - 96, 0, saved.width, 10))
        labels = saved.convert("RGB").crop((0, saved.height - 64, 20, saved.height))
        for band in (header, labels):
            assert len(band.getcolors(maxcolors=100_000)) > 1  # text, not just background


def test_save_follows_the_batch_filter_and_pages(tmp_path):
    df = pd.concat([results_df(), results_df(batch_id="other", start=6)], ignore_index=True)
    grid = ResultGrid(df, x="cfg", page="prompt", batch="b1")
    colors = {c for _, c in grid.image().getcolors(maxcolors=1_000_000)}
    assert color(0) in colors and color(5) in colors and color(6) not in colors
    assert grid.image().height > 2 * 48


def test_static_fallback_has_html_with_an_image_and_a_png():
    grid = ResultGrid(results_df())
    data, _metadata = grid._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"] == "ResultGrid(6 results, x='cfg', y='prompt', page=None)"
    match = re.search(r'src="(data:image/jpeg;base64,[^"]+)"', data["text/html"])
    assert match and _decode(match.group(1)).width > 3 * 48
    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert png.format == "PNG" and png.width > 3 * 48


def test_twenty_image_grid_stays_small_in_a_saved_notebook():
    """Worst case for JPEG (noise) at 512 px: widget state plus fallback must stay under 3 MB."""
    rng = np.random.default_rng(0)
    df = results_df(cfgs=(3.0, 5.0, 7.0, 9.0, 11.0), prompts=("a", "b", "c", "d"))
    for i in range(len(df)):
        noise = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
        df.at[i, "image"] = FakeRef(Image.fromarray(noise))
    grid = ResultGrid(df)
    data, _ = grid._repr_mimebundle_()
    fallback = sum(len(str(v)) for v in data.values())
    state = sum(len(str(v)) for v in grid.get_state().values())
    print(f"20-image grid: widget state {state / 1e6:.2f} MB, fallback {fallback / 1e6:.2f} MB")
    assert state + fallback < 3_000_000


def test_labels_of_the_saved_sheet_match_the_layout():
    df = results_df()
    layout = gridimage.build_layout(df, "cfg", "prompt")
    grid = ResultGrid(df)
    assert grid.x_labels == [gridimage.axis_label("cfg", v) for v in layout.x_values]


def test_big_pages_are_split_into_screens_by_rows():
    df = results_df(cfgs=tuple(float(c) for c in range(10)), prompts=("p",), size=(8, 8))
    df = pd.concat([df.assign(seed=s) for s in range(30)], ignore_index=True)  # 300 images
    grid = ResultGrid(df, x="cfg", y="seed")
    assert grid.page_labels == ["rows 1–12 of 30", "rows 13–24 of 30", "rows 25–30 of 30"]
    assert len(grid.cells) == 120 and grid.y_labels[0] == "seed: 0" and len(grid.y_labels) == 12
    grid.page_index = 2
    assert len(grid.cells) == 60 and grid.y_labels == [f"seed: {s}" for s in range(24, 30)]
    assert {c["yi"] for c in grid.cells} == set(range(6))
    assert sorted(c["row"] for c in grid.cells) == list(range(240, 300))


def test_a_batch_object_is_shown_through_its_dataframe():
    class Batch:
        df = results_df()

    assert ResultGrid(Batch()).total == 6


def test_static_fallback_of_a_big_grid_shows_the_screen_on_show():
    df = results_df(cfgs=tuple(float(c) for c in range(10)), prompts=("p",), size=(8, 8))
    df = pd.concat([df.assign(seed=s) for s in range(30)], ignore_index=True)
    grid = ResultGrid(df, x="cfg", y="seed")
    whole = grid.image(cell_size=128, thumbnails=True)
    shown = grid.static_image()
    assert shown.width == whole.width and shown.height < whole.height / 2
    data, _ = grid._repr_mimebundle_()
    assert "shown: rows 1–12 of 30" in data["text/plain"]


def test_picking_the_other_axis_column_swaps_the_axes():
    grid = ResultGrid(results_df(), x="cfg", y="prompt")
    grid.x = "prompt"
    assert (grid.x, grid.y) == ("prompt", "cfg")
    assert grid.x_labels == ["prompt: a cat", "prompt: a dog"] and len(grid.y_labels) == 3
    grid.page = "cfg"
    assert (grid.x, grid.y, grid.page) == ("prompt", None, "cfg")
