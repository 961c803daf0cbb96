"""Output files of a prompt: where ComfyUI put them (ui output refs) and their fetched bytes."""

from __future__ import annotations

import io
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class OutputFileRef:
    """One file named in a node's ui output (``{"filename", "subfolder", "type"}``).

    ``asset_id`` is the ``"id"`` a ComfyUI 0.27+ started with ``--enable-assets`` gives each
    output file (its asset UUID), None otherwise."""

    node_id: str
    filename: str
    subfolder: str = ""
    type: str = "output"
    asset_id: str | None = None


@dataclass(init=False)
class Output:
    """One output of a finished prompt; ``data`` is the file (or the text, utf-8).

    Once a store has written its copy (``local_path``), the job lets go of the bytes
    (``release``) and ``data`` reads that copy: a 10,000-item batch does not keep 10,000 images
    in memory."""

    node_id: str
    filename: str
    subfolder: str
    type: str
    kind: str
    mime: str
    asset_id: str | None  # the server's asset id of the file (0.27+ with assets on)
    local_path: str | None  # the store's copy, once written
    _data: bytes | None = field(repr=False)
    _image: Image.Image | None = field(repr=False, compare=False)

    def __init__(
        self,
        node_id: str,
        filename: str,
        subfolder: str,
        type: str,
        kind: str,
        mime: str,
        data: bytes,
        asset_id: str | None = None,
        local_path: str | None = None,
    ) -> None:
        self.node_id, self.filename, self.subfolder, self.type = node_id, filename, subfolder, type
        self.kind, self.mime, self.asset_id, self.local_path = kind, mime, asset_id, local_path
        self._data = data
        self._image = None

    @property
    def data(self) -> bytes:
        """The bytes: from memory, or from the store's copy once released."""
        data = self._data
        if data is not None:
            return data
        return Path(str(self.local_path)).read_bytes()

    def release(self) -> None:
        """Let go of the bytes when the store has a copy (``data`` then reads it)."""
        if self.local_path:
            self._data = None

    @property
    def image(self) -> Image.Image | None:
        """The output decoded as a PIL image (None for non-images); decoded once."""
        if self.kind != "image":
            return None
        if self._image is None:
            image = Image.open(io.BytesIO(self.data))
            image.load()
            self._image = image
        return self._image

    @property
    def text(self) -> str | None:
        """The output as text, for text outputs."""
        return self.data.decode("utf-8") if self.kind == "text" else None


def guess_mime(filename: str) -> str:
    """MIME type from a file name (``application/octet-stream`` when unknown)."""
    mime, _ = mimetypes.guess_type(filename)
    return mime or "application/octet-stream"


def kind_of(mime: str) -> str:
    """``image``, ``video``, ``audio`` or ``file`` for a MIME type."""
    major = mime.split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "file"


def file_refs(node_id: str, ui_output: dict[str, Any]) -> list[OutputFileRef]:
    """Every file named in one node's ui output (images, gifs, audio, video, …)."""
    refs = []
    for value in ui_output.values():
        if not isinstance(value, list):
            continue
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("filename"), str):
                refs.append(
                    OutputFileRef(
                        node_id,
                        item["filename"],
                        str(item.get("subfolder") or ""),
                        str(item.get("type") or "output"),
                        item["id"] if isinstance(item.get("id"), str) else None,
                    )
                )
    return refs


def text_outputs(node_id: str, ui_output: dict[str, Any]) -> list[Output]:
    """Text results in one node's ui output (``{"text": ["..."]}``) as Outputs."""
    texts = ui_output.get("text")
    if not isinstance(texts, list):
        return []
    return [
        Output(node_id, "", "", "", "text", "text/plain", str(t).encode("utf-8"))
        for t in texts
        if isinstance(t, str)
    ]


def text_output(node_id: str, text: str) -> Output:
    """A text result of a node as an Output."""
    return Output(node_id, "", "", "", "text", "text/plain", text.encode("utf-8"))


def output_from_file(ref: OutputFileRef, data: bytes) -> Output:
    """An Output for a fetched file."""
    mime = guess_mime(ref.filename)
    return Output(
        ref.node_id,
        ref.filename,
        ref.subfolder,
        ref.type,
        kind_of(mime),
        mime,
        data,
        asset_id=ref.asset_id,
    )
