"""OpenAI Chat Completions <-> the Codex backend's Responses API.

Requests: every message becomes a Responses input item at its own position (system and developer
messages become `developer` messages, so no `instructions` is sent); assistant tool calls and tool
results become `function_call` / `function_call_output` items paired by call id (a tool result's text
parts are joined by newlines; one with images keeps the Responses list form of `output`). Legacy
`function_call` turns get a call id derived from their message position, stable across turns.

Request fields the backend cannot take are never forwarded; each one is:
- mapped: tools, tool_choice, parallel_tool_calls, functions, function_call, response_format,
  reasoning_effort, verbosity, service_tier, prompt_cache_key;
- honoured by the proxy: `stop` (the answer is cut at the first stop string, finish_reason "stop"),
  `stream_options.include_usage` (a usage chunk before `[DONE]`);
- refused with a 400, because the answer would silently differ from what was asked: `n` > 1,
  `logprobs: true`, audio output (`audio`, `modalities` with "audio"), `input_audio` content parts;
- accepted and dropped (logged at debug): max_tokens / max_completion_tokens (the backend refuses
  max_output_tokens; the answer is not cut), temperature, top_p, seed, frequency_penalty,
  presence_penalty, logit_bias, top_logprobs (sampling hints the backend refuses), user,
  safety_identifier, metadata and store (store must be false upstream and metadata needs it),
  stream_options other than include_usage, prediction, and anything unknown; tool_choice and
  parallel_tool_calls without tools (they would only make the backend refuse the request).

One module per direction, as for anthropic/: request (to_upstream), response (from_response and the
pieces the stream shares), stream (the SSE translator).

`to_upstream` fills `ctx.model` (when empty) and `ctx.stream` from the body. It reads
`ctx.options.expose_reasoning` (set by the caller: reasoning summaries as `reasoning_content`) and
writes `ctx.state.stop`, `include_usage`, `legacy_functions` and `tool_names` for the `Stream` /
`from_response` of the same request. A request that used the legacy `functions` field gets the
legacy `function_call` answer shape.
"""

from .request import to_upstream
from .response import from_response
from .stream import Stream

__all__ = ["Stream", "from_response", "to_upstream"]
