"""Per-event cost of reading a streamed answer: our HTTP/1.1 codec against h11, if installed.

    .venv/bin/python scripts/bench_http11.py [--events 2000] [--rounds 5]

The stream is the relay's hot path: a chunked `text/event-stream` answer, one chunk per SSE event, fed
one socket read per event. Prints the best microseconds per event of each and their ratio.
"""

from __future__ import annotations

import argparse
import time

from codex_api_proxy.relay import http11

EVENT = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"word "}\n\n'
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def reads(events: int) -> list[bytes]:
    return [HEAD] + [http11.chunk(EVENT)] * events + [http11.LAST_CHUNK]


def ours(data: list[bytes]) -> int:
    parser = http11.Parser("client")
    parser.next_message("POST")
    body = 0
    for piece in data:
        for event in parser.feed(piece):
            if type(event) is bytes:
                body += len(event)
    return body


def theirs(data: list[bytes]) -> int:
    import h11

    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", "0")]))
    conn.send(h11.EndOfMessage())
    body = 0
    for piece in data:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage):
                break
            if isinstance(event, h11.Data):
                body += len(event.data)
    return body


def best(fn, data: list[bytes], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn(data)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = reads(args.events)
    assert ours(data) == len(EVENT) * args.events
    mine = best(ours, data, args.rounds) / args.events * 1e6
    print(f"http11: {mine:.2f} us/event")
    try:
        import h11  # noqa: F401
    except ImportError:
        print("h11 not installed: no comparison")
        return
    assert theirs(data) == len(EVENT) * args.events
    other = best(theirs, data, args.rounds) / args.events * 1e6
    print(f"h11:    {other:.2f} us/event  ({other / mine:.1f}x ours)")


if __name__ == "__main__":
    main()
