"""HTTP/1.1 framing without I/O: bytes in, events out; heads and chunks written as bytes.

The one codec of every HTTP/1.1 hop the proxy speaks: the upstream client (`pool.py`) reads responses
with it, the relay (`server.py`) reads mitmproxy's requests and writes its answers with it, and the fake
backend (`testing/fake_backend.py`) serves with it. It never touches a socket: a caller feeds what it
read and acts on the events, so the framing rules are tested on their own (`tests/test_http11.py` feeds
every message split at every byte boundary).

h11 is the model (events in, events out, `next_message()` is its `start_next_cycle()`), but not the
code: per streamed event h11 costs about four times as much (`scripts/bench_http11.py`), and on this
path one upstream read is one event. So a feed returns plain values: a `Request` or `Response` head,
`bytes` (all the body that feed held, de-chunked, in one piece), and `END`.

Rules, strict where leniency lets two parsers disagree about where a message ends: a bare CR or LF
in a head, folded header lines, a space before a header's colon, a content-length that is not digits
(or two that differ), a request with both content-length and transfer-encoding, a chunk size that is
not hex: all `ProtocolError`. A peer that closes inside a message is `ConnectionCut`. Interim answers
(`100 Continue` and kin) are skipped however many come, in a loop; `101 Switching Protocols` and a 2xx
to CONNECT end HTTP on the connection (the parser stops; the caller decides).
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from ..core.limits import MAX_CHUNK_LINE, MAX_HEAD

_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}


class ProtocolError(Exception):
    """The peer broke HTTP/1.1 framing; `status` is what a server answers it with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ConnectionCut(ProtocolError):
    """The peer closed the connection in the middle of a message."""


@dataclass(slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    version: str = "HTTP/1.1"
    keep_alive: bool = True
    length: int | None = 0  # body bytes announced; None when chunked


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    version: str = "HTTP/1.1"
    keep_alive: bool = True
    length: int | None = None  # content-length; None when chunked, read to the close, or no body


class EndOfMessage:
    """The message is complete; the parser waits for `next_message()`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Final = EndOfMessage()
Event = Request | Response | bytes | EndOfMessage
Side = Literal["client", "server"]

# parser states
_WAIT, _HEAD, _LENGTH, _CHUNKED, _TO_CLOSE, _SWITCHED = range(6)


class Parser:
    """One side of one connection. `side="server"` reads requests, `side="client"` reads responses.
    Each message is read after a call to `next_message()`, the first one too; the client side names
    the method of the request it just sent (a HEAD or CONNECT changes the framing)."""

    __slots__ = (
        "_buf",
        "_chunk_crlf",
        "_method",
        "_remaining",
        "_scan",
        "_state",
        "_trailers",
        "max_head",
        "side",
    )

    def __init__(self, side: Side, max_head: int = MAX_HEAD) -> None:
        self.side = side
        self.max_head = max_head
        self._buf = bytearray()
        self._state = _WAIT  # until next_message(): bytes fed before it are kept, not parsed
        self._method = ""
        self._scan = 0  # where the search for a head's blank line resumes (a trickled head is not rescanned)
        self._remaining = 0  # body bytes left (content-length), or of the current chunk
        self._chunk_crlf = False  # the CRLF closing a chunk's data is still to come
        self._trailers = False  # past the last chunk: reading trailer lines

    @property
    def buffered(self) -> int:
        """Bytes held and not yet parsed: after END, the start of a next message (or surplus)."""
        return len(self._buf)

    @property
    def switched(self) -> bool:
        """The connection left HTTP (a 101, or a 2xx to CONNECT): what follows is not for this parser."""
        return self._state == _SWITCHED

    def next_message(self, method: str = "") -> list[Event]:
        """Read the next message. The client side names the method of the request just sent."""
        if self._state not in (_WAIT, _SWITCHED):
            raise RuntimeError("the current message is not complete")
        self._state, self._method, self._scan = _HEAD, method, 0
        return self._heads() if self._buf else []

    def feed(self, data: bytes) -> list[Event]:
        """What `data` completes: heads, body bytes (one piece per feed) and END."""
        state = self._state
        if state == _CHUNKED:
            return self._chunked(data)
        if state == _LENGTH:  # (the buffer is always empty here: _heads hands the rest to feed)
            remaining = self._remaining
            if len(data) < remaining:
                self._remaining = remaining - len(data)
                return [data]
            self._remaining = 0
            self._state = _WAIT
            if len(data) > remaining:
                self._buf += data[remaining:]
                data = data[:remaining]
            return [data, END] if data else [END]
        if state == _TO_CLOSE:
            return [data] if data else []
        self._buf += data
        if state == _HEAD:
            return self._heads()
        return []  # waiting for next_message(), or no longer HTTP: kept, not parsed

    def feed_eof(self) -> list[Event]:
        """The peer closed. A body read to the close ends; a message cut short is `ConnectionCut`."""
        state = self._state
        if state == _TO_CLOSE:
            self._state = _WAIT
            return [END]
        if state in (_LENGTH, _CHUNKED):
            raise ConnectionCut("the connection closed in the middle of a body")
        if state == _HEAD and self._buf.strip(b"\r\n"):
            raise ConnectionCut("the connection closed in the middle of a head")
        return []

    # heads

    def _heads(self) -> list[Event]:
        """Parse heads from the buffer: interim answers are skipped in this loop (never recursion)."""
        buf, pos = self._buf, 0
        while True:
            while buf.startswith(b"\r\n", pos):  # stray CRLFs between messages (RFC 9112 §2.2)
                pos += 2
            end = buf.find(b"\r\n\r\n", max(pos, self._scan))
            if end < 0 or end - pos > self.max_head:
                if len(buf) - pos > self.max_head:
                    raise ProtocolError(f"head larger than {self.max_head >> 10} KiB", 431)
                del buf[:pos]
                self._scan = max(0, len(buf) - 3)
                return []
            raw = bytes(buf[pos:end])
            pos = end + 4
            self._scan = pos
            head = self._request(raw) if self.side == "server" else self._response(raw)
            if head is not None:
                break
        del buf[:pos]
        self._scan = 0
        events: list[Event] = [head]
        if self._state == _HEAD:  # no body
            self._state = _WAIT
            events.append(END)
        elif self._state != _SWITCHED and buf:
            rest = bytes(buf)
            buf.clear()
            events += self.feed(rest)
        return events

    @staticmethod
    def _lines(raw: bytes) -> list[str]:
        lines = raw.decode("latin-1").split("\r\n")
        if raw.count(b"\n") != len(lines) - 1 or raw.count(b"\r") != len(lines) - 1:
            raise ProtocolError("bare CR or LF in a head")
        return lines

    @staticmethod
    def _headers(lines: list[str]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep or not _NAME.fullmatch(name):
                raise ProtocolError(f"malformed header line {line[:40]!r}")
            name, value = name.lower(), value.strip(" \t")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    def _request(self, raw: bytes) -> Request:
        lines = self._lines(raw)
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0] or not parts[1]:
            raise ProtocolError("malformed request line")
        method, target, version = parts
        if not _NAME.fullmatch(method):
            raise ProtocolError("malformed request method")
        headers = self._headers(lines[1:])
        keep_alive = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if "content-length" in headers:
                raise ProtocolError("both content-length and transfer-encoding")
            if coding.rsplit(",", 1)[-1].strip().lower() != "chunked":
                raise ProtocolError("a request body of unknown length", 411)
            self._start_chunked()
            return Request(method, target, headers, version, keep_alive, None)
        length = _content_length(headers)
        self._start_length(length)
        return Request(method, target, headers, version, keep_alive, length)

    def _response(self, raw: bytes) -> Response | None:
        lines = self._lines(raw)
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if (
            version not in ("HTTP/1.1", "HTTP/1.0")
            or len(code) != 3
            or not code.isdigit()
            or not code.isascii()
        ):
            raise ProtocolError("malformed status line")
        status = int(code)
        if status < 100:
            raise ProtocolError("malformed status line")
        headers = self._headers(lines[1:])
        if 100 <= status < 200 and status != 101:
            return None  # interim (100 Continue, 103 Early Hints): the answer follows
        keep_alive = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        method = self._method
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            self._state = _SWITCHED
            return Response(status, reason, headers, version, False, None)
        if method == "HEAD" or status in (204, 304):
            self._state = _HEAD  # no body, whatever the headers say
            return Response(status, reason, headers, version, keep_alive, 0)
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.rsplit(",", 1)[-1].strip().lower() == "chunked":
                self._start_chunked()
                # a length beside chunking is a smuggling attempt or a bug: read it, then do not reuse
                return Response(
                    status, reason, headers, version, keep_alive and "content-length" not in headers
                )
            self._state = _TO_CLOSE
            return Response(status, reason, headers, version, False, None)
        if "content-length" in headers:
            length = _content_length(headers)
            self._start_length(length)
            return Response(status, reason, headers, version, keep_alive, length)
        self._state = _TO_CLOSE
        return Response(status, reason, headers, version, False, None)

    def _start_length(self, length: int) -> None:
        if length:
            self._state, self._remaining = _LENGTH, length
        else:
            self._state = _HEAD  # read by _heads as "no body"

    def _start_chunked(self) -> None:
        self._state, self._remaining, self._chunk_crlf, self._trailers = _CHUNKED, 0, False, False

    # chunked bodies

    def _chunked(self, data: bytes) -> list[Event]:
        buf = self._buf
        if buf:
            buf += data
        else:
            buf = self._buf = bytearray(data)
        out: list[bytes] = []
        pos, size = 0, len(buf)
        ended = False
        while pos < size:
            if self._remaining > 0:
                take = min(self._remaining, size - pos)
                out.append(bytes(buf[pos : pos + take]))
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._chunk_crlf = True
                continue
            if self._chunk_crlf:
                if size - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ProtocolError("a chunk longer than its size")
                pos += 2
                self._chunk_crlf = False
                continue
            eol = buf.find(b"\r\n", pos)
            if self._trailers:  # after the last chunk: trailer lines (ignored) up to a blank line
                if eol < 0:
                    if size - pos > self.max_head:
                        raise ProtocolError("trailers too large", 431)
                    break
                blank, pos = eol == pos, eol + 2
                if blank:
                    ended = True
                    break
                continue
            if eol < 0:
                if size - pos > MAX_CHUNK_LINE:
                    raise ProtocolError("a chunk-size line too long")
                break
            line = bytes(buf[pos:eol]).split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(line):
                raise ProtocolError(f"bad chunk size {line[:20]!r}")
            pos = eol + 2
            length = int(line, 16)
            if length:
                self._remaining = length
            else:
                self._trailers = True
        del buf[:pos]
        data_out = out[0] if len(out) == 1 else b"".join(out)
        if ended:
            self._state = _WAIT
            return [data_out, END] if data_out else [END]
        return [data_out] if data_out else []


def _content_length(headers: dict[str, str]) -> int:
    value = headers.get("content-length")
    if value is None:
        return 0
    values = {v.strip() for v in value.split(",")}  # "5, 5" (a repeated header) is one length
    text = values.pop() if len(values) == 1 else ""
    if not text.isdigit() or not text.isascii() or len(text) > 18:
        raise ProtocolError(f"bad content-length {value[:30]!r}")
    return int(text)


# writing


def _head(start: str, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines = [start, *(f"{k}: {v}" for k, v in items)]
    text = "\r\n".join(lines)
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        raise ValueError("CR or LF inside a head line")  # a header value would start a new header
    return (text + "\r\n\r\n").encode("latin-1")


def request_head(method: str, target: str, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """A request line and exactly these headers (framing is the caller's: content-length or not)."""
    return _head(f"{method} {target} HTTP/1.1", headers)


def response_head(
    status: int, headers: Mapping[str, str] | Iterable[tuple[str, str]], reason: str | None = None
) -> bytes:
    """A status line and exactly these headers."""
    return _head(f"HTTP/1.1 {status} {reason or _REASONS.get(status, 'Unknown')}", headers)


def response(status: int, headers: Mapping[str, str], body: bytes | None = None) -> bytes:
    """A whole answer framed by content-length when `body` is given, else a head announcing chunks
    (`chunk()` each piece, then `LAST_CHUNK`). Framing headers in `headers` are replaced."""
    fields = [(k, v) for k, v in headers.items() if k not in ("content-length", "transfer-encoding")]
    fields.append(
        ("content-length", str(len(body))) if body is not None else ("transfer-encoding", "chunked")
    )
    return response_head(status, fields) + (body or b"")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (nothing for empty data: an empty chunk would end the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""


LAST_CHUNK: Final = b"0\r\n\r\n"
