"""`codex-api-proxy demo`: no login, one line per request, and a scripted model that makes real tool calls,
driven by the real Claude Code and Codex CLI (a whole tool round trip) and by the official SDKs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
import pytest

from codex_api_proxy.testing.fake_backend import DEMO_COMMAND

from .clients import run_claude, run_codex
from .conftest import ROOT, free_port

ECHOED = DEMO_COMMAND.removeprefix("echo ")


@dataclass
class Demo:
    url: str
    process: subprocess.Popen[str]
    out: Path

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    out = tmp / "demo.out"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp)}  # no Codex login anywhere
    with open(out, "w") as f:
        process = subprocess.Popen([sys.executable, "-m", "codex_api_proxy", "demo", "--port", str(port)],
                                   env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    d = Demo(f"http://127.0.0.1:{port}", process, out)
    deadline = time.monotonic() + 60
    while "Ctrl-C stops." not in out.read_text():
        assert process.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.1)
    yield d
    process.terminate()
    process.wait(15)


def test_demo_once_needs_no_login(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "codex_api_proxy", "demo", "--once", "--port", "0"], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "POST /v1/chat/completions gpt-5.5 -> gpt-5.5: 200" in r.stdout
    assert "POST /v1/messages claude-sonnet-4-5 -> gpt-5.5: 200" in r.stdout
    assert "POST /v1/responses gpt-5.5 -> gpt-5.5: 200" in r.stdout
    assert 'tool call get_weather({"city":"demo"})' in r.stdout


def test_demo_listens_on_8765_by_default() -> None:
    r = subprocess.run([sys.executable, "-m", "codex_api_proxy", "demo", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "default: 8765" in r.stdout


@pytest.mark.e2e
def test_claude_code_tool_round_trip(demo: Demo, tmp_path: Path) -> None:
    run = run_claude(demo.url, "Use the Bash tool to say hello.", tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    results = run.tool_results()
    assert results and ECHOED in str(results[0]["content"]) and not results[0].get("is_error")
    assert run.result["result"] == f"The tool answered: {ECHOED}"
    assert any(line.startswith("POST /v1/messages") and ": 200 in " in line for line in demo.lines())


@pytest.mark.e2e
def test_codex_cli_tool_round_trip(demo: Demo, tmp_path: Path) -> None:
    cp = run_codex(demo.url + "/v1", "Say hello with a shell command.", tmp_path)
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert f"The tool answered: {ECHOED}" in cp.stdout
    assert any(line.startswith("POST /v1/responses gpt-5.5") for line in demo.lines())


WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip


def test_sdks_get_a_tool_call(demo: Demo) -> None:
    http = httpx.Client(trust_env=False, timeout=30)
    oa = openai.OpenAI(base_url=demo.url + "/v1", api_key="demo", http_client=http)
    chat = oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "weather?"}],
                                      tools=[{"type": "function", "function": WEATHER}])  # fmt: skip
    (call,) = chat.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == '{"city":"demo"}'
    resp = oa.responses.create(model="gpt-5.5", input="weather?", tools=[{"type": "function", **WEATHER}])
    assert [i.name for i in resp.output if i.type == "function_call"] == ["get_weather"]
    an = anthropic.Anthropic(
        base_url=demo.url, api_key="demo", http_client=httpx2.Client(trust_env=False, timeout=30)
    )
    msg = an.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": "weather?"}],
                             tools=[{"name": WEATHER["name"], "input_schema": WEATHER["parameters"]}])  # fmt: skip
    (use,) = [b for b in msg.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "demo"}
    # and the answer after the tool ran quotes the result
    follow = oa.chat.completions.create(model="gpt-5.5", messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}])  # fmt: skip
    assert follow.choices[0].message.content == "The tool answered: sunny, 21 C"
