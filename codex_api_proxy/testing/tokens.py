"""The fake OAuth token endpoint's tokens: unsigned JWT-shaped access tokens, their expiry, and the
refresh errors the real endpoint answers.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import Counter
from typing import Any

TOKEN_EXPIRED = {
    "error": {
        "message": "Your authentication token has expired. Please try signing in again.",
        "type": "invalid_request_error",
        "code": "token_expired",
    }
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(payload: dict[str, Any]) -> str:
    """An unsigned JWT-shaped token (header.payload.signature)."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}.{_b64(secrets.token_bytes(16))}"


def jwt_exp(token: str) -> float | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def refresh_error(code: str, what: str) -> tuple[int, dict[str, Any]]:
    message = f"Your refresh token has {what}. Please try signing in again."
    return 401, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


class TokenEndpoint:
    """The token endpoint's decisions: access tokens minted with the account's claims, and a refresh
    token rotated exactly once (reuse and revocation answered as the real endpoint does). A part of
    FakeBackend, which holds the state and serves the endpoint."""

    access_tokens: set[str] | None
    refresh_tokens: set[str] | None
    account_id: str | None
    access_token_ttl: float
    token_status: int | None
    refresh_token_uses: Counter[str]
    used_refresh_tokens: set[str]
    token_grants: list[dict[str, str]]
    _lock: threading.Lock

    def mint_access_token(self, exp_in_seconds: float = 3600.0) -> str:
        """A JWT access token expiring in `exp_in_seconds` (may be negative) that the fake accepts
        until then."""
        now = time.time()
        token = make_jwt(
            {"iat": int(now), "exp": int(now + exp_in_seconds), "jti": secrets.token_hex(8), **self._claims()}
        )
        with self._lock:
            if self.access_tokens is not None:
                self.access_tokens.add(token)
        return token

    def _rotate(self, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint's decision; a refresh token works exactly once."""
        with self._lock:
            if token is not None:
                self.refresh_token_uses[token] += 1
            if self.token_status is not None:
                return self.token_status, {
                    "error": {"message": "token endpoint failure (fake)", "code": "server_error"}
                }
            if body.get("grant_type") != "refresh_token" or token is None:
                return 400, {"error": {"message": "Unsupported grant type", "code": "unsupported_grant_type"}}
            if token in self.used_refresh_tokens:
                return refresh_error(
                    "refresh_token_reused", "already been used to generate a new access token"
                )
            if self.refresh_tokens is not None and token not in self.refresh_tokens:
                return refresh_error("refresh_token_invalidated", "been invalidated")
            self.used_refresh_tokens.add(token)
            new_refresh = "refresh-" + secrets.token_hex(12)
            if self.refresh_tokens is not None:
                self.refresh_tokens.discard(token)
                self.refresh_tokens.add(new_refresh)
        access = self.mint_access_token(self.access_token_ttl)
        now = int(time.time())
        id_claims = {
            "iss": "https://auth.openai.com",
            "aud": [body.get("client_id") or "app_fake"],
            "sub": "user-fake",
        }
        id_token = make_jwt(
            {**id_claims, "email": "user@example.com", "iat": now, "exp": now + 3600, **self._claims()}
        )
        grant = {"access_token": access, "refresh_token": new_refresh, "id_token": id_token}
        with self._lock:
            self.token_grants.append(grant)
        return 200, grant

    def _claims(self) -> dict[str, Any]:
        auth = {
            "chatgpt_account_id": self.account_id or "acct-fake",
            "chatgpt_plan_type": "plus",
            "chatgpt_user_id": "user-fake",
        }
        return {"https://api.openai.com/auth": auth}
