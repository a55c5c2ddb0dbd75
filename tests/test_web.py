"""`start --web`: the same addon under mitmweb on the configured port, the UI on loopback behind its token,
streamed answers kept; each flow shown as its client sent it with the translated request beside it, the
answer readable in the SSE content view, no secret anywhere; a headless Chromium renders a translated
Claude Code request (the README's screenshot). And `mitmdump --set flow_detail=3` prints no secret."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import ACCESS_TOKEN, REFRESH_TOKEN, ROOT, free_port, write_auth

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = ROOT / "docs/mitmweb.png"
KEY = "local-key-never-shown"
SECRETS = (KEY, ACCESS_TOKEN, REFRESH_TOKEN)
SESSION = "6c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codex_api_proxy", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture
def web(tmp_path: Path, backend: FakeBackend) -> Iterator[tuple[dict[str, str], int, str]]:
    write_auth(tmp_path / "home/.codex")
    port, web_port = free_port(), free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "CODEX_API_PROXY_UPSTREAM_URL": backend.url,
        "CODEX_API_PROXY_API_KEY": KEY,
    }
    r = cli("start", "--web", "--port", str(port), "--web-port", str(web_port), env=env)
    assert r.returncode == 0, r.stderr
    (ui,) = [line.split(": ", 1)[1] for line in r.stdout.splitlines() if line.startswith("traffic inspector")]
    yield env, port, ui
    cli("stop", env=env)


def claude_code_request(port: int) -> str:
    """A streamed turn as Claude Code sends it (its headers, ?beta=true, metadata.user_id)."""
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "x-claude-code-session-id": SESSION,
               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14", "x-app": "cli",
               "user-agent": "claude-cli/2.1.197 (external, cli)"}  # fmt: skip
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True,
            "system": [{"type": "text", "text": "You are Claude Code."}],
            "metadata": {"user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": SESSION})},
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/messages?beta=true", json=body, headers=headers,
                      trust_env=False, timeout=30) as r:  # fmt: skip
        answer = "".join(r.iter_text())
    assert r.status_code == 200, answer
    return answer


def test_web_mode_shows_the_translation_and_no_secret(web: tuple[dict[str, str], int, str], fake: FakeBackend,
                                                       tmp_path: Path) -> None:  # fmt: skip
    env, port, ui = web
    assert ui.startswith("http://127.0.0.1:") and "?token=" in ui
    token = ui.split("?token=")[1]
    pid = int((tmp_path / "home/.codex-api-proxy/codex-api-proxy.pid").read_text())
    assert token not in Path(f"/proc/{pid}/cmdline").read_text()
    fake.enqueue(Turn(output=[text("streamed through mitmweb", chunks=3)]))
    assert "streamed" in claude_code_request(port)
    # a local endpoint (no upstream) and a refused request: their keys are masked too
    local = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"x-api-key": KEY}, trust_env=False)
    assert local.status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/health", headers={"authorization": f"Bearer {KEY}"},
                     trust_env=False).status_code == 200  # fmt: skip
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"authorization": "Bearer wrong-key-2"},
                     trust_env=False).status_code == 401  # fmt: skip
    base = ui.split("/?")[0]
    api = httpx.Client(base_url=base, params={"token": token}, trust_env=False, timeout=30)
    assert httpx.get(base + "/flows", trust_env=False).status_code == 403  # no token, no UI
    flows = api.get("/flows").json()
    (flow,) = [f for f in flows if f["request"]["method"] == "POST"]
    assert flow["response"]["status_code"] == 200

    # listed as the client sent it: the proxy's address, the client's path (not the relay, not :9)
    for f in flows:
        assert (f["request"]["host"], f["request"]["port"]) == ("127.0.0.1", port), f["request"]
    assert flow["request"]["path"] == "/v1/messages?beta=true"
    assert {f["request"]["path"] for f in flows} >= {"/v1/models", "/health", "/metrics"}
    client_body = api.get(f"/flows/{flow['id']}/request/content.data").json()
    assert client_body["model"] == "claude-sonnet-4-5" and client_body["messages"][0]["content"] == "hi"
    # labelled client model -> upstream model; the translated request beside it, its credentials masked
    label, upstream = flow["comment"].split("\n\n", 1)
    assert label == "claude-sonnet-4-5 -> gpt-5.5"
    assert upstream.startswith(f"Sent upstream: POST {fake.url}/responses\nauthorization: Bearer *** ")
    sent_body = json.loads(upstream.split("\n\n", 1)[1])
    assert sent_body == fake.responses_requests[-1].body  # exactly what the backend received
    sent_length = fake.responses_requests[-1].headers["content-length"]
    assert f"\ncontent-length: {sent_length}\n" in upstream  # the body's, not the empty loopback hop's
    assert sent_body["model"] == "gpt-5.5" and sent_body["prompt_cache_key"] == SESSION
    shown = api.get(f"/flows/{flow['id']}/request/content/upstream.json").json()
    assert shown["view_name"] == "Upstream" and shown["text"] == upstream  # the same, lines kept
    # the streamed answer reads as text in the SSE content view, the events after it
    view = api.get(f"/flows/{flow['id']}/response/content/sse.json").json()
    assert view["view_name"] == "SSE"
    assert view["text"].startswith("Text:\nstreamed through mitmweb\n")
    assert "content_block_delta: " in view["text"] and "message_stop: " in view["text"]
    auto = api.get(f"/flows/{flow['id']}/response/content/auto.json").json()
    assert auto["view_name"] == "SSE"  # chosen by itself for text/event-stream
    # File > Save works on our flows, and nothing mitmweb holds carries a secret
    dump = api.get("/flows/dump")
    assert dump.status_code == 200 and len(dump.content) > 1000
    seen = [json.dumps(flows), dump.text, *(
        api.get(f"/flows/{f['id']}/{part}/content.data").text for f in flows for part in ("request", "response"))]  # fmt: skip
    for secret in SECRETS:
        assert not any(secret in text for text in seen), secret
    masked = {k.lower(): v for f in flows for k, v in f["request"]["headers"]}
    assert masked["x-api-key"] == "***" and masked["authorization"] == "***"

    log = (tmp_path / "home/.codex-api-proxy/codex-api-proxy.log").read_text()
    assert " DEBUG " not in log  # --log-level info holds under mitmweb too
    status = cli("status", env=env)
    assert "(mitmweb)" in status.stdout and f"inspector: {ui}" in status.stdout

    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run must install it")
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / "mitmweb.png"
    page = f"{ui}#/flows/{flow['id']}/comment"
    with tempfile.TemporaryDirectory() as profile:
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1400,900", "--virtual-time-budget=10000"]  # fmt: skip
        dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
        subprocess.run([*flags, f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True)
    assert "flow-table" in dom.stdout and "/v1/messages?beta=true" in dom.stdout, dom.stdout[-2000:]
    assert "claude-sonnet-4-5 -&gt; gpt-5.5" in dom.stdout and f"127.0.0.1:{port}" in dom.stdout
    assert not any(secret in dom.stdout for secret in SECRETS)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, SCREENSHOT)


def test_mitmdump_flow_detail_3_prints_no_secret(tmp_path: Path, fake: FakeBackend) -> None:
    """Every flow's headers and bodies printed in full: the local key (relayed or not, accepted or
    refused) and the login's tokens are not among them; a streamed answer prints as text."""
    home = tmp_path / "codex"
    write_auth(home)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.endswith("_PROXY") and not k.endswith("_proxy")},
           "CODEX_HOME": str(home), "CODEX_API_PROXY_UPSTREAM_URL": fake.url, "CODEX_API_PROXY_API_KEY": KEY,
           "HOME": str(tmp_path / "home")}  # fmt: skip
    out = tmp_path / "mitmdump.out"
    args = [str(Path(sys.executable).parent / "mitmdump"), "-s", str(ROOT / "codex_api_proxy/proxy/script.py"),
            "--mode", f"reverse:http://127.0.0.1:9@127.0.0.1:{port}", "--set", "connection_strategy=lazy",
            "--set", f"confdir={tmp_path / 'mitm'}", "--set", "flow_detail=3",
            "--set", "store_streamed_bodies=true"]  # fmt: skip
    with open(out, "wb") as sink:
        dump = subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", trust_env=False, timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        fake.enqueue(Turn(output=[text("printed as text", chunks=2)]))
        assert "printed" in claude_code_request(port)
        for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}, {"x-api-key": "wrong-key-3"}):
            httpx.get(f"http://127.0.0.1:{port}/metrics", headers=headers, trust_env=False, timeout=10)
    finally:
        dump.terminate()
        dump.wait(15)
    printed = out.read_text(errors="replace")
    assert "/metrics" in printed and "x-api-key: ***" in printed and "authorization: ***" in printed
    assert re.search(r"Text:\n +printed as text\n", printed)  # the stored stream, assembled by the SSE view
    for secret in (*SECRETS, "wrong-key-3"):
        assert secret not in printed, secret
