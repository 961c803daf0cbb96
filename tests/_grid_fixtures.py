"""Small results DataFrames for the grid tests, built from PIL images and a stand-in OutputRef."""

from __future__ import annotations

import io

import pandas as pd
from PIL import Image


class FakeRef:
    """Stands in for results.OutputRef: full image on demand, cached thumbnails, raw bytes."""

    def __init__(self, image: Image.Image, kind: str = "image", mime: str = "image/png"):
        self._image = image
        self.kind = kind
        self.mime = mime
        self.filename = "out.png"
        self.loads = 0

    def image(self) -> Image.Image:
        self.loads += 1
        return self._image

    def thumbnail(self, size: int = 256) -> Image.Image:
        thumb = self._image.copy()
        thumb.thumbnail((size, size))
        return thumb

    def load(self) -> bytes:
        buffer = io.BytesIO()
        self._image.save(buffer, "PNG")
        return buffer.getvalue()


def color(i: int) -> tuple[int, int, int]:
    """A distinct, saturated colour per row so cells can be told apart by one pixel."""
    return ((60 * i) % 256, (110 + 40 * i) % 256, (200 - 30 * i) % 256)


def results_df(
    cfgs=(5.0, 7.5, 9.0),
    prompts=("a cat", "a dog"),
    size=(64, 48),
    batch_id="b1",
    start=0,
) -> pd.DataFrame:
    """A results DataFrame: one row per (prompt, cfg), solid-colour images, one seed per row."""
    rows = []
    for i, (prompt, cfg) in enumerate((p, c) for p in prompts for c in cfgs):
        n = start + i
        rows.append(
            {
                "batch_id": batch_id,
                "batch_index": i,
                "prompt_id": f"p{n}",
                "server": "http://127.0.0.1:1",
                "status": "completed",
                "cfg": cfg,
                "prompt": prompt,
                "seed": 1000 + n,
                "image": FakeRef(Image.new("RGB", size, color(n))),
                "outputs": [],
                "duration_s": 0.1,
                "error": None,
            }
        )
    return pd.DataFrame(rows)
