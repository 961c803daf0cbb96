"""ComfyUI-compatible PNG metadata: write and read ``prompt``/``workflow``/``parameters`` chunks.

ComfyUI's SaveImage stores ``json.dumps(prompt)`` in a ``prompt`` tEXt chunk and the UI graph in a
``workflow`` chunk; its frontend loads a dropped PNG from those. We splice the chunks into the
PNG byte stream directly, so the pixels the server produced are kept bit for bit.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

from comfy_widgets.errors import WorkflowError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_TYPES = (b"tEXt", b"iTXt", b"zTXt")


def is_png(data: bytes) -> bool:
    """True when ``data`` starts with the PNG signature."""
    return data[:8] == PNG_SIGNATURE


def comfy_text_chunks(
    prompt: dict | None, workflow: dict | None = None, parameters: dict | None = None
) -> dict[str, str]:
    """The text chunks ComfyUI would write for this prompt, plus our ``parameters`` (all JSON)."""
    chunks: dict[str, str] = {}
    if prompt is not None:
        chunks["prompt"] = json.dumps(prompt)
    if workflow is not None:
        chunks["workflow"] = json.dumps(workflow)
    if parameters is not None:
        chunks["parameters"] = json.dumps(parameters, default=str)
    return chunks


def with_text_chunks(png: bytes, texts: dict[str, str]) -> bytes:
    """Return ``png`` with one text chunk per key of ``texts``, replacing chunks of the same key.

    Values that are not Latin-1 go into an iTXt chunk (UTF-8), the rest into tEXt, as Pillow does.
    The other chunks are copied as they are, CRC included (nothing of them is encoded again).
    """
    if not is_png(png):
        raise ValueError("not a PNG file")
    out = [PNG_SIGNATURE]
    inserted = False
    for ctype, start, end in _chunk_spans(png):
        if ctype in TEXT_TYPES and _chunk_key(png[start:end]) in texts:
            continue
        if ctype == b"IDAT" and not inserted:
            out.extend(_text_chunk(key, value) for key, value in texts.items())
            inserted = True
        out.append(png[start - 8 : end + 4])
    return b"".join(out)


def read_text_chunks(source: bytes | str | Path) -> dict[str, str]:
    """All text chunks (tEXt, zTXt, iTXt) of a PNG given as bytes or a path."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return {k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}


def read_comfy_metadata(source: bytes | str | Path) -> dict[str, Any]:
    """The parsed JSON of whichever ``prompt``, ``workflow`` and ``parameters`` chunks exist."""
    texts = read_text_chunks(source)
    keys = ("prompt", "workflow", "parameters")
    return {key: json.loads(texts[key]) for key in keys if key in texts}


#: The largest text chunk read (compressed ones are inflated up to this, no further).
MAX_TEXT_BYTES = 64 * 1024 * 1024


def workflow_from_png(data: bytes, where: str = "the PNG") -> dict[str, Any]:
    """The workflow a PNG carries, as ComfyUI reads one dropped on it: the ``workflow`` chunk
    (the UI graph) when there is one, else the ``prompt`` chunk (the API prompt).

    Only the text chunks are read (no pixels are decoded), compressed ones up to a size cap.
    """
    if not is_png(data):
        raise WorkflowError(f"{where} is not a PNG image")
    texts = _png_texts(data, where)
    for key in ("workflow", "prompt"):
        if key not in texts:
            continue
        try:
            parsed = json.loads(texts[key])
        except (json.JSONDecodeError, RecursionError) as exc:
            raise WorkflowError(f"the {key!r} text of {where} is not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise WorkflowError(f"the {key!r} text of {where} is not a JSON object")
        return parsed
    raise WorkflowError(
        f"{where} carries no ComfyUI workflow (no 'workflow' or 'prompt' text chunk)"
    )


def _png_texts(data: bytes, where: str) -> dict[str, str]:
    """The ``workflow``/``prompt`` text chunks of a PNG (tEXt, zTXt, iTXt), first of each."""
    texts: dict[str, str] = {}
    for ctype, body in _iter_chunks(data):
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        key, _, rest = body.partition(b"\0")
        name = key.decode("latin-1")
        if name not in ("workflow", "prompt") or name in texts:
            continue
        try:
            texts[name] = _chunk_text(ctype, rest)
        except (ValueError, zlib.error) as exc:
            raise WorkflowError(f"the {name!r} text chunk of {where} is damaged: {exc}") from exc
    return texts


def _chunk_text(ctype: bytes, rest: bytes) -> str:
    """The text of one chunk after its keyword (inflated when compressed)."""
    if ctype == b"tEXt":
        return rest.decode("latin-1")
    if ctype == b"zTXt":
        return _inflate(rest[1:]).decode("latin-1")
    compressed, rest = rest[:1] == b"\1", rest[2:]
    _language, _, rest = rest.partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return (_inflate(text) if compressed else text).decode("utf-8")


def _inflate(data: bytes) -> bytes:
    """zlib-inflate at most MAX_TEXT_BYTES (a larger text is refused, not inflated)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"it inflates to more than {MAX_TEXT_BYTES} bytes")
    return out


def _iter_chunks(png: bytes):
    """Yield ``(type, body)`` for every chunk after the signature."""
    for ctype, start, end in _chunk_spans(png):
        yield ctype, png[start:end]


def _chunk_spans(png: bytes):
    """Yield ``(type, body start, body end)`` for every chunk after the signature; a chunk's
    length and type are the 8 bytes before its body, its CRC the 4 after."""
    pos = 8
    while pos + 8 <= len(png):
        (length,) = struct.unpack_from(">I", png, pos)
        ctype = png[pos + 4 : pos + 8]
        yield ctype, pos + 8, min(pos + 8 + length, len(png))
        pos += 12 + length
        if ctype == b"IEND":
            return


def _chunk(ctype: bytes, body: bytes) -> bytes:
    """Serialise one chunk with its length and CRC."""
    crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)


def _text_chunk(key: str, value: str) -> bytes:
    """A tEXt chunk when ``value`` is Latin-1, else an uncompressed iTXt chunk."""
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        body = key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
        return _chunk(b"iTXt", body)


def _chunk_key(body: bytes) -> str:
    """The keyword of a text chunk (the bytes before the first NUL)."""
    return body.partition(b"\0")[0].decode("latin-1")
