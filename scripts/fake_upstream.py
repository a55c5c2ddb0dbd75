"""Run the fake Codex backend in the foreground, for manual tries and external tools.

    python scripts/fake_upstream.py --port 8765 --token access-1 [--account-id acct-1] [--refresh-token r1]

Without --token any bearer token is accepted. Every answer is the default text turn. Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a checkout without install

from codex_api_proxy.testing.fake_backend import FakeBackend


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--token", action="append", help="accepted access token (repeatable)")
    parser.add_argument("--refresh-token", action="append", help="valid refresh token (repeatable)")
    parser.add_argument("--account-id", help="required chatgpt-account-id header")
    args = parser.parse_args(argv)
    fb = FakeBackend(args.token, args.account_id, args.refresh_token, port=args.port).start()
    print(fb.url, flush=True)
    print(f"token endpoint: {fb.token_url}", file=sys.stderr, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fb.stop()


if __name__ == "__main__":
    main()
