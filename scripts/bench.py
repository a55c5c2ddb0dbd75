"""Overhead of the proxy, printed as ratios (absolute numbers on a shared 2-core box mean little).

    .venv/bin/python scripts/bench.py [--requests 200] [--rounds 3]

For each API family it sends the same sequential requests (one keep-alive connection) to the fake Codex
backend directly and through the proxy, interleaved round by round, and reports the median latency of
both, time to first event for streams, and the proxy process's CPU time per request (from /proc). It
also runs the same addon under `mitmdump -s`, the alternative to the lean in-process master.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codex_api_proxy.fake_backend import FakeBackend, Turn, text  # noqa: E402
from tests.conftest import ACCESS_TOKEN, ACCOUNT_ID, free_port, start_proxy, write_auth  # noqa: E402

ANSWER = Turn(output=[text("The quick brown fox jumps over the lazy dog. " * 4, chunks=20)])
CASES = {
    "responses-stream": ("/v1/responses", {"model": "gpt-5.5", "input": "hi", "stream": True}),
    "chat-stream": ("/v1/chat/completions", {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "stream": True}),
    "chat-json": ("/v1/chat/completions", {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}),
    "messages-stream": ("/v1/messages", {"model": "gpt-5.5", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
}  # fmt: skip
DIRECT_BODY = {
    "model": "gpt-5.5",
    "input": [{"role": "user", "content": "hi"}],
    "stream": True,
    "store": False,
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    client: httpx.Client, fake: FakeBackend, url: str, body: dict, n: int, headers: dict[str, str]
) -> tuple[list[float], list[float]]:
    fake.clear()
    fake.enqueue(*[ANSWER] * n)
    totals, firsts = [], []
    for _ in range(n):
        start = time.perf_counter()
        with client.stream("POST", url, json=body, headers=headers) as r:
            first = None
            for _chunk in r.iter_raw():
                if first is None:
                    first = time.perf_counter() - start
            r.raise_for_status()
        totals.append(time.perf_counter() - start)
        firsts.append(first or totals[-1])
    return totals, firsts


def start_mitmdump(tmp: Path, fake: FakeBackend) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CODEX_HOME": str(tmp / "codex-home"), "CODEX_API_PROXY_UPSTREAM_URL": fake.url}
    args = [str(Path(sys.executable).parent / "mitmdump"), "-q", "-s", str(ROOT / "addons/codex_api_proxy.py"),
            "--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{port}", "--set", "connection_strategy=lazy",
            "--set", f"confdir={tmp / 'mitm'}", "--set", "flow_detail=0", "--set", "termlog_verbosity=warn"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/health", trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("mitmdump did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp_,
        FakeBackend(access_tokens={ACCESS_TOKEN}, account_id=ACCOUNT_ID) as fake,
    ):
        tmp = Path(tmp_)
        write_auth(tmp / "codex-home")
        proxy = start_proxy(tmp / "lean", fake, codex_home=tmp / "codex-home", log_level="warning")
        dump, dump_url = start_mitmdump(tmp, fake)
        targets = {"lean master": (proxy.url, proxy.process.pid), "mitmdump -s": (dump_url, dump.pid)}
        auth = {"authorization": f"Bearer {ACCESS_TOKEN}", "chatgpt-account-id": ACCOUNT_ID}
        results: dict[tuple[str, str], list[float]] = {}
        try:
            with httpx.Client(trust_env=False, timeout=60) as client:
                for _ in range(args.rounds):
                    t, f = run(client, fake, fake.url + "/responses", DIRECT_BODY, args.requests, auth)
                    results.setdefault(("direct", "total"), []).extend(t)
                    results.setdefault(("direct", "first"), []).extend(f)
                    for name, (url, pid) in targets.items():
                        for case, (path, body) in CASES.items():
                            before = cpu_seconds(pid)
                            t, f = run(client, fake, url + path, body, args.requests, {})
                            cpu = (cpu_seconds(pid) - before) / args.requests
                            results.setdefault((f"{name} {case}", "total"), []).extend(t)
                            results.setdefault((f"{name} {case}", "first"), []).extend(f)
                            results.setdefault((f"{name} {case}", "cpu"), []).append(cpu)
        finally:
            proxy.stop()
            dump.terminate()
            dump.wait()
        direct_total = statistics.median(results["direct", "total"])
        direct_first = statistics.median(results["direct", "first"])
        print(f"{args.rounds} rounds x {args.requests} sequential requests, 20-event answers; medians.")
        print(
            f"direct to the fake backend: total {direct_total * 1e3:.2f} ms, first byte {direct_first * 1e3:.2f} ms"
        )
        print(f"{'target':38} {'total/direct':>13} {'first/direct':>13} {'cpu ms/req':>11}")
        for (label, kind), values in results.items():
            if kind != "total" or label == "direct":
                continue
            total = statistics.median(values) / direct_total
            first = statistics.median(results[label, "first"]) / direct_first
            cpu = statistics.median(results[label, "cpu"]) * 1e3
            print(f"{label:38} {total:13.2f} {first:13.2f} {cpu:11.2f}")
        for case in CASES:
            lean = statistics.median(results[f"lean master {case}", "cpu"])
            dumped = statistics.median(results[f"mitmdump -s {case}", "cpu"])
            print(f"cpu per request, lean master / mitmdump, {case}: {lean / dumped:.2f}")


if __name__ == "__main__":
    main()
