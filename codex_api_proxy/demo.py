"""`codex-api-proxy demo`: the real proxy against the built-in fake Codex backend, no login needed.

It shows one round trip per API family and then keeps serving (unless --once), so any client can be
pointed at it to see the translation without an OpenAI account.
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

from .fake_backend import FakeBackend, make_jwt

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


def _show(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as http:
        chat = http.post(
            "/v1/chat/completions", json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
        )
        click.echo(
            f"POST /v1/chat/completions -> {chat.status_code}: {chat.json()['choices'][0]['message']['content']!r}"
        )
        msg = http.post("/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 256,
                                              "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        click.echo(f"POST /v1/messages         -> {msg.status_code}: {msg.json()['content'][0]['text']!r}")
        resp = http.post("/v1/responses", json={"model": "gpt-5.5", "input": "hi"})
        click.echo(f"POST /v1/responses        -> {resp.status_code}: {resp.json()['output_text']!r}")


def run_demo(port: int, once: bool) -> None:
    from .master import serve

    with (
        tempfile.TemporaryDirectory(prefix="codex-api-proxy-demo-") as tmp,
        FakeBackend(access_tokens={TOKEN}, account_id=ACCOUNT) as fake,
    ):
        auth = _write_auth(Path(tmp))
        os.environ["CODEX_REFRESH_TOKEN_URL_OVERRIDE"] = fake.token_url
        options: dict[str, Any] = {"codex_upstream_url": fake.url, "codex_auth_file": str(auth)}

        def ready(bound: int, runtime: Any) -> None:
            base = f"http://127.0.0.1:{bound}"

            def tour() -> None:
                try:
                    click.echo(f"codex-api-proxy demo on {base} (upstream: fake Codex backend at {fake.url})")
                    _show(base)
                    if not once:
                        click.echo(f"\nTry it:  curl {base}/v1/chat/completions -H 'content-type: application/json' "
                                   "-d '{\"model\":\"gpt-5.5\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'")  # fmt: skip
                        click.echo(
                            f"Claude Code: ANTHROPIC_BASE_URL={base} ANTHROPIC_AUTH_TOKEN=x claude\nCtrl-C stops."
                        )
                finally:
                    if once:
                        os.kill(os.getpid(), signal.SIGINT)

            threading.Thread(target=tour, daemon=True).start()

        asyncio.run(serve("127.0.0.1", port, Path(tmp) / "mitmproxy", options, ready))
