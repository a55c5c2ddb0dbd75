"""Side-by-side benchmark of the data path, printed as ratios (absolute times drift between runs).

    .venv/bin/python scripts/bench.py [--quick] [--compare-seed] [--json out.json] [--events 58]

One command starts everything on loopback: a fast fake Codex upstream (a replay of a realistic
Responses stream, one chunk per event as the backend sends it, TCP_NODELAY), this proxy, a bare
mitmproxy master with no addon (the floor any mitmproxy design stands on), and with --compare-seed the
earlier `codex-api-proxy` 0.1.6 (pip-installed into .cache/seed-venv, its upstream URL constant patched
to the fake). Targets are measured in interleaved rounds and each figure is reported as the median
over rounds, with ratios against 0.1.6 and the bare master.

Figures: added time to first byte at c=1 (p50, against the fake directly), proxy CPU per request at
c=16 (from /proc), requests/s and p99 at c=64, CPU per extra SSE event (2,000-event answers), CPU per
event when events arrive 1 ms apart, and RSS growth over many requests. --quick (CI smoke, < 60 s)
runs small counts and checks nothing but that every target answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port, write_auth  # noqa: E402

SEED_VENV = ROOT / ".cache/seed-venv"
# The prompt tells the fake how to answer (every proxy forwards the prompt, not every one our headers).
FAMILIES = {
    "responses": ("/v1/responses", {"model": "gpt-5.5", "input": "PROMPT", "stream": True}),
    "chat": ("/v1/chat/completions", {"model": "gpt-5.5", "stream": True, "messages": [{"role": "user", "content": "PROMPT"}]}),
    "messages": ("/v1/messages", {"model": "gpt-5.5", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "PROMPT"}]}),
}  # fmt: skip
DIRECT = (
    "/backend-api/codex/responses",
    {"model": "gpt-5.5", "input": "PROMPT", "stream": True, "store": False},
)
MARKER = re.compile(rb"bench events=(\d+) gap=(\d+)")


# ---- the fast fake upstream (its own process, so its CPU is not the proxy's) --------------------------


def codex_stream(events: int) -> list[bytes]:
    """A Codex-shaped stream: created, a message of `events - 6` text deltas, done events, completed."""
    rid, mid = "resp_bench", "msg_bench"
    deltas = max(1, events - 6)
    frames: list[dict] = [
        {"type": "response.created", "response": {"id": rid, "object": "response", "status": "in_progress", "model": "gpt-5.5", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": {"id": mid, "type": "message", "role": "assistant", "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", "output_index": 0, "item_id": mid, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}},
    ]  # fmt: skip
    words = [f"word{i % 97} " for i in range(deltas)]
    frames += [
        {
            "type": "response.output_text.delta",
            "output_index": 0,
            "item_id": mid,
            "content_index": 0,
            "delta": w,
        }
        for w in words
    ]
    text = "".join(words)
    frames += [
        {"type": "response.output_text.done", "output_index": 0, "item_id": mid, "content_index": 0, "text": text},
        {"type": "response.output_item.done", "output_index": 0, "item": {"id": mid, "type": "message", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]}},
        {"type": "response.completed", "response": {"id": rid, "object": "response", "status": "completed", "model": "gpt-5.5", "output": [], "usage": {"input_tokens": 10, "output_tokens": deltas, "total_tokens": 10 + deltas}}},
    ]  # fmt: skip
    out = []
    for n, f in enumerate(frames):
        f["sequence_number"] = n
        data = f"event: {f['type']}\ndata: {json.dumps(f, separators=(',', ':'))}\n\n".encode()
        out.append(b"%x\r\n%b\r\n" % (len(data), data))
    return out


async def upstream_main(port: int) -> None:
    cache: dict[int, list[bytes]] = {}
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                lines = raw.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
                }
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                found = MARKER.search(body)
                events, gap = (int(found[1]), int(found[2]) / 1000) if found else (58, 0.0)
                frames = cache.get(events) or cache.setdefault(events, codex_stream(events))
                writer.write(head)
                for f in frames:
                    writer.write(f)
                    if gap:
                        await writer.drain()
                        await asyncio.sleep(gap)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# ---- a lean load generator: raw HTTP/1.1 over asyncio, keep-alive ----------------------------------------


@dataclass
class Sample:
    first_byte: float
    total: float


async def one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> Sample:
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    first = time.perf_counter()
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {head[:200]!r}")
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        await reader.readexactly(length)
    return Sample(first - started, time.perf_counter() - started)


def build_request(port: int, path: str, body: dict, events: int, gap_ms: int = 0) -> bytes:
    data = json.dumps(body).replace("PROMPT", f"bench events={events} gap={gap_ms}").encode()
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer bench\r\ncontent-length: {len(data)}\r\n\r\n"
    ).encode() + data


async def load(port: int, request: bytes, total: int, concurrency: int) -> list[Sample]:
    samples: list[Sample] = []
    left = total

    async def worker() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        try:
            while left > 0:
                left -= 1
                samples.append(await one_request(reader, writer, request))
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


# ---- targets ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    process: subprocess.Popen[bytes] | None
    paths: dict[str, str] = field(default_factory=dict)  # family -> path (the bare master goes direct)
    bodies: dict[str, dict] = field(default_factory=dict)

    def request(self, family: str, events: int, gap_ms: int = 0) -> bytes:
        return build_request(self.port, self.paths[family], self.bodies[family], events, gap_ms)


def wait_ready(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port}")


def start_targets(tmp: Path, upstream: int, seed: bool) -> list[Target]:
    codex_home = tmp / "codex-home"
    write_auth(codex_home)
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_PROXY", "_proxy"))}
    env.update(CODEX_HOME=str(codex_home), HOME=str(tmp), CODEX_API_PROXY_STATE_DIR=str(tmp / "state"))
    base = f"http://127.0.0.1:{upstream}/backend-api/codex"
    targets = []
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "codex_api_proxy", "start", "--foreground", "--port", str(port), "--log-level", "warning"],
        env={**env, "CODEX_API_PROXY_UPSTREAM_URL": base}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    targets.append(
        Target(
            "this",
            port,
            proxy,
            {f: p for f, (p, _) in FAMILIES.items()},
            {f: b for f, (_, b) in FAMILIES.items()},
        )
    )
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_MASTER, str(port), str(upstream), str(tmp / "bare")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    targets.append(
        Target("bare", port, bare, {f: DIRECT[0] for f in FAMILIES}, {f: DIRECT[1] for f in FAMILIES})
    )
    if seed:
        python = SEED_VENV / "bin/python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(SEED_VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "codex-api-proxy==0.1.6"], check=True)
        port = free_port()
        launcher = (
            "import sys, codex_api_proxy.auth as a; a.CHATGPT_CODEX_BASE_URL = sys.argv[1]; "
            "from codex_api_proxy.cli import main; "
            "sys.exit(main(['start', '--foreground', '--port', sys.argv[2], '--log-level', 'warning', "
            "'--pid-file', sys.argv[3] + '/pid', '--log-file', sys.argv[3] + '/log', '--state-file', sys.argv[3] + '/state']))"
        )
        seedp = subprocess.Popen(
            [str(python), "-c", launcher, base, str(port), str(tmp)],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "seed.err").open("wb"),
        )
        targets.append(
            Target(
                "0.1.6",
                port,
                seedp,
                {f: p for f, (p, _) in FAMILIES.items()},
                {f: b for f, (_, b) in FAMILIES.items()},
            )
        )
    for t in targets:
        assert t.process is not None
        try:
            wait_ready(t.port, t.process, t.name)
        except RuntimeError:
            err = tmp / "seed.err"
            print(err.read_text()[-2000:] if err.exists() else "", file=sys.stderr)
            raise
    return targets


BARE_MASTER = """
import asyncio, sys
from mitmproxy import options
from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master
async def main():
    port, upstream, confdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    opts = options.Options()
    m = Master(opts)
    m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(), errorcheck.ErrorCheck())
    opts.update(mode=[f"reverse:http://127.0.0.1:{upstream}@{port}"], listen_host="127.0.0.1", confdir=confdir,
                connection_strategy="lazy", http2=False, websocket=False, rawtcp=False)
    await m.run()
asyncio.run(main())
"""


# ---- the figures -----------------------------------------------------------------------------------------


def measure(
    targets: list[Target], upstream: int, args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    """Interleaved rounds: every figure of every target once per round."""
    results: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}

    def add(target: str, figure: str, value: float) -> None:
        results[target].setdefault(figure, []).append(value)

    direct_req = build_request(upstream, DIRECT[0], DIRECT[1], args.events)
    for _ in range(args.rounds):
        direct = asyncio.run(load(upstream, direct_req, args.ttfb_requests, 1))
        direct_ttfb = statistics.median(s.first_byte for s in direct)
        for t in targets:
            assert t.process is not None
            pid = t.process.pid
            for family in FAMILIES:
                ev = args.events
                s = asyncio.run(load(t.port, t.request(family, ev), args.ttfb_requests, 1))
                add(
                    t.name,
                    f"ttfb_added_ms:{family}",
                    (statistics.median(x.first_byte for x in s) - direct_ttfb) * 1000,
                )
                before = cpu_seconds(pid)
                asyncio.run(load(t.port, t.request(family, ev), args.cpu_requests, 16))
                add(
                    t.name,
                    f"cpu_ms_per_request:{family}",
                    (cpu_seconds(pid) - before) / args.cpu_requests * 1000,
                )
                started = time.perf_counter()
                s = asyncio.run(load(t.port, t.request(family, ev), args.rps_requests, 64))
                add(t.name, f"rps_c64:{family}", len(s) / (time.perf_counter() - started))
                totals = sorted(x.total for x in s)
                add(t.name, f"p99_ms_c64:{family}", totals[int(len(totals) * 0.99) - 1] * 1000)
            for family in ("chat", "messages", "responses"):
                big = args.big_events
                before = cpu_seconds(pid)
                asyncio.run(load(t.port, t.request(family, big), args.big_requests, 4))
                cpu_big = (cpu_seconds(pid) - before) / args.big_requests
                before = cpu_seconds(pid)
                asyncio.run(load(t.port, t.request(family, args.events), args.big_requests * 4, 4))
                cpu_small = (cpu_seconds(pid) - before) / (args.big_requests * 4)
                add(
                    t.name,
                    f"cpu_us_per_event:{family}",
                    (cpu_big - cpu_small) / (args.big_events - args.events) * 1e6,
                )
                before = cpu_seconds(pid)
                asyncio.run(load(t.port, t.request(family, args.slow_events, 1), args.slow_requests, 4))
                cpu_slow = (cpu_seconds(pid) - before) / args.slow_requests
                add(
                    t.name,
                    f"cpu_us_per_event_1ms:{family}",
                    (cpu_slow - cpu_small) / (args.slow_events - args.events) * 1e6,
                )
    if args.rss_requests:
        for t in targets:
            assert t.process is not None
            asyncio.run(load(t.port, t.request("messages", args.events), 500, 8))
            before = rss_kb(t.process.pid)
            for family in FAMILIES:
                asyncio.run(load(t.port, t.request(family, args.events), args.rss_requests // 3, 8))
            add(t.name, "rss_growth_mb", (rss_kb(t.process.pid) - before) / 1024)
    return results


def report(results: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    med = {t: {f: statistics.median(v) for f, v in figs.items()} for t, figs in results.items()}
    figures = list(med["this"])
    names = [n for n in ("bare", "0.1.6", "this") if n in med]
    head = f"{'figure':38}" + "".join(f"{n:>12}" for n in names) + f"{'this/0.1.6':>12}{'this/bare':>11}"
    print(head)
    print("-" * len(head))
    for fig in figures:
        row = f"{fig:38}" + "".join(f"{med[n].get(fig, float('nan')):12.2f}" for n in names)
        this = med["this"][fig]
        seed = med.get("0.1.6", {}).get(fig)
        bare = med["bare"].get(fig)
        row += f"{this / seed:12.2f}" if seed else f"{'':12}"
        row += f"{this / bare:11.2f}" if bare and not fig.startswith("ttfb") else f"{'':11}"
        print(row)
    return med


def profile(upstream: int, requests: int, events: int, gap_ms: int = 0) -> None:
    """cProfile of the proxy serving `requests` streamed /v1/messages answers: where one request's CPU goes."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        write_auth(tmp_path / "codex-home")
        out = tmp_path / "proxy.prof"
        port = free_port()
        env = {**os.environ, "CODEX_HOME": str(tmp_path / "codex-home"), "HOME": tmp,
               "CODEX_API_PROXY_STATE_DIR": str(tmp_path / "state"),
               "CODEX_API_PROXY_UPSTREAM_URL": f"http://127.0.0.1:{upstream}/backend-api/codex"}  # fmt: skip
        proxy = subprocess.Popen([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "codex_api_proxy", "start",
                                  "--foreground", "--port", str(port), "--log-level", "warning"],
                                 env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_ready(port, proxy, "proxy under cProfile")
            path, body = FAMILIES["messages"]
            asyncio.run(load(port, build_request(port, path, body, events, gap_ms), requests, 1))
        finally:
            proxy.terminate()
            proxy.wait(30)
        import pstats

        stats = pstats.Stats(str(out))
        if os.environ.get("BENCH_PROFILE_KEEP"):
            import shutil

            shutil.copy(out, os.environ["BENCH_PROFILE_KEEP"])
        total = stats.total_tt  # type: ignore[attr-defined]
        print(
            f"profile: {requests} streamed /v1/messages requests of {events} events; "
            f"{total / requests * 1000:.2f} ms of profiled CPU per request (cProfile inflates it)"
        )
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:25]  # type: ignore[attr-defined]
        print(f"{'own time per request':>22}  {'share':>6}  function")
        for (filename, line, name), (_, _, tottime, _, _) in rows:
            where = filename.split("site-packages/")[-1].removeprefix(f"{ROOT}/")
            print(f"{tottime / requests * 1e6:19.1f} µs  {tottime / total:6.1%}  {name} ({where}:{line})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run (< 60 s), no thresholds")
    parser.add_argument("--compare-seed", action="store_true", help="also run codex-api-proxy 0.1.6")
    parser.add_argument("--json", type=Path, help="write the medians here")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=58, help="events in a normal answer")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="only profile N streamed /v1/messages requests"
    )
    parser.add_argument("--gap-ms", type=int, default=0, help="with --profile: milliseconds between events")
    args = parser.parse_args()
    scale = 0.05 if args.quick else 1.0
    args.rounds = 1 if args.quick else args.rounds
    args.ttfb_requests = max(5, int(200 * scale))
    args.cpu_requests = max(16, int(800 * scale))
    args.rps_requests = max(64, int(1280 * scale))
    args.big_events, args.big_requests = 2000, max(2, int(20 * scale))
    args.slow_events, args.slow_requests = 300, max(2, int(8 * scale))
    args.rss_requests = 0 if args.quick else 10_000
    upstream = free_port()
    fake = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                             f"from scripts.bench import upstream_main; import asyncio; asyncio.run(upstream_main({upstream}))"],
                            cwd=ROOT)  # fmt: skip
    if args.profile:
        try:
            wait_ready(upstream, fake, "fake upstream")
            profile(upstream, args.profile, args.events, args.gap_ms)
        finally:
            fake.terminate()
            fake.wait(10)
        return
    with tempfile.TemporaryDirectory() as tmp:
        targets = []
        try:
            wait_ready(upstream, fake, "fake upstream")
            targets = start_targets(Path(tmp), upstream, args.compare_seed)
            print(
                f"machine: {os.cpu_count()} cpus, {sys.version.split()[0]}; rounds {args.rounds}; events {args.events}"
            )
            med = report(measure(targets, upstream, args))
            if args.json:
                args.json.write_text(json.dumps(med, indent=2))
        finally:
            for t in targets:
                if t.process is not None:
                    t.process.terminate()
                    t.process.wait(10)
            fake.terminate()
            fake.wait(10)


if __name__ == "__main__":
    main()
