"""`codex-api-proxy demo`: the real proxy against the built-in fake Codex backend, no login needed.

The fake answers as a small scripted model (fake_backend.DemoModel): text, and when the request offers
tools a real tool call followed by an answer quoting its result. One line is printed per request, so
a newcomer pointing Claude Code, the Codex CLI or an SDK at it sees what went through.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
import httpx

from ..core.options import DEFAULT_PORT
from ..relay.exchange import flow_state
from ..testing.fake_backend import DemoModel, FakeBackend, make_jwt

TOKEN = "demo-access-token"
ACCOUNT = "demo-account"


def _write_auth(folder: Path) -> Path:
    path = folder / "auth.json"
    id_token = make_jwt(
        {"https://api.openai.com/auth": {"chatgpt_account_id": ACCOUNT}, "exp": time.time() + 86400}
    )
    tokens = {
        "id_token": id_token,
        "access_token": TOKEN,
        "refresh_token": "demo-refresh",
        "account_id": ACCOUNT,
    }
    path.write_text(json.dumps({"OPENAI_API_KEY": None, "tokens": tokens, "last_refresh": None}, indent=2))
    path.chmod(0o600)
    return path


class RequestLine:
    """A mitmproxy addon printing one line per client request: what was called, the model asked for
    and the one sent upstream, the status and the time."""

    def requestheaders(self, flow: Any) -> None:
        flow.metadata["demo_called"] = (
            flow.request.method,
            flow.request.path.split("?", 1)[0],
            time.monotonic(),
        )

    def response(self, flow: Any) -> None:
        method, path, started = flow.metadata.get("demo_called", ("?", "?", time.monotonic()))
        state = flow_state(flow)
        model = ""
        if state is not None:
            model = f" {state.ctx.model} -> {state.model_sent or '?'}" + (
                " (stream)" if state.ctx.stream else ""
            )
        status = flow.response.status_code if flow.response else 0
        click.echo(f"{method} {path}{model}: {status} in {time.monotonic() - started:.2f} s")


def _show(base: str) -> None:
    """One round trip per API family, and a tool call, for `demo --once` and the start of `demo`."""
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as http:
        chat = http.post(
            "/v1/chat/completions", json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
        )
        click.echo(f"  -> {chat.json()['choices'][0]['message']['content']!r}")
        msg = http.post("/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 256,
                                              "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        click.echo(f"  -> {msg.json()['content'][0]['text']!r}")
        resp = http.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"})
        click.echo(f"  -> {resp.json()['output_text']!r}")
        tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
        call = http.post("/v1/chat/completions", json={"model": "gpt-5.5", "tools": [tool],
                         "messages": [{"role": "user", "content": "weather?"}]})  # fmt: skip
        fn = call.json()["choices"][0]["message"]["tool_calls"][0]["function"]
        click.echo(f"  -> tool call {fn['name']}({fn['arguments']})")


def _hints(base: str, port: int) -> None:
    on_port = "" if port == DEFAULT_PORT else f"CODEX_API_PROXY_PORT={port} "  # the clients' proxy port
    click.echo(f"""
Try it (any key works against the demo):
  curl {base}/v1/chat/completions -H 'content-type: application/json' \\
    -d '{{"model":"gpt-5.5","messages":[{{"role":"user","content":"hi"}}]}}'
  {on_port}codex-api-proxy claude -p "run echo hi with Bash" --allowedTools Bash
  {on_port}codex-api-proxy codex exec "run echo hi"
  OPENAI_BASE_URL={base}/v1 OPENAI_API_KEY=demo python my_script.py
Ctrl-C stops.""")


def run_demo(port: int, once: bool) -> None:
    from mitmproxy import ctx

    from ..proxy.master import serve

    with (
        tempfile.TemporaryDirectory(prefix="codex-api-proxy-demo-") as tmp,
        FakeBackend(access_tokens={TOKEN}, account_id=ACCOUNT) as fake,
    ):
        fake.default_turn = DemoModel()
        auth = _write_auth(Path(tmp))
        os.environ["CODEX_REFRESH_TOKEN_URL_OVERRIDE"] = fake.token_url
        options: dict[str, Any] = {"codex_upstream_url": fake.url, "codex_auth_file": str(auth)}

        def ready(bound: int, runtime: Any) -> None:
            ctx.master.addons.add(RequestLine())
            base = f"http://127.0.0.1:{bound}"

            def tour() -> None:
                try:
                    click.echo(
                        f"codex-api-proxy demo on {base} (a scripted model, no login; upstream {fake.url})"
                    )
                    _show(base)
                    if not once:
                        _hints(base, bound)
                finally:
                    if once:
                        os.kill(os.getpid(), signal.SIGINT)

            threading.Thread(target=tour, daemon=True).start()

        asyncio.run(serve("127.0.0.1", port, Path(tmp) / "mitmproxy", options, ready))
