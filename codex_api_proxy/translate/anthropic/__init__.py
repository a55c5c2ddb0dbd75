"""Anthropic Messages API <-> Codex Responses API: the names the gateway and the tests use.

One module per direction: request (request, tools and schemas), stream (the SSE translator), response
(whole responses, token counts and the probe), signature (thinking signatures), web_search (the hosted
search as server tool blocks). The model map is core/models.py's.
"""

from .request import (
    GPT_EFFORTS,
    clean_schema,
    mark_error,
    to_upstream,
    upstream_tool_name,
)
from .response import count_tokens, from_response, is_probe, probe_response
from .signature import decode_signature, encode_signature
from .stream import Stream

__all__ = [
    "GPT_EFFORTS",
    "Stream",
    "clean_schema",
    "count_tokens",
    "decode_signature",
    "encode_signature",
    "from_response",
    "is_probe",
    "mark_error",
    "probe_response",
    "to_upstream",
    "upstream_tool_name",
]
