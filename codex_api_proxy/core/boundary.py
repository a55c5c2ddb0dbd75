"""What may reach the subscription: the local key, browsers, and the size of what a request carries.

Checked on the request's head, before any body is read, in this order:
- too many or too large headers: 431;
- the Host header must name this proxy (its bind address, a loopback name or address, or a name the
  person allowed): a DNS-rebinding page sends its own host name and gets 403;
- an `Origin` header is only sent by browsers: unless the person allowed that origin, 403, so no web
  page can use the subscription, key or no key (a preflight for an allowed origin gets its CORS answer);
- the local key, when one is set (Bearer or x-api-key); the usage page (its routes are `page`) also takes a
  token derived from it in its URL, since a browser cannot add a header to a link; and it is refused to
  any request a browser marks as coming from another site (`Sec-Fetch-Site`), an `<img>` or `<script>`
  of another page included;
- a POST must say it is JSON: a cross-site form or `text/plain` post, which a browser sends without a
  preflight, gets 415;
- a declared body larger than the limit: 413.
A refused request is answered without reading its body (see proxy/boundary.py `Boundary.refuse`); the decoded size of a
compressed body is bounded in `decoded_body`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import hmac
import json
import platform
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import jsonslices
from .errors import ProxyError, bad_request
from .headers import CORS_ALLOWED, CORS_EXPOSED
from .limits import KIB, MAX_BODY, MAX_HEAD, MAX_HEADERS, MIB, OFF_LOOP_BYTES
from .routes import find
from .settings import is_loopback

CORS_METHODS = "GET, POST, OPTIONS"


def host_of(authority: str) -> str:
    """The host part of a Host header value (`[::1]:8765` -> `::1`), lower-case."""
    value = authority.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.rsplit(":", 1)[0]
    return value


@dataclass(frozen=True)
class Policy:
    """The boundary's settings, built once from the options."""

    api_key: str | None = None
    allowed_origins: frozenset[str] = frozenset()
    allowed_hosts: frozenset[str] = frozenset()  # names beyond loopback and the bind address
    bind_hosts: frozenset[str] = field(default_factory=frozenset)

    def host_allowed(self, authority: str) -> bool:
        host = host_of(authority)
        if not host:
            return False
        return is_loopback(host) or host in self.bind_hosts or host in self.allowed_hosts

    def origin_allowed(self, origin: str) -> bool:
        return origin.rstrip("/").lower() in self.allowed_origins

    def key_ok(self, headers: dict[str, str]) -> bool:
        if not self.api_key:
            return True
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        offered = bearer.strip() if scheme.lower() == "bearer" else headers.get("x-api-key", "")
        return bool(offered) and hmac.compare_digest(offered.encode(), self.api_key.encode())

    def token_ok(self, token: str) -> bool:
        """The usage page's token (see dashboard_token), when a key is set."""
        if not self.api_key:
            return True
        return bool(token) and hmac.compare_digest(token.encode(), dashboard_token(self.api_key).encode())


def dashboard_token(api_key: str) -> str:
    """The usage page's URL token: derived from the local key, so a URL kept in a browser's history
    opens the page but cannot call the API."""
    return hmac.new(api_key.encode(), b"codex-api-proxy usage page", hashlib.sha256).hexdigest()[:32]


def header_dict(fields: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names, repeated fields joined, from raw (name, value) fields: mitmproxy's own
    mapping view scans every field for each lookup."""
    out: dict[str, str] = {}
    for name, value in fields:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def check_head(
    policy: Policy, method: str, path: str, fields: Iterable[tuple[bytes, bytes]], token: str = ""
) -> tuple[dict[str, str], ProxyError | None]:
    """The request's headers as a dict (lower-case names) and the refusal, if any.

    `path` is the normalised path (routes.route_path), `token` the usage page's URL token; an open route
    needs no key and takes any body. A flood of headers costs one pass, nothing quadratic."""
    fields = list(fields)
    headers = header_dict(fields[:MAX_HEADERS])
    if len(fields) > MAX_HEADERS or sum(len(k) + len(v) + 4 for k, v in fields) > MAX_HEAD:
        return headers, ProxyError(
            431,
            f"request headers too large (at most {MAX_HEADERS} fields, {MAX_HEAD // KIB} KiB)",
            code="request_header_fields_too_large",
        )
    if not policy.host_allowed(headers.get("host", "")):
        return headers, ProxyError(
            403,
            "this Host is not codex-api-proxy's (use 127.0.0.1 or localhost, or allow it with --allow-host)",
            code="host_not_allowed",
        )
    origin = headers.get("origin")
    if origin is not None and not policy.origin_allowed(origin):
        return headers, ProxyError(
            403,
            f"requests from web pages are refused (Origin {origin[:100]}); allow an origin with --allow-origin",
            code="origin_not_allowed",
        )
    route = find(path)
    if (
        route is not None
        and route.page
        and headers.get("sec-fetch-site", "none") not in ("none", "same-origin")
    ):
        return headers, ProxyError(
            403, "the usage page is not shown to other web pages", code="origin_not_allowed"
        )
    if method == "OPTIONS":
        return headers, None  # a preflight (allowed origin) is answered by the gateway, key or not
    is_open = route is not None and route.open
    page_ok = route is not None and route.page and policy.token_ok(token)
    if not is_open and not page_ok and not policy.key_ok(headers):
        return headers, ProxyError(
            401, "invalid or missing API key for codex-api-proxy", code="invalid_api_key"
        )
    if method == "POST" and not is_open:
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return headers, ProxyError(
                415,
                f"the body must be JSON: send Content-Type: application/json (got {media or 'none'!r}; "
                "curl -d sends a form type unless you add -H 'content-type: application/json')",
                code="unsupported_media_type",
            )
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return headers, ProxyError(
            413, f"request body is larger than {MAX_BODY // MIB} MiB", code="request_too_large"
        )
    return headers, None


def json_body(raw: bytes, encoding: str) -> tuple[dict[str, Any], bytes]:
    """A request's JSON object and its decoded bytes; every way it can be wrong is a 4xx."""
    raw = decoded_body(raw, encoding)
    try:
        # a large one in slices: one json.loads call would hold the GIL, even in a worker thread
        body = jsonslices.loads(raw) if len(raw) > OFF_LOOP_BYTES else json.loads(raw)
    except RecursionError:
        raise bad_request("request body is nested too deeply", code="invalid_json") from None
    except ValueError:
        raise bad_request("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    # an escaped surrogate: maybe a lone one, unencodable (searched in slices, see jsonslices.contains)
    if jsonslices.contains(raw, b"\\ud") or jsonslices.contains(raw, b"\\uD"):
        body = repair_surrogates(body)
    return body, raw


def off_loop(raw: bytes, encoding: str) -> bool:
    """Whether work on this body belongs in a worker thread: parsing and re-encoding a large body
    holds the event loop (and every other client) for as long as it takes, ~0.1 s per 10 MiB. A
    compressed body counts as large: what it expands to is not known before decoding it."""
    return len(raw) > OFF_LOOP_BYTES or encoding.strip().lower() not in ("", "identity")


def release_memory() -> None:
    """Give the heap's free pages back to the system after a large body: glibc keeps freed blocks
    below its mmap threshold (up to 32 MiB) in the heap, so a few big requests would otherwise leave
    the process hundreds of MB larger for its whole life. Elsewhere (macOS, musl) a no-op."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> Any:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def repair_surrogates(value: Any) -> Any:
    """Lone UTF-16 surrogates (`"\\ud800"` is valid JSON) become U+FFFD: they cannot be encoded as
    UTF-8, and one bad tool output would otherwise fail every later turn of its conversation."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [repair_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {repair_surrogates(k): repair_surrogates(v) for k, v in value.items()}
    return value


def cors_headers(origin: str) -> dict[str, str]:
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": CORS_EXPOSED,
        "vary": "Origin",
    }


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        **cors_headers(origin),
        "access-control-allow-methods": CORS_METHODS,
        "access-control-allow-headers": CORS_ALLOWED,
        "access-control-max-age": "600",
    }


def decoded_body(raw: bytes, encoding: str, limit: int = MAX_BODY) -> bytes:
    """The body with its content-encoding undone, never more than `limit` bytes (a 200 KiB gzip can
    expand to 200 MiB: the limit applies to what it expands to, not to what was sent)."""
    if len(raw) > limit:
        raise _too_large(limit, "")
    out = raw
    for coding in reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]):
        if coding != "identity":
            out = _decode(out, coding, limit)
    return out


def _too_large(limit: int, how: str = " once decoded") -> ProxyError:
    return ProxyError(413, f"request body is larger than {limit // MIB} MiB{how}", code="request_too_large")


def _decode(data: bytes, coding: str, limit: int) -> bytes:
    try:
        if coding in ("gzip", "x-gzip", "deflate"):
            wbits = 16 + zlib.MAX_WBITS if coding != "deflate" else zlib.MAX_WBITS
            try:
                decoder = zlib.decompressobj(wbits)
                out = decoder.decompress(data, limit + 1)
            except zlib.error:
                if coding != "deflate":
                    raise
                decoder = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some clients send it
                out = decoder.decompress(data, limit + 1)
        elif coding == "br":
            import brotli

            out = brotli.Decompressor().process(data, output_buffer_limit=limit + 1)
        elif coding == "zstd":
            try:
                from compression import zstd  # type: ignore[import-not-found]
            except ImportError:
                from backports import zstd  # type: ignore[no-redef]
            out = zstd.ZstdDecompressor().decompress(data, max_length=limit + 1)
        else:
            raise ProxyError(
                415, f"content-encoding {coding!r} is not supported", code="unsupported_encoding"
            )
    except ProxyError:
        raise
    except Exception:
        raise ProxyError(400, f"the body is not valid {coding} data", code="invalid_encoding") from None
    if len(out) > limit:
        raise _too_large(limit)
    return out
