"""ResultGrid: compare the results of a batch as an X/Y/Z plot in the notebook.

The Python side owns the layout (which row goes in which cell, page and batch filter) and sends
only small JPEG thumbnails; full-size outputs and difference images travel on request as custom
messages with binary buffers, so they never bloat the saved notebook.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

import anywidget
import pandas as pd
import traitlets
from PIL import Image, ImageChops, ImageOps

from comfy_widgets.results import gridimage
from comfy_widgets.widgets.assets import asset
from comfy_widgets.widgets.fallback import LIVE_CLASS, StaticTwin

log = logging.getLogger(__name__)
PLAYABLE_MIMES = frozenset({"image/gif", "image/webp", "image/apng"})
COMPARE_MAX_SIDE = 1024
FALLBACK_CELL = 128
MAX_PER_SCREEN = 120  # images sent to the browser at once; bigger pages are split by rows


class ResultGrid(StaticTwin, anywidget.AnyWidget):
    """Images of a results DataFrame arranged by two columns (X/Y), paged by a third.

    `ResultGrid(df, x="cfg", y="prompt", page="sampler_name", batch=None)` (`df` may also be a
    Batch); click an image for full size, tick two to compare them (with a difference view);
    `grid.save("grid.png")`. Pages with more than MAX_PER_SCREEN images are split by rows.
    Row numbers used by `compare`, `diff_image` and the front end are positions (iloc) in `df`.
    """

    _esm = asset("grid.js")
    _css = asset("grid.css")

    x = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    y = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    page = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    batch = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    page_index = traitlets.Int(0).tag(sync=True)
    thumb_size = traitlets.Int(256).tag(sync=True)

    axis_options = traitlets.List(traitlets.Unicode()).tag(sync=True)
    batches = traitlets.List(traitlets.Unicode()).tag(sync=True)
    x_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    y_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    page_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    cells = traitlets.List(traitlets.Dict()).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)

    def __init__(
        self,
        df: pd.DataFrame | Any,
        x: str | None = None,
        y: str | None = None,
        page: str | None = None,
        batch: Any = None,
        *,
        thumb_size: int = 256,
        **kwargs: Any,
    ) -> None:
        if not isinstance(df, pd.DataFrame) and hasattr(df, "df"):
            df = df.df  # a Batch: its results so far
        self.df = gridimage.expand_parameters(df).reset_index(drop=True)
        self._thumbs: dict[tuple[int, int], str] = {}
        if x is None and y is None:
            x, y = gridimage.default_axes(self.df)
        super().__init__(
            x=x,
            y=y,
            page=page,
            batch=getattr(batch, "id", batch),
            thumb_size=thumb_size,
            axis_options=gridimage.axis_candidates(self.df),
            batches=_batch_ids(self.df),
            **kwargs,
        )
        self.add_class(LIVE_CLASS)
        self._relayout()
        self.observe(self._on_axes, names=["x", "y", "page", "batch"])
        self.observe(self._on_page, names=["page_index", "thumb_size"])
        self.on_msg(self._on_msg)

    # --- layout -----------------------------------------------------------------------------

    @property
    def view(self) -> pd.DataFrame:
        """The rows shown: `df` filtered by `batch` (the index keeps the positions in `df`)."""
        if self.batch is None or "batch_id" not in self.df.columns:
            return self.df
        return self.df[self.df["batch_id"].astype(str) == self.batch]

    @traitlets.validate("x", "y", "page")
    def _valid_axis(self, proposal: dict[str, Any]) -> str | None:
        """Reject an axis that is not a column before it takes effect."""
        name = proposal["value"]
        if name is not None and name not in self.df.columns:
            raise traitlets.TraitError(
                f"no column {name!r} in the DataFrame; columns: {list(self.df.columns)}"
            )
        return name

    def _on_axes(self, change: dict[str, Any]) -> None:
        """Relayout; picking the column another axis uses swaps the two (as A1111's UI does)."""
        if change["name"] != "batch" and change["new"] is not None:
            for other in ("x", "y", "page"):
                if other != change["name"] and getattr(self, other) == change["new"]:
                    setattr(self, other, change["old"])  # its own notification relayouts
                    return
        self._relayout()

    def _on_page(self, _change: dict[str, Any]) -> None:
        with self.hold_sync():
            self._show_screen()
        self._refresh_static_output()

    def _relayout(self) -> None:
        view = self.view
        self._grid = gridimage.build_layout(view, self.x, self.y, self.page)
        self._positions = list(view.index)
        self._captions = [
            c
            for c in gridimage.axis_candidates(view)
            if c not in (self.x, self.y, self.page) and gridimage.distinct_count(view[c]) > 1
        ]
        self._screens = screens(self._grid, MAX_PER_SCREEN)
        with self.hold_sync():
            self.x_labels = _labels(self.x, self._grid.x_values)
            self.page_labels = self._screen_labels()
            self.total = len(view)
            if self.page_index >= len(self._screens):
                self.page_index = 0
            self._show_screen()
        self._refresh_static_output()

    def _screen_labels(self) -> list[str]:
        """The pager's label per screen: the page value, plus which rows when a page is split."""
        y_labels = _labels(self.y, self._grid.y_values)
        labels = []
        for page, start, end in self._screens:
            value = self._grid.page_values[page]
            label = gridimage.axis_label(self.page, value) if self.page else ""
            if (start, end) != (0, len(y_labels)):
                rows = f"rows {start + 1}–{end} of {len(y_labels)}"
                label = f"{label} · {rows}" if label else rows
            labels.append(label)
        return labels

    def _show_screen(self) -> None:
        """Send the current screen's row labels and cells."""
        page, start, end = self._screens[min(self.page_index, len(self._screens) - 1)]
        self.y_labels = _labels(self.y, self._grid.y_values[start:end])
        self.cells = self._screen_cells(page, start, end)

    def _screen_cells(self, page: int, start: int, end: int) -> list[dict[str, Any]]:
        """One dict per image on screen: where it goes, its thumbnail and its labels."""
        out = []
        cells = self._grid.page_cells(page)
        for (xi, yi), rows in sorted(cells.items(), key=lambda item: (item[0][1], item[0][0])):
            if not start <= yi < end:
                continue
            for k, view_pos in enumerate(rows):
                row = self._positions[view_pos]
                out.append({"row": row, "xi": xi, "yi": yi - start, "k": k, **self._describe(row)})
        return out

    def _thumb(self, row: int) -> str:
        """The thumbnail data URI of one row ('' without an image), cached per (row, size)."""
        key = (row, self.thumb_size)
        if key not in self._thumbs:
            self._thumbs[key] = _thumbnail_uri(self.df, row, _ref(self.df, row), self.thumb_size)
        return self._thumbs[key]

    def _describe(self, row: int) -> dict[str, Any]:
        """What the browser shows for one row: thumbnail, kind, status and labels."""
        ref = _ref(self.df, row)
        src = self._thumb(row)
        mime = str(getattr(ref, "mime", "") or "")
        kind = str(getattr(ref, "kind", "") or ("image" if src else ""))
        status = _cell(self.df, "status", row)
        error = _cell(self.df, "error", row)
        return {
            "src": src,
            "kind": kind,
            "mime": mime,
            "playable": kind == "video" or mime in PLAYABLE_MIMES,
            "status": "" if status is None else str(status),
            "error": "" if error is None else str(error),
            "caption": " · ".join(
                gridimage.axis_label(c, self.df[c].iat[row]) for c in self._captions
            ),
            "title": _tooltip(self.df, row),
            "placeholder": "" if src else gridimage.placeholder_text(self.df, row),
        }

    # --- full size and comparison -------------------------------------------------------------

    def full(self, row: int) -> tuple[bytes, str]:
        """The full-size output of `row` as (bytes, mime), loaded on demand."""
        ref = _ref(self.df, row)
        if hasattr(ref, "load"):
            return ref.load(), str(getattr(ref, "mime", "") or "application/octet-stream")
        image = gridimage.row_image(self.df, row)
        if image is None:
            raise LookupError(f"row {row} has no output to show")
        return _encode(image, "PNG", fast=True), "image/png"

    def diff_image(self, a: int, b: int, threshold: int = 16) -> tuple[Image.Image, float]:
        """A picture of where rows `a` and `b` differ, and the fraction of pixels that differ
        (see `difference`); `b` is resized to `a`'s size if they differ."""
        return difference(*_pair(self.df, a, b), threshold)

    def compare(self, a: int, b: int) -> dict[str, Any]:
        """Rows `a` and `b` side by side plus their difference, as PNG bytes ready to display."""
        first, second = _pair(self.df, a, b)
        diff, fraction = difference(first, second)
        return {
            "a": a,
            "b": b,
            "changed": fraction,
            "size": list(first.size),
            "images": [_encode(_shrink(img), "PNG", fast=True) for img in (first, second, diff)],
        }

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        kind = content.get("type")
        try:
            if kind == "full":
                row = int(content["row"])
                data, mime = self.full(row)
                name = str(getattr(_ref(self.df, row), "filename", "") or f"row{row}")
                self.send({"type": "full", "row": row, "mime": mime, "filename": name}, [data])
            elif kind == "compare":
                result = self.compare(int(content["a"]), int(content["b"]))
                images = result.pop("images")
                self.send({"type": "compare", **result}, images)
        except Exception as exc:  # the front end shows what went wrong instead of hanging
            self.send({"type": "error", "request": kind, "message": f"{type(exc).__name__}: {exc}"})

    # --- export and static fallback ----------------------------------------------------------

    def image(self, *, cell_size: int | None = None, thumbnails: bool = False) -> Image.Image:
        """The labelled X/Y/Z plot of the shown rows (every page, stacked) as a PIL image."""
        return gridimage.grid_image(
            self.view, self.x, self.y, self.page, cell_size=cell_size, thumbnails=thumbnails
        )

    def save(self, path: str | Path, *, cell_size: int | None = None) -> Path:
        """Write one labelled PNG (A1111 X/Y/Z plot look) of the shown rows; returns the path."""
        return gridimage.save_grid(self.view, path, self.x, self.y, self.page, cell_size=cell_size)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The live widget plus a compact picture, for viewers where widgets do not run."""
        data, metadata = super()._repr_mimebundle_(**kwargs) or ({}, {})
        sheet = self.static_image()
        data["text/plain"] = self.twin_text()
        data["text/html"] = self._figure(sheet)
        data["image/png"] = base64.b64encode(_encode(sheet.quantize(128), "PNG")).decode("ascii")
        return data, metadata

    def twin_text(self) -> str:
        """One line: how many results and the axes (and which screen, for big grids)."""
        summary = self._summary()
        if self.total > MAX_PER_SCREEN:
            summary += f"; shown: {self.page_labels[self.page_index] or 'first screen'}"
        return summary

    def static_html(self) -> str:
        """The compact picture as a figure (JPEG data URI) with the summary as its caption."""
        return self._figure(self.static_image())

    def fallback_status(self) -> str:
        """What rewrites the twin when it changes: the axes, the batch filter, the screen."""
        screen = self.page_index if self.total > MAX_PER_SCREEN else 0
        return f"{self.x}|{self.y}|{self.page}|{self.batch}|{screen}|{self.total}"

    def _figure(self, sheet: Image.Image) -> str:
        summary = _escape(self.twin_text())
        jpeg = base64.b64encode(_encode(sheet, "JPEG")).decode("ascii")
        return (
            f'<figure class="cw-grid-static" style="margin:0">'
            f'<img alt="{summary}" src="data:image/jpeg;base64,{jpeg}" class="cw-static-image"/>'
            f"<figcaption>{summary}</figcaption></figure>"
        )

    def static_image(self) -> Image.Image:
        """The compact picture of the static fallback: every page, or the screen on show when
        there are more than MAX_PER_SCREEN images."""
        if self.total <= MAX_PER_SCREEN:
            return self.image(cell_size=FALLBACK_CELL, thumbnails=True)
        rows = sorted({cell["row"] for cell in self.cells})
        return gridimage.grid_image(
            self.df.iloc[rows], self.x, self.y, cell_size=FALLBACK_CELL, thumbnails=True
        )

    def _summary(self) -> str:
        axes = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("x", "y", "page"))
        return f"ResultGrid({self.total} results, {axes})"


def difference(
    first: Image.Image, second: Image.Image, threshold: int = 16
) -> tuple[Image.Image, float]:
    """Where two same-size RGB images differ, and the fraction of pixels that do.

    A pixel differs when any channel differs by more than `threshold` (0-255). The first image
    is shown dimmed in grey; changed pixels are painted red, stronger where the difference is
    larger, and pixels within the threshold stay grey.
    """
    bands = ImageChops.difference(first, second).split()
    diff = bands[0]
    for band in bands[1:]:
        diff = ImageChops.lighter(diff, band)
    changed = diff.point(lambda v: 255 if v > threshold else 0)
    fraction = changed.histogram()[255] / (diff.width * diff.height)
    strength = diff.point(lambda v: 0 if v <= threshold else min(255, 96 + 2 * v))
    base = ImageOps.grayscale(first).point(lambda v: 64 + v // 2).convert("RGB")
    red = Image.new("RGB", first.size, (255, 32, 32))
    return Image.composite(red, base, strength), fraction


def screens(layout: gridimage.GridLayout, limit: int) -> list[tuple[int, int, int]]:
    """(page index, first y, end y) per screen: each page value's Y rows, split so a screen
    holds at most `limit` images (a single larger row still gets a screen of its own)."""
    out = []
    for page in range(len(layout.page_values)):
        per_row = [0] * len(layout.y_values)
        for (_xi, yi), rows in layout.page_cells(page).items():
            per_row[yi] += len(rows)
        start, count = 0, 0
        for yi, n in enumerate(per_row):
            if count and count + n > limit:
                out.append((page, start, yi))
                start, count = yi, 0
            count += n
        out.append((page, start, len(per_row)))
    return out


def _batch_ids(df: pd.DataFrame) -> list[str]:
    if "batch_id" not in df.columns:
        return []
    return [str(b) for b in pd.unique(df["batch_id"].dropna())]


def _labels(column: str | None, values: list[Any]) -> list[str]:
    return [gridimage.axis_label(column, v) if column else "" for v in values]


def _cell(df: pd.DataFrame, column: str, row: int) -> Any:
    if column not in df.columns:
        return None
    value = df[column].iat[row]
    return None if gridimage.value_key(value) is None else value


def _ref(df: pd.DataFrame, row: int) -> Any:
    """The output reference of a row: its `image`, else its first `outputs` entry."""
    ref = _cell(df, "image", row)
    if ref is None:
        outputs = _cell(df, "outputs", row)
        ref = outputs[0] if isinstance(outputs, (list, tuple)) and outputs else None
    return ref


def _tooltip(df: pd.DataFrame, row: int) -> str:
    parts = [gridimage.axis_label(c, df[c].iat[row]) for c in gridimage.axis_candidates(df)]
    for column in ("batch_index", "status", "error"):
        value = _cell(df, column, row)
        if value is not None:
            parts.append(f"{column}: {value}")
    return "\n".join(parts)


def _pair(df: pd.DataFrame, a: int, b: int) -> tuple[Image.Image, Image.Image]:
    first = gridimage.row_image(df, a)
    second = gridimage.row_image(df, b)
    if first is None or second is None:
        missing = a if first is None else b
        raise LookupError(f"row {missing} has no image to compare")
    first, second = gridimage.to_rgb(first), gridimage.to_rgb(second)
    if second.size != first.size:
        second = second.resize(first.size, Image.Resampling.LANCZOS)
    return first, second


def _shrink(image: Image.Image) -> Image.Image:
    if max(image.size) <= COMPARE_MAX_SIDE:
        return image
    image = image.copy()
    image.thumbnail((COMPARE_MAX_SIDE, COMPARE_MAX_SIDE))
    return image


def _encode(image: Image.Image, fmt: str, *, fast: bool = False) -> bytes:
    """JPEG or PNG bytes; `fast` PNGs (sent on request, never saved) skip the slow compression."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        gridimage.to_rgb(image).save(buffer, "JPEG", quality=82, optimize=True)
    elif fast:
        image.save(buffer, fmt, compress_level=1)
    else:
        image.save(buffer, fmt, optimize=True)
    return buffer.getvalue()


def _thumbnail_uri(df: pd.DataFrame, row: int, ref: Any, size: int) -> str:
    """The row's thumbnail as a data URI ('' without one), reusing an OutputRef's cached bytes."""
    if getattr(ref, "kind", "image") == "image" and hasattr(ref, "thumbnail_bytes"):
        try:
            mime, data = ref.thumbnail_bytes(size)
            return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
        except Exception:  # fall through to the generic loader, which draws a placeholder
            log.debug("thumbnail_bytes failed for row %s", row, exc_info=True)
    image = gridimage.row_image(df, row, size)
    if image is None:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(_encode(image, "JPEG")).decode("ascii")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
