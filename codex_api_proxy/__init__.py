"""codex-api-proxy: use OpenAI and Anthropic API clients with your Codex CLI login."""

__version__ = "0.2.0"
