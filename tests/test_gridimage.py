"""gridimage: layouts of results DataFrames and the labelled X/Y/Z sheets drawn with Pillow."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from PIL import Image, ImageFont

from comfy_widgets.results import gridimage
from tests._grid_fixtures import FakeRef, color, results_df


def test_default_axes_are_the_first_two_varying_parameters():
    df = results_df()
    df["steps"] = 20  # a parameter column that does not vary is not an axis
    assert gridimage.default_axes(df) == ("cfg", "prompt")
    assert "batch_id" not in gridimage.axis_candidates(df)
    assert "seed" in gridimage.axis_candidates(df)


def test_layout_places_every_row_in_its_cell_in_first_seen_order():
    df = results_df(cfgs=(9.0, 5.0), prompts=("b", "a"))
    layout = gridimage.build_layout(df, "cfg", "prompt")
    assert layout.x_values == [9.0, 5.0]
    assert layout.y_values == ["b", "a"]
    assert layout.page_values == [None]
    for pos in range(len(df)):
        xi = layout.x_values.index(df["cfg"][pos])
        yi = layout.y_values.index(df["prompt"][pos])
        assert layout.cells[(0, xi, yi)] == [pos]


def test_rows_sharing_a_cell_and_missing_values_are_kept():
    df = results_df(cfgs=(5.0, 5.0, float("nan")), prompts=("a",))
    layout = gridimage.build_layout(df, "cfg", None)
    assert len(layout.x_values) == 2
    assert layout.cells[(0, 0, 0)] == [0, 1]
    assert layout.per_cell() == 2
    assert gridimage.format_value(layout.x_values[1]) == "—"


def test_unknown_axis_column_is_named_in_the_error():
    with pytest.raises(KeyError, match="'nope'"):
        gridimage.build_layout(results_df(), "nope")


def test_pages_split_the_rows():
    df = results_df()
    layout = gridimage.build_layout(df, "cfg", None, page="prompt")
    assert layout.page_values == ["a cat", "a dog"]
    assert sorted(p for rows in layout.page_cells(1).values() for p in rows) == [3, 4, 5]


def test_axis_labels_look_like_a1111():
    assert gridimage.axis_label("cfg", 7.0) == "cfg: 7"
    assert gridimage.axis_label("cfg", 7.5) == "cfg: 7.5"
    assert gridimage.axis_label("sampler", "euler") == "sampler: euler"


def _is_background(pixel) -> bool:
    return tuple(pixel[:3]) == gridimage.BACKGROUND


def _band_has_ink(image: Image.Image, box) -> bool:
    band = image.crop(box)
    return band.getcolors(maxcolors=1_000_000) != [(band.width * band.height, gridimage.BACKGROUND)]


def test_sheet_has_headers_on_top_labels_on_the_left_and_images_in_cells():
    df = results_df(size=(64, 48))
    image = gridimage.grid_image(df, "cfg", "prompt")
    assert image.width > 3 * 64 and image.height > 2 * 48
    # find the first image (row 0: cfg 5, "a cat") from the bottom-right corner cell backwards
    last = image.getpixel((image.width - 2, image.height - 2))
    assert last == color(5)
    left = image.width - 3 * 64 - 2 * _pad(64, 48)
    top = image.height - 2 * 48 - _pad(64, 48)
    assert image.getpixel((left + 1, top + 1)) == color(0)
    assert _band_has_ink(image, (left, 0, image.width, top))  # column headers
    assert _band_has_ink(image, (0, top, left, image.height))  # row labels
    assert _is_background(image.getpixel((1, 1)))  # the empty corner


def _pad(w: int, h: int) -> int:
    return max(4, max(11, min(w, h) // 14) // 3)


def test_failed_rows_become_grey_placeholders_with_their_error():
    df = results_df(prompts=("a",))
    df.loc[1, "image"] = None
    df.loc[1, "status"] = "failed"
    df.loc[1, "error"] = "KSampler: out of memory"
    assert gridimage.placeholder_text(df, 1) == "failed: KSampler: out of memory"
    image = gridimage.grid_image(df, "cfg")
    colors = {c for _, c in image.getcolors(maxcolors=1_000_000)}
    assert gridimage.PLACEHOLDER in colors
    assert color(1) not in colors and color(0) in colors and color(2) in colors


def test_pages_are_stacked_with_a_title_each():
    df = results_df()
    one = gridimage.grid_image(df, "cfg", None)
    paged = gridimage.grid_image(df, "cfg", None, page="prompt")
    assert paged.height > one.height  # two sheets on top of each other
    assert paged.width < one.width  # instead of two images side by side in each cell
    layout = gridimage.build_layout(df, "cfg", None, page="prompt")
    first = gridimage.sheet(df, layout, 0, title="prompt: a cat")
    assert _band_has_ink(first, (0, 0, first.width, 10))


def test_cell_size_bounds_the_images(tmp_path):
    df = results_df(size=(400, 300))
    path = gridimage.save_grid(df, tmp_path / "grid.png", "cfg", "prompt", cell_size=100)
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        assert 3 * 100 < saved.width < 3 * 400
        assert saved.height < 2 * 300


def test_save_without_suffix_writes_png(tmp_path):
    path = gridimage.save_grid(results_df(), tmp_path / "grid")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_load_image_accepts_refs_pil_bytes_paths_and_animations(tmp_path):
    red = Image.new("RGB", (300, 200), (255, 0, 0))
    buffer = io.BytesIO()
    red.save(buffer, "PNG")
    path = tmp_path / "red.png"
    red.save(path)
    frames = [Image.new("RGB", (40, 40), c) for c in ((0, 0, 255), (0, 255, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert gridimage.load_image(FakeRef(red), 100).size == (100, 67)
    assert gridimage.load_image(red).size == (300, 200)
    assert gridimage.load_image(buffer.getvalue(), 30).size == (30, 20)
    assert gridimage.load_image(str(path)).getpixel((0, 0)) == (255, 0, 0)
    animated = gridimage.load_image(gif.getvalue())
    assert animated.convert("RGB").getpixel((0, 0)) == (0, 0, 255)
    assert gridimage.load_image(None) is None
    assert gridimage.load_image(math.nan) is None


def test_unreadable_output_is_a_placeholder_not_an_error():
    df = results_df(prompts=("a",), cfgs=(1.0,))
    df.loc[0, "image"] = FakeRef(Image.new("RGB", (8, 8)), kind="video", mime="video/mp4")
    df.at[0, "image"].thumbnail = _raise
    df.at[0, "image"].image = _raise
    assert gridimage.row_image(df, 0, 64) is None
    assert gridimage.placeholder_text(df, 0) == "video"


def _raise(*_args):
    raise OSError("cannot identify image file")


def test_outputs_column_is_used_when_image_is_empty():
    df = results_df(prompts=("a",), cfgs=(1.0,))
    ref = FakeRef(Image.new("RGB", (10, 10), (1, 2, 3)))
    df.at[0, "image"] = None
    df.at[0, "outputs"] = [ref]
    assert gridimage.row_image(df, 0).getpixel((0, 0)) == (1, 2, 3)


def test_long_labels_wrap_and_end_in_an_ellipsis():
    font = ImageFont.load_default(size=12)
    lines = gridimage._wrap("word " * 200, font, 80, max_lines=3)
    assert len(lines) == 3
    assert lines[-1].endswith("…")
    assert all(font.getlength(line) <= 80 for line in lines)


def test_transparent_images_are_flattened_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert gridimage.to_rgb(rgba).getpixel((0, 0)) == gridimage.BACKGROUND


def test_no_axes_gives_a_single_cell_per_row_strip():
    ref = FakeRef(Image.new("RGB", (20, 20)))
    df = pd.DataFrame({"status": ["completed"] * 2, "image": [ref, ref]})
    layout = gridimage.build_layout(df)
    assert layout.cells == {(0, 0, 0): [0, 1]}
    assert gridimage.grid_image(df).size[0] >= 40


def test_text_outputs_show_their_text():
    df = results_df(prompts=("a",), cfgs=(1.0,))
    ref = FakeRef(Image.new("RGB", (8, 8)), kind="text", mime="text/plain")
    ref.text = lambda: "a caption written by the model"
    df.at[0, "image"] = ref
    assert gridimage.placeholder_text(df, 0) == "a caption written by the model"


def test_history_frames_expand_their_parameters_and_skip_dict_columns():
    df = results_df(prompts=("a",)).drop(columns=["cfg", "prompt"])
    df["parameters"] = [{"cfg": c, "prompt": "a", "steps": 20} for c in (5.0, 7.5, 9.0)]
    df["prompt"] = [{"3": {"inputs": {}}}] * 3  # history() keeps the API prompt here
    expanded = gridimage.expand_parameters(df)
    assert list(expanded["cfg"]) == [5.0, 7.5, 9.0] and list(expanded["steps"]) == [20] * 3
    assert expanded["prompt"].iat[0] == {"3": {"inputs": {}}}  # existing columns win
    candidates = gridimage.axis_candidates(expanded)
    assert "cfg" in candidates and "prompt" not in candidates and "parameters" not in candidates
    assert gridimage.default_axes(expanded) == ("seed", "cfg")
    plain = results_df()
    assert gridimage.expand_parameters(plain) is plain  # nothing to expand
