"""The Codex CLI login in auth.json, kept fresh without ever logging the person out.

ChatGPT refresh tokens are single-use: whoever uses one first gets the new pair, everyone else who
uses it later gets `refresh_token_reused` and the login is dead. The Codex CLI, other proxies and
this one share the file, so every refresh happens under an exclusive lock file beside auth.json,
re-reads the file first (someone may already have refreshed), and writes back atomically in the
Codex CLI's own format. Within the process one refresh runs at a time and waiters reuse its result.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import filelock
import httpx

from .errors import ProxyError

log = logging.getLogger(__name__)

TOKEN_URL = "https://auth.openai.com/oauth/token"
CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
SCOPE = "openid profile email"
AUTH_CLAIM = "https://api.openai.com/auth"
OPAQUE_REFRESH_AGE = 8 * 24 * 3600.0  # the Codex CLI refreshes tokens without `exp` after 8 days
PERMANENT_CODES = frozenset({"refresh_token_expired", "refresh_token_reused", "refresh_token_invalidated"})
REFRESH_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
LOCK_TIMEOUT = 60.0  # longer than a refresh can take (REFRESH_TIMEOUT) plus the re-read grace below
LOCK_POLL = 0.02
TRANSIENT_MEMORY = 5.0  # seconds a failed refresh answers queued callers instead of a new attempt
FOREIGN_REFRESH_GRACE = 2.0  # after `reused`, how long to wait for the winner (e.g. the Codex CLI) to save
LOGIN_HINT = "Run `codex login` to sign in again."


def default_path() -> Path:
    """Where the Codex CLI keeps its login: `$CODEX_HOME/auth.json`, else `~/.codex/auth.json`."""
    home = os.environ.get("CODEX_HOME", "").strip()
    base = Path(home).expanduser() if home else Path.home() / ".codex"
    return base / "auth.json"


@dataclass(frozen=True)
class Auth:
    """What an upstream request needs to authenticate; `repr` never shows the token."""

    mode: Literal["chatgpt", "apikey"]
    token: str = field(repr=False)  # access token or API key
    account_id: str | None
    fedramp: bool

    def headers(self) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}"}
        if self.mode == "chatgpt" and self.account_id:
            out["ChatGPT-Account-ID"] = self.account_id
        if self.fedramp:
            out["X-OpenAI-Fedramp"] = "true"
        return out


@dataclass(frozen=True)
class _Snapshot:
    """One parsed state of auth.json and the stat key it was read at."""

    key: tuple[int, int, int]  # (mtime_ns, size, inode)
    data: dict[str, Any] = field(repr=False)  # the whole object, rewritten with only tokens changed
    newline: bool  # the file ended with a newline (kept when rewriting)
    auth: Auth
    refresh_token: str | None = field(repr=False)
    expires_at: float | None  # the access token's JWT `exp`
    last_refresh: datetime | None


def _jwt_claims(token: Any) -> dict[str, Any]:
    """Unverified JWT payload (only read, never trusted for anything but timing and ids)."""
    if isinstance(token, dict):  # some tools store the id_token already decoded
        return token
    if not isinstance(token, str) or token.count(".") != 2:
        return {}
    part = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _account_claims(id_token: Any) -> dict[str, Any]:
    claims = _jwt_claims(id_token).get(AUTH_CLAIM)
    return claims if isinstance(claims, dict) else {}


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
        parts.append(_text(err.get("message")))
    parts.append(_text(payload.get("error_description")) or _text(payload.get("message")))
    return ": ".join(dict.fromkeys(p for p in parts if p))[:300]


class Credentials:
    """auth.json, its mode, and fresh tokens on demand (see the module docstring for the rules)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        token_url: str | None = None,
        refresh_margin: float = 300.0,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.token_url = token_url or os.environ.get("CODEX_REFRESH_TOKEN_URL_OVERRIDE") or TOKEN_URL
        self.client_id = os.environ.get("CODEX_APP_SERVER_LOGIN_CLIENT_ID") or CLIENT_ID
        self.refresh_margin = refresh_margin
        self.refresh_count = 0  # successful refresh calls made by this process
        self.refresh_failures = 0
        self.reads = 0  # times auth.json was actually read (not just stat'ed)
        self._client = client
        self._snap: _Snapshot | None = None
        self._file_lock = filelock.FileLock(str(self.path) + ".lock", mode=0o600)
        self._mutex: asyncio.Lock | None = None
        self._mutex_loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Auth]] = set()
        self._failure: tuple[str | None, float, ProxyError] | None = None  # (refresh token, when, error)

    def set_client(self, client: httpx.AsyncClient) -> None:
        self._client = client

    # -- public -------------------------------------------------------------------------------------

    async def get(self) -> Auth:
        """The credentials to send now; refreshes first when the access token is about to expire."""
        snap = await self._current()
        if not self._stale(snap):
            return snap.auth
        return await self._refresh(snap.auth.token, force=False)

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
            "expires_in": int(snap.expires_at - time.time()) if snap.expires_at is not None else None,
            "last_refresh": last.isoformat().replace("+00:00", "Z") if last else None,
            "refresh_count": self.refresh_count,
        }

    # -- reading --------------------------------------------------------------------------------------

    def _load(self, force: bool = False) -> _Snapshot:
        """The current file, re-read only when its stat key changed (or when forced)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._snap = None
            message = f"No Codex login found at {self.path}. Run `codex login` first (or set CODEX_HOME)."
            raise ProxyError(503, message, code="auth_missing") from None
        except OSError as exc:
            raise self._invalid(f"cannot be read ({exc.strerror})") from None
        if not force and self._snap is not None and self._snap.key == (st.st_mtime_ns, st.st_size, st.st_ino):
            return self._snap
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            return self._load(force)  # replaced between stat and open
        except OSError as exc:
            raise self._invalid(f"cannot be read ({exc.strerror})") from None
        self.reads += 1
        self._snap = self._parse(raw, (st.st_mtime_ns, st.st_size, st.st_ino))
        log.debug("loaded %s (%s mode)", self.path, self._snap.auth.mode)
        return self._snap

    async def _current(self, force: bool = False) -> _Snapshot:
        """`_load`, tolerating one torn read: the Codex CLI rewrites auth.json in place, not atomically."""
        try:
            return self._load(force)
        except ProxyError as err:
            if err.code != "auth_invalid":
                raise
            await asyncio.sleep(0.1)
            return self._load(True)

    def _invalid(self, what: str) -> ProxyError:
        return ProxyError(503, f"The Codex login file {self.path} {what}. {LOGIN_HINT}", code="auth_invalid")

    def _parse(self, raw: bytes, key: tuple[int, int, int]) -> _Snapshot:
        try:
            data = json.loads(raw)
        except UnicodeDecodeError:
            raise self._invalid("is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise self._invalid(f"is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
        if not isinstance(data, dict):
            raise self._invalid("does not hold a JSON object")
        newline = raw.endswith(b"\n")
        api_key = _text(data.get("OPENAI_API_KEY"))
        if api_key:
            auth = Auth("apikey", api_key, None, False)
            return _Snapshot(key, data, newline, auth, None, None, None)
        tokens = data.get("tokens")
        if not isinstance(tokens, dict):
            raise self._invalid("has neither an OPENAI_API_KEY nor ChatGPT tokens")
        access = _text(tokens.get("access_token"))
        if not access:
            raise self._invalid("has no tokens.access_token")
        claims = _account_claims(tokens.get("id_token"))
        account_id = _text(tokens.get("account_id")) or _text(claims.get("chatgpt_account_id"))
        auth = Auth("chatgpt", access, account_id, bool(claims.get("chatgpt_account_is_fedramp")))
        exp = _jwt_claims(access).get("exp")
        expires_at = float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
        refresh = _text(tokens.get("refresh_token"))
        return _Snapshot(key, data, newline, auth, refresh, expires_at, _parse_time(data.get("last_refresh")))

    def _stale(self, snap: _Snapshot) -> bool:
        if snap.auth.mode != "chatgpt":
            return False
        if snap.expires_at is not None:
            return snap.expires_at - time.time() <= self.refresh_margin
        if snap.last_refresh is not None:
            return time.time() - snap.last_refresh.timestamp() >= OPAQUE_REFRESH_AGE
        return False

    def _settled(self, snap: _Snapshot, stale_token: str, force: bool) -> bool:
        """No refresh needed for this caller: the file changed mode, someone else already replaced the token
        (even one still near expiry: refreshing it again would only churn), or it is not stale after all."""
        if snap.auth.mode != "chatgpt" or snap.auth.token != stale_token:
            return True
        return not force and not self._stale(snap)

    # -- refreshing -----------------------------------------------------------------------------------

    async def _refresh(self, stale_token: str, force: bool) -> Auth:
        # A shielded task, so a client that disconnects mid-refresh cannot cancel it between the token
        # endpoint rotating the refresh token and the new one being saved.
        task = asyncio.ensure_future(self._refresh_task(stale_token, force))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._mutex is None or self._mutex_loop is not loop:
            self._mutex, self._mutex_loop = asyncio.Lock(), loop
        return self._mutex

    async def _refresh_task(self, stale_token: str, force: bool) -> Auth:
        async with self._lock():
            snap = await self._current()
            if self._settled(snap, stale_token, force):
                return snap.auth
            remembered = self._remembered_failure(snap)
            if remembered is not None:
                return self._fail(snap, remembered, force)
            async with self._exclusive():
                snap = await self._current(force=True)
                if self._settled(snap, stale_token, force):
                    log.debug("adopted tokens refreshed by another process")
                    return snap.auth
                try:
                    return await self._refresh_tokens(snap)
                except ProxyError as err:
                    self.refresh_failures += 1
                    self._failure = (snap.refresh_token, time.monotonic(), err)
                    if err.status == 401:
                        adopted = await self._foreign_refresh(snap)
                        if adopted is not None:
                            return adopted
                    return self._fail(snap, err, force)

    def _remembered_failure(self, snap: _Snapshot) -> ProxyError | None:
        """A failure that still answers for this refresh token: dead ones until the file changes."""
        if self._failure is None or self._failure[0] != snap.refresh_token:
            return None
        _, when, err = self._failure
        return err if err.status == 401 or time.monotonic() - when < TRANSIENT_MEMORY else None

    def _fail(self, snap: _Snapshot, err: ProxyError, force: bool) -> Auth:
        """Raise `err`, unless a proactive refresh failed transiently and the token still works."""
        if not force and err.status != 401 and (snap.expires_at is None or snap.expires_at > time.time()):
            log.warning(
                "token refresh failed (%s); using the current access token until it expires", err.code
            )
            return snap.auth
        raise dataclasses.replace(err)  # a copy: queued callers may raise the same remembered failure

    async def _foreign_refresh(self, before: _Snapshot) -> Auth | None:
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

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """The cross-process lock, polled without blocking so the event loop never waits on it."""
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                self._file_lock.acquire(timeout=0)
                break
            except filelock.Timeout:
                if time.monotonic() >= deadline:
                    raise ProxyError(
                        503,
                        f"Another process held {self._file_lock.lock_file} for over {LOCK_TIMEOUT:.0f} s; "
                        "cannot refresh the Codex login.",
                        code="auth_locked",
                    ) from None
                await asyncio.sleep(LOCK_POLL)
            except OSError as exc:
                raise ProxyError(
                    503,
                    f"Cannot create the lock file {self._file_lock.lock_file} ({exc.strerror}).",
                    code="auth_locked",
                ) from None
        try:
            yield
        finally:
            self._file_lock.release()

    async def _refresh_tokens(self, snap: _Snapshot) -> Auth:
        """One refresh call; the answer is saved before anyone uses the new access token."""
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
            if self._client is not None:
                resp = await self._client.post(self.token_url, json=body, timeout=REFRESH_TIMEOUT)
            else:
                async with httpx.AsyncClient(timeout=REFRESH_TIMEOUT) as client:
                    resp = await client.post(self.token_url, json=body)
        except httpx.TimeoutException as exc:
            raise ProxyError(
                504,
                f"The OpenAI token endpoint timed out refreshing the Codex login ({type(exc).__name__}).",
                code="refresh_timeout",
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ProxyError(
                502,
                f"Cannot reach the OpenAI token endpoint to refresh the Codex login ({type(exc).__name__}).",
                code="refresh_unreachable",
            ) from None
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code >= 400:
            raise self._refusal(resp.status_code, payload, snap)
        new_access = _text(payload.get("access_token")) if isinstance(payload, dict) else None
        if not new_access:
            raise ProxyError(
                502,
                "The OpenAI token endpoint answered without a new access token.",
                code="refresh_invalid_response",
            )
        self.refresh_count += 1
        return self._save(snap, payload)

    def _refusal(self, status: int, payload: Any, snap: _Snapshot) -> ProxyError:
        code = _error_code(payload)
        if status in (400, 401) and code in PERMANENT_CODES:
            message = f"Your Codex login has expired or was used elsewhere ({code}). {LOGIN_HINT}"
            return ProxyError(401, message, code=code)
        if status == 401:  # the Codex CLI also treats any other 401 from the token endpoint as final
            return ProxyError(
                401, f"The Codex login was rejected on refresh. {LOGIN_HINT}", code="refresh_rejected"
            )
        detail = _error_detail(payload)
        for secret in (snap.refresh_token, snap.auth.token):
            if secret:
                detail = detail.replace(secret, "[redacted]")
        message = f"Refreshing the Codex login failed: the token endpoint answered HTTP {status}"
        return ProxyError(502, message + (f" ({detail})." if detail else "."), code="refresh_failed")

    def _save(self, snap: _Snapshot, payload: dict[str, Any]) -> Auth:
        """Write the new tokens into the file just read, keeping every other key, the key order and format."""
        data = copy.deepcopy(snap.data)
        tokens = data["tokens"]
        for name in ("id_token", "access_token", "refresh_token"):
            if _text(payload.get(name)):
                tokens[name] = payload[name].strip()
        account_id = _text(_account_claims(payload.get("id_token")).get("chatgpt_account_id"))
        if account_id:
            tokens["account_id"] = account_id
        data["last_refresh"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        raw = json.dumps(data, indent=2, ensure_ascii=False).encode() + (b"\n" if snap.newline else b"")
        with contextlib.suppress(ProxyError):
            now = self._load(force=True)
            if now.refresh_token != snap.refresh_token:
                # Only a new login can have replaced a refresh token we just consumed: keep it.
                log.debug("auth.json changed during the refresh; keeping the newer login")
                return now.auth
        try:
            key = _write_atomic(self.path, raw)
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
        self._snap = self._parse(raw, key)
        return self._snap.auth


def _write_atomic(path: Path, raw: bytes) -> tuple[int, int, int]:
    """Replace the file (the symlink target, if it is one) in one step; mode 0600. Returns its stat key."""
    target = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable; the file is in place either way
        with contextlib.suppress(OSError):
            dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    st = os.stat(target)
    return (st.st_mtime_ns, st.st_size, st.st_ino)
