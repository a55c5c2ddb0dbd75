"""Which headers cross the proxy, in each direction: the header policy in one place.

- Client -> upstream: only what carries conversation identity and the Codex CLI's own metadata
  (`FORWARDED`, `FORWARDED_PREFIXES`); the backend's cache affinity follows the session id
  (conversations.conversation_headers spells the ids as current Codex does). Never a client's own key,
  hop-by-hop or framing headers, nor the proxy's internal ones (`NEVER_UPSTREAM`): credentials are
  added past mitmproxy, by the relay.
- Upstream -> client: request ids, `retry-after` and the plan's rate-limit figures (`PASSED_BACK`,
  `PASSED_BACK_PREFIXES`): the Codex CLI reads `x-codex-*` to show "You've hit your usage limit" and
  when it resets; the quota addon adds the latest `QUOTA_PREFIX` figures to every answer.
- Browsers: the CORS headers an allowed origin may send and read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

# client -> upstream
FORWARDED = frozenset({"session_id", "session-id", "thread-id", "x-client-request-id", "originator"})
FORWARDED_PREFIXES = ("x-codex-",)
SESSION_HEADERS = ("session_id", "session-id")  # the conversation's session, as sent upstream
REQUEST_ID_HEADERS = ("x-request-id", "x-correlation-id", "x-client-request-id")  # a client's, by preference
UPSTREAM_REQUEST_ID = "x-client-request-id"  # the thread id (conversations.py), else the request's id
INTERNAL_PREFIX = "x-cxp-"  # between the addon and the relay, never sent upstream
NEVER_UPSTREAM = frozenset(
    {
        # hop-by-hop
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        # framing: the upstream client frames the body itself, and reads it raw
        "host",
        "content-length",
        "accept-encoding",
        # the client's own key for the proxy
        "authorization",
        "x-api-key",
    }
)

CREDENTIALS = frozenset({"authorization", "x-api-key"})  # a client's key: masked on every flow once checked

# upstream -> client
PASSED_BACK = frozenset({"retry-after", "x-request-id", "request-id", "openai-processing-ms"})
QUOTA_PREFIX = "x-codex-"
PASSED_BACK_PREFIXES = (QUOTA_PREFIX, "x-ratelimit-")
REQUEST_ID = "x-request-id"  # the request's id, on every answer

# browsers (allowed origins only)
CORS_ALLOWED = (
    "authorization, x-api-key, content-type, anthropic-version, anthropic-beta, "
    "x-request-id, x-stainless-os, x-stainless-lang, x-stainless-arch, x-stainless-runtime, "
    "x-stainless-runtime-version, x-stainless-package-version, x-stainless-retry-count, "
    "x-stainless-timeout, openai-beta, openai-organization, openai-project, "
    "anthropic-dangerous-direct-browser-access"
)
CORS_EXPOSED = "x-request-id, retry-after"


def forwarded(client: Mapping[str, str]) -> dict[str, str]:
    """The client headers (lower-case names) that go upstream."""
    return {k: v for k, v in client.items() if k in FORWARDED or k.startswith(FORWARDED_PREFIXES)}


def originator() -> str:
    """What the Codex backend is told the client is, when the client did not say (Codex CLI does)."""
    return os.environ.get("CODEX_INTERNAL_ORIGINATOR_OVERRIDE", "codex_cli_rs")


def to_upstream(headers: Mapping[str, str]) -> dict[str, str]:
    """The relayed request's headers without those that must never reach the upstream."""
    return {k: v for k, v in headers.items() if k not in NEVER_UPSTREAM and not k.startswith(INTERNAL_PREFIX)}


def passed_back(headers: Any) -> dict[str, str]:
    """The upstream response headers a client may rely on (lower-case names)."""
    return {
        k.lower(): v
        for k, v in (headers or {}).items()
        if k.lower() in PASSED_BACK or k.lower().startswith(PASSED_BACK_PREFIXES)
    }


def rate_limit_headers(headers: Any) -> dict[str, str]:
    """The rate-limit figures alone (an error keeps them to pass back)."""
    return {k: v for k, v in passed_back(headers).items() if k.startswith(PASSED_BACK_PREFIXES)}


def quota_fields(fields: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The plan's figures (`x-codex-*`) among raw header fields, lower-case names."""
    prefix = QUOTA_PREFIX.encode()
    return {
        k.decode("latin-1").lower(): v.decode("latin-1")
        for k, v in fields
        if k[: len(prefix)].lower() == prefix
    }
