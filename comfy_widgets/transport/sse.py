"""A bounded, incremental Server-Sent Events parser (the wire format of Comfy API v2 events).

Feed it bytes as they arrive (``feed``); it returns the complete events. It keeps at most
``max_event_bytes`` of one event in memory and refuses a longer line or event with
``SSEError``: a hostile or broken server cannot grow the client's memory without bound. Comments
(``: keepalive``) are counted but produce no event; ``id`` and ``retry`` are ignored because the
v2 stream has no replay (after a reconnect the client polls instead).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024  # a base64 preview is well under this


class SSEError(ValueError):
    """The stream broke the SSE format or the size bound."""


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: its name (``message`` when unnamed) and its data lines joined."""

    event: str
    data: str


class SSEParser:
    """Turns a byte stream into ``SSEEvent`` values, one bounded event at a time."""

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self.comments = 0  # keep-alives seen: proof the connection is alive

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes; return every event they complete."""
        self._buffer += chunk
        events: list[SSEEvent] = []
        while True:
            line = self._next_line()
            if line is None:
                break
            event = self._line(line)
            if event is not None:
                events.append(event)
        if len(self._buffer) + self._size > self.max_event_bytes:
            raise SSEError(f"an SSE event is longer than {self.max_event_bytes} bytes")
        return events

    def _next_line(self) -> str | None:
        """Pop one line (ended by CRLF, LF or CR) from the buffer, or None if none is complete."""
        found = [i for i in (self._buffer.find(b"\n"), self._buffer.find(b"\r")) if i >= 0]
        if not found:
            return None
        i = min(found)
        if self._buffer[i] == 13 and i + 1 == len(self._buffer):
            return None  # a CR at the end may be half of a CRLF: wait for more
        end = i + 2 if self._buffer[i] == 13 and self._buffer[i + 1] == 10 else i + 1
        raw = bytes(self._buffer[:i])
        del self._buffer[:end]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SSEError(f"an SSE line is not UTF-8: {exc}") from None

    def _line(self, line: str) -> SSEEvent | None:
        """Apply one line; a blank line dispatches the event collected so far."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._size += len(value) + 1
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = "\n".join(self._data), self._event or "message"
        had_data = bool(self._data)
        self._event, self._data, self._size = "", [], 0
        return SSEEvent(event, data) if had_data else None
