"""Kept for checkouts and old recipes: the script now ships inside the package, so this is the same as

    mitmweb -s "$(codex-api-proxy addon-path)" --mode reverse:http://127.0.0.1:9@127.0.0.1:8765 \\
        --set connection_strategy=lazy
"""

import sys
from pathlib import Path

# this folder would shadow the package of the same name: the project root comes instead
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.append(str(_here.parent))

from codex_api_proxy.proxy.script import addons  # noqa: E402, F401
