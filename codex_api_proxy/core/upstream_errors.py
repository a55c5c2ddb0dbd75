"""Every error code the Codex backend is known to put in `response.failed` / `error` events, and the
HTTP status each becomes, so that each family's clients act right on it.

Sources: codex-rs (codex-api `sse/responses.rs` and `api_bridge.rs`: which codes the Codex CLI treats
as fatal and which it retries), the OpenAI API's documented error codes, and what the backend sends in
seed-behaviour.md §2.4. The rule the statuses follow:

- a refusal of the request itself (policy, invalid prompt, context too long, a parameter the backend
  does not take) is a 400: `invalid_request_error` in both envelopes, never retried, never a 5xx;
- a limit that a wait lifts is a 429 (`rate_limit_error`; usage_limit_reached / insufficient_quota keep
  their own type for the OpenAI envelope, as the OpenAI API sends them), with Retry-After when known;
- a plan without Codex is a 403 (`permission_error`): no retry fixes it;
- credentials are a 401 (`authentication_error`), the only class that carries the re-login hint;
- an overloaded backend is a 529 (`overloaded_error` for Anthropic, a 5xx the OpenAI SDKs retry);
- anything else the backend reports is its failure: 502, which clients may retry.

Undocumented choices: `cyber_policy` and other `*_policy` / `content_filter` codes are refusals (400,
as the Codex CLI shows them and does not retry); an unknown `invalid_*` code is a 400 too; an unknown
code of any other shape is the backend's failure (502).
"""

from __future__ import annotations

RELOGIN_HINT = "sign in again with `codex login` (the login in auth.json is no longer accepted)"

# code -> status a client should see (see the module docstring for the rule)
FAILURE_STATUS: dict[str, int] = {
    # refusals of the request: 400
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
    "cyber_policy": 400,
    "content_policy_violation": 400,
    "content_filter": 400,
    "invalid_request_error": 400,
    "bad_request": 400,
    "invalid_value": 400,
    "unsupported_value": 400,
    "unsupported_parameter": 400,
    "missing_required_parameter": 400,
    "string_above_max_length": 400,
    "invalid_encrypted_content": 400,
    "previous_response_not_found": 400,
    "item_not_found": 400,
    "invalid_image": 400,
    "image_too_large": 400,
    # limits a wait lifts: 429
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "usage_limit_reached": 429,
    "insufficient_quota": 429,
    # a plan that does not include Codex: 403
    "usage_not_included": 403,
    # credentials: 401
    "token_expired": 401,
    "invalid_api_key": 401,
    "account_deactivated": 401,
    "refresh_token_expired": 401,
    # capacity: 529
    "server_is_overloaded": 529,
    "slow_down": 529,
    "overloaded": 529,
    "overloaded_error": 529,
    # the backend's own failure: 502
    "server_error": 502,
    "api_error": 502,
}


def failure_status(code: str | None) -> int:
    """The status for a failure code (502 for one nobody listed, unless its shape says refusal)."""
    if not code:
        return 502
    if code in FAILURE_STATUS:
        return FAILURE_STATUS[code]
    if code.endswith(("_policy", "_policy_violation")) or code.startswith("invalid_"):
        return 400
    return 502
