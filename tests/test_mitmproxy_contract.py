"""What the proxy relies on inside mitmproxy, pinned: the day an update changes it, this fails first.

mitmproxy writes some answers itself, past every hook (an unparsable request, a body over
`body_size_limit`); the addon replaces the private `_http1.make_error_response` so those are JSON too.
The rest are documented behaviours the data path is built on.
"""

from __future__ import annotations

import inspect

from mitmproxy import options
from mitmproxy.addons import proxyserver
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.mode_specs import ProxyMode

from codex_api_proxy.proxy.addons import make_addons
from codex_api_proxy.proxy.mitm_patches import json_error_page


def test_the_error_page_hook_is_where_the_addon_replaces_it() -> None:
    original = inspect.signature(_http1.make_error_response)
    assert list(original.parameters) == ["status_code", "message"]
    assert list(inspect.signature(json_error_page).parameters) == ["status_code", "message"]
    # Http1Server looks the function up in its module at call time: replacing the module attribute works
    assert "make_error_response(" in inspect.getsource(_http1.Http1Server)
    make_addons()
    assert _http1.make_error_response is json_error_page


def test_the_head_reader_the_addon_bounds() -> None:
    """mitmproxy's own head reader has no size limit (its FIXME); the day it gets one, drop ours."""
    from codex_api_proxy.proxy import mitm_patches as addon

    original = inspect.getsource(addon._read_headers)
    assert (
        "self.buf.maybe_extract_lines()" in original and "FIXME: protect against header size DoS" in original
    )
    make_addons()
    assert _http1.Http1Server.read_headers is addon.bounded_read_headers


def test_the_body_reader_the_addon_makes_answer() -> None:
    """mitmproxy closes the client's connection on a body it cannot parse, then reports the protocol
    error: the addon answers 400 between the two, so both must still come in that order."""
    from codex_api_proxy.proxy import mitm_patches as addon

    original = inspect.getsource(addon._read_body)
    close = original.index(
        "except h11.ProtocolError as e:\n                yield commands.CloseConnection(self.conn)"
    )
    assert original.index("self.ReceiveProtocolError(", close) > close
    assert _http1.Http1Server.ReceiveProtocolError.__name__ == "RequestProtocolError"
    make_addons()
    assert _http1.Http1Server.read_body is addon.answered_read_body
    assert _http1.Http1Client.read_body is addon._read_body  # upstream errors stay mitmproxy's


def test_streamed_responses_and_requests_behave_as_the_data_path_assumes() -> None:
    source = inspect.getsource(http_layer.HttpStream)
    # a response marked `stream = True` is forwarded chunk by chunk, unchanged
    assert "if callable(self.flow.response.stream):" in source and "chunks = [event.data]" in source
    # a request given a stream callable is sent on at its head (the boundary answers refused ones early)
    assert "self.flow.request.stream and not event.end_stream" in source
    # reverse mode rewrites Host unless keep_host_header is set (the boundary needs the client's Host)
    assert "keep_host_header" in source


def test_options_the_addon_sets_exist() -> None:
    opts = options.Options()
    proxyserver.Proxyserver().load(opts)  # registers the server options mitmdump would have
    for name in ("keep_host_header", "body_size_limit", "connection_strategy", "store_streamed_bodies"):
        assert name in opts, name
    assert ProxyMode.parse("reverse:http://127.0.0.1:9@0.0.0.0:8765").listen_host("127.0.0.1") == "0.0.0.0"
    assert ProxyMode.parse("reverse:http://127.0.0.1:9@8765").listen_host("127.0.0.1") == "127.0.0.1"


def test_the_client_clocks_ride_on_wakeups_routed_back_to_the_http1_server() -> None:
    """The idle and head clocks (mitm_patches.timed_handle_event) ask mitmproxy for wakeups from inside
    Http1Server: the HTTP layer must route a wakeup back to the child that asked for it."""
    from codex_api_proxy.proxy import mitm_patches as addon

    routing = inspect.getsource(http_layer.HttpLayer.event_to_child)
    assert (
        "isinstance(command, commands.RequestWakeup)" in routing
        and "self.command_sources[command]" in routing
    )
    assert "yield from self.state(event)" in inspect.getsource(addon._handle_event)
    make_addons()
    assert _http1.Http1Server._handle_event is addon.timed_handle_event
