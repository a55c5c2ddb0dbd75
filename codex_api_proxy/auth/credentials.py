"""The Codex CLI login in auth.json, kept fresh without ever logging the person out.

ChatGPT refresh tokens are single-use: whoever uses one first gets the new pair, everyone else who
uses it later gets `refresh_token_reused` and the login is dead. The Codex CLI, other proxies and
this one share the file, so every refresh happens under an exclusive lock file beside auth.json,
re-reads the file first (someone may already have refreshed), and writes back atomically in the
Codex CLI's own format.

Four rules keep the login alive under faults:
- A refresh request that was sent is awaited to its end, in a task of its own that no client can
  cancel, bounded only by the HTTP client's own generous timeout (REFRESH_TIMEOUT between bytes): the
  server may already have rotated the token, and the answer is the only copy of the new one. A client
  that cannot wait that long gets its 504 earlier (`refresh_wait`); the refresh goes on and saves. Only
  a request that provably never reached the server (its connection never opened) is sent again.
- A refresh token is dead only when the token endpoint says so in its OAuth error code
  (PERMANENT_CODES). Any other refusal, a bare 401 included (a captive portal or a middlebox answers
  like that), is transient: this request fails, the next one tries again.
- A login removed while the proxy runs (auth.json deleted, or its tokens cleared, as `codex logout`
  does) is never re-created: the file is read again under the lock just before writing, and the
  answer is discarded if the login is gone.
- One refresh runs at a time; callers arriving meanwhile share its outcome, and the first caller after
  a failure tries again at once (no remembered failures, except a refresh token that is dead for good).

The file and its lock are handled in authfile.py, which keeps them the person's: a process that could not
rewrite auth.json keeping its owner refuses to refresh at all, since spending the refresh token without
saving its successor would log the owner out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..core.errors import ProxyError
from . import authfile
from .authfile import LOGIN_HINT, Auth, Snapshot, default_path, owner_problem, text

log = logging.getLogger(__name__)

TOKEN_URL = "https://auth.openai.com/oauth/token"
CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
SCOPE = "openid profile email"
OPAQUE_REFRESH_AGE = 8 * 24 * 3600.0  # the Codex CLI refreshes tokens without `exp` after 8 days
# OAuth error codes that say the refresh token is dead for good (OpenAI's three, and RFC 6749's own
# `invalid_grant`); nothing else, however refused, keeps a later request from trying again.
PERMANENT_CODES = frozenset(
    {"refresh_token_expired", "refresh_token_reused", "refresh_token_invalidated", "invalid_grant"}
)
REFRESH_DEADLINE = 120.0  # how long a caller waits for a refresh by default; the refresh itself goes on
REFRESH_TIMEOUT = 300.0  # the refresh's only bound: the HTTP client's timeout between bytes of the answer
CONNECT_TIMEOUT = 10.0
CONNECT_RETRY_PAUSES = (0.5, 1.0)  # before re-sending a refresh whose connection never opened
FOREIGN_REFRESH_GRACE = 2.0  # after `reused`, how long to wait for the winner (e.g. the Codex CLI) to save
LOCK_TIMEOUT = REFRESH_TIMEOUT + 60.0  # another process may hold the lock for a whole refresh and its grace
# How refreshes ended, counted in `Credentials.refresh_outcomes`.
OUTCOMES = (
    "ok",  # new tokens saved
    "adopted",  # no call of ours was needed: another process or program had refreshed (or logged in)
    "discarded",  # the call succeeded but the login was removed or replaced meanwhile: not saved
    "reused",  # the token endpoint said the refresh token was already used: `codex login` needed
    "rejected",  # it refused the refresh token for good in another way (expired, revoked, missing)
    "failed",  # the token endpoint answered with an error or an unusable answer
    "unreachable",  # no connection, or it broke before an answer
    "timeout",  # no answer within the HTTP client's timeout
)


def _error_code(payload: Any) -> str | None:
    """The error code of a token-endpoint error, in any of the shapes it comes in."""
    if not isinstance(payload, dict):
        return None
    err = payload.get("error")
    code = err.get("code") if isinstance(err, dict) else err
    code = code if isinstance(code, str) else payload.get("code")
    return code if isinstance(code, str) and code else None


def _error_detail(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    err = payload.get("error")
    parts = [_error_code(payload)]
    if isinstance(err, dict):
        parts.append(text(err.get("message")))
    parts.append(text(payload.get("error_description")) or text(payload.get("message")))
    return ": ".join(dict.fromkeys(p for p in parts if p))[:300]


@dataclass(frozen=True)
class _Outcome:
    """What one refresh flight ended with: the credentials to use, or the error and the file it failed on."""

    auth: Auth | None = None
    error: ProxyError | None = None
    snap: Snapshot | None = None


@dataclass
class _Flight:
    """The refresh in progress; every caller needing a refresh meanwhile awaits it instead of starting one."""

    task: asyncio.Task[_Outcome]
    force: bool
    loop: asyncio.AbstractEventLoop


Refreshes = set[asyncio.Task[_Outcome]]  # flights outlive a Credentials replaced meanwhile (options)


async def wait_for_refreshes(refreshes: Refreshes) -> None:
    """Let every refresh in flight in this loop end and save its tokens. Call it before closing the client
    they use (shutdown, transport restart): the server may already have rotated the token."""
    loop = asyncio.get_running_loop()
    running = [t for t in refreshes if t.get_loop() is loop and not t.done()]
    if running:
        log.info("waiting for a token refresh in flight to finish before closing the upstream client")
        await asyncio.wait(running)


def _failure_kind(err: ProxyError) -> str:
    if err.status == 401:
        return "reused" if err.code == "refresh_token_reused" else "rejected"
    return {"refresh_timeout": "timeout", "refresh_unreachable": "unreachable"}.get(err.code or "", "failed")


def network_failure(exc: Exception) -> str:
    """What went wrong on the way to the token endpoint, in words a person reads (no library class)."""
    for kind, words in _NETWORK_FAILURES:
        if isinstance(exc, kind):
            return words
    return "network error"


_NETWORK_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, "connecting timed out"),
    (httpx.ProxyError, "the outbound proxy refused the connection"),
    (httpx.ConnectError, "the connection could not be opened"),
    (httpx.ReadTimeout, "no answer in time"),
    (httpx.WriteTimeout, "sending timed out"),
    (httpx.PoolTimeout, "no free connection in time"),
    (httpx.RemoteProtocolError, "the connection broke before an answer"),
    (httpx.InvalidURL, "the token endpoint's URL is invalid"),
)


class Credentials:
    """auth.json, its mode, and fresh tokens on demand (see the module docstring for the rules)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        token_url: str | None = None,
        refresh_margin: float = 300.0,
        refresh_wait: float | None = None,
        clock: Callable[[], float] = time.time,
        refreshes: Refreshes | None = None,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.token_url = token_url or os.environ.get("CODEX_REFRESH_TOKEN_URL_OVERRIDE") or TOKEN_URL
        self.client_id = os.environ.get("CODEX_APP_SERVER_LOGIN_CLIENT_ID") or CLIENT_ID
        self.refresh_margin = refresh_margin
        # how long a caller waits for a refresh before its 504 (the refresh goes on)
        self.refresh_wait = REFRESH_DEADLINE if refresh_wait is None else refresh_wait
        self.clock = clock  # wall-clock seconds: token ages and expiry are judged against it, never a date
        self.refresh_count = 0  # successful refresh calls made by this process
        self.refresh_outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.reads = 0  # times auth.json was actually read (not just stat'ed)
        self._client = client
        self._snap: Snapshot | None = None
        self.lock_path = Path(str(self.path) + ".lock")
        self._flight: _Flight | None = None
        self._dead: tuple[str | None, ProxyError] | None = None  # a refresh token refused for good
        self.refreshes: Refreshes = set() if refreshes is None else refreshes  # its owner's, to wait for

    def set_client(self, client: httpx.AsyncClient) -> None:
        self._client = client

    # -- public -------------------------------------------------------------------------------------

    async def get(self) -> Auth:
        """The credentials to send now; refreshes first when the access token is about to expire."""
        snap = await self._current()
        if not self._stale(snap):
            return snap.auth
        return await self._refresh(snap.auth.token, force=False, current=snap)

    async def after_unauthorized(self, failed: Auth) -> Auth:
        """New credentials after upstream rejected `failed` with 401; the caller retries once with them."""
        if failed.mode == "apikey":
            snap = await self._current()
            if snap.auth.token != failed.token:
                return snap.auth
            raise ProxyError(
                401,
                f"OpenAI rejected the API key in {self.path}. Run `codex login` again.",
                code="invalid_api_key",
            )
        return await self._refresh(failed.token, force=True)

    @property
    def account_id(self) -> str | None:
        """The account of the login last read (None before the first read), for per-account state."""
        return self._snap.auth.account_id if self._snap is not None else None

    def describe(self) -> dict[str, Any]:
        """State for /ready, without secrets."""
        snap = self._load()
        last = snap.last_refresh
        return {
            "mode": snap.auth.mode,
            "path": str(self.path),
            "account_id": bool(snap.auth.account_id),
            "fedramp": snap.auth.fedramp,
            "expires_in": int(snap.expires_at - self.clock()) if snap.expires_at is not None else None,
            "last_refresh": last.isoformat().replace("+00:00", "Z") if last else None,
            "refresh_count": self.refresh_count,
        }

    # -- reading --------------------------------------------------------------------------------------

    def _load(self, force: bool = False) -> Snapshot:
        """The current file, re-read only when its stat key changed (or when forced)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._snap = None
            raise authfile.signed_out(f"No Codex login found at {self.path}.") from None
        except OSError as exc:
            raise authfile.invalid(self.path, f"cannot be read ({exc.strerror})") from None
        if not force and self._snap is not None and self._snap.key == authfile.stat_key(st):
            return self._snap
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            return self._load(force)  # replaced between stat and open
        except OSError as exc:
            raise authfile.invalid(self.path, f"cannot be read ({exc.strerror})") from None
        self.reads += 1
        self._snap = authfile.parse(self.path, raw, authfile.stat_key(st))
        log.debug("loaded %s (%s mode)", self.path, self._snap.auth.mode)
        return self._snap

    async def _current(self, force: bool = False) -> Snapshot:
        """`_load`, tolerating one torn read: the Codex CLI rewrites auth.json in place, not atomically."""
        try:
            return self._load(force)
        except ProxyError as err:
            if err.code != "auth_invalid":
                raise
            await asyncio.sleep(0.1)
            return self._load(True)

    def _stale(self, snap: Snapshot) -> bool:
        if snap.auth.mode != "chatgpt":
            return False
        if snap.expires_at is not None:
            return snap.expires_at - self.clock() <= self.refresh_margin
        if snap.last_refresh is not None:
            return self.clock() - snap.last_refresh.timestamp() >= OPAQUE_REFRESH_AGE
        return False

    def _settled(self, snap: Snapshot, stale_token: str, force: bool) -> bool:
        """No refresh needed for this caller: the file changed mode, someone else already replaced the token
        (even one still near expiry: refreshing it again would only churn), or it is not stale after all."""
        if snap.auth.mode != "chatgpt" or snap.auth.token != stale_token:
            return True
        return not force and not self._stale(snap)

    # -- waiting for a refresh ------------------------------------------------------------------------

    async def _refresh(self, stale_token: str, force: bool, current: Snapshot | None = None) -> Auth:
        """Fresh credentials from the refresh in flight, or from a new one if none is running. Waits at
        most `refresh_wait`; the refresh itself is shielded and runs to its own end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.refresh_wait
        while True:
            flight = self._flight
            mine = flight is None or flight.task.done() or flight.loop is not loop
            if mine:
                task = loop.create_task(self._fly(stale_token, force))
                self.refreshes.add(task)
                task.add_done_callback(self.refreshes.discard)
                flight = self._flight = _Flight(task, force, loop)
            assert flight is not None
            try:
                outcome = await asyncio.wait_for(asyncio.shield(flight.task), max(deadline - loop.time(), 0))
            except TimeoutError:
                message = (
                    f"Refreshing the Codex login took longer than {self.refresh_wait:g} s; it goes on in "
                    "the background, try again shortly."
                )
                return self._fail(current, ProxyError(504, message, code="upstream_timeout"), force)
            if outcome.error is not None:
                return self._fail(outcome.snap or current, outcome.error, force)
            assert outcome.auth is not None
            if force and not mine and not flight.force and outcome.auth.token == stale_token:
                continue  # a proactive refresh found this token fresh, but upstream rejected it: force one
            return outcome.auth

    def _fail(self, snap: Snapshot | None, err: ProxyError, force: bool) -> Auth:
        """Raise `err`, unless a proactive refresh failed transiently and the token still works."""
        expired = snap is None or (snap.expires_at is not None and snap.expires_at <= self.clock())
        if force or expired or err.status == 401:
            raise dataclasses.replace(err)  # a copy: every caller of a flight raises its own
        assert snap is not None
        log.warning("token refresh failed (%s); using the current access token until it expires", err.code)
        return snap.auth

    # -- one refresh ----------------------------------------------------------------------------------

    async def _fly(self, stale_token: str, force: bool) -> _Outcome:
        """One refresh from decision to saved file; never raises a ProxyError, it is the outcome."""
        try:
            snap = await self._current()
            if self._settled(snap, stale_token, force):
                return _Outcome(snap.auth)
            problem = owner_problem(self.path)
            if problem:  # refreshing without saving would log the file's owner out
                return _Outcome(error=self._unwritable(problem), snap=snap)
            async with authfile.exclusive(self.path, self.lock_path, LOCK_TIMEOUT):
                snap = await self._current(force=True)
                if self._settled(snap, stale_token, force):
                    log.debug("adopted tokens refreshed by another process")
                    self.refresh_outcomes["adopted"] += 1
                    return _Outcome(snap.auth)
                if self._dead is not None and self._dead[0] == snap.refresh_token:
                    return _Outcome(error=self._dead[1], snap=snap)  # a dead refresh token is not sent again
                # Waiting out a connection failure only pays when the request cannot go on without it.
                urgent = force or (snap.expires_at is not None and snap.expires_at <= self.clock())
                return await self._refresh_locked(snap, CONNECT_RETRY_PAUSES if urgent else ())
        except ProxyError as err:
            return _Outcome(error=err)

    async def _refresh_locked(self, snap: Snapshot, retry_pauses: tuple[float, ...]) -> _Outcome:
        try:
            payload = await self._call(snap, retry_pauses)
        except ProxyError as err:
            if err.status == 401:
                self._dead = (snap.refresh_token, err)
                adopted = await self._foreign_refresh(snap)
                if adopted is not None:
                    self.refresh_outcomes["adopted"] += 1
                    return _Outcome(adopted)
            self.refresh_outcomes[_failure_kind(err)] += 1
            return _Outcome(error=err, snap=snap)
        self.refresh_count += 1
        try:
            auth, saved = await self._save(snap, payload)
        except ProxyError as err:
            self.refresh_outcomes["discarded"] += 1
            return _Outcome(error=err)
        self.refresh_outcomes["ok" if saved else "discarded"] += 1
        return _Outcome(auth)

    async def _foreign_refresh(self, before: Snapshot) -> Auth | None:
        """After a permanent refusal: tokens another program (e.g. the Codex CLI, which does not take our
        lock) obtained with the same refresh token, if it saves them within a short grace period."""
        deadline = time.monotonic() + FOREIGN_REFRESH_GRACE
        while True:
            with contextlib.suppress(ProxyError):
                snap = self._load(force=True)
                if snap.auth.mode != "chatgpt" or snap.refresh_token != before.refresh_token:
                    log.debug("adopted tokens refreshed by another program after our refresh was refused")
                    return snap.auth
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.2)

    def _unwritable(self, problem: str) -> ProxyError:
        return ProxyError(
            503,
            f"Cannot refresh the Codex login: {self.path} {problem}. Run the proxy as the file's owner.",
            code="auth_not_writable",
        )

    async def _call(self, snap: Snapshot, retry_pauses: tuple[float, ...]) -> dict[str, Any]:
        """The token endpoint's answer to one refresh, awaited until the HTTP client's timeout."""
        if not snap.refresh_token:
            raise ProxyError(
                401,
                f"The Codex login in {self.path} has no refresh token. {LOGIN_HINT}",
                code="refresh_token_missing",
            )
        log.debug("refreshing access token")
        body = {
            "client_id": self.client_id,
            "grant_type": "refresh_token",
            "refresh_token": snap.refresh_token,
            "scope": SCOPE,
        }
        try:
            resp = await self._post(body, retry_pauses)
        except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
            raise ProxyError(
                504,
                f"The OpenAI token endpoint stopped answering the Codex login refresh ({network_failure(exc)}).",
                code="refresh_timeout",
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ProxyError(
                502,
                f"Cannot reach the OpenAI token endpoint to refresh the Codex login ({network_failure(exc)}).",
                code="refresh_unreachable",
            ) from None
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code >= 400:
            raise self._refusal(resp.status_code, payload, snap)
        if not isinstance(payload, dict) or not text(payload.get("access_token")):
            raise ProxyError(
                502,
                "The OpenAI token endpoint answered without a new access token.",
                code="refresh_invalid_response",
            )
        return payload

    async def _post(self, body: dict[str, str], retry_pauses: tuple[float, ...]) -> httpx.Response:
        """POST the refresh; sent again after each of `retry_pauses` only while the connection cannot even
        be opened (the server provably never saw it). Any other failure ends it: the token may be rotated."""
        async with contextlib.AsyncExitStack() as stack:
            client = self._client or await stack.enter_async_context(
                httpx.AsyncClient(timeout=httpx.Timeout(REFRESH_TIMEOUT, connect=CONNECT_TIMEOUT))
            )
            pauses = iter(retry_pauses)
            while True:
                try:
                    return await client.post(self.token_url, json=body)
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                    pause = next(pauses, None)
                    if pause is None:
                        raise
                    log.info(
                        "token endpoint unreachable (%s); trying again in %g s", network_failure(exc), pause
                    )
                    await asyncio.sleep(pause)

    def _refusal(self, status: int, payload: Any, snap: Snapshot) -> ProxyError:
        """Final (401, remembered until auth.json changes) only when the OAuth error code says the refresh
        token is dead. The Codex CLI takes any 401 as final; a middlebox's 401 would then cost a login."""
        code = _error_code(payload)
        if 400 <= status < 500 and code in PERMANENT_CODES:
            message = f"Your Codex login has expired or was used elsewhere ({code}). {LOGIN_HINT}"
            return ProxyError(401, message, code=code)
        detail = _error_detail(payload)
        for secret in (snap.refresh_token, snap.auth.token):
            if secret:
                detail = detail.replace(secret, "[redacted]")
        message = f"Refreshing the Codex login failed: the token endpoint answered HTTP {status}"
        return ProxyError(502, message + (f" ({detail})." if detail else "."), code="refresh_failed")

    async def _save(self, snap: Snapshot, payload: dict[str, Any]) -> tuple[Auth, bool]:
        """Write the new tokens into the file just read, keeping every other key, the key order and format;
        (credentials to use, whether they were saved). Just before writing, the file is read again: a login
        removed meanwhile (`codex logout`) stays removed (ProxyError 401), a newer one is kept."""
        try:
            now = await self._current(force=True)
        except ProxyError as err:
            if err.status == 401:
                log.warning("the Codex login was removed during a token refresh; discarding the new tokens")
                raise
            now = None  # unreadable even on a second look: our tokens are the only live ones, write them
        if now is not None and (now.auth.mode != "chatgpt" or now.refresh_token != snap.refresh_token):
            # Only a new login can have replaced a refresh token we just consumed: keep it.
            log.debug("auth.json changed during the refresh; keeping the newer login")
            return now.auth, False
        raw = authfile.with_new_tokens(snap, payload, self.clock())
        try:
            key = authfile.write_keeping_owner(self.path, raw)
        except OSError as exc:
            log.error(
                "could not save the refreshed Codex login to %s (%s); this proxy keeps it in memory, "
                "other programs sharing the login will have to log in again",
                self.path,
                exc.strerror,
            )
            key = self._snap.key if self._snap else (0, 0, 0)
        else:
            log.debug("saved refreshed tokens to %s", self.path)
        self._snap = authfile.parse(self.path, raw, key)
        return self._snap.auth, True
