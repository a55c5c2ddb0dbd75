"""Authenticated calls to the upstream: URLs, the headers that go out, and the one retry after a 401.

Every call to the Codex backend or the OpenAI API goes through `Backend.send`: generation requests
from the relay and the small JSON reads (/models) from the addon. Credentials are added here, past
mitmproxy, so a flow shown in mitmweb never carries a token.
"""

from __future__ import annotations

import json
import logging
import platform
from typing import Any

import httpx

from .. import __version__
from ..auth.authfile import Auth
from ..auth.credentials import REFRESH_TIMEOUT, Credentials
from ..core.errors import ProxyError, from_upstream
from ..core.headers import to_upstream
from ..core.limits import MAX_UPSTREAM_JSON
from ..core.settings import Settings
from .outbound import trust_context
from .pool import Pool, Response

log = logging.getLogger(__name__)


def user_agent() -> str:
    return f"codex-api-proxy/{__version__} ({platform.system()} {platform.release()}; {platform.machine()})"


class Backend:
    """The upstream as the proxy uses it: one shared connection pool, credentials on every call."""

    def __init__(self, settings: Settings, credentials: Credentials) -> None:
        self.settings = settings
        self.credentials = credentials
        self.pool = Pool(
            connect_timeout=settings.connect_timeout,
            first_byte_timeout=settings.first_byte_timeout,
            idle_timeout=settings.idle_timeout,
            proxies=settings.proxies,
        )
        # Token refreshes are rare and small: httpx is good enough there. Its proxy and trust are the
        # pool's (one rule for both hops, not httpx's own reading of the environment), and its timeout
        # is the refresh's only bound: a sent refresh is awaited that long, whoever stopped waiting.
        context = trust_context()
        proxy = settings.proxies.for_url(credentials.token_url)
        proxy_tls = context if proxy and proxy.scheme == "https" else None  # TLS to an https:// proxy itself
        self.refresh_client = httpx.AsyncClient(
            proxy=httpx.Proxy(proxy.url(), ssl_context=proxy_tls) if proxy else None,
            verify=context,
            trust_env=False,
            timeout=httpx.Timeout(REFRESH_TIMEOUT, connect=settings.connect_timeout),
            follow_redirects=False,
        )
        credentials.set_client(self.refresh_client)
        self.user_agent = user_agent()
        self._bases = {"codex": settings.upstream_url.rstrip("/"), "openai": settings.openai_url.rstrip("/")}

    def url(self, route: str, path: str) -> str:
        return self._bases[route] + "/" + path.lstrip("/")

    async def send(
        self, route: str, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        """Open an upstream response (head received); after a 401 with ChatGPT tokens, refresh and
        retry once. Raises ProxyError for credential and transport failures (502, 504)."""
        auth = await self.credentials.get()
        response = await self._open(route, method, path, body, headers, auth)
        if response.status == 401 and auth.mode == "chatgpt" and route == "codex":
            response.close()
            log.info("upstream answered 401; refreshing the access token and retrying once")
            auth = await self.credentials.after_unauthorized(auth)
            response = await self._open(route, method, path, body, headers, auth)
        return response

    async def _open(
        self, route: str, method: str, path: str, body: bytes | None, headers: dict[str, str], auth: Auth
    ) -> Response:
        out = to_upstream(headers)
        out.setdefault("user-agent", self.user_agent)
        out["accept-encoding"] = "identity"  # translators read raw bytes
        out.update(auth.headers())
        return await self.pool.request(method, self.url(route, path), out, body)

    async def json(self, route: str, path: str) -> Any:
        """GET a small JSON document; HTTP errors become ProxyError at the upstream status."""
        response = await self.send(route, "GET", path, None, {"accept": "application/json"})
        body = await response.read(MAX_UPSTREAM_JSON)
        if response.status >= 400:
            raise from_upstream(response.status, body, response.headers)
        try:
            return json.loads(body)
        except ValueError:
            raise ProxyError(
                502, "upstream answered with invalid JSON", code="bad_upstream_response"
            ) from None

    async def aclose(self) -> None:
        self.pool.close()
        await self.refresh_client.aclose()
