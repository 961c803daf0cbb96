"""Monitor pieces that need no server: retry schedule, WebSocket URL, queue order, log redaction."""

from __future__ import annotations

import itertools
import logging

from comfy_widgets.transport import monitor
from comfy_widgets.transport.classic import queue_state


def test_retry_delays_start_fast_and_cap_at_five_seconds():
    delays = list(itertools.islice(monitor.retry_delays(), 400))
    assert delays[0] <= 0.3
    assert max(delays) == monitor.MAX_RETRY_S == 5.0
    waited = 0.0
    for delay in delays:
        if waited < monitor.FAST_WINDOW_S:
            assert delay <= monitor.FAST_RETRY_CAP_S
        waited += delay
    assert delays == sorted(delays)


def test_ws_url_follows_the_http_scheme_and_path():
    assert monitor._ws_url("http://h:1", "c") == "ws://h:1/ws?clientId=c"
    assert monitor._ws_url("https://h/comfy", "c") == "wss://h/comfy/ws?clientId=c"


def test_pending_prompts_are_sorted_by_number():
    queue = {
        "queue_running": [[12, "run", {}, {}, []]],
        "queue_pending": [
            [-16, "front", {}, {}, []],
            [15, "c", {}, {}, []],
            [13, "a", {}, {}, []],
            [14, "b", {}, {}, []],
        ],
    }
    state = queue_state(queue)
    assert (state.running_ids, state.pending_ids) == (["run"], ["front", "a", "b", "c"])


def test_handshake_header_values_are_redacted():
    record = logging.LogRecord(
        "x", logging.DEBUG, "f", 1, "> %s: %s", ("Authorization", "Bearer secret"), None
    )
    assert monitor._RedactHeaders().filter(record)
    assert "secret" not in record.getMessage()
