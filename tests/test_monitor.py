"""Monitor pieces that need no server: retry schedule, WebSocket URL, queue order, log redaction,
which frames are parsed."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging

from comfy_widgets.transport import monitor
from comfy_widgets.transport.classic import ClassicBackend, queue_state


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


class _Socket:
    """The frames of one connection, as ``websockets`` yields them."""

    def __init__(self, frames: list[str | bytes]):
        self._frames = iter(frames)

    def __aiter__(self) -> _Socket:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return next(self._frames)
        except StopIteration:
            raise StopAsyncIteration from None


def _frame(kind: str, data: dict, **dumps) -> str:
    return json.dumps({"type": kind, "data": data}, **dumps)


async def test_legacy_progress_frames_are_dropped_once_the_socket_carries_progress_state():
    watcher = monitor.Monitor(client=None, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    seen: list[str] = []
    watcher.listeners.append(lambda event: seen.append(type(event).__name__))
    step = {"prompt_id": "p", "node": "3", "value": 1, "max": 20}
    state = {"prompt_id": "p", "nodes": {"3": {"value": 1, "max": 20, "state": "running"}}}
    frames = [
        _frame("progress", step),  # an older server: this is the only progress it sends
        _frame("progress_state", state),
        _frame("progress", step),  # ComfyUI's duplicate of the progress_state: dropped
        _frame("progress", step, separators=(",", ":")),  # another spelling: parsed
        _frame("executing", {"prompt_id": "p", "node": None}),
    ]
    await watcher._read(_Socket(frames))
    assert seen == [
        "ProgressEvent",
        "ProgressStateEvent",
        "ProgressEvent",
        "ExecutingEvent",
    ]
    seen.clear()
    await watcher._read(_Socket([_frame("progress", step)]))  # a new socket: maybe a new server
    assert seen == ["ProgressEvent"]


class _SlowSocket(_Socket):
    """Frames in bursts: ``None`` in the list makes the reader wait one loop tick, as when the
    next frames have not arrived yet."""

    async def __anext__(self) -> str | bytes:
        frame = await super().__anext__()
        while frame is None:
            await asyncio.sleep(0)
            frame = await super().__anext__()
        return frame


def _state(prompt_id: str, value: int, state: str = "running") -> str:
    node = {"value": value, "max": 20, "state": state, "node_id": "3", "prompt_id": prompt_id}
    return _frame("progress_state", {"prompt_id": prompt_id, "nodes": {"3": node}})


async def test_progress_state_snapshots_read_together_are_dispatched_once_in_order():
    watcher = monitor.Monitor(client=None, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    seen: list[tuple] = []

    def note(event) -> None:
        nodes = getattr(event, "nodes", None)
        value = nodes["3"].value if nodes else None
        seen.append((type(event).__name__, event.prompt_id, value))

    watcher.listeners.append(note)
    start = _frame("execution_start", {"prompt_id": "a"})
    frames = [
        start,
        *(_state("a", v) for v in range(1, 6)),  # one burst: only the last one matters
        _frame("executing", {"prompt_id": "a", "node": "9"}),  # dispatches the held one first
        _state("a", 6),
        _state("b", 1),  # another prompt: "a"'s snapshot goes out before it is held
        None,  # the burst ends: the held snapshot goes out at the end of the tick
        _state("b", 2),
        _frame("progress_state", {"nodes": {}, "prompt_id": "b"}),  # another spelling: parsed
        _state("b", 3, "finished"),
    ]
    await watcher._read(_SlowSocket(frames))  # the socket closing dispatches the last one
    assert seen == [
        ("ExecutionStartEvent", "a", None),
        ("ProgressStateEvent", "a", 5),
        ("ExecutingEvent", "a", None),
        ("ProgressStateEvent", "a", 6),
        ("ProgressStateEvent", "b", 1),
        ("ProgressStateEvent", "b", 2),
        ("ProgressStateEvent", "b", None),
        ("ProgressStateEvent", "b", 3),
    ]


async def test_a_burst_of_posts_counts_as_posting_between_two_of_them(monkeypatch):
    # the queue refresh waits while POSTs are sent: between two POSTs of a burst the lock is
    # briefly free, and a refresh there would list every queued prompt again
    backend = ClassicBackend("http://127.0.0.1:9")

    async def answer(self, method, path, json=None, **_):
        await asyncio.sleep(0.01)
        return {"prompt_id": json["prompt_id"], "number": 1}

    monkeypatch.setattr(ClassicBackend, "_json", answer)
    posts = [
        asyncio.ensure_future(backend._post_prompt({"prompt": {}, "prompt_id": str(n)}))
        for n in range(4)
    ]
    await asyncio.sleep(0)  # every POST has started and waits for its answer or the lock
    seen = []
    deadline = asyncio.get_running_loop().time() + 10
    while not all(p.done() for p in posts) and asyncio.get_running_loop().time() < deadline:
        seen.append(backend.posting)
        await asyncio.sleep(0)
    await asyncio.gather(*posts)
    assert len(seen) > 8 and all(seen)
    assert not backend.posting
