"""codex-api-proxy as a mitmproxy script, for mitmdump and mitmweb by hand:

    mitmweb -s addons/codex_api_proxy.py --mode reverse:http://127.0.0.1:9@127.0.0.1:8765 \\
        --set connection_strategy=lazy

The same addons `codex-api-proxy start` runs; options are the `codex_*` ones (`--set codex_heartbeat=5`).
"""

import sys
from pathlib import Path

# mitmproxy puts this folder first on sys.path, where this file would shadow the package of the same
# name; the project root comes instead, so a checkout works without installing.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.append(str(_here.parent))

from codex_api_proxy.addon import make_addons  # noqa: E402

addons = make_addons()
