"""Server-sent events: one incremental parser and the framing every API family writes.

The parser follows the WHATWG rules that matter for API streams: `\\n`, `\\r\\n` and `\\r` line ends,
`data:` with or without the space, several `data:` lines joined by `\\n`, comment lines ignored, an
event dispatched at a blank line. Chunks may split anywhere, including inside a UTF-8 sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(slots=True)
class SSEParser:
    """Feed raw bytes, get complete events; `flush()` returns an event left unterminated at EOF."""

    _buf: bytearray = field(default_factory=bytearray)
    _event: str | None = None
    _data: list[str] = field(default_factory=list)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buf += chunk
        out: list[SSEEvent] = []
        while True:
            line = self._take_line()
            if line is None:
                return out
            event = self._line(line)
            if event is not None:
                out.append(event)

    def flush(self) -> list[SSEEvent]:
        """End of stream: a trailing event without its blank line still counts (the spec drops it,
        but upstreams that close right after their last `data:` line mean it)."""
        out: list[SSEEvent] = []
        if self._buf:
            rest = bytes(self._buf)
            self._buf.clear()
            event = self._line(rest.decode("utf-8", "replace").rstrip("\r\n"))
            if event is not None:
                out.append(event)
        event = self._line("")
        if event is not None:
            out.append(event)
        return out

    def discard(self) -> None:
        """The stream broke inside an event: what came of it is dropped, never dispatched half."""
        self._buf.clear()
        self._event, self._data = None, []

    def _take_line(self) -> str | None:
        buf = self._buf
        n = buf.find(b"\n")
        r = buf.find(b"\r")
        if n < 0 and r < 0:
            return None
        if r >= 0 and (n < 0 or r < n):
            if r == len(buf) - 1:
                return None  # a lone \r at the end may be half of \r\n
            end, skip = r, 2 if buf[r + 1 : r + 2] == b"\n" else 1
        else:
            end, skip = n, 1
        line = bytes(buf[:end]).decode("utf-8", "replace")
        del buf[: end + skip]
        return line

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data and self._event is None:
                return None
            event = SSEEvent(self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return event if event.data or event.event else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def parse_all(body: bytes) -> list[SSEEvent]:
    """Parse a whole buffered SSE body."""
    parser = SSEParser()
    return parser.feed(body) + parser.flush()


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def frame(data: Any, event: str | None = None) -> bytes:
    """One SSE event; dicts and lists are JSON-encoded on a single `data:` line."""
    text = data if isinstance(data, str) else _dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def comment(text: str = "keepalive") -> bytes:
    """An SSE comment: keeps idle connections alive, ignored by every client parser."""
    return f": {text}\n\n".encode()


DONE = b"data: [DONE]\n\n"
