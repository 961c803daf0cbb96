"""Labelled X/Y/Z comparison sheets drawn with Pillow, in the look of A1111's X/Y/Z plot.

Plain Python (pandas + Pillow, no Jupyter): used by `ResultGrid.save`, the grid's static fallback
and the store's export. A *layout* maps the rows of a results DataFrame onto cells
(page, x value, y value); a *sheet* is one page drawn as a labelled PNG-ready image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

# Columns every results DataFrame has that are not parameters (never offered as default axes).
BOOKKEEPING_COLUMNS = frozenset(
    {
        "batch_id",
        "batch_index",
        "prompt_id",
        "server",
        "status",
        "image",
        "outputs",
        "queued_at",
        "started_at",
        "finished_at",
        "duration_s",
        "error",
        "timings",
        "generation_id",
        "workflow_name",
        "workflow_hash",
        "prompt_json",
        "parameters",
        "error_node",
    }
)
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
PLACEHOLDER = (224, 224, 224)
PLACEHOLDER_TEXT = (96, 96, 96)


@dataclass
class GridLayout:
    """Where each row of a DataFrame goes: axis columns, their ordered values, and the cells."""

    x: str | None
    y: str | None
    page: str | None
    x_values: list[Any] = field(default_factory=list)
    y_values: list[Any] = field(default_factory=list)
    page_values: list[Any] = field(default_factory=list)
    # (page index, x index, y index) -> row positions (iloc) in the DataFrame, in row order
    cells: dict[tuple[int, int, int], list[int]] = field(default_factory=dict)

    def page_cells(self, page_index: int) -> dict[tuple[int, int], list[int]]:
        """Cells of one page, keyed by (x index, y index)."""
        return {(xi, yi): rows for (pi, xi, yi), rows in self.cells.items() if pi == page_index}

    def per_cell(self) -> int:
        """The largest number of rows sharing one cell (images are drawn side by side)."""
        return max((len(rows) for rows in self.cells.values()), default=1)


def axis_candidates(df: pd.DataFrame) -> list[str]:
    """Columns that make sense as grid axes: parameters and seed, not bookkeeping columns and
    not columns holding dicts or lists (such as a recorded API prompt)."""
    return [
        str(c)
        for c in df.columns
        if str(c) not in BOOKKEEPING_COLUMNS
        and not any(isinstance(v, (dict, list, tuple)) for v in df[c])
    ]


def expand_parameters(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with one column per key of its `parameters` dicts (as `history()` rows carry them),
    so recorded generations can be arranged by any parameter; existing columns win."""
    if "parameters" not in df.columns:
        return df
    params = [p if isinstance(p, dict) else {} for p in df["parameters"]]
    keys = [k for k in dict.fromkeys(k for p in params for k in p) if k not in df.columns]
    if not keys:
        return df
    extra = pd.DataFrame([{k: p.get(k) for k in keys} for p in params], index=df.index)
    return pd.concat([df, extra], axis=1)


def default_axes(df: pd.DataFrame) -> tuple[str | None, str | None]:
    """Pick X and Y as the first two parameter columns that vary (A1111 puts the first on X)."""
    varying = [c for c in axis_candidates(df) if distinct_count(df[c]) > 1]
    x = varying[0] if varying else None
    y = varying[1] if len(varying) > 1 else None
    return x, y


def value_key(value: Any) -> Hashable:
    """A hashable key for a cell value: NaN/None collapse to None, unhashables to their repr."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def format_value(value: Any) -> str:
    """The label text for one axis value (floats without trailing zeros, missing as an em dash)."""
    key = value_key(value)
    if key is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def axis_label(column: str | None, value: Any) -> str:
    """Header text like A1111's: 'cfg: 7.5'."""
    return format_value(value) if column is None else f"{column}: {format_value(value)}"


def build_layout(
    df: pd.DataFrame, x: str | None = None, y: str | None = None, page: str | None = None
) -> GridLayout:
    """Assign every row of `df` to a (page, x, y) cell; values keep their first-seen order."""
    for name in (x, y, page):
        if name is not None and name not in df.columns:
            raise KeyError(f"no column {name!r} in the DataFrame; columns: {list(df.columns)}")
    layout = GridLayout(x=x, y=y, page=page)
    indexes: dict[str, dict[Hashable, int]] = {"x": {}, "y": {}, "page": {}}
    values = {"x": layout.x_values, "y": layout.y_values, "page": layout.page_values}
    columns = {"x": x, "y": y, "page": page}
    for pos in range(len(df)):
        where = []
        for axis in ("page", "x", "y"):
            column = columns[axis]
            raw = None if column is None else df[column].iat[pos]
            key = value_key(raw)
            if key not in indexes[axis]:
                indexes[axis][key] = len(values[axis])
                values[axis].append(raw)
            where.append(indexes[axis][key])
        layout.cells.setdefault((where[0], where[1], where[2]), []).append(pos)
    for axis in ("x", "y", "page"):
        if not values[axis]:
            values[axis].append(None)
    return layout


def load_image(value: Any, size: int | None = None) -> Image.Image | None:
    """A PIL image for a cell value (OutputRef, PIL image, bytes or path); None if there is none.

    With `size`, a thumbnail no larger than size×size is returned (OutputRef caches its own).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, (bytes, bytearray)):
        image = Image.open(io.BytesIO(value))
    elif isinstance(value, (str, Path)):
        image = Image.open(value)
    elif size is not None and hasattr(value, "thumbnail"):
        image = value.thumbnail(size)
    elif hasattr(value, "image"):
        image = value.image()
    else:
        return None
    if image is None:
        return None
    image = _first_frame(image)
    if size is not None and max(image.size) > size:
        image = image.copy()
        image.thumbnail((size, size))
    return image


def row_image(df: pd.DataFrame, pos: int, size: int | None = None) -> Image.Image | None:
    """The image of row `pos`: its `image` column, else its first output; None if unloadable."""
    value = df["image"].iat[pos] if "image" in df.columns else None
    if value_key(value) is None and "outputs" in df.columns:
        outputs = df["outputs"].iat[pos]
        value = outputs[0] if isinstance(outputs, (list, tuple)) and outputs else None
    try:
        return load_image(value, size)
    except Exception:  # a broken or non-image output (video, audio) becomes a placeholder
        return None


def placeholder_text(df: pd.DataFrame, pos: int) -> str:
    """What a cell without an image says: its error, a text output's text, or the output kind."""
    status = str(df["status"].iat[pos]) if "status" in df.columns else ""
    error = df["error"].iat[pos] if "error" in df.columns else None
    if value_key(error) is not None and str(error):
        message = str(error)
        return f"{status}: {message}" if status else message
    ref: object = df["image"].iat[pos] if "image" in df.columns else None
    kind = getattr(ref, "kind", None)
    if kind == "text" and hasattr(ref, "text"):
        try:
            return ref.text()[:300]
        except Exception:  # an unreadable text output still gets its kind as a label
            return "text"
    if kind and kind != "image":
        return str(kind)
    return status or "no image"


def sheet(
    df: pd.DataFrame,
    layout: GridLayout,
    page_index: int = 0,
    *,
    cell_size: int | None = None,
    thumbnails: bool = False,
    title: str | None = None,
) -> Image.Image:
    """Draw one page of `layout` as a labelled RGB image: X headers on top, Y labels on the left.

    `cell_size` bounds each image's longer side (None keeps full size); `thumbnails` asks
    OutputRefs for cached thumbnails instead of full images (for the static fallback).
    """
    cells = layout.page_cells(page_index)
    images = {
        pos: row_image(df, pos, cell_size if thumbnails else None)
        for rows in cells.values()
        for pos in rows
    }
    images = {pos: _fit(img, cell_size) for pos, img in images.items()}
    cell_w, cell_h = _cell_size(images.values(), cell_size)
    per_cell = max((len(rows) for rows in cells.values()), default=1)
    font = _font(cell_w, cell_h)
    pad = max(4, _font_px(font) // 3)
    block_w = per_cell * cell_w + (per_cell - 1) * pad

    has_x = layout.x is not None
    has_y = layout.y is not None
    x_texts = [axis_label(layout.x, v) for v in layout.x_values] if has_x else []
    y_texts = [axis_label(layout.y, v) for v in layout.y_values] if has_y else []
    left_w = max(int(cell_w * 0.75), 4 * _font_px(font)) if has_y else 0
    x_lines = [_wrap(t, font, block_w - 2 * pad, max_lines=3) for t in x_texts]
    line_h = _line_height(font)
    y_max_lines = max(1, cell_h // line_h)
    y_lines = [_wrap(t, font, left_w - 2 * pad, max_lines=y_max_lines) for t in y_texts]
    top_h = (max(len(lines) for lines in x_lines) * line_h + 2 * pad) if has_x else 0
    n_x, n_y = len(layout.x_values), len(layout.y_values)
    width = left_w + n_x * block_w + (n_x - 1) * pad
    title_lines = _wrap(title, font, width - 2 * pad, max_lines=2) if title else []
    title_h = len(title_lines) * line_h + 2 * pad if title_lines else 0
    height = title_h + top_h + n_y * cell_h + (n_y - 1) * pad
    canvas = Image.new("RGB", (max(width, 1), max(height, 1)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    if title_lines:
        _draw_lines(draw, title_lines, font, (0, 0, width, title_h), line_h)
    for xi, lines in enumerate(x_lines):
        left = left_w + xi * (block_w + pad)
        _draw_lines(draw, lines, font, (left, title_h, left + block_w, title_h + top_h), line_h)
    for yi, lines in enumerate(y_lines):
        top = title_h + top_h + yi * (cell_h + pad)
        _draw_lines(draw, lines, font, (0, top, left_w, top + cell_h), line_h)

    small = _font(cell_w // 2, cell_h // 2)
    for (xi, yi), rows in cells.items():
        top = title_h + top_h + yi * (cell_h + pad)
        for k, pos in enumerate(rows):
            left = left_w + xi * (block_w + pad) + k * (cell_w + pad)
            box = (left, top, left + cell_w, top + cell_h)
            image = images[pos]
            if image is None:
                _draw_placeholder(draw, box, placeholder_text(df, pos), small)
            else:
                offset = (left + (cell_w - image.width) // 2, top + (cell_h - image.height) // 2)
                canvas.paste(to_rgb(image), offset)
    return canvas


def grid_image(
    df: pd.DataFrame,
    x: str | None = None,
    y: str | None = None,
    page: str | None = None,
    *,
    cell_size: int | None = None,
    thumbnails: bool = False,
) -> Image.Image:
    """The whole X/Y/Z plot as one image: one labelled sheet per page value, stacked vertically."""
    if x is None and y is None:
        x, y = default_axes(df)
    layout = build_layout(df, x, y, page)
    sheets = [
        sheet(
            df,
            layout,
            i,
            cell_size=cell_size,
            thumbnails=thumbnails,
            title=axis_label(page, value) if page is not None else None,
        )
        for i, value in enumerate(layout.page_values)
    ]
    return stack(sheets)


def save_grid(
    df: pd.DataFrame,
    path: str | Path,
    x: str | None = None,
    y: str | None = None,
    page: str | None = None,
    *,
    cell_size: int | None = None,
) -> Path:
    """Write the labelled X/Y/Z plot of `df` to `path` (format from the suffix, PNG by default)."""
    path = Path(path)
    image = grid_image(df, x, y, page, cell_size=cell_size)
    image.save(path, format=None if path.suffix else "PNG")
    return path


def stack(sheets: Sequence[Image.Image], gap: int = 24) -> Image.Image:
    """Stack sheets top to bottom on a white background, left aligned."""
    if len(sheets) == 1:
        return sheets[0]
    width = max(s.width for s in sheets)
    height = sum(s.height for s in sheets) + gap * (len(sheets) - 1)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    top = 0
    for s in sheets:
        canvas.paste(s, (0, top))
        top += s.height + gap
    return canvas


def distinct_count(series: pd.Series) -> int:
    """How many different values (NaN and None counted as one) a column holds."""
    return len({value_key(v) for v in series})


def _first_frame(image: Image.Image) -> Image.Image:
    if getattr(image, "is_animated", False):
        image.seek(0)
    return image


def _fit(image: Image.Image | None, cell_size: int | None) -> Image.Image | None:
    if image is None or cell_size is None or max(image.size) <= cell_size:
        return image
    image = image.copy()
    image.thumbnail((cell_size, cell_size))
    return image


def _cell_size(images: Any, cell_size: int | None) -> tuple[int, int]:
    sizes = [img.size for img in images if img is not None]
    if not sizes:
        side = cell_size or 256
        return side, side
    return max(w for w, _ in sizes), max(h for _, h in sizes)


def _font(cell_w: int, cell_h: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled TrueType font at a size that suits the cells (an int: pads use it)."""
    font = ImageFont.load_default(size=max(11, min(cell_w, cell_h) // 14))
    # With a size, load_default always loads TrueType (or raises ImportError without FreeType);
    # only load_default() without one may return the fixed-size bitmap font.
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("grid labels need Pillow with FreeType support")
    return font


def _font_px(font: ImageFont.FreeTypeFont) -> int:
    """The font's size in pixels (an int, as _font asks for one)."""
    return int(font.size)


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    top, bottom = font.getbbox("Ag")[1::2]
    return int((bottom - top) * 1.35) + 1


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; the last line ends in an ellipsis if text is cut."""
    width = max(width, _font_px(font))
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while font.getlength(word) > width and len(word) > 1:
            cut = _fitting_prefix(word, font, width)
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        lines[-1] = last + "…"
    return lines or [""]


def _fitting_prefix(word: str, font: ImageFont.FreeTypeFont, width: int) -> int:
    cut = len(word)
    while cut > 1 and font.getlength(word[:cut]) > width:
        cut -= 1
    return cut


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: list[str],
    font: ImageFont.FreeTypeFont,
    box: tuple[int, int, int, int],
    line_h: int,
    fill: tuple[int, int, int] = TEXT,
) -> None:
    """Draw lines centred in box, horizontally and vertically."""
    left, top, right, bottom = box
    y = top + (bottom - top - len(lines) * line_h) // 2
    for line in lines:
        x = left + (right - left - font.getlength(line)) / 2
        draw.text((x, y), line, font=font, fill=fill)
        y += line_h


def _draw_placeholder(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    text: str,
    font: ImageFont.FreeTypeFont,
) -> None:
    draw.rectangle(box, fill=PLACEHOLDER)
    pad = max(4, _font_px(font) // 2)
    lines = _wrap(text, font, box[2] - box[0] - 2 * pad, max_lines=4)
    _draw_lines(draw, lines, font, box, _line_height(font), PLACEHOLDER_TEXT)


def to_rgb(image: Image.Image) -> Image.Image:
    """The image as RGB, transparent parts flattened onto the white background."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def thumbnail_jpeg(data: bytes, size: int) -> bytes:
    """A small JPEG of encoded image ``data`` (first frame, transparency flattened), light
    enough to send to the browser and to save in a notebook."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        thumb = to_rgb(image.convert("RGBA") if image.mode == "P" else image.copy())
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()
