"""Credentials against real files and a real token endpoint (the fake backend on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from codex_api_proxy.auth import credentials as credentials_module
from codex_api_proxy.auth.authfile import Auth, default_path, iso_time
from codex_api_proxy.auth.credentials import CLIENT_ID, TOKEN_URL, Credentials
from codex_api_proxy.core.errors import ProxyError
from codex_api_proxy.testing.fake_backend import FakeBackend, make_jwt

ROOT = Path(__file__).resolve().parents[1]
AUTH_CLAIM = "https://api.openai.com/auth"


# ---- helpers -------------------------------------------------------------------------------------------


def id_token(account_id: str = "acct-1", **auth_claims: Any) -> str:
    return make_jwt({"email": "a@example.com", AUTH_CLAIM: {"chatgpt_account_id": account_id, **auth_claims}})


def codex_auth(
    access: str, refresh: str, *, account_id: str | None = "acct-1", days_ago: float = 0.0
) -> dict:
    """auth.json as the Codex CLI writes it (its key order)."""
    tokens: dict[str, Any] = {"id_token": id_token(account_id or "acct-1"), "access_token": access}
    tokens["refresh_token"] = refresh
    if account_id is not None:
        tokens["account_id"] = account_id
    last = datetime.now(UTC) - timedelta(days=days_ago)
    return {"OPENAI_API_KEY": None, "tokens": tokens, "last_refresh": last.isoformat().replace("+00:00", "Z")}


def write(path: Path, data: Any, mode: int = 0o600) -> bytes:
    raw = (json.dumps(data, indent=2) if not isinstance(data, bytes) else data.decode()).encode()
    path.write_bytes(raw)
    path.chmod(mode)
    return raw


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/oauth/token"


def assert_no_secrets(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text


@pytest.fixture
def fb() -> Iterator[FakeBackend]:
    with FakeBackend(refresh_tokens={"rt-0"}, account_id="acct-1") as backend:
        yield backend


@pytest.fixture
def auth_path(tmp_path: Path) -> Path:
    return tmp_path / "codex" / "auth.json"


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="codex_api_proxy.auth.credentials")


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CODEX_REFRESH_TOKEN_URL_OVERRIDE", "CODEX_APP_SERVER_LOGIN_CLIENT_ID", "CODEX_HOME"):
        monkeypatch.delenv(name, raising=False)


def make(
    auth_path: Path, fb: FakeBackend, exp_in: float, refresh: str = "rt-0", **kw: Any
) -> tuple[str, Credentials]:
    auth_path.parent.mkdir(parents=True, exist_ok=True)
    access = fb.mint_access_token(exp_in)
    write(auth_path, codex_auth(access, refresh, **kw))
    return access, Credentials(auth_path, token_url=fb.token_url)


class ScriptedTokenEndpoint:
    """A token endpoint that answers every request with one fixed (status, JSON body or text)."""

    def __init__(self, status: int, body: Any) -> None:
        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.requests += 1
                text = isinstance(body, str)  # e.g. an HTML page from a middlebox
                raw = body.encode() if text else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "text/html" if text else "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/oauth/token"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- location and modes ----------------------------------------------------------------------------------


def test_default_path_follows_codex_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CODEX_HOME", "~/elsewhere")
    assert default_path() == tmp_path / "elsewhere" / "auth.json"
    monkeypatch.setenv("CODEX_HOME", "  ")
    assert default_path() == tmp_path / ".codex" / "auth.json"
    assert Credentials().path == tmp_path / ".codex" / "auth.json"
    assert Credentials(Path("~/x/auth.json")).path == tmp_path / "x" / "auth.json"


async def test_chatgpt_mode_headers_and_account_from_id_token(auth_path: Path, fb: FakeBackend) -> None:
    access, creds = make(auth_path, fb, 3600, account_id=None)
    data = json.loads(auth_path.read_text())
    data["tokens"]["id_token"] = id_token("acct-from-claims", chatgpt_account_is_fedramp=True)
    write(auth_path, data)
    auth = await creds.get()
    assert (auth.mode, auth.account_id, auth.fedramp) == ("chatgpt", "acct-from-claims", True)
    assert auth.headers() == {
        "Authorization": f"Bearer {access}",
        "ChatGPT-Account-ID": "acct-from-claims",
        "X-OpenAI-Fedramp": "true",
    }
    assert access not in repr(auth)


async def test_api_key_wins_and_is_never_refreshed(auth_path: Path, fb: FakeBackend) -> None:
    _, creds = make(auth_path, fb, -60)  # expired tokens next to the key must not matter
    data = json.loads(auth_path.read_text())
    data["OPENAI_API_KEY"] = "sk-test-key"
    write(auth_path, data)
    auth = await creds.get()
    assert auth.mode == "apikey"
    assert auth.headers() == {"Authorization": "Bearer sk-test-key"}
    with pytest.raises(ProxyError) as err:
        await creds.after_unauthorized(auth)
    assert err.value.status == 401
    assert "sk-test-key" not in str(err.value)
    assert fb.refresh_requests == []


async def test_empty_api_key_means_chatgpt_mode(auth_path: Path, fb: FakeBackend) -> None:
    access, creds = make(auth_path, fb, 3600)
    data = json.loads(auth_path.read_text())
    data["OPENAI_API_KEY"] = ""
    write(auth_path, data)
    auth = await creds.get()
    assert (auth.mode, auth.token, auth.account_id) == ("chatgpt", access, "acct-1")


@pytest.mark.parametrize(
    ("content", "status", "code", "detail"),
    [
        (None, 401, "auth_missing", "No Codex login found"),
        (b'{"OPENAI_API_KEY": null}', 401, "auth_missing", "no API key and no tokens"),
        (b'{"OPENAI_API_KEY": null, "tokens": null}', 401, "auth_missing", "signed out"),
        (b"{not json", 503, "auth_invalid", "not valid JSON"),
        (b"[]", 503, "auth_invalid", "JSON object"),
        (b'{"tokens": "x"}', 503, "auth_invalid", "neither"),
        (b'{"tokens": {"refresh_token": "rt-secret"}}', 503, "auth_invalid", "access_token"),
    ],
)
async def test_missing_signed_out_or_broken_file_names_codex_login(
    auth_path: Path, content: bytes | None, status: int, code: str, detail: str
) -> None:
    """No login at all is the person's to fix (401, no retrying); a broken file may be a torn write (503)."""
    auth_path.parent.mkdir(parents=True)
    if content is not None:
        auth_path.write_bytes(content)
    creds = Credentials(auth_path)
    for call in (creds.get(), asyncio.to_thread(creds.describe)):
        with pytest.raises(ProxyError) as err:
            await call
        assert (err.value.status, err.value.code) == (status, code)
        assert str(auth_path) in err.value.message
        assert detail in err.value.message
        assert "codex login" in err.value.message
        assert "rt-secret" not in str(err.value)


async def test_describe_has_no_secrets(auth_path: Path, fb: FakeBackend) -> None:
    access, creds = make(auth_path, fb, 3600)
    info = creds.describe()
    assert info["mode"] == "chatgpt"
    assert info["path"] == str(auth_path)
    assert info["account_id"] is True
    assert 3500 < info["expires_in"] <= 3600
    assert info["refresh_count"] == 0
    assert_no_secrets([json.dumps(info)], access, "rt-0", "acct-1")


# ---- when to refresh ---------------------------------------------------------------------------------


async def test_proactive_refresh_when_jwt_expires_within_margin(
    auth_path: Path, fb: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    old, creds = make(auth_path, fb, 60)
    auth = await creds.get()
    assert auth.token != old
    assert auth.token == fb.token_grants[-1]["access_token"]
    assert len(fb.refresh_requests) == 1
    assert creds.refresh_count == 1
    saved = json.loads(auth_path.read_text())["tokens"]
    assert saved["access_token"] == auth.token
    assert saved["refresh_token"] == fb.token_grants[-1]["refresh_token"]
    assert "refreshing access token" in caplog.text
    assert_no_secrets([caplog.text], old, "rt-0", auth.token, saved["refresh_token"])


async def test_no_refresh_when_jwt_valid_for_an_hour(auth_path: Path, fb: FakeBackend) -> None:
    access, creds = make(auth_path, fb, 3600)
    assert (await creds.get()).token == access
    assert fb.refresh_requests == []


@pytest.mark.parametrize(("days_ago", "refreshed"), [(9, True), (1, False)])
async def test_opaque_token_refreshed_after_eight_days(
    auth_path: Path, fb: FakeBackend, days_ago: float, refreshed: bool
) -> None:
    auth_path.parent.mkdir(parents=True)
    write(auth_path, codex_auth("opaque-access-token", "rt-0", days_ago=days_ago))
    creds = Credentials(auth_path, token_url=fb.token_url)
    auth = await creds.get()
    assert (auth.token != "opaque-access-token") is refreshed
    assert len(fb.refresh_requests) == int(refreshed)


async def test_refresh_request_and_env_overrides(
    auth_path: Path, fb: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (Credentials(auth_path).token_url, Credentials(auth_path).client_id) == (TOKEN_URL, CLIENT_ID)
    monkeypatch.setenv("CODEX_REFRESH_TOKEN_URL_OVERRIDE", fb.token_url)
    monkeypatch.setenv("CODEX_APP_SERVER_LOGIN_CLIENT_ID", "app_override")
    auth_path.parent.mkdir(parents=True)
    write(auth_path, codex_auth(fb.mint_access_token(-5), "rt-0"))
    await Credentials(auth_path).get()
    (request,) = fb.refresh_requests
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "client_id": "app_override",
        "grant_type": "refresh_token",
        "refresh_token": "rt-0",
        "scope": "openid profile email",
    }


# ---- after an upstream 401 -------------------------------------------------------------------------------


async def test_unauthorized_with_same_token_refreshes(auth_path: Path, fb: FakeBackend) -> None:
    old, creds = make(auth_path, fb, 3600)
    failed = await creds.get()
    new = await creds.after_unauthorized(failed)
    assert new.token != old
    assert len(fb.refresh_requests) == 1
    # a second request that failed with the old token concurrently adopts the new one without a call
    assert (await creds.after_unauthorized(failed)).token == new.token
    assert len(fb.refresh_requests) == 1


async def test_unauthorized_adopts_token_written_by_another_process(auth_path: Path, fb: FakeBackend) -> None:
    _, creds = make(auth_path, fb, 3600)
    failed = await creds.get()
    theirs = fb.mint_access_token(3600)
    write(auth_path, codex_auth(theirs, "rt-theirs", account_id="acct-2"))
    new = await creds.after_unauthorized(failed)
    assert (new.token, new.account_id) == (theirs, "acct-2")
    assert fb.refresh_requests == []


async def test_unauthorized_rereads_even_when_stat_looks_unchanged(auth_path: Path, fb: FakeBackend) -> None:
    """File timestamps are coarse: an in-place rewrite can keep mtime, size and inode. The stat cache may
    serve the old token until then, but the decision to refresh is always made on the file's content."""
    old, creds = make(auth_path, fb, 3600)
    failed = await creds.get()
    before = auth_path.stat()
    theirs = fb.mint_access_token(3600)
    assert len(theirs) == len(old)
    auth_path.write_text(auth_path.read_text().replace(old, theirs))  # in place, like the Codex CLI
    os.utime(auth_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (await creds.get()).token == old
    assert (await creds.after_unauthorized(failed)).token == theirs
    assert fb.refresh_requests == []


async def test_new_login_picked_up_by_stat_without_rereading_each_time(
    auth_path: Path, fb: FakeBackend
) -> None:
    first, creds = make(auth_path, fb, 3600)
    for _ in range(5):
        assert (await creds.get()).token == first
    assert creds.reads == 1
    second = fb.mint_access_token(3600)
    write(auth_path, codex_auth(second, "rt-other", account_id="acct-other-person"))  # `codex login`
    auth = await creds.get()
    assert (auth.token, auth.account_id) == (second, "acct-other-person")
    await creds.get()
    assert creds.reads == 2
    assert fb.refresh_requests == []


# ---- single flight ---------------------------------------------------------------------------------------


async def test_hundred_concurrent_callers_make_one_refresh(auth_path: Path, fb: FakeBackend) -> None:
    fb.token_delay = 0.2
    _, creds = make(auth_path, fb, 30)
    async with httpx.AsyncClient() as client:
        creds.set_client(client)
        results = await asyncio.gather(*(creds.get() for _ in range(100)))
    assert {a.token for a in results} == {fb.token_grants[0]["access_token"]}
    assert len(fb.refresh_requests) == 1
    assert creds.refresh_count == 1


async def test_hundred_concurrent_callers_share_one_failure(auth_path: Path, fb: FakeBackend) -> None:
    fb.token_status = 500
    _, creds = make(auth_path, fb, -10)
    results = await asyncio.gather(*(creds.get() for _ in range(100)), return_exceptions=True)
    assert all(isinstance(r, ProxyError) and r.status == 502 for r in results)
    assert "HTTP 500" in results[0].message
    assert len(fb.refresh_requests) == 1


async def test_cancelled_caller_does_not_abort_the_refresh(auth_path: Path, fb: FakeBackend) -> None:
    fb.token_delay = 0.3
    _, creds = make(auth_path, fb, -10)
    caller = asyncio.create_task(creds.get())
    await asyncio.sleep(0.1)
    caller.cancel()  # e.g. the client disconnected while the token endpoint was rotating the token
    with pytest.raises(asyncio.CancelledError):
        await caller
    auth = await creds.get()
    assert auth.token == fb.token_grants[0]["access_token"]
    assert json.loads(auth_path.read_text())["tokens"]["refresh_token"] == fb.token_grants[0]["refresh_token"]
    assert len(fb.refresh_requests) == 1


# ---- refresh failures ------------------------------------------------------------------------------------


async def test_reused_refresh_token_is_401_and_file_untouched(
    auth_path: Path, fb: FakeBackend, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credentials_module, "FOREIGN_REFRESH_GRACE", 0.3)
    old, creds = make(auth_path, fb, -10)
    fb.used_refresh_tokens.add("rt-0")
    before = auth_path.read_bytes()
    for _ in range(2):
        with pytest.raises(ProxyError) as err:
            await creds.get()
        assert (err.value.status, err.value.code) == (401, "refresh_token_reused")
        assert "Run `codex login`" in err.value.message
    assert len(fb.refresh_requests) == 1  # a dead refresh token is not sent again
    assert creds.refresh_outcomes["reused"] == 1
    assert auth_path.read_bytes() == before
    assert_no_secrets([caplog.text, str(err.value), repr(err.value)], old, "rt-0")


async def test_reused_after_another_program_won_adopts_its_tokens(auth_path: Path, fb: FakeBackend) -> None:
    _, creds = make(auth_path, fb, 3600)
    failed = await creds.get()
    fb.used_refresh_tokens.add("rt-0")  # the Codex CLI used it first and is about to save its answer
    theirs = fb.mint_access_token(3600)

    async def codex_cli_saves_late() -> None:
        await asyncio.sleep(0.5)
        write(auth_path, codex_auth(theirs, "rt-codex"))

    saver = asyncio.create_task(codex_cli_saves_late())
    new = await creds.after_unauthorized(failed)
    await saver
    assert new.token == theirs
    assert json.loads(auth_path.read_text())["tokens"]["refresh_token"] == "rt-codex"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, {"error": "refresh_token_expired"}, "refresh_token_expired"),
        (400, {"code": "refresh_token_invalidated"}, "refresh_token_invalidated"),
        (401, {"error": {"code": "refresh_token_reused", "message": "used"}}, "refresh_token_reused"),
        (400, {"error": "invalid_grant", "error_description": "revoked"}, "invalid_grant"),  # RFC 6749
    ],
)
async def test_permanent_refresh_errors_in_every_shape(
    auth_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, body: dict, code: str
) -> None:
    monkeypatch.setattr(credentials_module, "FOREIGN_REFRESH_GRACE", 0.0)
    endpoint = ScriptedTokenEndpoint(status, body)
    try:
        auth_path.parent.mkdir(parents=True)
        before = write(auth_path, codex_auth(make_jwt({"exp": int(time.time()) - 5}), "rt-0"))
        with pytest.raises(ProxyError) as err:
            await Credentials(auth_path, token_url=endpoint.url).get()
    finally:
        endpoint.close()
    assert (err.value.status, err.value.code) == (401, code)
    assert f"expired or was used elsewhere ({code})" in err.value.message
    assert auth_path.read_bytes() == before


async def test_answer_without_access_token_is_an_error(auth_path: Path) -> None:
    endpoint = ScriptedTokenEndpoint(200, {"refresh_token": "rt-new", "id_token": id_token()})
    try:
        auth_path.parent.mkdir(parents=True)
        before = write(auth_path, codex_auth(make_jwt({"exp": int(time.time()) - 5}), "rt-0"))
        with pytest.raises(ProxyError) as err:
            await Credentials(auth_path, token_url=endpoint.url).get()
    finally:
        endpoint.close()
    assert (err.value.status, err.value.code) == (502, "refresh_invalid_response")
    assert auth_path.read_bytes() == before


async def test_network_error_is_502(
    auth_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credentials_module, "CONNECT_RETRY_PAUSES", (0.01,))
    auth_path.parent.mkdir(parents=True)
    expired = make_jwt({"exp": int(time.time()) - 5})
    write(auth_path, codex_auth(expired, "rt-0"))
    creds = Credentials(auth_path, token_url=closed_port_url())
    with pytest.raises(ProxyError) as err:
        await creds.get()
    assert (err.value.status, err.value.code) == (502, "refresh_unreachable")
    assert "(the connection could not be opened)" in err.value.message  # words, not a library's class
    with pytest.raises(ProxyError) as err:
        await creds.after_unauthorized(Auth("chatgpt", expired, "acct-1", False))
    assert err.value.status == 502
    assert creds.refresh_outcomes["unreachable"] == 2
    assert_no_secrets([caplog.text, str(err.value)], expired, "rt-0")


async def test_no_answer_within_the_http_clients_timeout_is_504_and_not_asked_again(
    auth_path: Path, fb: FakeBackend
) -> None:
    """The HTTP client's own timeout is the refresh's only bound (the proxy's is minutes long)."""
    fb.token_delay = 2.0
    _, creds = make(auth_path, fb, -10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.3)) as client:
        creds.set_client(client)
        with pytest.raises(ProxyError) as err:
            await creds.get()
    assert (err.value.status, err.value.code) == (504, "refresh_timeout")
    assert len(fb.refresh_requests) == 1  # the endpoint had the request: it may have rotated the token
    assert creds.refresh_outcomes["timeout"] == 1


async def test_refresh_answered_after_the_refresh_deadline_is_saved_and_used(
    auth_path: Path, fb: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old cut: a refresh not answered by REFRESH_DEADLINE was abandoned, its rotated token lost, and
    the next request got `refresh_token_reused`. Now the deadline only ends the caller's wait (504)."""
    monkeypatch.setattr(credentials_module, "REFRESH_DEADLINE", 0.3)
    fb.token_delays.append(1.5)  # rotated at once, answered 1.5 s later
    _, creds = make(auth_path, fb, -10)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    with pytest.raises(ProxyError) as err:
        await creds.get()
    gave_up = loop.time() - sent
    assert (err.value.status, err.value.code) == (504, "upstream_timeout")
    while not creds.refresh_outcomes["ok"]:
        assert loop.time() - sent < 30, "the late answer was never saved"
        await asyncio.sleep(0.02)
    saved = loop.time() - sent
    assert gave_up < 1.5 <= saved  # the client was answered before the token endpoint was
    (grant,) = fb.token_grants
    assert json.loads(auth_path.read_text())["tokens"]["refresh_token"] == grant["refresh_token"]
    assert (await creds.get()).token == grant["access_token"]
    assert len(fb.refresh_requests) == 1 and fb.used_refresh_tokens >= {"rt-0"}
    print(f"client answered 504 after {gave_up:.2f} s; refresh saved after {saved:.2f} s")


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "token endpoint failure (fake)", "code": "server_error"}},
        "<html><body>401 Authorization Required</body></html>",  # a captive portal or a middlebox
        {"error": "invalid_client"},  # an OAuth error, but not one about the refresh token
    ],
)
async def test_a_401_without_a_dead_token_code_is_transient(auth_path: Path, body: Any) -> None:
    """One 401 whose OAuth error code does not say the refresh token is dead fails this request only: the
    next one sends the same refresh token again (and works once the endpoint does)."""
    endpoint = ScriptedTokenEndpoint(401, body)
    try:
        auth_path.parent.mkdir(parents=True)
        write(auth_path, codex_auth(make_jwt({"exp": int(time.time()) - 5}), "rt-0"))
        creds = Credentials(auth_path, token_url=endpoint.url)
        for _ in range(2):
            with pytest.raises(ProxyError) as err:
                await creds.get()
            assert (err.value.status, err.value.code) == (502, "refresh_failed")
            assert "HTTP 401" in err.value.message and "codex login" not in err.value.message
        assert endpoint.requests == 2  # not remembered as dead
        assert creds.refresh_outcomes["failed"] == 2
    finally:
        endpoint.close()
    with FakeBackend(refresh_tokens={"rt-0"}, account_id="acct-1") as fb:
        creds.token_url = fb.token_url  # the endpoint is fine a minute later
        assert (await creds.get()).token == fb.token_grants[0]["access_token"]


async def test_caller_gives_up_but_the_sent_refresh_is_awaited_and_saved(
    auth_path: Path, fb: FakeBackend
) -> None:
    """The fake rotates the token at once and answers 1.5 s later; callers wait only 0.2 s."""
    fb.token_delays.append(1.5)
    _, creds = make(auth_path, fb, -10)
    creds.refresh_wait = 0.2
    for _ in range(2):  # the second caller joins the refresh in flight instead of sending another
        with pytest.raises(ProxyError) as err:
            await creds.get()
        assert (err.value.status, err.value.code) == (504, "upstream_timeout")
        assert "goes on in the background" in err.value.message
    assert len(fb.refresh_requests) == 1
    (grant,) = fb.token_grants
    for _ in range(600):
        if json.loads(auth_path.read_text())["tokens"]["refresh_token"] == grant["refresh_token"]:
            break
        await asyncio.sleep(0.05)
    saved = json.loads(auth_path.read_text())["tokens"]
    assert (saved["access_token"], saved["refresh_token"]) == (grant["access_token"], grant["refresh_token"])
    assert (await creds.get()).token == grant["access_token"]  # no new refresh: the saved one is used
    assert len(fb.refresh_requests) == 1
    assert creds.refresh_outcomes["ok"] == 1


async def test_caller_with_a_still_valid_token_keeps_it_while_a_slow_refresh_goes_on(
    auth_path: Path, fb: FakeBackend
) -> None:
    fb.token_delays.append(1.0)
    access, creds = make(auth_path, fb, 120)  # inside the margin, valid for two more minutes
    creds.refresh_wait = 0.2
    assert (await creds.get()).token == access
    for _ in range(600):
        if creds.refresh_outcomes["ok"]:
            break
        await asyncio.sleep(0.05)
    assert (await creds.get()).token == fb.token_grants[0]["access_token"]
    assert len(fb.refresh_requests) == 1


async def test_connection_refused_refresh_is_sent_again(
    auth_path: Path, fb: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that never opened provably never reached the server: trying again is safe."""
    monkeypatch.setattr(credentials_module, "CONNECT_RETRY_PAUSES", (0.5,) * 20)
    _, creds = make(auth_path, fb, -10)
    fb.token_down = True

    async def back_soon() -> None:
        await asyncio.sleep(0.2)
        await asyncio.to_thread(setattr, fb, "token_down", False)

    back = asyncio.create_task(back_soon())
    auth = await creds.get()
    await back
    assert auth.token == fb.token_grants[0]["access_token"]
    assert len(fb.refresh_requests) == 1
    assert creds.refresh_outcomes["ok"] == 1


async def test_proactive_refresh_with_the_endpoint_down_does_not_wait_it_out(
    auth_path: Path, fb: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is still valid: the request goes on with it instead of waiting for a connection."""
    monkeypatch.setattr(credentials_module, "CONNECT_RETRY_PAUSES", (60.0,))
    access, creds = make(auth_path, fb, 120)
    fb.token_down = True
    assert (await asyncio.wait_for(creds.get(), 30)).token == access
    assert creds.refresh_outcomes["unreachable"] == 1


async def test_connection_cut_after_sending_is_not_sent_again(auth_path: Path, fb: FakeBackend) -> None:
    """Once the endpoint has the request, the token may be rotated: a second send would be refused as
    `reused`, so the failure is reported instead (the next request may try again)."""
    fb.token_delays.append(1.0)
    _, creds = make(auth_path, fb, -10)
    caller = asyncio.create_task(creds.get())
    while not fb.refresh_requests:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(setattr, fb, "token_down", True)  # cuts the open connection
    await asyncio.to_thread(setattr, fb, "token_down", False)
    with pytest.raises(ProxyError) as err:
        await caller
    assert (err.value.status, err.value.code) == (502, "refresh_unreachable")
    assert len(fb.refresh_requests) == 1
    assert creds.refresh_outcomes["unreachable"] == 1


async def test_next_caller_tries_again_at_once_after_a_failed_refresh(
    auth_path: Path, fb: FakeBackend
) -> None:
    fb.token_status = 503
    _, creds = make(auth_path, fb, -10)
    with pytest.raises(ProxyError) as err:
        await creds.get()
    assert (err.value.status, err.value.code) == (502, "refresh_failed")
    fb.token_status = None  # the endpoint recovered: no cool-down keeps failing requests
    assert (await creds.get()).token == fb.token_grants[0]["access_token"]
    assert len(fb.refresh_requests) == 2
    assert (creds.refresh_outcomes["failed"], creds.refresh_outcomes["ok"]) == (1, 1)


async def test_proactive_refresh_failure_keeps_a_still_valid_token(auth_path: Path, fb: FakeBackend) -> None:
    access, creds = make(auth_path, fb, 120)
    fb.token_status = 503
    assert (await creds.get()).token == access  # still works for two minutes: no outage
    assert (await creds.get()).token == access
    assert len(fb.refresh_requests) == 2  # no failure is remembered: each request tries again


# ---- writing auth.json -----------------------------------------------------------------------------------


async def test_atomic_write_keeps_keys_order_format_and_mode(tmp_path: Path) -> None:
    with FakeBackend(refresh_tokens={"rt-0"}, account_id="acct-new") as fb:
        path = tmp_path / "auth.json"
        original = {
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": None,
            "tokens": {
                "id_token": id_token("acct-old"),
                "access_token": fb.mint_access_token(10),
                "refresh_token": "rt-0",
                "account_id": "acct-old",
                "future_field": [1, {"x": "ü"}],
            },
            "last_refresh": iso_time(time.time() - 30 * 24 * 3600),  # a month old: it is replaced
            "zz_unknown": {"keep": True},
        }
        write(path, original, mode=0o644)
        auth = await Credentials(path, token_url=fb.token_url).get()
        grant = fb.token_grants[-1]
    raw = path.read_text()
    saved = json.loads(raw)
    assert raw == json.dumps(
        saved, indent=2, ensure_ascii=False
    )  # Codex CLI's pretty format, no newline added
    assert list(saved) == list(original)
    assert list(saved["tokens"]) == list(original["tokens"])
    assert saved["zz_unknown"] == {"keep": True}
    assert saved["tokens"]["future_field"] == [1, {"x": "ü"}]
    assert saved["tokens"] | {"future_field": None} == {
        "id_token": grant["id_token"],
        "access_token": grant["access_token"],
        "refresh_token": grant["refresh_token"],
        "account_id": "acct-new",  # taken from the new id_token
        "future_field": None,
    }
    assert auth.account_id == "acct-new"
    assert saved["last_refresh"].endswith("Z")
    age = datetime.now(UTC) - datetime.fromisoformat(saved["last_refresh"])
    assert timedelta(0) <= age < timedelta(seconds=30)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # the person's choice, kept
    assert [p.name for p in tmp_path.iterdir() if p.name != "auth.json.lock"] == ["auth.json"]  # no temp left


ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
PERSON = 1000  # the uid and gid whose login a proxy run with sudo or as a service refreshes


@ROOT_ONLY
async def test_a_refresh_as_root_keeps_owner_group_and_mode_of_the_login_and_its_lock(
    tmp_path: Path, fb: FakeBackend
) -> None:
    path = tmp_path / "auth.json"
    write(path, codex_auth(fb.mint_access_token(-5), "rt-0"), mode=0o640)
    os.chown(path, PERSON, PERSON)
    auth = await Credentials(path, token_url=fb.token_url).get()
    assert json.loads(path.read_text())["tokens"]["access_token"] == auth.token  # it was rewritten
    for name in ("auth.json", "auth.json.lock"):
        st = (tmp_path / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (PERSON, PERSON, 0o640), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auth.json", "auth.json.lock"]  # no temp left


@ROOT_ONLY
async def test_another_users_login_is_not_taken_over(fb: FakeBackend) -> None:
    """As a user who cannot give the file back to its owner: no refresh is sent (spending the refresh
    token without saving its successor would log the owner out), and the error says why."""
    folder = Path(tempfile.mkdtemp(prefix="cxp-other-user-"))  # reachable by a non-root user, unlike tmp_path
    try:
        folder.chmod(0o777)
        path = folder / "auth.json"
        access = fb.mint_access_token(-5)
        before = write(path, codex_auth(access, "rt-0"), mode=0o644)
        os.chown(path, PERSON, PERSON)
        creds = Credentials(path, token_url=fb.token_url)
        os.setegid(PERSON + 1)
        os.seteuid(PERSON + 1)  # this process, as another non-root user, for the call only
        try:
            with pytest.raises(ProxyError) as err:
                await creds.get()
        finally:
            os.seteuid(0)
            os.setegid(0)
        assert (err.value.status, err.value.code) == (503, "auth_not_writable")
        assert f"belongs to uid {PERSON}" in err.value.message and "take the file over" in err.value.message
        assert fb.refresh_requests == []
        assert path.read_bytes() == before and path.stat().st_uid == PERSON
    finally:
        shutil.rmtree(folder)


async def test_symlinked_auth_file_stays_a_symlink(tmp_path: Path, fb: FakeBackend) -> None:
    real = tmp_path / "store" / "auth.json"
    real.parent.mkdir()
    write(real, codex_auth(fb.mint_access_token(-5), "rt-0"))
    link = tmp_path / "auth.json"
    link.symlink_to(real)
    auth = await Credentials(link, token_url=fb.token_url).get()
    assert link.is_symlink()
    assert json.loads(real.read_text())["tokens"]["access_token"] == auth.token


async def test_login_saved_during_a_refresh_is_not_overwritten(auth_path: Path, fb: FakeBackend) -> None:
    fb.token_delay = 0.4
    _, creds = make(auth_path, fb, -10)
    refresh = asyncio.create_task(creds.get())
    await asyncio.sleep(0.2)
    newer = fb.mint_access_token(3600)
    write(auth_path, codex_auth(newer, "rt-newer-login", account_id="acct-2"))  # `codex login` meanwhile
    assert (await refresh).token == newer
    assert json.loads(auth_path.read_text())["tokens"]["refresh_token"] == "rt-newer-login"


@pytest.mark.parametrize("logout", ["file deleted", "tokens cleared"])
async def test_login_removed_during_a_refresh_stays_removed(
    auth_path: Path, fb: FakeBackend, logout: str
) -> None:
    fb.token_delays.append(0.5)
    _, creds = make(auth_path, fb, -10)
    refresh = asyncio.create_task(creds.get())
    while not fb.refresh_requests:
        await asyncio.sleep(0.01)
    if logout == "file deleted":  # `codex logout`
        auth_path.unlink()
    else:
        write(auth_path, {"OPENAI_API_KEY": None, "tokens": None, "last_refresh": None})
    after = auth_path.read_bytes() if auth_path.exists() else None
    for call in (refresh, creds.get(), creds.after_unauthorized(Auth("chatgpt", "x", "acct-1", False))):
        with pytest.raises(ProxyError) as err:
            await call
        assert (err.value.status, err.value.code) == (401, "auth_missing")
        assert "Run `codex login`" in err.value.message
        assert (auth_path.read_bytes() if auth_path.exists() else None) == after
    assert len(fb.refresh_requests) == 1
    assert creds.refresh_outcomes["discarded"] == 1
    login = fb.mint_access_token(3600)
    write(auth_path, codex_auth(login, "rt-new-login"))  # `codex login` again: picked up at once
    assert (await creds.get()).token == login


async def test_torn_read_of_an_in_place_write_is_retried(auth_path: Path, fb: FakeBackend) -> None:
    access, creds = make(auth_path, fb, 3600)
    complete = auth_path.read_bytes()
    auth_path.write_bytes(complete[:40])  # the Codex CLI truncates, then writes

    async def finish_write() -> None:
        await asyncio.sleep(0.03)
        auth_path.write_bytes(complete)

    finisher = asyncio.create_task(finish_write())
    assert (await creds.get()).token == access
    await finisher


# ---- several processes share one login ------------------------------------------------------------------

WORKER = """
import asyncio, random, sys, time
from pathlib import Path
from codex_api_proxy.auth.credentials import Credentials

async def main(path, url, seconds):
    creds = Credentials(Path(path), token_url=url)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        auth = await creds.get()  # proactive: every access token is minted inside the refresh margin
        new = await creds.after_unauthorized(auth)  # reactive
        assert new.token != auth.token
        await asyncio.sleep(random.uniform(0, 0.01))  # give the other processes a turn at the lock
    print(creds.refresh_count)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


def test_processes_refreshing_one_login_never_reuse_a_token(auth_path: Path, fb: FakeBackend) -> None:
    fb.access_token_ttl = 120
    auth_path.parent.mkdir(parents=True)
    write(auth_path, codex_auth(fb.mint_access_token(3600), "rt-0"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(auth_path), fb.token_url, "10"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    polls = 0
    while any(w.poll() is None for w in workers):
        data = json.loads(auth_path.read_bytes())  # never torn, never empty
        assert data["tokens"]["access_token"] and data["tokens"]["refresh_token"]
        polls += 1
        time.sleep(0.002)
    outputs = [w.communicate() for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    counts = [int(out) for out, _ in outputs]
    assert all(n > 0 for n in counts)
    assert sum(counts) == len(fb.token_grants) == len(fb.refresh_requests)
    assert set(fb.refresh_token_uses.values()) == {1}  # every refresh token used exactly once
    assert (
        json.loads(auth_path.read_text())["tokens"]["refresh_token"] == fb.token_grants[-1]["refresh_token"]
    )
    assert polls > 100
