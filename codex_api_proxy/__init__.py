"""codex-api-proxy: use OpenAI and Anthropic API clients with your Codex CLI login."""

from pathlib import Path

__version__ = "0.2.0"


def mitm_addon_path() -> Path:
    """The mitmproxy script shipped in this package (`mitmweb -s` it); importing it would load it."""
    return Path(__file__).resolve().parent / "proxy" / "script.py"
