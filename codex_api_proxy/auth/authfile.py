"""auth.json itself: where it is, what it says, and how it is rewritten and locked without taking it over.

The Codex CLI owns the format: an `OPENAI_API_KEY`, or ChatGPT `tokens` (access, refresh and id token,
account id) with `last_refresh`. A rewrite changes only the tokens and `last_refresh`, keeping every other
key, the key order and the final newline, so the Codex CLI and other tools read the file as before.

The file stays the person's: a rewrite keeps its owner, group and mode (a proxy run with sudo or as a
service must not leave a root-owned 0600 login the Codex CLI can no longer read), and so does the lock
file beside it. A process that could not keep them (another user's file) refuses to rewrite at all, and
the refresh (credentials.py) asks `owner_problem` before it spends the refresh token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import errno
import json
import os
import stat
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import filelock

from ..core.errors import ProxyError

AUTH_CLAIM = "https://api.openai.com/auth"
LOCK_POLL = 0.02  # the lock is polled without blocking, so the event loop never waits on it
LOGIN_HINT = "Run `codex login` to sign in again."

StatKey = tuple[int, int, int]  # (mtime_ns, size, inode): the file changed when this did


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
class Snapshot:
    """One parsed state of auth.json and the stat key it was read at."""

    key: StatKey
    data: dict[str, Any] = field(repr=False)  # the whole object, rewritten with only tokens changed
    newline: bool  # the file ended with a newline (kept when rewriting)
    auth: Auth
    refresh_token: str | None = field(repr=False)
    expires_at: float | None  # the access token's JWT `exp`
    last_refresh: datetime | None


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def iso_time(seconds: float) -> str:
    """`last_refresh` as the Codex CLI writes it: UTC, ISO 8601, a `Z` suffix."""
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def jwt_claims(token: Any) -> dict[str, Any]:
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


def text(value: Any) -> str | None:
    """A non-blank string, stripped, or None."""
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
    claims = jwt_claims(id_token).get(AUTH_CLAIM)
    return claims if isinstance(claims, dict) else {}


def invalid(path: Path, what: str) -> ProxyError:
    """A login file that cannot be used as it is: the person must fix or recreate it."""
    return ProxyError(503, f"The Codex login file {path} {what}. {LOGIN_HINT}", code="auth_invalid")


def signed_out(what: str) -> ProxyError:
    """No login (never made, or removed by `codex logout`): the person must sign in, so a 401."""
    return ProxyError(401, f"{what} Run `codex login` to sign in (or set CODEX_HOME).", code="auth_missing")


def parse(path: Path, raw: bytes, key: StatKey) -> Snapshot:
    """The file's bytes as a Snapshot; ProxyError `auth_invalid` or `auth_missing` when they hold no login."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise invalid(path, "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise invalid(path, f"is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise invalid(path, "does not hold a JSON object")
    newline = raw.endswith(b"\n")
    api_key = text(data.get("OPENAI_API_KEY"))
    if api_key:
        auth = Auth("apikey", api_key, None, False)
        return Snapshot(key, data, newline, auth, None, None, None)
    tokens = data.get("tokens")
    if tokens is None or (
        isinstance(tokens, dict) and not any(text(tokens.get(k)) for k in ("access_token", "refresh_token"))
    ):
        raise signed_out(f"The Codex login in {path} holds no API key and no tokens (signed out).")
    if not isinstance(tokens, dict):
        raise invalid(path, "has neither an OPENAI_API_KEY nor ChatGPT tokens")
    access = text(tokens.get("access_token"))
    if not access:
        raise invalid(path, "has no tokens.access_token")
    claims = _account_claims(tokens.get("id_token"))
    account_id = text(tokens.get("account_id")) or text(claims.get("chatgpt_account_id"))
    auth = Auth("chatgpt", access, account_id, bool(claims.get("chatgpt_account_is_fedramp")))
    exp = jwt_claims(access).get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
    refresh = text(tokens.get("refresh_token"))
    return Snapshot(key, data, newline, auth, refresh, expires_at, _parse_time(data.get("last_refresh")))


def with_new_tokens(snap: Snapshot, payload: dict[str, Any], now: float) -> bytes:
    """The file `snap` was read from with the token endpoint's answer in it: only the tokens, the account id
    and `last_refresh` change; every other key, the key order and the final newline stay."""
    data = copy.deepcopy(snap.data)
    tokens = data["tokens"]
    for name in ("id_token", "access_token", "refresh_token"):
        if text(payload.get(name)):
            tokens[name] = payload[name].strip()
    account_id = text(_account_claims(payload.get("id_token")).get("chatgpt_account_id"))
    if account_id:
        tokens["account_id"] = account_id
    data["last_refresh"] = iso_time(now)
    return json.dumps(data, indent=2, ensure_ascii=False).encode() + (b"\n" if snap.newline else b"")


@contextlib.asynccontextmanager
async def exclusive(path: Path, lock_path: Path, timeout: float) -> AsyncIterator[None]:
    """The cross-process lock beside `path`, polled without blocking so the event loop never waits on it;
    ProxyError `auth_locked` after `timeout` seconds. The lock file gets the login's owner, group and mode:
    whoever may refresh the login may take the lock."""
    try:
        owner = os.stat(path)
    except OSError:
        owner = None
    mode = stat.S_IMODE(owner.st_mode) & 0o666 if owner else 0o600
    lock = filelock.FileLock(str(lock_path), mode=mode)
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock.acquire(timeout=0)
            break
        except filelock.Timeout:
            if time.monotonic() >= deadline:
                raise ProxyError(
                    503,
                    f"Another process held {lock_path} for over {timeout:.0f} s; cannot refresh the Codex login.",
                    code="auth_locked",
                ) from None
            await asyncio.sleep(LOCK_POLL)
        except OSError as exc:
            raise ProxyError(
                503, f"Cannot create the lock file {lock_path} ({exc.strerror}).", code="auth_locked"
            ) from None
    try:
        if owner is not None:
            with contextlib.suppress(OSError):  # a lock works whoever owns it
                _give_to_owner(lock_path, owner)
        yield
    finally:
        lock.release()


def owner_problem(path: Path) -> str | None:
    """Why this process could not rewrite `path` keeping its owner and group, or None: only root can give
    a file to another user, and only to a group of one's own."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # nothing to keep
    if os.geteuid() == 0 or (st.st_uid == os.geteuid() and st.st_gid in (os.getegid(), *os.getgroups())):
        return None
    return (
        f"belongs to uid {st.st_uid} gid {st.st_gid} and this process runs as uid {os.geteuid()}: a rewrite "
        "would take the file over"
    )


def _give_to_owner(file: int | Path, owner: os.stat_result) -> None:
    """Give `file` (a path, or an open descriptor: fchown/fchmod) the owner, group and mode of `owner`."""
    st = os.stat(file)
    if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
        os.chown(file, owner.st_uid, owner.st_gid)
    if stat.S_IMODE(st.st_mode) != stat.S_IMODE(owner.st_mode):
        os.chmod(file, stat.S_IMODE(owner.st_mode))


def write_keeping_owner(path: Path, raw: bytes) -> StatKey:
    """Replace the file (the symlink target, if it is one) in one step, keeping its owner, group and mode
    (0600 for a new file); refuses (PermissionError) rather than take another user's file over. Returns
    the new file's stat key."""
    target = Path(os.path.realpath(path))
    problem = owner_problem(target)
    if problem:
        raise PermissionError(errno.EPERM, f"it {problem}")
    try:
        owner: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        owner = None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if owner is not None:  # before the secret is written: never readable by more than the original
                _give_to_owner(f.fileno(), owner)
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
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
    return stat_key(os.stat(target))
