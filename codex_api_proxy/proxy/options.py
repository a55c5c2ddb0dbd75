"""The proxy's mitmproxy options (`codex_*`, made from core/options.py), validated once into one `Settings`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions
from mitmproxy.proxy.mode_specs import ProxyMode

from ..auth.credentials import Credentials
from ..core import boundary, models
from ..core.options import ADDON_OPTIONS, API_KEY_ENV, Option, parse_model_map
from ..core.proxies import Proxies
from ..core.settings import Settings, default_auth_path, is_loopback, read_api_key
from .runtime import Runtime


def default_text(option: Option) -> str | bool:
    """The mitmproxy default: the option's variable when set (mitmdump/mitmweb users), else the table's."""
    from_env = os.environ.get(option.env or "", "").strip()
    if option.is_flag:
        try:
            return bool(option.check(from_env or option.default_value()))
        except ValueError:  # configure cannot name a bad variable: its option holds a bool
            return bool(option.default_value())
    return from_env or option.as_text(option.default_value())


def checked(options: Any) -> dict[str, Any]:
    """Every codex_* option through the table's check, by its table name; empty means the default."""
    values = {}
    for opt in ADDON_OPTIONS:
        raw = getattr(options, str(opt.addon))
        try:
            values[opt.name] = opt.check(raw) if raw not in ("", None) else opt.default_value()
        except ValueError as exc:
            raise exceptions.OptionsError(f"{opt.addon}: {exc}") from None
    return values


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
    """Declares the proxy's options (the table in core/options.py) and turns them into one `Settings`."""

    WATCHED = frozenset({"mode", "listen_host", "store_streamed_bodies"})  # bind: key needed?

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def load(self, loader: Any) -> None:
        for opt in ADDON_OPTIONS:
            # every value is a str but the flags: mitmproxy's --set cannot parse a float option
            loader.add_option(str(opt.addon), bool if opt.is_flag else str, default_text(opt), opt.help)

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
        v = checked(o)
        try:
            api_key = read_api_key(v["api_key_file"]) if v["api_key_file"] else None
        except (OSError, ValueError) as exc:
            raise exceptions.OptionsError(f"codex_api_key_file: {exc}") from None
        settings = Settings(
            upstream_url=v["upstream_url"].rstrip("/"),
            openai_url=v["openai_url"].rstrip("/"),
            auth_path=Path(v["auth_file"]).expanduser() if v["auth_file"] else default_auth_path(),
            api_key=api_key or os.environ.get(API_KEY_ENV) or None,
            proxies=Proxies.from_environ(v["proxy"] or None),  # else HTTPS_PROXY, ALL_PROXY, NO_PROXY...
            connect_timeout=v["connect_timeout"],
            first_byte_timeout=v["first_byte_timeout"],
            idle_timeout=v["idle_timeout"],
            heartbeat=v["heartbeat"],
            models_cache_ttl=v["models_cache_ttl"],
            model_map=parse_model_map(v["model_map"]),
            expose_reasoning=v["expose_reasoning"],
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
            allowed_origins=frozenset(x.rstrip("/").lower() for x in _items(v["allow_origin"])),
            allowed_hosts=frozenset(boundary.host_of(x) for x in _items(v["allow_host"])),
            bind_hosts=frozenset(bind_hosts(o)),
        )
        rt.settings = settings
        # a client waits for a token refresh as long as for the upstream's first byte; the refresh goes on
        rt.credentials = Credentials(
            settings.auth_path, refresh_wait=settings.first_byte_timeout, refreshes=rt.refreshes
        )
        rt.models = models.ModelCache(settings.models_cache_ttl)
        if rt.backend:  # options changed while running (mitmweb): rebuild the transport
            rt.restarting = asyncio.get_running_loop().create_task(rt.restart_transport())
