"""Token refresh through the real proxy: proactive, after a 401, single flight, several processes, secrets,
and under faults of the token endpoint (slow, down, a logout meanwhile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn, text

from .conftest import ACCOUNT_ID, REFRESH_TOKEN, ROOT, Proxy, start_proxy, write_auth

CHAT = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "gpt-5.5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture
def fb() -> Iterator[FakeBackend]:
    """A backend of its own: these tests rotate its tokens."""
    with FakeBackend(access_tokens=set(), account_id=ACCOUNT_ID, refresh_tokens={REFRESH_TOKEN}) as fake:
        yield fake


def post(proxy: Proxy, path: str = "/v1/chat/completions", body: dict | None = None) -> httpx.Response:
    return httpx.post(proxy.v1 + path.removeprefix("/v1"), json=body or CHAT, trust_env=False, timeout=60)


def test_unauthorized_refreshes_then_retries_once(tmp_path: Path, fb: FakeBackend) -> None:
    write_auth(tmp_path / "home", access_token="revoked-token")  # the fake does not accept it
    p = start_proxy(tmp_path, fb, codex_home=tmp_path / "home")
    try:
        r = post(p)
        assert r.status_code == 200, r.text
        assert len(fb.refresh_requests) == 1
        attempts = fb.responses_requests
        assert attempts[0].headers["authorization"] == "Bearer revoked-token"
        assert (
            len(attempts) == 2
            and attempts[1].headers["authorization"] == f"Bearer {fb.token_grants[0]['access_token']}"
        )
        saved = json.loads((tmp_path / "home/auth.json").read_text())
        assert saved["tokens"]["access_token"] == fb.token_grants[0]["access_token"]
        assert saved["tokens"]["refresh_token"] == fb.token_grants[0]["refresh_token"]
    finally:
        p.stop()


def test_proactive_refresh_single_flight_for_100_concurrent_requests(tmp_path: Path, fb: FakeBackend) -> None:
    write_auth(tmp_path / "home", access_token=fb.mint_access_token(60))  # inside the 5 min margin
    p = start_proxy(tmp_path, fb, codex_home=tmp_path / "home")
    try:
        fb.enqueue(*[Turn(output=[text("ok")]) for _ in range(100)])
        with ThreadPoolExecutor(32) as pool:
            statuses = list(pool.map(lambda _: post(p).status_code, range(100)))
        assert statuses == [200] * 100
        assert len(fb.refresh_requests) == 1
        new = fb.token_grants[0]["access_token"]
        assert {r.headers["authorization"] for r in fb.responses_requests} == {f"Bearer {new}"}
    finally:
        p.stop()


def test_reused_refresh_token_gives_login_hint_and_leaves_file(tmp_path: Path, fb: FakeBackend) -> None:
    fb.used_refresh_tokens.add(REFRESH_TOKEN)  # someone else already spent it
    auth = write_auth(tmp_path / "home", access_token="revoked-token")
    before = auth.read_bytes()
    p = start_proxy(tmp_path, fb, codex_home=tmp_path / "home")
    try:
        r = post(p)
        assert r.status_code == 401
        assert "codex login" in r.json()["error"]["message"]
        m = post(p, "/v1/messages", MESSAGES)
        assert m.status_code == 401 and m.json()["error"]["type"] == "authentication_error"
        assert "codex login" in m.json()["error"]["message"]
        assert auth.read_bytes() == before
    finally:
        p.stop()


def test_no_secret_in_logs_or_metrics(tmp_path: Path, fb: FakeBackend) -> None:
    write_auth(tmp_path / "home", access_token="revoked-token")
    p = start_proxy(
        tmp_path, fb, codex_home=tmp_path / "home", env={"CODEX_API_PROXY_API_KEY": "local-key-123"}
    )
    try:
        headers = {"authorization": "Bearer local-key-123"}
        r = httpx.post(p.v1 + "/chat/completions", json=CHAT, headers=headers, trust_env=False, timeout=60)
        assert r.status_code == 200
        metrics = httpx.get(p.url + "/metrics", headers=headers, trust_env=False).text
        metrics += httpx.get(p.url + "/metrics/prometheus", headers=headers, trust_env=False).text
        ready = httpx.get(p.url + "/ready", headers=headers, trust_env=False).text
        assert 'codex_api_proxy_token_refresh_total{outcome="ok"} 1.0' in metrics
    finally:
        p.stop()
    log = p.log()
    assert "DEBUG" in log  # the proxy ran at debug level
    grant = fb.token_grants[0]
    secrets_ = [
        "revoked-token",
        REFRESH_TOKEN,
        "local-key-123",
        grant["access_token"],
        grant["refresh_token"],
        grant["id_token"],
    ]
    for secret in secrets_:
        for where, content in (("log", log), ("metrics", metrics), ("ready", ready)):
            assert secret not in content, f"a secret leaked into {where}"


WRITER = """
import asyncio, sys, time
from pathlib import Path
from codex_api_proxy.auth.credentials import Credentials

async def main(path, url, seconds):
    creds = Credentials(Path(path), token_url=url)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await creds.after_unauthorized(await creds.get())
        await asyncio.sleep(2)  # proxies see the token go stale in between and refresh it themselves
    print(creds.refresh_count)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


def refreshes(proxy: Proxy) -> int:
    return int(httpx.get(proxy.url + "/metrics", trust_env=False, timeout=30).json()["token_refresh_total"])


def test_two_proxies_and_a_writer_share_one_login(tmp_path: Path, fb: FakeBackend) -> None:
    """Two proxies under steady client load and a third process forcing refreshes, all on one auth.json:
    invariants only (no speed assumed): every refresh token is used once, every request succeeds, the file
    is always a complete login, and it ends holding the newest tokens."""
    seconds = float(os.environ.get("CODEX_API_PROXY_RACE_SECONDS", "20"))
    fb.access_token_ttl = 301  # every minted token falls inside the proxies' 5-minute margin within 1 s
    auth = write_auth(tmp_path / "home", access_token=fb.mint_access_token(301))
    proxies = [start_proxy(tmp_path / f"p{i}", fb, codex_home=tmp_path / "home") for i in range(2)]
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(auth), fb.token_url, str(seconds)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    failures: list[str] = []
    done = threading.Event()

    def client(proxy: Proxy) -> None:
        while not done.is_set():
            fb.enqueue(Turn(output=[text("ok")]))
            r = post(proxy)
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text[:200]}")
            time.sleep(0.05)

    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client, proxies[i % 2]) for i in range(4)]
            give_up = time.monotonic() + seconds + 120  # the writer ends after `seconds` and a last refresh
            while writer.poll() is None and time.monotonic() < give_up:
                data = json.loads(auth.read_bytes())  # valid JSON after every write
                assert data["tokens"]["access_token"] and data["tokens"]["refresh_token"]
                time.sleep(0.01)
            done.set()
            for f in futures:
                f.result()
        out, err = writer.communicate(timeout=60)
        by_proxies = [refreshes(p) for p in proxies]
    finally:
        done.set()
        for p in proxies:
            p.stop()
        writer.kill()
    assert writer.returncode == 0, err[-2000:]
    assert not failures, failures[:5]
    assert int(out) > 0 and sum(by_proxies) > 0  # both the writer and the proxies refreshed
    assert int(out) + sum(by_proxies) == len(fb.token_grants)  # every grant was taken by one of them
    assert set(fb.refresh_token_uses.values()) == {1}  # no refresh token was ever used twice
    assert json.loads(auth.read_text())["tokens"]["refresh_token"] == fb.token_grants[-1]["refresh_token"]


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_refresh_answered_after_the_clients_deadline_is_saved_and_used(
    tmp_path: Path, fb: FakeBackend
) -> None:
    """The token endpoint rotates the token at once but answers after 3 s; clients give up after 1 s (the
    first-byte timeout, also their wait for a refresh). The refresh is not abandoned with them: it is
    saved when it comes, and the next request uses the new token instead of spending the old one."""
    auth = write_auth(tmp_path / "home", access_token=fb.mint_access_token(-10))  # every request needs it
    fb.token_delays.append(3)
    p = start_proxy(tmp_path, fb, codex_home=tmp_path / "home", extra_args=["--first-byte-timeout", "1"])
    try:
        sent = time.monotonic()
        waits = []
        for _ in range(2):  # the second request joins the refresh in flight instead of sending another
            r = post(p)
            assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout", r.text
            waits.append(time.monotonic() - sent - sum(waits))
        assert len(fb.refresh_requests) == 1
        (grant,) = fb.token_grants

        def saved() -> bool:
            return json.loads(auth.read_text())["tokens"]["refresh_token"] == grant["refresh_token"]

        wait_until(saved, 60, "the late answer is saved")
        print(
            f"each client waited {max(waits):.2f} s at most for its 504; refresh saved after {time.monotonic() - sent:.2f} s"
        )
        assert json.loads(auth.read_text())["tokens"]["access_token"] == grant["access_token"]
        r = post(p)
        assert r.status_code == 200, r.text
        assert len(fb.refresh_requests) == 1  # no new refresh: the late answer's tokens are used
        assert fb.responses_requests[-1].headers["authorization"] == f"Bearer {grant['access_token']}"
    finally:
        p.stop()


def test_a_401_from_the_token_endpoint_without_a_dead_token_code_is_retried(
    tmp_path: Path, fb: FakeBackend
) -> None:
    """A middlebox's 401 (its body names no dead refresh token) fails that request with a 502; the login
    is not taken for dead: the next request refreshes with the same token and works."""
    write_auth(tmp_path / "home", access_token=fb.mint_access_token(-10))
    p = start_proxy(tmp_path, fb, codex_home=tmp_path / "home")
    try:
        fb.token_status = 401
        r = post(p)
        assert r.status_code == 502 and r.json()["error"]["code"] == "refresh_failed", r.text
        assert "codex login" not in r.json()["error"]["message"]
        fb.token_status = None  # the endpoint is fine again
        r = post(p)
        assert r.status_code == 200, r.text
        assert fb.refresh_token_uses[REFRESH_TOKEN] == 2  # the same refresh token, sent again
    finally:
        p.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_proxy_run_as_root_keeps_the_logins_owner_group_and_mode(tmp_path: Path, fb: FakeBackend) -> None:
    """sudo, or a service account: the person's Codex CLI must still read its login afterwards."""
    home = tmp_path / "home"
    auth = write_auth(home, access_token=fb.mint_access_token(-10))
    auth.chmod(0o640)
    os.chown(auth, 1000, 1000)
    p = start_proxy(tmp_path, fb, codex_home=home)
    try:
        assert post(p).status_code == 200
    finally:
        p.stop()
    assert json.loads(auth.read_text())["tokens"]["refresh_token"] == fb.token_grants[0]["refresh_token"]
    for path in (auth, home / "auth.json.lock"):
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, 0o640), path


def test_stopping_the_proxy_during_a_refresh_still_saves_it(tmp_path: Path, fb: FakeBackend) -> None:
    auth = write_auth(tmp_path / "home", access_token=fb.mint_access_token(-10))
    fb.token_delays.append(3)
    p = start_proxy(tmp_path, fb, codex_home=tmp_path / "home", extra_args=["--first-byte-timeout", "1"])
    try:
        assert post(p).status_code == 504  # the client gave up; the token is already rotated
        (grant,) = fb.token_grants
    finally:
        p.stop()  # SIGTERM: the proxy exits once the answer is saved
    assert json.loads(auth.read_text())["tokens"]["refresh_token"] == grant["refresh_token"]
    assert "waiting for a token refresh in flight" in p.log()


def test_login_deleted_during_a_slow_refresh_stays_deleted(tmp_path: Path, fb: FakeBackend) -> None:
    auth = write_auth(tmp_path / "home", access_token=fb.mint_access_token(-10))
    fb.token_delays.append(3)
    p = start_proxy(tmp_path, fb, codex_home=tmp_path / "home")
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(post, p)
            wait_until(lambda: bool(fb.refresh_requests), 30, "the refresh is sent")
            auth.unlink()  # `codex logout` while the token endpoint is still answering
            first = pending.result()
        for r in (first, post(p), post(p, "/v1/messages", MESSAGES)):
            assert r.status_code == 401, r.text
            assert "codex login" in r.json()["error"]["message"]
            assert not auth.exists()
        assert r.json()["error"]["type"] == "authentication_error"
        assert len(fb.refresh_requests) == 1
        write_auth(tmp_path / "home", access_token=fb.mint_access_token(3600))  # `codex login` again
        assert post(p).status_code == 200
    finally:
        p.stop()


def test_token_endpoint_down_for_3_s_then_back(tmp_path: Path, fb: FakeBackend) -> None:
    write_auth(tmp_path / "home", access_token=fb.mint_access_token(-10))
    p = start_proxy(tmp_path, fb, codex_home=tmp_path / "home")
    try:
        fb.token_down = True
        back_at = time.monotonic() + 3
        while time.monotonic() < back_at:  # a client retrying through the outage gets a clear 502
            r = post(p)
            assert r.status_code == 502 and r.json()["error"]["code"] == "refresh_unreachable", r.text
            assert "Cannot reach the OpenAI token endpoint" in r.json()["error"]["message"]
        fb.token_down = False
        r = post(p)  # the first request after the recovery
        assert r.status_code == 200, r.text
        assert len(fb.refresh_requests) == 1
    finally:
        p.stop()


def test_new_login_on_disk_is_picked_up_without_restart(tmp_path: Path) -> None:
    with FakeBackend() as open_fake:  # accepts any bearer and account: we look at what it was sent
        home = tmp_path / "home"
        write_auth(home, access_token="first-login-token")
        p = start_proxy(tmp_path, open_fake, codex_home=home)
        try:
            assert post(p).status_code == 200
            data = json.loads((home / "auth.json").read_text())
            data["tokens"].update(access_token="second-login-token", account_id="acct-other")
            time.sleep(0.01)
            (home / "auth.json").write_text(json.dumps(data, indent=2))
            assert post(p).status_code == 200
        finally:
            p.stop()
        first, second = open_fake.responses_requests
    assert first.headers["authorization"] == "Bearer first-login-token"
    assert second.headers["authorization"] == "Bearer second-login-token"
    assert second.headers["chatgpt-account-id"] == "acct-other"
