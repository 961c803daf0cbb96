"""ComfyUI WebSocket frames parsed into typed events.

Text frames are ``{"type": ..., "data": {...}}`` JSON; binary frames start with a big-endian u32
event type (1 preview, 3 text, 4 preview with metadata). Anything unknown or malformed is logged
and parsed to ``None`` so one bad frame never stops a monitor.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

BINARY_PREVIEW_IMAGE = 1
BINARY_TEXT = 3
BINARY_PREVIEW_WITH_METADATA = 4
_IMAGE_FORMATS = {1: "image/jpeg", 2: "image/png"}


class MalformedFrame(ValueError):
    """A frame whose shape does not match what ComfyUI sends for its type."""


@dataclass(frozen=True)
class Event:
    """Base class of every parsed WebSocket event; ``prompt_id`` is None for broadcasts."""

    prompt_id: str | None


@dataclass(frozen=True)
class StatusEvent(Event):
    """Global queue size (pending + running, all clients); ``sid`` only right after connecting."""

    queue_remaining: int
    sid: str | None = None


@dataclass(frozen=True)
class FeatureFlagsEvent(Event):
    """The server's answer to our ``feature_flags`` message."""

    flags: dict[str, Any]


@dataclass(frozen=True)
class ExecutionStartEvent(Event):
    """The worker took the prompt; ``timestamp`` is the server's Unix time in ms."""

    timestamp: int | None


@dataclass(frozen=True)
class ExecutionCachedEvent(Event):
    """Node ids whose cached outputs are reused in this run (empty on a cold run)."""

    nodes: tuple[str, ...]
    timestamp: int | None


@dataclass(frozen=True)
class ExecutingEvent(Event):
    """A node starts; ``node is None`` means the prompt is completely done.

    After a reconnect ComfyUI sends ``{"node": id}`` alone, without prompt_id.
    """

    node: str | None
    display_node: str | None = None


@dataclass(frozen=True)
class ProgressEvent(Event):
    """Step ``value`` of ``max`` of one node (sampler steps)."""

    node: str | None
    value: float
    max: float


@dataclass(frozen=True)
class NodeProgress:
    """One node's entry in a ``progress_state`` message."""

    node_id: str
    value: float
    max: float
    state: str
    display_node_id: str | None = None


@dataclass(frozen=True)
class ProgressStateEvent(Event):
    """Every non-pending node of the prompt so far, with its state and value/max."""

    nodes: dict[str, NodeProgress]


@dataclass(frozen=True)
class ExecutedEvent(Event):
    """An output node finished; ``output`` is its ui output (``{"images": [...]}`` etc.)."""

    node: str
    display_node: str | None
    output: dict[str, Any]


@dataclass(frozen=True)
class ExecutionSuccessEvent(Event):
    """Every node ran; ``/history`` is complete only after the following ``executing`` null."""

    timestamp: int | None


@dataclass(frozen=True)
class ExecutionErrorEvent(Event):
    """A node raised while running."""

    node_id: str | None
    node_type: str | None
    exception_message: str
    exception_type: str
    traceback: tuple[str, ...] = ()
    executed: tuple[str, ...] = ()
    timestamp: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ExecutionInterruptedEvent(Event):
    """The prompt was interrupted (``POST /interrupt``)."""

    node_id: str | None
    node_type: str | None
    executed: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True)
class PreviewEvent(Event):
    """A preview image; binary type 4 carries prompt/node ids, legacy type 1 carries none."""

    image: bytes
    mime: str
    node_id: str | None = None
    display_node_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"PreviewEvent(prompt_id={self.prompt_id!r}, node_id={self.node_id!r}, "
            f"mime={self.mime!r}, {len(self.image)} bytes)"
        )


@dataclass(frozen=True)
class TextEvent(Event):
    """Progress text from a node (binary type 3, broadcast to every socket)."""

    node_id: str
    text: str


def _str(data: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise MalformedFrame(f"field {key!r} should be a string, got {value!r}")
    return value


def _num(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedFrame(f"field {key!r} should be a number, got {value!r}")
    return value


def _int_or_none(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedFrame(f"field {key!r} should be a number, got {value!r}")
    return int(value)


def _ids(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise MalformedFrame(f"field {key!r} should be a list, got {value!r}")
    return tuple(str(v) for v in value)


def _dict(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise MalformedFrame(f"field {key!r} should be an object, got {value!r}")
    return value


def _status(data: dict[str, Any]) -> StatusEvent:
    exec_info = _dict(_dict(data, "status"), "exec_info")
    remaining = int(_num(exec_info, "queue_remaining"))
    return StatusEvent(None, remaining, _str(data, "sid", optional=True))


def _feature_flags(data: dict[str, Any]) -> FeatureFlagsEvent:
    return FeatureFlagsEvent(None, dict(data))


def _execution_start(data: dict[str, Any]) -> ExecutionStartEvent:
    return ExecutionStartEvent(_str(data, "prompt_id"), _int_or_none(data, "timestamp"))


def _execution_cached(data: dict[str, Any]) -> ExecutionCachedEvent:
    return ExecutionCachedEvent(
        _str(data, "prompt_id"), _ids(data, "nodes"), _int_or_none(data, "timestamp")
    )


def _executing(data: dict[str, Any]) -> ExecutingEvent:
    if "node" not in data:
        raise MalformedFrame("executing without 'node'")
    node = data["node"]
    return ExecutingEvent(
        _str(data, "prompt_id", optional=True),
        None if node is None else str(node),
        _str(data, "display_node", optional=True),
    )


def _progress(data: dict[str, Any]) -> ProgressEvent:
    node = data.get("node")
    return ProgressEvent(
        _str(data, "prompt_id", optional=True),
        None if node is None else str(node),
        _num(data, "value"),
        _num(data, "max"),
    )


def _progress_state(data: dict[str, Any]) -> ProgressStateEvent:
    nodes: dict[str, NodeProgress] = {}
    for node_id, entry in _dict(data, "nodes").items():
        if not isinstance(entry, dict):
            raise MalformedFrame(f"progress_state node {node_id!r} is not an object")
        nodes[str(node_id)] = NodeProgress(
            str(node_id),
            _num(entry, "value"),
            _num(entry, "max"),
            _str(entry, "state") or "",
            _str(entry, "display_node_id", optional=True),
        )
    return ProgressStateEvent(_str(data, "prompt_id"), nodes)


def _executed(data: dict[str, Any]) -> ExecutedEvent:
    output = data.get("output") or {}
    if not isinstance(output, dict):
        raise MalformedFrame(f"executed output should be an object, got {output!r}")
    return ExecutedEvent(
        _str(data, "prompt_id", optional=True),
        str(_str(data, "node")),
        _str(data, "display_node", optional=True),
        output,
    )


def _execution_success(data: dict[str, Any]) -> ExecutionSuccessEvent:
    return ExecutionSuccessEvent(_str(data, "prompt_id"), _int_or_none(data, "timestamp"))


def _execution_error(data: dict[str, Any]) -> ExecutionErrorEvent:
    traceback = data.get("traceback") or []
    return ExecutionErrorEvent(
        _str(data, "prompt_id"),
        _str(data, "node_id", optional=True),
        _str(data, "node_type", optional=True),
        str(data.get("exception_message", "")),
        str(data.get("exception_type", "")),
        tuple(str(line) for line in traceback) if isinstance(traceback, list) else (),
        _ids(data, "executed"),
        _int_or_none(data, "timestamp"),
        dict(data),
    )


def _execution_interrupted(data: dict[str, Any]) -> ExecutionInterruptedEvent:
    return ExecutionInterruptedEvent(
        _str(data, "prompt_id"),
        _str(data, "node_id", optional=True),
        _str(data, "node_type", optional=True),
        _ids(data, "executed"),
        _int_or_none(data, "timestamp"),
    )


_TEXT_PARSERS = {
    "status": _status,
    "feature_flags": _feature_flags,
    "execution_start": _execution_start,
    "execution_cached": _execution_cached,
    "executing": _executing,
    "progress": _progress,
    "progress_state": _progress_state,
    "executed": _executed,
    "execution_success": _execution_success,
    "execution_error": _execution_error,
    "execution_interrupted": _execution_interrupted,
}

TEXT_MESSAGE_TYPES = frozenset(_TEXT_PARSERS)


def parse_message(message: Any) -> Event | None:
    """Turn one decoded text frame (``{"type", "data"}``) into an event, or None (logged)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        log.warning("skipping malformed WebSocket message: %.200r", message)
        return None
    parser = _TEXT_PARSERS.get(message["type"])
    if parser is None:
        log.info("skipping unknown WebSocket message type %r", message["type"])
        return None
    data = message.get("data")
    if not isinstance(data, dict):
        log.warning("skipping %s message without a data object", message["type"])
        return None
    try:
        return parser(data)
    except (MalformedFrame, TypeError, ValueError) as exc:
        log.warning("skipping malformed %s message: %s", message["type"], exc)
        return None


def parse_text(text: str) -> Event | None:
    """Parse a raw text frame; invalid JSON is logged and skipped."""
    try:
        message = json.loads(text)
    except ValueError:
        log.warning("skipping WebSocket text frame that is not JSON: %.200r", text)
        return None
    return parse_message(message)


def _preview_legacy(payload: bytes) -> PreviewEvent:
    if len(payload) < 4:
        raise MalformedFrame("preview frame without image format")
    (image_format,) = struct.unpack(">I", payload[:4])
    mime = _IMAGE_FORMATS.get(image_format)
    if mime is None:
        raise MalformedFrame(f"unknown preview image format {image_format}")
    return PreviewEvent(None, payload[4:], mime)


def _preview_with_metadata(payload: bytes) -> PreviewEvent:
    if len(payload) < 4:
        raise MalformedFrame("preview frame without metadata length")
    (meta_len,) = struct.unpack(">I", payload[:4])
    if len(payload) < 4 + meta_len:
        raise MalformedFrame("preview metadata longer than the frame")
    try:
        meta = json.loads(payload[4 : 4 + meta_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedFrame(f"preview metadata is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise MalformedFrame("preview metadata is not an object")
    return PreviewEvent(
        _str(meta, "prompt_id", optional=True),
        payload[4 + meta_len :],
        str(meta.get("image_type") or "image/jpeg"),
        _str(meta, "node_id", optional=True),
        _str(meta, "display_node_id", optional=True),
    )


def _text(payload: bytes) -> TextEvent:
    if len(payload) < 4:
        raise MalformedFrame("text frame without node id length")
    (id_len,) = struct.unpack(">I", payload[:4])
    if len(payload) < 4 + id_len:
        raise MalformedFrame("text frame node id longer than the frame")
    try:
        node_id = payload[4 : 4 + id_len].decode("utf-8")
        text = payload[4 + id_len :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedFrame(f"text frame is not utf-8: {exc}") from exc
    return TextEvent(None, node_id, text)


_BINARY_PARSERS = {
    BINARY_PREVIEW_IMAGE: _preview_legacy,
    BINARY_TEXT: _text,
    BINARY_PREVIEW_WITH_METADATA: _preview_with_metadata,
}


def parse_binary(frame: bytes) -> Event | None:
    """Parse a binary frame (u32 event type + payload); unknown or malformed ones give None."""
    if len(frame) < 4:
        log.warning("skipping binary frame of %d bytes (no event type)", len(frame))
        return None
    (event_type,) = struct.unpack(">I", frame[:4])
    parser = _BINARY_PARSERS.get(event_type)
    if parser is None:
        log.info("skipping binary frame of unknown event type %d", event_type)
        return None
    try:
        return parser(bytes(frame[4:]))
    except MalformedFrame as exc:
        log.warning("skipping malformed binary frame (type %d): %s", event_type, exc)
        return None


def parse_frame(frame: str | bytes) -> Event | None:
    """Parse any WebSocket frame as received: text (str) or binary (bytes)."""
    if isinstance(frame, str):
        return parse_text(frame)
    return parse_binary(frame)
