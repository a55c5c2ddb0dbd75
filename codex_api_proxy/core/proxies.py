"""Outbound proxies: which proxy server each upstream URL goes through, read as curl reads them.

The explicit one (`--proxy`, the option codex_outbound_proxy) for every URL, else the environment's
HTTPS_PROXY / HTTP_PROXY / ALL_PROXY unless NO_PROXY exempts the host: one rule for the pooled upstream
connections and the token refresh. No message ever shows a proxy's password.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

PROXY_SCHEMES = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}  # with their default ports
# The variables people set for a proxy, as curl reads them: the lower-case name wins over the upper-case one;
# a URL's own scheme first, ALL_PROXY for any scheme whose own is unset (what "copy shell export" in Clash
# and V2Ray writes beside https_proxy).
PROXY_VARIABLES = {
    "https": ("https_proxy", "HTTPS_PROXY"),
    "http": ("http_proxy", "HTTP_PROXY"),
    "all": ("all_proxy", "ALL_PROXY"),
    "no": ("no_proxy", "NO_PROXY"),
}
# how messages name the explicit proxy (the option codex_outbound_proxy under mitmdump and mitmweb)
PROXY_OPTION = "--proxy"


@dataclass(frozen=True)
class OutboundProxy:
    """One proxy server the upstream is reached through, as a person wrote it in a URL: credentials are
    percent-decoded (`alice:p%40ss@` sends `p@ss`), as curl and httpx do. No message shows the password."""

    scheme: str  # http, https (TLS to the proxy itself), socks5 (names resolved here), socks5h (by the proxy)
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    source: str = ""  # the variable or option that set it: named in every message about it

    @property
    def socks(self) -> bool:
        return self.scheme.startswith("socks")

    @property
    def shown(self) -> str:
        """scheme://host:port, never the credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def basic_authorization(self) -> str | None:
        """Proxy-Authorization for an HTTP(S) proxy, from the URL's credentials."""
        if self.username is None:
            return None
        raw = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def url(self) -> str:
        """The URL again, credentials percent-encoded, for clients that take a URL (httpx)."""
        userinfo = ""
        if self.username is not None:
            userinfo = quote(self.username, safe="")
            userinfo += f":{quote(self.password, safe='')}@" if self.password is not None else "@"
        return self.shown.replace("://", "://" + userinfo, 1)


def parse_proxy_url(value: str, source: str) -> OutboundProxy:
    """An outbound proxy URL as people write them (`host:port` is an HTTP proxy, as for curl); ValueError
    naming `source` (never echoing the value: it may hold a password) when it is not one we can use."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{source} is not a proxy URL like http://host:port or socks5://host:port") from None
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        raise ValueError(
            f"{source} is a {scheme}:// proxy, which codex-api-proxy cannot use: "
            "use an http://, https://, socks5:// or socks5h:// proxy"
        )
    if not parts.hostname:
        raise ValueError(f"{source} names no proxy host (expected {scheme}://host:port)")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return OutboundProxy(scheme, parts.hostname, port or PROXY_SCHEMES[scheme], user, password, source)


def _no_proxy_match(no_proxy: str, host: str, port: int) -> bool:
    """NO_PROXY as curl reads it: `*`, host names matching themselves and their subdomains (a leading dot
    or `*.` allowed), IP addresses and CIDR ranges, each optionally with `:port`."""
    host = host.lower().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in filter(None, re.split(r"[,\s]+", no_proxy.lower())):
        if entry == "*":
            return True
        name, entry_port = entry, ""
        if entry.startswith("["):  # [v6]:port
            name, _, rest = entry[1:].partition("]")
            entry_port = rest.removeprefix(":")
        elif entry.count(":") == 1:
            name, entry_port = entry.split(":")
        if entry_port and entry_port != str(port):
            continue
        try:
            network = ipaddress.ip_network(name, strict=False)
        except ValueError:
            network = None
        if network is not None:
            if address is not None and address in network:
                return True
            continue
        name = name.removeprefix("*").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


@dataclass(frozen=True)
class Proxies:
    """Which outbound proxy each upstream URL goes through: the explicit one (`--proxy`) for every URL,
    else the environment's (PROXY_VARIABLES) unless NO_PROXY exempts the host. One rule for the pooled
    upstream connections and the token refresh, read once at start."""

    explicit: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict)  # only the PROXY_VARIABLES that are set

    @classmethod
    def from_environ(cls, explicit: str | None, environ: Mapping[str, str] = os.environ) -> Proxies:
        names = [name for pair in PROXY_VARIABLES.values() for name in pair]
        return cls(explicit or None, {n: environ[n] for n in names if environ.get(n, "").strip()})

    def _variable(self, kind: str) -> str | None:
        return next((n for n in PROXY_VARIABLES[kind] if n in self.environ), None)

    def check(self) -> None:
        """ValueError naming the variable (or the option) when a proxy setting in effect cannot be used:
        refused at start in one line, not found on the first request it would fail. A variable shadowed by
        another (HTTPS_PROXY by https_proxy, every one by --proxy) is not in effect."""
        if self.explicit:
            parse_proxy_url(self.explicit, PROXY_OPTION)
            return
        for kind in ("https", "http", "all"):
            if name := self._variable(kind):
                parse_proxy_url(self.environ[name], name)

    def for_url(self, url: str) -> OutboundProxy | None:
        """The proxy for this URL, or None to connect directly; ValueError naming the variable (or the
        option) when the proxy that applies cannot be used."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return self.for_origin(scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80))

    def for_origin(self, scheme: str, host: str, port: int) -> OutboundProxy | None:
        if self.explicit:
            return parse_proxy_url(self.explicit, PROXY_OPTION)
        no = self._variable("no")
        if no and _no_proxy_match(self.environ[no], host, port):
            return None
        name = self._variable(scheme if scheme in ("http", "https") else "all") or self._variable("all")
        return parse_proxy_url(self.environ[name], name) if name else None
