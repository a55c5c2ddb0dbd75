"""What a person sees of their own traffic: the Claude Code status line and the usage page, through the
real proxy (with a local key) after traffic of every API family, the page rendered in headless Chromium.
Every figure shown is compared with what the fake backend sent (its quota headers, the token counts
scripted here) and with the proxy's own /metrics."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.core.boundary import dashboard_token
from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import ROOT, Proxy, free_port, start_proxy

KEY = "local-key-for-the-usage-page"
SESSION = "0b6f3c1e-5d2a-4c8e-9f00-3a1b2c3d4e5f"  # a Claude Code session id
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = ROOT / "docs/dashboard.png"


def usage(inp: int, cached: int, out: int, reasoning: int) -> dict[str, object]:
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": inp + out}  # fmt: skip


# (client model, input, cached, output, reasoning) of each turn the fake answers, by family
CLAUDE_TURNS = [(1000, 0, 50, 10), (1200, 1000, 60, 0)]
RESPONSES_TURN = (300, 100, 30, 7)
CHAT_TURN = (200, 0, 20, 3)
EXPECTED_TOKENS = {  # model -> input, cached_input, output, reasoning, summed over its turns
    "claude-sonnet-4-5": [sum(t[i] for t in CLAUDE_TURNS) for i in range(4)],
    "gpt-5.5": list(RESPONSES_TURN),
    "gpt-5.4": list(CHAT_TURN),
}


@pytest.fixture(scope="module")
def dash(backend: FakeBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A keyed proxy of this module's own, after one round of every API family."""
    backend.clear()
    p = start_proxy(tmp_path_factory.mktemp("dash"), backend, env={"CODEX_API_PROXY_API_KEY": KEY})
    auth = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=p.url, timeout=30, trust_env=False, headers=auth) as c:
        cc = {"x-claude-code-session-id": SESSION, "anthropic-version": "2023-06-01"}
        messages: list[dict[str, object]] = [{"role": "user", "content": "hi"}]
        for n, turn in enumerate(CLAUDE_TURNS):
            backend.enqueue(Turn(output=[text(f"answer {n}", chunks=1)], usage=usage(*turn)))
            body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True, "messages": messages}
            with c.stream("POST", "/v1/messages", json=body, headers=cc) as r:
                assert r.status_code == 200 and f"answer {n}" in r.read().decode()
            messages = [*messages, {"role": "assistant", "content": f"answer {n}"},
                        {"role": "user", "content": "more"}]  # fmt: skip
        backend.enqueue(Turn(usage=usage(*RESPONSES_TURN)))
        assert c.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"}).status_code == 200
        backend.enqueue(Turn(usage=usage(*CHAT_TURN)))
        body = {"model": "gpt-5.4", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200 and r.read()
        compact = {"model": "gpt-5.5", "input": [{"role": "user", "content": "hi"}], "instructions": "x"}
        assert c.post("/v1/responses/compact", json=compact).status_code == 200
        assert c.get("/v1/models").status_code == 200
        count = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
        assert c.post("/v1/messages/count_tokens", json=count, headers=cc).status_code == 200
        bad = c.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400
    yield p
    p.stop()


def statusline(*args: str, stdin: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "codex_api_proxy", "statusline", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip


def claude_code_stdin(session: str = SESSION) -> str:
    """What Claude Code writes to a statusLine command (its documented fields)."""
    return json.dumps({
        "hook_event_name": "Status", "session_id": session, "transcript_path": f"/tmp/{session}.jsonl",
        "cwd": "/work/project", "model": {"id": "claude-sonnet-4-5", "display_name": "Sonnet 4.5"},
        "workspace": {"current_dir": "/work/project", "project_dir": "/work/project"}, "version": "2.1.197",
        "output_style": {"name": "default"}, "cost": {"total_cost_usd": 0.01, "total_duration_ms": 4000},
    })  # fmt: skip


def cli_env(proxy: Proxy, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in proxy.env.items() if k != "CODEX_API_PROXY_API_KEY"}
    return {**env, **extra}


def test_statusline_prints_the_routed_model_the_plan_and_the_sessions_cached_share(dash: Proxy) -> None:
    port = dash.url.rsplit(":", 1)[1]
    # Claude Code's own settings env carries the token it sends the proxy: the status line uses it too
    r = statusline("--port", port, stdin=claude_code_stdin(), env=cli_env(dash, ANTHROPIC_AUTH_TOKEN=KEY))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    (line,) = r.stdout.splitlines()
    # quota: the fake's x-codex-* headers (12% of 300 min, reset in 3600 s; 34% of a week, in 259200 s)
    assert re.fullmatch(r"gpt-5\.5 \| 5h 12% \(resets (1h00m|59m)\) \| week 34% \(resets (3d0h|2d23h)\) "
                        r"\| cached (\d+)%", line), line  # fmt: skip
    inp, cached = sum(t[0] for t in CLAUDE_TURNS), sum(t[1] for t in CLAUDE_TURNS)
    assert line.endswith(f"cached {cached / inp:.0%}")
    # another session, not seen yet: its model from the model map, no share yet
    r = statusline("--port", port, stdin=claude_code_stdin("new-session"), env=cli_env(dash, **{
        "CODEX_API_PROXY_API_KEY": KEY}))  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip().startswith("gpt-5.5 | 5h 12%")
    assert r.stdout.strip().endswith("cached -")
    # found like `status`: CODEX_API_PROXY_PORT instead of --port; garbage on stdin is no failure
    r = statusline(
        stdin="not json", env=cli_env(dash, CODEX_API_PROXY_PORT=port, CODEX_API_PROXY_API_KEY=KEY)
    )
    assert r.returncode == 0 and r.stdout.startswith("5h 12%"), r.stdout  # no model named: none shown


def test_statusline_never_fails_claude_code(dash: Proxy) -> None:
    port = dash.url.rsplit(":", 1)[1]
    r = statusline("--port", port, stdin=claude_code_stdin(), env=cli_env(dash))
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and "needs the local API key" in r.stdout
    dead = str(free_port())
    r = statusline("--port", dead, stdin=claude_code_stdin(), env=cli_env(dash))
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == f"codex-api-proxy: not running on 127.0.0.1:{dead}\n"
    r = statusline("--port", port, stdin="", env=cli_env(dash, CODEX_API_PROXY_CONFIG="/nonexistent/dir/x.toml",
                                                             CODEX_API_PROXY_HOST="not a host at all"))  # fmt: skip
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and r.stdout.startswith("codex-api-proxy"), (
        r.stdout
    )


def page_url(proxy: Proxy) -> str:
    return f"{proxy.url}/dashboard?token={dashboard_token(KEY)}"


def test_the_page_and_its_data_need_the_key_and_no_other_page_can_read_them(dash: Proxy) -> None:
    token = dashboard_token(KEY)
    get = lambda path, **headers: httpx.get(dash.url + path, headers=headers, trust_env=False)  # noqa: E731
    for path in ("/dashboard", "/dashboard/data.json", "/dashboard/status.json"):
        assert get(path).status_code == 401
        assert get(f"{path}?token=wrong").status_code == 401
        assert get(path, authorization="Bearer wrong").status_code == 401
        ok = get(f"{path}?token={token}")
        assert ok.status_code == 200 and "access-control-allow-origin" not in ok.headers
        assert ok.headers["cache-control"] == "no-store"
        assert get(path, authorization=f"Bearer {KEY}").status_code == 200
        # another web page: by fetch (Origin), or by <img>/<script>/<iframe> (Sec-Fetch-Site), key or not
        evil = get(f"{path}?token={token}", origin="http://evil.example")
        assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
        assert get(f"{path}?token={token}", **{"sec-fetch-site": "cross-site"}).status_code == 403
        assert get(f"{path}?token={token}", **{"sec-fetch-site": "same-site"}).status_code == 403
        assert get(f"{path}?token={token}", **{"sec-fetch-site": "same-origin"}).status_code == 200
    page = get(f"/dashboard?token={token}")
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing from another origin
    # the token opens the page only: the API wants the key itself
    assert httpx.get(f"{dash.url}/v1/models?token={token}", trust_env=False).status_code == 401
    assert KEY not in dash.log() and token not in dash.log()


def test_the_data_are_the_metrics_figures_and_what_the_fake_sent(dash: Proxy, backend: FakeBackend) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    data = httpx.get(f"{dash.url}/dashboard/data.json", headers=auth, trust_env=False).json()
    metrics = httpx.get(f"{dash.url}/metrics", headers=auth, trust_env=False).json()["metrics"]
    counted = {}
    for s in metrics["tokens"]["samples"]:
        counted.setdefault(s["labels"]["model"], {})[s["labels"]["kind"]] = int(s["value"])
    for model, (inp, cached, out, reasoning) in EXPECTED_TOKENS.items():
        shown = data["tokens"][model]
        assert shown == {"input": inp, "cached_input": cached, "output": out, "reasoning": reasoning}
        assert {k: v for k, v in shown.items() if v} == counted[model]
    assert data["quota"]["primary"]["used_percent"] == 12 and data["quota"]["secondary"]["used_percent"] == 34
    assert data["quota"]["plan_type"] == "plus"
    (conv,) = [c for c in data["conversations"] if c["key"] == SESSION]
    assert conv["turns"] == 2 and conv["model_sent"] == "gpt-5.5"
    assert (conv["input"], conv["cached"]) == (2200, 1000)
    assert conv["last_share"] == round(1000 / 1200, 4)
    apis = {r["api"] for r in data["recent"]}
    assert {"anthropic", "responses", "chat", "compact", "models"} <= apis and "local" not in apis
    kinds = {(r["api"], r["status"]): r["requests"] for r in data["requests"]}
    assert kinds[("anthropic", "2xx")] == 3 and kinds[("chat", "4xx")] == 1
    assert data["errors_by_status"]["400"] == 1  # the bad body (other tests here add 401s)
    errors = sum(n for (api, status), n in kinds.items() if api != "local" and status[0] in "45")
    assert data["totals"]["requests_error"] == errors >= 1
    assert set(data["latency"]["total"]) >= {"anthropic", "chat", "responses", "compact", "models"}
    assert sum(sum(m["input"] for m in b["models"].values()) for b in data["series"]) == sum(
        t[0] for t in EXPECTED_TOKENS.values()
    )
    text_of_data = json.dumps(data)
    assert "answer 0" not in text_of_data and '"hi"' not in text_of_data  # never prompt or answer text
    assert "memory" in data["note"]


def render(url: str, *extra: str) -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run must install it")
        pytest.skip("chromium not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1400,1500", "--virtual-time-budget=4000", *extra]  # fmt: skip
        r = subprocess.run([*flags, url], capture_output=True, text=True, timeout=120)
    return r.stdout


def cells(dom: str, row_attr: str, value: str) -> dict[str, str]:
    """The data-k cells of the table row marked row_attr=value, as shown (thousands separators gone)."""
    row = re.search(rf'<tr {row_attr}="{re.escape(value)}".*?</tr>', dom, re.S)
    assert row, f"no row {row_attr}={value}"
    return {
        k: html.unescape(v).replace(",", "") for k, v in re.findall(r'data-k="(\w+)"[^>]*>([^<]*)<', row[0])
    }


def test_the_page_in_a_browser_shows_the_same_figures(dash: Proxy, tmp_path: Path) -> None:
    dom = render(page_url(dash), "--dump-dom")
    assert "updated " in dom and 'id="error"></span>' in dom, dom[-3000:]
    quota = {w: re.search(rf'data-window="{w}".*?data-k="used">([^<]*)<.*?data-k="reset">([^<]*)<', dom, re.S)
             for w in ("primary", "secondary")}  # fmt: skip
    assert (
        quota["primary"]
        and quota["primary"][1] == "12%"
        and quota["primary"][2] in ("resets in 1h 0m", "resets in 59m")
    )
    assert (
        quota["secondary"]
        and quota["secondary"][1] == "34%"
        and quota["secondary"][2] in ("resets in 3d 0h", "resets in 2d 23h")
    )
    for model, (inp, cached, out, reasoning) in EXPECTED_TOKENS.items():
        shown = cells(dom, "data-model", model)
        assert shown == {"input": str(inp), "cached_input": str(cached), "output": str(out),
                         "reasoning": str(reasoning), "share": f"{round(cached / inp * 100, 1):g}%"}  # fmt: skip
    conv = cells(dom, "data-conversation", SESSION)
    assert conv["turns"] == "2" and conv["input"] == "2200" and conv["share"] == "45.5%"
    assert cells(dom, 'data-api="chat" data-status', "4xx")["requests"] == "1"
    assert cells(dom, "data-error", "HTTP 400")["count"] == "1"
    assert "live only in this proxy" in dom and "<rect" in dom  # the note; the chart has bars
    assert dom.count('<tr data-api="') >= 6 + 5  # recent requests and latency rows
    # refused: a page opened without the token shows why, and nothing else
    refused = render(f"{dash.url}/dashboard", "--dump-dom")
    assert "claude-sonnet-4-5" not in refused
    shot = tmp_path / "dashboard.png"
    render(page_url(dash), f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, SCREENSHOT)


def test_dashboard_prints_the_url_and_doctor_the_status_line_setting(dash: Proxy) -> None:
    port = dash.url.rsplit(":", 1)[1]

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "codex_api_proxy", *args], env=cli_env(dash, **env),
                              capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip

    r = run("dashboard", "--port", port, CODEX_API_PROXY_API_KEY=KEY)
    assert r.returncode == 0 and r.stdout == page_url(dash) + "\n" and r.stderr == ""
    assert httpx.get(r.stdout.strip(), trust_env=False).status_code == 200
    r = run("dashboard", CODEX_API_PROXY_PORT=port)  # no key in this shell: the bare URL, which wants one
    assert r.stdout == f"{dash.url}/dashboard\n"
    r = run("doctor", CODEX_API_PROXY_PORT=port, CODEX_API_PROXY_API_KEY=KEY)
    settings = json.loads(
        r.stdout.split("Claude Code (~/.claude/settings.json):\n", 1)[1].split("\n\n", 1)[0]
    )
    assert settings["statusLine"] == {
        "type": "command",
        "command": f"codex-api-proxy statusline --port {port}",
    }
