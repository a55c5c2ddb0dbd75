"""`start --web`: the same addon under mitmweb on the configured port, the UI on loopback behind its token,
streamed answers kept; a headless Chromium renders the flow list (the README's screenshot)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import ROOT, free_port, write_auth

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = ROOT / "docs/mitmweb.png"


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
    }
    r = cli("start", "--web", "--port", str(port), "--web-port", str(web_port), env=env)
    assert r.returncode == 0, r.stderr
    (ui,) = [line.split(": ", 1)[1] for line in r.stdout.splitlines() if line.startswith("traffic inspector")]
    yield env, port, ui
    cli("stop", env=env)


def test_web_mode_serves_the_api_and_a_token_protected_ui(web: tuple[dict[str, str], int, str],
                                                          fake: FakeBackend, tmp_path: Path) -> None:  # fmt: skip
    env, port, ui = web
    assert ui.startswith("http://127.0.0.1:") and "?token=" in ui
    token = ui.split("?token=")[1]
    assert token not in Path(f"/proc/{int((tmp_path / 'home/.codex-api-proxy/codex-api-proxy.pid').read_text())}/cmdline").read_text()  # fmt: skip
    fake.enqueue(Turn(output=[text("streamed through mitmweb", chunks=1)]))
    with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/messages", trust_env=False, timeout=30,
                      json={"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:  # fmt: skip
        body = "".join(r.iter_text())
    assert r.status_code == 200 and "streamed through" in body
    base = ui.split("/?")[0]
    assert httpx.get(base + "/flows", trust_env=False).status_code == 403  # no token, no UI
    flows = httpx.get(base + "/flows", params={"token": token}, trust_env=False).json()
    (flow,) = [f for f in flows if f["request"]["method"] == "POST"]
    assert flow["response"]["status_code"] == 200
    content = httpx.get(f"{base}/flows/{flow['id']}/response/content.data", params={"token": token},
                        trust_env=False)  # fmt: skip
    assert "streamed through" in content.text  # the streamed answer was kept (store_streamed_bodies)
    assert "access-token-1" not in httpx.get(f"{base}/flows/{flow['id']}/request/content.data",
                                             params={"token": token}, trust_env=False).text  # fmt: skip
    # named by what the client called, with the client's own request; no credential in the flow
    assert flow["request"]["path"] == "/v1/messages"
    assert flow["comment"].startswith("POST /v1/messages claude-sonnet-4-5 -> gpt-5.5")
    assert "The client's request:" in flow["comment"] and '"content": "hi"' in flow["comment"]
    sent = {k.lower(): v for k, v in flow["request"]["headers"]}
    assert "authorization" not in sent and not any("access-token" in v for v in sent.values())
    log = (tmp_path / "home/.codex-api-proxy/codex-api-proxy.log").read_text()
    assert " DEBUG " not in log  # --log-level info holds under mitmweb too
    status = cli("status", env=env)
    assert "(mitmweb)" in status.stdout and f"inspector: {ui}" in status.stdout

    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run must install it")
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / "mitmweb.png"
    with tempfile.TemporaryDirectory() as profile:
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1400,800", "--virtual-time-budget=10000"]  # fmt: skip
        dom = subprocess.run([*flags, "--dump-dom", ui], capture_output=True, text=True, timeout=120)
        subprocess.run([*flags, f"--screenshot={shot}", ui], capture_output=True, timeout=120, check=True)
    assert "flow-table" in dom.stdout and "/v1/messages" in dom.stdout, dom.stdout[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, SCREENSHOT)
