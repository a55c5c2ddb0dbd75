"""The proxy's mitmproxy addons, in hook order, sharing one `Runtime`.

One class per concern and file; each `request` hook leaves a flow alone once an earlier one has answered
it. Hooks route and delegate to the rules of `core/` (routes, headers, limits, errors), the translators
of `translate/` and the transport of `relay/`; the one place a request's plan is made is
`ApiGateway.translate_request` (passthrough or translation, which upstream, which headers). Every hook
fails closed: an exception answers the client with a JSON error, and no flow is ever forwarded
untranslated (the reverse target is a dead port on top of that).
"""

from __future__ import annotations

from typing import Any

from . import mitm_patches, observe
from .boundary import Boundary
from .dashboard import Dashboard
from .endpoints import LocalEndpoints
from .gateway import ApiGateway
from .inspector import Inspector
from .options import ProxyOptions
from .quota import Quota
from .runtime import Runtime
from .transport import UpstreamRelay


def make_addons(runtime: Runtime | None = None) -> list[Any]:
    """The proxy's addons in hook order, sharing one runtime."""
    mitm_patches.apply()
    runtime = runtime or Runtime()
    return [
        ProxyOptions(runtime),
        UpstreamRelay(runtime),
        Boundary(runtime),
        Inspector(runtime),  # after the boundary masked the key, before anything rewrites the flow
        LocalEndpoints(runtime),
        Dashboard(runtime),
        ApiGateway(runtime),
        # they only watch, after the gateway so they see its final answers; RequestMetrics last
        observe.RequestIds(),
        Quota(runtime),
        observe.RequestMetrics(runtime),
    ]
