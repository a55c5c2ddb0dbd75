"""codex-api-proxy as a mitmproxy script, shipped inside the package for mitmdump and mitmweb:

    mitmweb -s "$(codex-api-proxy addon-path)" --mode reverse:http://127.0.0.1:9@127.0.0.1:8765 \\
        --set connection_strategy=lazy

The same addons `codex-api-proxy start` runs; options are the `codex_*` ones (`--set codex_heartbeat=5`).
`codex-api-proxy start --web` does all of this for you.
"""

import sys
from pathlib import Path

# mitmproxy puts this file's folder first on sys.path (and leaves it there), where the package's own
# modules would shadow top-level ones; the folder holding the package comes instead, so a checkout works
# uninstalled.
_here = Path(__file__).resolve().parent
_root = _here.parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
if str(_root) not in sys.path:
    sys.path.append(str(_root))

from mitmproxy import contentviews  # noqa: E402

from codex_api_proxy.proxy.addons import make_addons  # noqa: E402
from codex_api_proxy.proxy.contentview import ServerSentEvents, Upstream  # noqa: E402

contentviews.add(ServerSentEvents)  # streamed answers read as text in mitmweb and mitmdump
contentviews.add(Upstream)  # a translated flow's upstream request, as written
addons = make_addons()
