"""The same addon under `mitmdump -s addons/codex_api_proxy.py` keeps every guarantee of `start`.

The tests below are the ones `start` runs, collected again here with a `proxy` fixture that runs the
addon script under mitmdump: translation and streams of every family, the client leaving in every
phase, pings, pooling, JSON errors, the boundary and its limits.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend

from . import conftest
from .conftest import ROOT, Proxy, free_port, start_proxy, write_auth
from .test_boundary import (  # noqa: F401
    test_a_cross_site_form_post_is_refused_before_the_upstream,
    test_a_huge_body_is_refused_at_its_head,
    test_descriptor_limit_is_raised_to_the_hard_limit,
    test_dns_rebinding_host_is_refused,
    test_gzip_bomb_is_refused_by_its_decoded_size,
    test_header_flood_is_refused_and_other_clients_keep_their_latency,
    test_origin_is_refused_without_and_with_a_key,
)
from .test_core import (  # noqa: F401
    test_oversized_body_is_a_json_413,
    test_unknown_paths_get_json_404,
    test_unparsable_request_gets_json_not_html,
    test_unreachable_upstream_is_json_502,
    test_upstream_connections_are_pooled_across_clients,
    test_upstream_timeout_is_504,
)
from .test_disconnect import (  # noqa: F401
    test_abandoned_streams_free_their_slots,
    test_client_leaving_closes_the_upstream_request,
)
from .test_messages import test_cut_stream_is_an_error_not_a_clean_stop, test_pings_while_upstream_is_silent  # noqa: F401
from .test_refresh_proxy import fb, test_unauthorized_refreshes_then_retries_once  # noqa: F401
from .test_stream_variants import test_same_answer_for_every_stream_shape  # noqa: F401


@pytest.fixture(scope="module", autouse=True)
def under_mitmdump() -> Iterator[None]:
    """Tests that start a proxy of their own start it under mitmdump here."""
    conftest.RUNNER["default"] = "mitmdump"
    yield
    conftest.RUNNER["default"] = "start"


@pytest.fixture(scope="module")
def proxy(backend: FakeBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    p = start_proxy(
        tmp_path_factory.mktemp("mitmdump"), backend, extra_args=["--heartbeat", "0.3"], runner="mitmdump"
    )
    yield p
    p.stop()


def test_a_key_file_set_with_set_is_enforced(tmp_path: Path, backend: FakeBackend) -> None:
    key = tmp_path / "key"
    key.write_text("k-from-set\n")
    key.chmod(0o600)
    p = start_proxy(tmp_path, backend, extra_args=["--api-key-file", str(key)])
    try:
        assert httpx.get(p.v1 + "/models", trust_env=False).status_code == 401
        assert (
            httpx.get(p.v1 + "/models", headers={"x-api-key": "k-from-set"}, trust_env=False).status_code
            == 200
        )
    finally:
        p.stop()


def test_mitmdump_refuses_a_public_bind_without_a_key(tmp_path: Path) -> None:
    write_auth(tmp_path)
    port = free_port()
    args = [
        str(Path(sys.executable).parent / "mitmdump"),
        "-q",
        "-s",
        str(ROOT / "addons/codex_api_proxy.py"),
        "--mode",
        f"reverse:http://127.0.0.1:9@0.0.0.0:{port}",
        "--set",
        f"confdir={tmp_path / 'mitm'}",
    ]
    r = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "CODEX_HOME": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert r.returncode != 0
    assert "without a local API key" in r.stdout + r.stderr
