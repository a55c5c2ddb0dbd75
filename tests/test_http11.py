"""The HTTP/1.1 codec on its own: every message fed whole, split at every byte boundary, and byte by
byte must give the same events; malformed input is a ProtocolError (never a hang or a wrong body)."""

from __future__ import annotations

from typing import Any

import pytest

from codex_api_proxy.relay import http11
from codex_api_proxy.relay.http11 import END, ConnectionCut, Parser, ProtocolError, Request, Response

SSE = b'event: response.created\ndata: {"type":"response.created"}\n\n'

# (name, side, method of the request (client side), wire bytes, expected events, close ends it)
# expected: heads as (status or method, target?) tuples, body as one bytes, END
MESSAGES: list[tuple[str, str, str, bytes, list[Any], bool]] = [
    ("get, no body", "server", "", b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n", [("GET", "/v1/models"), END], False),
    ("post, length", "server", "", b"POST /r HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello", [("POST", "/r"), b"hello", END], False),
    ("post, chunked with extension and trailer", "server", "",
     b"POST /r HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nx-t: 1\r\n\r\n",
     [("POST", "/r"), b"hello!", END], False),
    ("stray CRLF before a request", "server", "", b"\r\nGET / HTTP/1.1\r\n\r\n", [("GET", "/"), END], False),
    ("200 with length", "client", "GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", [(200,), b"ok", END], False),
    ("200 chunked SSE", "client", "POST",
     b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
     + http11.chunk(SSE) + http11.chunk(SSE) + http11.LAST_CHUNK,
     [(200,), SSE + SSE, END], False),
    ("upper-case hex size", "client", "GET",
     b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"A\r\n0123456789\r\n0\r\n\r\n",
     [(200,), b"0123456789", END], False),
    ("interim answers skipped", "client", "POST",
     b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
     [(204,), END], False),
    ("HEAD answer has no body", "client", "HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n", [(200,), END], False),
    ("304 has no body", "client", "GET", b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n", [(304,), END], False),
    ("body to the close", "client", "GET", b"HTTP/1.1 200 OK\r\n\r\nall of it", [(200,), b"all of it", END], True),
    ("repeated equal content-length", "client", "GET",
     b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\nx", [(200,), b"x", END], False),
    ("empty header value and no reason", "client", "GET", b"HTTP/1.1 200\r\nx-empty:\r\ncontent-length: 0\r\n\r\n", [(200,), END], False),
]  # fmt: skip


def normalise(events: list[Any]) -> list[Any]:
    """Heads as short tuples, adjacent body pieces joined (how a feed splits them is free)."""
    out: list[Any] = []
    for event in events:
        if isinstance(event, Request):
            out.append((event.method, event.target))
        elif isinstance(event, Response):
            out.append((event.status,))
        elif isinstance(event, bytes):
            if out and isinstance(out[-1], bytes):
                out[-1] += event
            else:
                out.append(event)
        else:
            out.append(event)
    return out


def run(side: str, method: str, pieces: list[bytes], close: bool) -> list[Any]:
    parser = Parser(side)  # type: ignore[arg-type]
    events = parser.next_message(method if side == "client" else "")
    for piece in pieces:
        events += parser.feed(piece)
    if close:
        events += parser.feed_eof()
    return events


@pytest.mark.parametrize(
    ("name", "side", "method", "wire", "expected", "close"), MESSAGES, ids=[m[0] for m in MESSAGES]
)
def test_every_split_gives_the_same_events(
    name: str, side: str, method: str, wire: bytes, expected: list[Any], close: bool
) -> None:
    assert normalise(run(side, method, [wire], close)) == expected
    assert normalise(run(side, method, [wire[i : i + 1] for i in range(len(wire))], close)) == expected
    for cut in range(1, len(wire)):
        assert normalise(run(side, method, [wire[:cut], wire[cut:]], close)) == expected, cut
        for cut2 in range(cut + 1, len(wire), max(1, len(wire) // 7)):
            pieces = [wire[:cut], wire[cut:cut2], wire[cut2:]]
            assert normalise(run(side, method, pieces, close)) == expected, (cut, cut2)


BAD: list[tuple[str, str, bytes, str]] = [
    ("chunk size not hex", "client", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ("negative chunk size", "client", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-5\r\nhello\r\n", "bad chunk size"),
    ("0x chunk size", "client", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0x5\r\nhello\r\n", "bad chunk size"),
    ("underscore chunk size", "client", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1_0\r\n", "bad chunk size"),
    ("huge chunk size", "client", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\n", "bad chunk size"),
    ("chunk longer than its size", "client", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhello\r\n", "longer than its size"),
    ("endless chunk-size line", "client", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"1" * 5000, "too long"),
    ("negative content-length", "client", b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "content-length"),
    ("signed content-length", "client", b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello", "content-length"),
    ("two content-lengths", "client", b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\nxx", "content-length"),
    ("malformed status line", "client", b"HTTP/1.1 OK\r\n\r\n", "status line"),
    ("not HTTP", "client", b"SSH-2.0-OpenSSH\r\n\r\n", "status line"),
    ("bare LF in a head", "client", b"HTTP/1.1 200 OK\r\nx: a\nset-cookie: b\r\n\r\n", "bare CR or LF"),
    ("folded header", "client", b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\n\r\n", "header line"),
    ("space before colon", "server", b"POST / HTTP/1.1\r\ncontent-length : 5\r\n\r\nhello", "header line"),
    ("length and chunked in a request", "server",
     b"POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n", "both"),
    ("unknown request coding", "server", b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n", "unknown length"),
    ("request line of two words", "server", b"GET /\r\n\r\n", "request line"),
    ("HTTP/2 preface", "server", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "request line"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "side", "wire", "message"), BAD, ids=[b[0] for b in BAD])
def test_malformed_input_is_a_protocol_error(name: str, side: str, wire: bytes, message: str) -> None:
    for pieces in ([wire], [wire[i : i + 1] for i in range(len(wire))]):
        with pytest.raises(ProtocolError, match=message):
            run(side, "GET", pieces, close=False)


def test_oversized_head_is_431_whether_or_not_it_ends() -> None:
    parser = Parser("server", max_head=1024)
    parser.next_message()
    with pytest.raises(ProtocolError) as raised:
        parser.feed(b"GET / HTTP/1.1\r\nx: " + b"a" * 2000)
    assert raised.value.status == 431
    parser = Parser("server", max_head=1024)
    parser.next_message()
    with pytest.raises(ProtocolError):
        parser.feed(b"GET / HTTP/1.1\r\nx: " + b"a" * 2000 + b"\r\n\r\n")


@pytest.mark.parametrize(
    ("wire", "events_before_cut"),
    [
        (b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n40\r\ndata: {"type":"resp', 2),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", 2),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello", 2),
        (b"HTTP/1.1 200 OK\r\ncontent-le", 0),
    ],
)
def test_a_close_inside_a_message_is_a_cut_connection(wire: bytes, events_before_cut: int) -> None:
    parser = Parser("client")
    parser.next_message("POST")
    assert len(parser.feed(wire)) == events_before_cut
    with pytest.raises(ConnectionCut):
        parser.feed_eof()


def test_a_close_before_any_byte_is_no_event() -> None:
    parser = Parser("client")
    parser.next_message("POST")
    assert parser.feed_eof() == []


def test_twenty_thousand_interim_answers_do_not_recurse() -> None:
    parser = Parser("client")
    parser.next_message("POST")
    wire = b"HTTP/1.1 100 Continue\r\n\r\n" * 20_000 + b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    assert normalise(parser.feed(wire)) == [(200,), b"ok", END]


@pytest.mark.parametrize(
    ("method", "wire"),
    [("POST", b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n\x81\x05hello"),
     ("CONNECT", b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01")],
)  # fmt: skip
def test_switching_protocols_stops_the_parser_at_once(method: str, wire: bytes) -> None:
    parser = Parser("client")
    parser.next_message(method)
    events = parser.feed(wire)
    assert len(events) == 1 and isinstance(events[0], Response)
    assert parser.switched and not events[0].keep_alive
    assert parser.feed(b"more bytes") == []  # kept, never parsed as HTTP


def test_keep_alive_and_messages_one_after_another() -> None:
    parser = Parser("server")
    parser.next_message()
    wire = b"POST /a HTTP/1.1\r\ncontent-length: 1\r\n\r\nxGET /b HTTP/1.1\r\nconnection: close\r\n\r\n"
    first = parser.feed(wire)
    assert normalise(first) == [("POST", "/a"), b"x", END]
    assert first[0].keep_alive and parser.buffered > 0  # the next request waits for next_message()
    second = parser.next_message()
    assert normalise(second) == [("GET", "/b"), END] and not second[0].keep_alive
    assert parser.next_message() == [] and parser.feed(b"POST /c HTTP/1.1\r\n") == []
    with pytest.raises(RuntimeError):
        parser.next_message()  # a message is still being read


def test_surplus_after_a_response_is_visible() -> None:
    parser = Parser("client")
    parser.next_message("GET")
    assert normalise(parser.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA")) == [
        (200,),
        b"ok",
        END,
    ]
    assert parser.buffered == 5  # a server that sends more than it announced is not reused


def test_headers_are_lower_case_and_joined() -> None:
    parser = Parser("client")
    parser.next_message("GET")
    head = parser.feed(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a:  2 \r\nContent-Length: 0\r\n\r\n")[0]
    assert head.headers == {"x-a": "1, 2", "content-length": "0"} and head.length == 0


def test_writers_frame_and_refuse_injection() -> None:
    assert http11.response(200, {"content-type": "application/json", "content-length": "9"}, b"{}") == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
    )
    assert http11.response(404, {}).endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert http11.request_head("GET", "/", [("host", "x")]) == b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    assert http11.chunk(b"") == b"" and http11.chunk(b"abc") == b"3\r\nabc\r\n"
    for bad in ("a\r\nx-injected: 1", "a\nb", "a\rb"):
        with pytest.raises(ValueError):
            http11.response_head(200, {"x": bad})
    # what the writers write, the parser reads back
    parser = Parser("client")
    parser.next_message("GET")
    wire = http11.response(200, {"x": "1"}) + http11.chunk(b"he") + http11.chunk(b"llo") + http11.LAST_CHUNK
    assert normalise(parser.feed(wire)) == [(200,), b"hello", END]
