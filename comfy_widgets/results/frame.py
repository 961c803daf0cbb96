"""Batch results as a pandas DataFrame whose outputs are light references, shown with thumbnails.

Rendering choice: results are a ``ResultsFrame``, a minimal ``pandas.DataFrame`` subclass (the
``_constructor`` hook pandas documents for subclasses) whose only addition is ``_repr_html_``
drawing image outputs as thumbnails. It is a DataFrame for every other purpose; filtering,
sorting and copying keep the thumbnails. For a DataFrame that lost the subclass (``pd.merge``,
``pd.read_parquet``), ``show(df)`` renders it the same way and ``dataframe_html(df)`` returns the
HTML. The HTML is a static ``text/html`` output, so shared notebooks show the thumbnails too.
"""

from __future__ import annotations

import base64
import gc
import html
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from PIL import Image

# pandas and numpy (pyarrow too, when installed) leave ~60,000 objects that live as long as the
# process. Collected once here, they settle in the oldest generation; left pending, they make
# the collector do a full pass (~50 ms) in the middle of the next batch.
gc.collect()

HEAD_COLUMNS = ["batch_id", "batch_index", "prompt_id", "server", "status"]
TAIL_COLUMNS = [
    "image",
    "outputs",
    "queued_at",
    "started_at",
    "finished_at",
    "duration_s",
    "error",
]
THUMB_SIZE = 128
COMPACT_THUMB_SIZE = 48  # one row of the compact view is about one thumbnail high
PARAMS_CHARS = 80
ERROR_CHARS = 80
#: Columns the compact view leaves out (``df.full`` shows them): ids, raw records, timings.
DETAIL_COLUMNS = {
    "batch_id",
    "batch_index",
    "generation_id",
    "prompt_id",
    "server",
    "outputs",
    "queued_at",
    "started_at",
    "finished_at",
    "duration_s",
    "error",
    "error_node",
    "parameters",
    "prompt",
}
FULL = "full"
MINI_THUMB_SIZE = 48
MAX_TEXT_CHARS = 200
_FETCH_TIMEOUT = 60.0


@dataclass(eq=False)
class OutputRef:
    """One output file of a generation, loaded in full only when asked; thumbnails are cached.

    The bytes come from memory (a job that just ran), ``local_path`` (the store's copy) or the
    server's ``/view``, in that order.
    """

    filename: str
    subfolder: str = ""
    type: str = "output"
    kind: str = "image"
    mime: str = "application/octet-stream"
    server: str | None = None
    local_path: str | None = None
    node_id: str | None = None
    _data: bytes | None = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)
    _thumbs: dict[int, tuple[str, bytes]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_output(cls, output: Any, *, client: Any = None) -> OutputRef:
        """A reference to a job's Output (keeps its bytes unless the store has a local copy)."""
        local_path = getattr(output, "local_path", None)
        return cls(
            filename=output.filename,
            subfolder=output.subfolder or "",
            type=output.type or "output",
            kind=output.kind,
            mime=output.mime,
            server=getattr(client, "url", None),
            local_path=str(local_path) if local_path else None,
            node_id=output.node_id,
            _data=None if local_path else output.data,
            _client=client,
        )

    @classmethod
    def from_record(cls, record: dict[str, Any], *, server: str | None = None) -> OutputRef:
        """A reference from a stored output description (filename, subfolder, type, kind, ...)."""
        return cls(
            filename=record.get("filename") or "",
            subfolder=record.get("subfolder") or "",
            type=record.get("type") or "output",
            kind=record.get("kind") or "file",
            mime=record.get("mime") or "application/octet-stream",
            server=server,
            local_path=record.get("local_path"),
            node_id=record.get("node_id"),
        )

    # --- content ---

    def load(self) -> bytes:
        """The full file (or text as utf-8): from memory, the local copy or the server."""
        if self._data is not None:
            return self._data
        if self.local_path and Path(self.local_path).is_file():
            return Path(self.local_path).read_bytes()
        return self._fetch()

    def _fetch(self) -> bytes:
        """GET /view from the server; via the client's loop when we are not on it."""
        client = self._client
        if client is not None and not client.on_loop_thread():
            future = client.spawn(client.view(self.filename, self.subfolder, self.type))
            return future.result(timeout=_FETCH_TIMEOUT)
        if not self.server:
            raise FileNotFoundError(f"{self.filename}: no local copy and no server to fetch from")
        params = {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}
        headers = client.request_headers() if client is not None else {}
        response = httpx.get(
            f"{self.server}/view", params=params, headers=headers, timeout=_FETCH_TIMEOUT
        )
        response.raise_for_status()
        return response.content

    @property
    def image(self) -> Image.Image:
        """The image at full size (the first frame of an animation), read on each access.

        A property like ``job.images`` and ``Output.image``. ``ref.image()`` (a method before)
        still works for one release, with a DeprecationWarning.
        """
        if self.kind != "image":
            raise TypeError(f"{self.filename or 'output'} is {self.kind}, not an image")
        image = Image.open(io.BytesIO(self.load()))
        image.load()
        return _callable_for_one_release(image)

    def text(self) -> str:
        """A text output's text."""
        return self.load().decode("utf-8", errors="replace")

    def is_animated(self) -> bool:
        """True for animated images (GIF, WebP, APNG)."""
        if self.kind != "image":
            return False
        with Image.open(io.BytesIO(self.load())) as image:
            return bool(getattr(image, "is_animated", False))

    def thumbnail(self, size: int = 256) -> Image.Image:
        """A thumbnail no larger than ``size`` px (the encoded bytes are cached per size)."""
        _, data = self.thumbnail_bytes(size)
        return Image.open(io.BytesIO(data))

    def thumbnail_bytes(self, size: int = 256) -> tuple[str, bytes]:
        """``(mime, bytes)`` of the cached thumbnail: JPEG for opaque images, PNG otherwise."""
        if size not in self._thumbs:
            self._thumbs[size] = _encode_thumbnail(self.image, size)
        return self._thumbs[size]

    # --- notebook display ---

    def _repr_png_(self) -> bytes | None:
        if self.kind != "image":
            return None
        mime, data = self.thumbnail_bytes(256)
        return data if mime == "image/png" else _to_png(data)

    def _repr_html_(self) -> str:
        return output_html(self, 256)


class ResultsFrame(pd.DataFrame):
    """A pandas DataFrame that renders its OutputRef cells as thumbnails in notebooks.

    Shown compact (``compact_view``: time, batch, index, status, the varied or key parameters,
    a small thumbnail, duration, error); ``df.full`` is the same frame shown with every column.
    The data is the same either way: only the notebook display differs.
    """

    @property
    def _constructor(self):
        return ResultsFrame

    @property
    def full(self) -> ResultsFrame:
        """This frame, displayed with every column and larger thumbnails."""
        out = self.copy(deep=False)
        out.attrs["comfy_display"] = FULL
        return out

    def _repr_html_(self) -> str:
        if self.attrs.get("comfy_display") == FULL:
            return dataframe_html(self)
        return dataframe_html(compact_view(self), COMPACT_THUMB_SIZE)


class ShownFrame:
    """Any DataFrame wrapped for display with thumbnails (what ``show(df)`` returns)."""

    def __init__(self, df: pd.DataFrame, thumb_size: int = THUMB_SIZE):
        self.df = df
        self.thumb_size = thumb_size

    def _repr_html_(self) -> str:
        return dataframe_html(self.df, self.thumb_size)


_CALLABLE_CLASSES: dict[type, type] = {}


def _callable_for_one_release(image: Image.Image) -> Image.Image:
    """The image, whose class also accepts the old call ``ref.image()`` (with a warning)."""
    base = type(image)
    cls = _CALLABLE_CLASSES.get(base)
    if cls is None:

        def __call__(self: Image.Image) -> Image.Image:
            warnings.warn(
                "OutputRef.image is a property now (like job.images): drop the ()",
                DeprecationWarning,
                stacklevel=2,
            )
            return self

        cls = type(base.__name__, (base,), {"__call__": __call__, "__module__": base.__module__})
        _CALLABLE_CLASSES[base] = cls
    image.__class__ = cls
    return image


def show(df: pd.DataFrame, thumb_size: int = THUMB_SIZE) -> ShownFrame:
    """Display any DataFrame holding OutputRefs with thumbnails (returns a displayable object)."""
    return ShownFrame(df, thumb_size)


# --- building the frame ------------------------------------------------------------------------


def columns_for(varied: list[str]) -> list[str]:
    """The results columns: head, one per varied parameter, ``seed``, outputs, timings, error."""
    middle = [n for n in varied if n != "seed" and n not in HEAD_COLUMNS + TAIL_COLUMNS]
    return HEAD_COLUMNS + middle + ["seed"] + TAIL_COLUMNS


def empty_row(status: str) -> dict[str, Any]:
    """The columns of an item that never reached a server (pending, or cancelled before)."""
    return {
        "prompt_id": None,
        "server": None,
        "status": status,
        "image": None,
        "outputs": [],
        "queued_at": None,
        "started_at": None,
        "finished_at": None,
        "duration_s": None,
        "error": None,
    }


def build_frame(rows: list[dict[str, Any]], columns: list[str]) -> ResultsFrame:
    """A ResultsFrame from row dicts, with exactly ``columns`` and UTC timestamps."""
    df = ResultsFrame(rows, columns=columns)
    for name in ("queued_at", "started_at", "finished_at"):
        df[name] = pd.to_datetime(df[name], utc=True)
    df["duration_s"] = df["duration_s"].astype("float64")
    return df


def timestamp(value: float | None) -> pd.Timestamp | None:
    """A unix time in seconds as a UTC Timestamp."""
    return None if value is None else pd.Timestamp(value, unit="s", tz="UTC")


# --- the compact view ---------------------------------------------------------------------------


def compact_view(df: pd.DataFrame) -> pd.DataFrame:
    """The few columns worth a glance, formatted for reading (a display copy of ``df``).

    ``time`` is local and to the second, ``batch`` the batch id's first 8 characters, ``#``
    the index in the batch, the varied parameters (or a short ``parameters`` summary), the
    first image, ``duration`` to 0.1 s and a shortened ``error`` when any row has one. A
    history frame is indexed by ``generation_id`` (what ``cw.rerun`` takes).
    """
    out: dict[str, Any] = {}
    when = _first_time(df)
    if when is not None and when.notna().any():
        out["time"] = when.map(_local_time)
    if "workflow" in df.columns:
        out["workflow"] = df["workflow"]
    if "batch_id" in df.columns and df["batch_id"].notna().any():
        out["batch"] = df["batch_id"].map(lambda v: str(v)[:8] if isinstance(v, str) else "")
    if "batch_index" in df.columns and df["batch_index"].notna().any():
        out["#"] = df["batch_index"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    if "status" in df.columns:
        out["status"] = df["status"]
    for name in df.columns:
        if name not in DETAIL_COLUMNS and name not in out and name not in ("status", "image"):
            out[name] = df[name]
    if "parameters" in df.columns:
        out["parameters"] = df["parameters"].map(_short_parameters)
        out.pop("seed", None)  # the summary names it
    if "image" in df.columns:
        out["image"] = df["image"]
    if "duration_s" in df.columns and df["duration_s"].notna().any():
        out["duration"] = df["duration_s"].map(lambda v: "" if pd.isna(v) else f"{v:.1f} s")
    if "error" in df.columns and df["error"].notna().any():
        out["error"] = df["error"].map(_short_error)
    view = pd.DataFrame(out, index=df.index)
    if "generation_id" in df.columns and df["generation_id"].notna().all():
        view.index = pd.Index(df["generation_id"].tolist(), name="generation_id")
    return view


def _first_time(df: pd.DataFrame) -> pd.Series | None:
    """When each row happened: finished, else started, else queued (None without timings)."""
    names = [n for n in ("finished_at", "started_at", "queued_at") if n in df.columns]
    if not names:
        return None
    when = df[names[0]]
    for name in names[1:]:
        when = when.fillna(df[name])
    return when


def _local_time(value: Any) -> str:
    """A UTC timestamp as local time to the second, e.g. ``2026-12-07 17:04:21``."""
    if value is None or pd.isna(value):
        return ""
    stamp = pd.Timestamp(value).round("s")
    if stamp.tzinfo is not None:
        return stamp.to_pydatetime().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def _short_parameters(value: Any) -> str:
    """``seed=1 · steps=20 · prompt=a red fox…``, at most PARAMS_CHARS characters."""
    if not isinstance(value, dict):
        return ""
    parts = []
    for name, item in value.items():
        text = f"<{len(item)} bytes>" if isinstance(item, bytes | bytearray) else str(item)
        parts.append(f"{name}={text if len(text) <= 30 else text[:29] + '…'}")
    joined = " · ".join(parts)
    return joined if len(joined) <= PARAMS_CHARS else joined[: PARAMS_CHARS - 1] + "…"


def _short_error(value: Any) -> str:
    """An error's first line, at most ERROR_CHARS characters ('' for none)."""
    if not isinstance(value, str):
        return ""
    line = value.strip().splitlines()[0] if value.strip() else ""
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"


# --- HTML ----------------------------------------------------------------------------------------


def dataframe_html(df: pd.DataFrame, thumb_size: int = THUMB_SIZE) -> str:
    """The DataFrame as an HTML table with ``<img>`` thumbnails (data URIs) for its outputs.

    Long frames are truncated like pandas does (``display.max_rows``), and only shown rows
    are rendered, so a 1,000-row sweep stays cheap.
    """
    df = _escaped_labels(df)
    formatter = _cell_formatter(thumb_size)
    formatters = {name: formatter for name in df.columns if _needs_escaping(df[name].dtype)}
    max_rows = pd.get_option("display.max_rows")
    min_rows = pd.get_option("display.min_rows") or max_rows
    shown_rows = min_rows if max_rows is not None and len(df) > max_rows else max_rows
    with pd.option_context("display.max_colwidth", None):
        return _to_html(df, formatters, shown_rows, max_rows)


def _escaped_labels(df: pd.DataFrame) -> pd.DataFrame:
    """A shallow copy whose column and index labels are HTML-escaped text.

    ``to_html`` runs with ``escape=False`` (cells are escaped by the formatters), so labels, which
    can come from a workflow's free-text node ids (``"<id>.<field>"`` columns), are escaped here.
    """
    out = df.copy(deep=False)
    out.columns = [html.escape(str(name)) for name in df.columns]
    if not (
        pd.api.types.is_numeric_dtype(df.index.dtype)
        or pd.api.types.is_datetime64_any_dtype(df.index.dtype)
    ):
        out.index = [html.escape(str(label)) for label in df.index]
    return out


def _to_html(
    df: pd.DataFrame, formatters: dict, shown_rows: int | None, max_rows: int | None
) -> str:
    """``df.to_html`` without escaping (the formatters escape), truncated to ``shown_rows``."""
    return df.to_html(
        formatters=formatters,
        escape=False,
        max_rows=shown_rows,
        max_cols=pd.get_option("display.max_columns"),
        show_dimensions=bool(max_rows is not None and len(df) > max_rows),
        notebook=True,
        classes="comfy-results",
    )


def _needs_escaping(dtype: Any) -> bool:
    """True for columns whose cells may hold text or OutputRefs (not numbers, bools, times)."""
    api = pd.api.types
    return not (
        api.is_bool_dtype(dtype)
        or api.is_numeric_dtype(dtype)
        or api.is_datetime64_any_dtype(dtype)
    )


def _cell_formatter(thumb_size: int):
    """A to_html formatter: OutputRefs as thumbnails, everything else escaped text."""

    def format_cell(value: Any) -> str:
        if isinstance(value, OutputRef):
            return output_html(value, thumb_size)
        if (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(v, OutputRef) for v in value)
        ):
            return " ".join(output_html(v, MINI_THUMB_SIZE) for v in value)
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return ""
        return html.escape(str(value))

    return format_cell


def output_html(ref: OutputRef, size: int) -> str:
    """One output as HTML: an image thumbnail, or a labelled placeholder for video/audio/text."""
    title = html.escape(ref.filename or ref.kind, quote=True)
    try:
        if ref.kind == "image":
            mime, data = ref.thumbnail_bytes(size)
            uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
            return (
                f'<img src="{uri}" title="{title}" style="max-width:{size}px;max-height:{size}px">'
            )
        if ref.kind == "text":
            text = ref.text()
            short = text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "…"
            return f'<pre style="white-space:pre-wrap;margin:0">{html.escape(short)}</pre>'
    except (OSError, httpx.HTTPError) as exc:
        return f'<span title="{html.escape(str(exc), quote=True)}">⚠ {title}</span>'
    icon = {"video": "🎞", "audio": "♪"}.get(ref.kind, "📄")
    return f'<span title="{title}">{icon} {title}</span>'


def _encode_thumbnail(image: Image.Image, size: int) -> tuple[str, bytes]:
    """Shrink ``image`` to fit ``size`` and encode it compactly."""
    image = image.copy()
    image.thumbnail((size, size))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    buffer = io.BytesIO()
    if has_alpha:
        image.convert("RGBA").save(buffer, format="PNG", optimize=True)
        return "image/png", buffer.getvalue()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "image/jpeg", buffer.getvalue()


def _to_png(data: bytes) -> bytes:
    """Re-encode image bytes as PNG (for ``_repr_png_``)."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, format="PNG")
    return buffer.getvalue()
