"""The proxy's mitmproxy options (`codex_*`), validated once into one `Settings`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions
from mitmproxy.proxy.mode_specs import ProxyMode

from ..auth.credentials import Credentials
from ..core import boundary, models
from ..core.settings import (
    API_KEY_ENV,
    DEFAULT_OPENAI_URL,
    DEFAULT_UPSTREAM_URL,
    OPENAI_URL_ENV,
    UPSTREAM_URL_ENV,
    Proxies,
    Settings,
    default_auth_path,
    is_loopback,
    parse_model_map,
    read_api_key,
)
from .runtime import Runtime


def _seconds(options: Any, name: str) -> float:
    """A duration option: a positive number of seconds (cache TTL: 0 allowed)."""
    try:
        value = float(getattr(options, name))
    except ValueError:
        raise exceptions.OptionsError(
            f"{name} must be a number of seconds, not {getattr(options, name)!r}"
        ) from None
    if (value <= 0 and name != "codex_models_cache_ttl") or value != value or value == float("inf"):
        raise exceptions.OptionsError(f"{name} must be a positive number of seconds")
    return value


def _items(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


def bind_hosts(options: Any) -> list[str]:
    """The addresses the proxy listens on ('' = every interface), from mitmproxy's own options."""
    hosts = []
    for spec in getattr(options, "mode", None) or []:
        try:
            hosts.append(ProxyMode.parse(spec).listen_host(options.listen_host).lower())
        except ValueError:
            continue  # mitmproxy reports a bad mode itself
    return hosts


def check_bind(options: Any, settings: Settings) -> None:
    """Refuse to serve a subscription beyond this machine without a key, under mitmdump/mitmweb too."""
    if settings.api_key:
        return
    for host in bind_hosts(options):
        if not is_loopback(host):
            raise exceptions.OptionsError(
                f"refusing to listen on {host or 'every interface'} without a local API key: set "
                f"{API_KEY_ENV} (or --api-key-file), or listen on 127.0.0.1"
            )


class ProxyOptions:
    """Declares the proxy's options and turns them into one validated `Settings`."""

    WATCHED = frozenset({"mode", "listen_host", "store_streamed_bodies"})  # bind: key needed?
    SECONDS = (
        "codex_connect_timeout",
        "codex_first_byte_timeout",
        "codex_idle_timeout",
        "codex_heartbeat",
        "codex_models_cache_ttl",
    )

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def load(self, loader: Any) -> None:
        add = loader.add_option
        add(
            "codex_upstream_url",
            str,
            os.environ.get(UPSTREAM_URL_ENV) or DEFAULT_UPSTREAM_URL,
            "ChatGPT Codex backend base URL (generation: POST {base}/responses).",
        )
        add(
            "codex_openai_url",
            str,
            os.environ.get(OPENAI_URL_ENV) or DEFAULT_OPENAI_URL,
            "OpenAI API base URL, used when auth.json holds an OPENAI_API_KEY.",
        )
        add(
            "codex_auth_file",
            str,
            "",
            "auth.json to use (default: $CODEX_HOME/auth.json or ~/.codex/auth.json).",
        )
        add(
            "codex_api_key_file",
            str,
            "",
            f"File holding the local API key clients must present (or set {API_KEY_ENV}). Never pass keys in argv.",
        )
        add(
            "codex_outbound_proxy",
            str,
            "",
            "Outbound proxy, http(s):// or socks5(h):// (default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY).",
        )
        # seconds are strings: mitmproxy's --set cannot parse a float option (mitmdump/mitmweb users)
        add("codex_connect_timeout", str, "15", "Seconds to connect to the upstream.")
        add("codex_first_byte_timeout", str, "300", "Seconds to wait for the upstream's response headers.")
        add("codex_idle_timeout", str, "300", "Seconds of upstream silence inside a stream before it fails.")
        add("codex_heartbeat", str, "10", "Seconds of upstream silence between keep-alives to clients.")
        add("codex_models_cache_ttl", str, "300", "Seconds a model listing is cached (0: never).")
        add("codex_model_map", str, "", "Claude family -> GPT model, e.g. 'opus=gpt-5.5,haiku=gpt-5.4-mini'.")
        add("codex_expose_reasoning", bool, False, "Give Chat Completions clients reasoning summaries.")
        add(
            "codex_allow_origin",
            str,
            "",
            "Web origins (scheme://host[:port], comma-separated) allowed to call the proxy from a browser; "
            "none by default.",
        )
        add(
            "codex_allow_host",
            str,
            "",
            "Host names (comma-separated) clients may use beyond loopback and the bound address.",
        )

    def configure(self, updated: set[str]) -> None:
        # mitmproxy calls configure only for options that changed: a start with every codex_* option at
        # its default must still build (and enforce) the settings, the key from the environment included
        if (
            self.runtime.configured
            and not updated & self.WATCHED
            and not any(name.startswith("codex_") for name in updated)
        ):
            return
        o = ctx.options
        try:
            api_key = read_api_key(o.codex_api_key_file) if o.codex_api_key_file else None
            model_map = parse_model_map(o.codex_model_map)
        except (OSError, ValueError) as exc:
            raise exceptions.OptionsError(str(exc)) from None
        seconds = {name: _seconds(o, name) for name in self.SECONDS}
        if seconds["codex_models_cache_ttl"] < 0:
            raise exceptions.OptionsError("codex_models_cache_ttl must not be negative")
        settings = Settings(
            upstream_url=o.codex_upstream_url.rstrip("/"),
            openai_url=o.codex_openai_url.rstrip("/"),
            auth_path=Path(o.codex_auth_file).expanduser() if o.codex_auth_file else default_auth_path(),
            api_key=api_key or os.environ.get(API_KEY_ENV) or None,
            proxies=Proxies.from_environ(o.codex_outbound_proxy or None),
            connect_timeout=seconds["codex_connect_timeout"],
            first_byte_timeout=seconds["codex_first_byte_timeout"],
            idle_timeout=seconds["codex_idle_timeout"],
            heartbeat=seconds["codex_heartbeat"],
            models_cache_ttl=seconds["codex_models_cache_ttl"],
            model_map=model_map,
            expose_reasoning=o.codex_expose_reasoning,
        )
        try:  # first: a proxy from the environment stays wrong when a failed update is rolled back
            settings.proxies.check()
        except ValueError as exc:
            raise exceptions.OptionsError(str(exc)) from None
        check_bind(o, settings)
        rt = self.runtime
        rt.configured = True
        rt.inspecting = bool(getattr(o, "store_streamed_bodies", False))
        rt.policy = boundary.Policy(
            api_key=settings.api_key,
            allowed_origins=frozenset(x.rstrip("/").lower() for x in _items(o.codex_allow_origin)),
            allowed_hosts=frozenset(boundary.host_of(x) for x in _items(o.codex_allow_host)),
            bind_hosts=frozenset(bind_hosts(o)),
        )
        rt.settings = settings
        # a client waits for a token refresh as long as for the upstream's first byte; the refresh goes on
        rt.credentials = Credentials(settings.auth_path, refresh_wait=settings.first_byte_timeout)
        rt.models = models.ModelCache(settings.models_cache_ttl)
        if rt.backend:  # options changed while running (mitmweb): rebuild the transport
            rt.restarting = asyncio.get_running_loop().create_task(rt.restart_transport())
