"""Export a batch as a self-contained folder someone without the kernel can open.

The folder holds ``results.csv`` (and ``results.parquet`` when pyarrow is installed) with one row
per generation, ``images/`` with every output file, ``grid.png`` (the labelled comparison grid)
and ``index.html``, a static page that links everything with relative paths.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from comfy_widgets.records import Recorder
from comfy_widgets.records.sqlite import safe_name
from comfy_widgets.results import gridimage
from comfy_widgets.results.frame import OutputRef
from comfy_widgets.results.recorded import load_batch

CSV_NAME = "results.csv"
PARQUET_NAME = "results.parquet"
GRID_NAME = "grid.png"
INDEX_NAME = "index.html"
IMAGES_DIR = "images"
THUMB_PX = 192


def export_batch(
    batch: str | pd.DataFrame,
    folder: str | Path,
    *,
    store: Recorder | None = None,
    x: str | None = None,
    y: str | None = None,
) -> Path:
    """Write a batch (its id, or a results DataFrame) to ``folder``; returns the folder path.

    ``x``/``y`` choose the grid axes (default: the grid's own choice of varied parameters).
    """
    df = load_batch(batch, store) if isinstance(batch, str) else batch
    folder = Path(folder)
    (folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    files = _copy_outputs(df, folder)
    table = flat_table(df, files)
    table.to_csv(folder / CSV_NAME, index=False)
    written = [CSV_NAME]
    if _has_pyarrow():
        table.to_parquet(folder / PARQUET_NAME, index=False)
        written.append(PARQUET_NAME)
    grid = _save_grid(df, folder / GRID_NAME, x, y)
    (folder / INDEX_NAME).write_text(
        index_html(table, grid_name=GRID_NAME if grid else None, data_files=written),
        encoding="utf-8",
    )
    return folder


def _copy_outputs(df: pd.DataFrame, folder: Path) -> list[list[tuple[OutputRef, str | None]]]:
    """Copy every output of every row into ``images/``; per row, each ref and its relative path.

    The path is None when the file could not be read (no local copy and no server).
    """
    exported = []
    for pos in range(len(df)):
        row = df.iloc[pos]
        index = row["batch_index"] if "batch_index" in df.columns else pos
        stem = f"{int(index) if pd.notna(index) else pos:04d}"
        pairs: list[tuple[OutputRef, str | None]] = []
        refs = [r for r in row.get("outputs") or [] if isinstance(r, OutputRef)]
        for n, ref in enumerate(refs):
            name = f"{IMAGES_DIR}/{stem}_{n}_{safe_name(ref.filename or ref.kind)}"
            try:
                (folder / name).write_bytes(ref.load())
            except (OSError, ValueError):
                pairs.append((ref, None))
            else:
                pairs.append((ref, name))
        exported.append(pairs)
    return exported


def flat_table(df: pd.DataFrame, files: list[list[tuple[OutputRef, str | None]]]) -> pd.DataFrame:
    """The results as plain values: outputs become relative file paths, dicts and lists JSON.

    Timestamps stay timestamps (typed in Parquet, ISO text in CSV).
    """
    table = pd.DataFrame(index=range(len(df)))
    for name in df.columns:
        if name == "image":
            table[name] = [
                next((path for ref, path in pairs if ref.kind == "image" and path), None)
                for pairs in files
            ]
        elif name == "outputs":
            table[name] = [";".join(path for _, path in pairs if path) for pairs in files]
        else:
            table[name] = [_plain(v) for v in df[name].tolist()]
    return table


def _plain(value: Any) -> Any:
    """A CSV/Parquet-friendly version of one cell."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    if isinstance(value, OutputRef):
        return value.filename
    return value


def _save_grid(df: pd.DataFrame, path: Path, x: str | None, y: str | None) -> bool:
    """Draw the comparison grid when there is at least one image; True if written."""
    if "image" not in df.columns or not any(isinstance(v, OutputRef) for v in df["image"]):
        return False
    gridimage.save_grid(df, path, x, y)
    return True


def index_html(table: pd.DataFrame, *, grid_name: str | None, data_files: list[str]) -> str:
    """A static page: the grid, links to the data files, and a table with thumbnails."""
    columns = [c for c in table.columns if c not in ("image", "outputs", "prompt", "parameters")]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["image", *columns])
    body = []
    for pos in range(len(table)):
        image = table["image"].iat[pos] if "image" in table.columns else None
        cell = (
            f'<a href="{html.escape(image)}"><img src="{html.escape(image)}" loading="lazy" '
            f'style="max-width:{THUMB_PX}px;max-height:{THUMB_PX}px"></a>'
            if isinstance(image, str)
            else ""
        )
        cells = "".join(f"<td>{_cell(table[c].iat[pos])}</td>" for c in columns)
        body.append(f"<tr><td>{cell}</td>{cells}</tr>")
    links = " · ".join(f'<a href="{name}">{name}</a>' for name in data_files)
    grid = (
        f'<p><a href="{grid_name}"><img src="{grid_name}" style="max-width:100%"></a></p>'
        if grid_name
        else ""
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>comfy_widgets batch</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px;vertical-align:top}</style></head><body>"
        f"<h1>Batch results</h1>{grid}<p>{links}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        "</body></html>\n"
    )


def _cell(value: Any) -> str:
    """Escaped text of one table cell (empty for missing values)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return html.escape(str(value))


def _has_pyarrow() -> bool:
    """True when pyarrow can be imported (Parquet export is optional)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True
