"""Event parsing against the recorded ComfyUI traces, the binary samples and malformed frames."""

from __future__ import annotations

import json
import logging
import struct

import pytest

from comfy_widgets.transport import events as ev
from tests.shared_data import REFERENCE

TRACES = REFERENCE / "traces"
SAMPLES = REFERENCE / "binary_samples"

EXPECTED_CLASS = {
    "status": ev.StatusEvent,
    "feature_flags": ev.FeatureFlagsEvent,
    "execution_start": ev.ExecutionStartEvent,
    "execution_cached": ev.ExecutionCachedEvent,
    "executing": ev.ExecutingEvent,
    "progress": ev.ProgressEvent,
    "progress_state": ev.ProgressStateEvent,
    "executed": ev.ExecutedEvent,
    "execution_success": ev.ExecutionSuccessEvent,
    "execution_error": ev.ExecutionErrorEvent,
    "execution_interrupted": ev.ExecutionInterruptedEvent,
}


def trace_messages() -> list[dict]:
    messages = []
    for path in sorted(TRACES.glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            frame = json.loads(line)
            if frame.get("kind") == "text":
                messages.append(frame["msg"])
    return messages


def test_catalog_lists_exactly_the_types_we_parse():
    catalog = json.loads((REFERENCE / "ws_message_catalog.json").read_text())
    assert set(catalog["text_messages"]) == set(ev.TEXT_MESSAGE_TYPES) == set(EXPECTED_CLASS)
    for kind, entry in catalog["text_messages"].items():
        assert isinstance(ev.parse_message(entry["example"]), EXPECTED_CLASS[kind])


def test_every_recorded_text_frame_parses_to_its_class():
    messages = trace_messages()
    assert len(messages) > 300
    for message in messages:
        event = ev.parse_message(message)
        assert isinstance(event, EXPECTED_CLASS[message["type"]]), message


def test_raw_text_frames_parse():
    lines = (TRACES / "b3_raw_text_frames" / "ws_raw_text_frames.txt").read_text().splitlines()
    parsed = [ev.parse_text(line) for line in lines if line.startswith("{")]
    assert parsed and all(p is not None for p in parsed)


def test_fields_of_a_progress_state_and_an_error():
    messages = trace_messages()
    state = next(
        m
        for m in messages
        if m["type"] == "progress_state" and any(n["max"] == 4 for n in m["data"]["nodes"].values())
    )
    event = ev.parse_message(state)
    sampler = next(n for n in event.nodes.values() if n.max == 4)
    assert sampler.state in ("running", "finished") and 1 <= sampler.value <= 4
    error = ev.parse_message(next(m for m in messages if m["type"] == "execution_error"))
    assert error.node_id == "2" and error.node_type == "SaveImage"
    assert "outside the output folder" in error.exception_message
    assert error.executed == ("1",) and error.traceback


def test_executing_after_reconnect_has_no_prompt_id():
    event = ev.parse_message({"type": "executing", "data": {"node": "3"}})
    assert event == ev.ExecutingEvent(None, "3", None)
    done = ev.parse_message({"type": "executing", "data": {"node": None, "prompt_id": "p"}})
    assert done.node is None and done.prompt_id == "p"


def test_status_with_and_without_sid():
    first = ev.parse_message(
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}, "sid": "abc"}}
    )
    assert first == ev.StatusEvent(None, 2, "abc")
    later = ev.parse_message(
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}
    )
    assert later.sid is None and later.queue_remaining == 0


def test_binary_legacy_preview_sample():
    frame = (SAMPLES / "g1_ksampler_real_no_feature_flags_frame022_type1.bin").read_bytes()
    event = ev.parse_binary(frame)
    assert isinstance(event, ev.PreviewEvent)
    assert event.prompt_id is None and event.mime == "image/jpeg"
    assert event.image[:3] == b"\xff\xd8\xff" and len(event.image) == len(frame) - 8


def test_binary_preview_with_metadata_sample():
    frame = SAMPLES / "g2_ksampler_real_preview_metadata_then_cached_frame011_type4.bin"
    event = ev.parse_binary(frame.read_bytes())
    assert isinstance(event, ev.PreviewEvent)
    assert event.node_id == "3" and event.display_node_id == "3"
    assert event.prompt_id and len(event.prompt_id) == 36
    assert event.mime == "image/jpeg" and event.image[:3] == b"\xff\xd8\xff"


def test_binary_text_sample():
    event = ev.parse_binary((SAMPLES / "b4A_frame011_type3.bin").read_bytes())
    assert event == ev.TextEvent(None, "2", "width: 80, height: 48\n batch size: 2")


def test_parse_frame_dispatches_on_type():
    assert isinstance(
        ev.parse_frame('{"type": "execution_success", "data": {"prompt_id": "p", "timestamp": 1}}'),
        ev.ExecutionSuccessEvent,
    )
    assert isinstance(ev.parse_frame(struct.pack(">II", 1, 2) + b"png"), ev.PreviewEvent)


MALFORMED_TEXT = [
    "not json at all",
    "[1, 2, 3]",
    '{"data": {}}',
    '{"type": "brand_new_message", "data": {}}',
    '{"type": "progress", "data": "nope"}',
    '{"type": "progress", "data": {"value": "1", "max": 4}}',
    '{"type": "execution_start", "data": {"timestamp": 1}}',
    '{"type": "executing", "data": {"prompt_id": "p"}}',
    '{"type": "status", "data": {"status": {}}}',
    '{"type": "progress_state", "data": {"prompt_id": "p", "nodes": {"1": 5}}}',
    '{"type": "execution_cached", "data": {"prompt_id": "p", "nodes": "1,2"}}',
    '{"type": "executed", "data": {"prompt_id": "p", "node": "1", "output": [1]}}',
]

MALFORMED_BINARY = [
    b"",
    b"\x00\x00",
    struct.pack(">I", 99) + b"xyz",
    struct.pack(">I", 1),
    struct.pack(">II", 1, 7) + b"img",
    struct.pack(">II", 4, 500) + b"{}",
    struct.pack(">II", 4, 3) + b"{x}img",
    struct.pack(">II", 4, 2) + b"[]img",
    struct.pack(">II", 3, 10) + b"1",
    struct.pack(">II", 3, 1) + b"1\xff\xfe",
]


@pytest.mark.parametrize("text", MALFORMED_TEXT)
def test_malformed_text_is_logged_and_skipped(text, caplog):
    with caplog.at_level(logging.INFO, logger="comfy_widgets.transport.events"):
        assert ev.parse_text(text) is None
    assert any(r.name == "comfy_widgets.transport.events" for r in caplog.records)


@pytest.mark.parametrize("frame", MALFORMED_BINARY)
def test_malformed_binary_is_logged_and_skipped(frame, caplog):
    with caplog.at_level(logging.INFO, logger="comfy_widgets.transport.events"):
        assert ev.parse_binary(frame) is None
    assert any(r.name == "comfy_widgets.transport.events" for r in caplog.records)


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": Infinity}}}}',
        '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1e400}}}}',
        '{"type": "progress", "data": {"prompt_id": "p", "node": "3", "value": NaN, "max": 20}}',
        '{"type": "execution_start", "data": {"prompt_id": "p", "timestamp": -Infinity}}',
        '{"type": "status", "data": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["inf", "1e400", "nan", "-inf-int", "deep-data", "deep-frame"],
)
def test_frames_that_would_raise_in_the_parser_are_skipped(text, caplog):
    """Overflow and recursion never escape the parser: the frame is logged and skipped."""
    with caplog.at_level(logging.WARNING, logger="comfy_widgets"):
        assert ev.parse_text(text) is None
    assert "skipping" in caplog.text


def test_execution_error_with_a_numeric_node_id_is_still_an_error():
    """A server that sends node_id as a number still reports a failure, with its message."""
    event = ev.parse_message(
        {
            "type": "execution_error",
            "data": {
                "prompt_id": "p",
                "node_id": 9,
                "node_type": "SaveImage",
                "exception_message": "disk full",
                "exception_type": "OSError",
            },
        }
    )
    assert isinstance(event, ev.ExecutionErrorEvent)
    assert (event.node_id, event.exception_message) == ("9", "disk full")
