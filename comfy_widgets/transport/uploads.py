"""Images given as parameter values (PIL, path, numpy array, bytes) turned into uploadable files.

Each file is named after its content (``cw_<sha256 prefix>.<ext>``), so the same picture used by
every job of a batch is uploaded once and a re-run points at the same server file.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from comfy_widgets.errors import ParameterError

_EXT_BY_FORMAT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


@dataclass(frozen=True)
class PendingUpload:
    """An image file to put in the server's input folder under ``name`` before queueing."""

    name: str
    data: bytes

    def __repr__(self) -> str:
        return f"PendingUpload(name={self.name!r}, {len(self.data)} bytes)"


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _array_to_image(array: Any) -> Image.Image:
    import numpy as np

    data = np.asarray(array)
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.dtype.kind == "f":
        data = np.clip(data * 255.0 + 0.5, 0, 255)
    data = data.astype(np.uint8)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] not in (3, 4)):
        raise ValueError(f"cannot make an image from an array of shape {data.shape}")
    return Image.fromarray(data)


def _sniff_extension(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _EXT_BY_FORMAT.get(image.format or "", "png")
    except OSError as exc:
        raise ValueError("bytes are not an image Pillow can read") from exc


def image_file(image: Any) -> tuple[bytes, str]:
    """Return ``(file bytes, extension)`` for a PIL image, a path, a numpy array or raw bytes."""
    if isinstance(image, Image.Image):
        return _png_bytes(image), "png"
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return data, _sniff_extension(data)
    if isinstance(image, (str, os.PathLike)):
        data = Path(image).read_bytes()
        return data, _sniff_extension(data)
    if hasattr(image, "__array__"):
        return _png_bytes(_array_to_image(image)), "png"
    raise TypeError(f"cannot upload {type(image).__name__}: give a PIL image, path, array or bytes")


def pending_upload(image: Any) -> PendingUpload:
    """Encode ``image`` and name it after a sha256 prefix of its bytes."""
    data, ext = image_file(image)
    digest = hashlib.sha256(data).hexdigest()[:16]
    return PendingUpload(f"cw_{digest}.{ext}", data)


def _needs_upload(value: Any) -> bool:
    if isinstance(value, str):
        return os.path.isfile(value)
    return value is not None


def prepare_image_values(
    image_names: set[str], values: dict[str, Any]
) -> tuple[dict[str, Any], list[PendingUpload]]:
    """Replace image values (by parameter name or key) with upload names; collect the uploads.

    Strings that are not local files are kept: they name a file already on the server.
    """
    out = dict(values)
    uploads: list[PendingUpload] = []
    errors: dict[str, str] = {}
    for name, value in values.items():
        if name not in image_names or not _needs_upload(value):
            continue
        try:
            upload = pending_upload(value)
        except (TypeError, ValueError, OSError) as exc:
            errors[name] = str(exc)
            continue
        out[name] = upload.name
        if upload.name not in {u.name for u in uploads}:
            uploads.append(upload)
    if errors:
        raise ParameterError("; ".join(f"{k}: {v}" for k, v in errors.items()), errors=errors)
    return out, uploads
