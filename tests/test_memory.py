"""Memory through the real proxy: past the warm-up that fills every bounded structure (the Responses
store, at a small cap here; cache health's conversations; the upstream pool) more requests of the
soak mix do not make the process grow. The issue's 20,000-request run (RSS at 5,000 vs 20,000) is
the same loop, longer: SOAK_REQUESTS-like figures belong in scripts, not in CI."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from codex_api_proxy.testing.fake_backend import FakeBackend, Turn

from .conftest import start_proxy
from .test_soak import one, rss_kb, scripted

STORE_CAP = 600
WARM, MEASURED = 1_500, 3_000


@pytest.mark.slow
def test_memory_levels_off_once_bounded_structures_are_full(tmp_path: Path, backend: FakeBackend) -> None:
    backend.clear()
    backend.default_turn = scripted
    p = start_proxy(tmp_path, backend, log_level="warning",
                    env={"CODEX_API_PROXY_STORE_MAX_ITEMS": str(STORE_CAP)})  # fmt: skip
    clients = [httpx.Client(trust_env=False, timeout=60) for _ in range(32)]
    try:

        def run(numbers: range) -> None:
            with ThreadPoolExecutor(32) as pool:
                problems = [x for x in pool.map(lambda n: one(p, clients[n % 32], n), numbers) if x]
            assert problems == [], problems[:5]

        run(range(WARM))
        before = rss_kb(p.process.pid)
        run(range(WARM, WARM + MEASURED))
        grown = rss_kb(p.process.pid) - before
        assert grown < 2_500, f"RSS grew {grown} KB over {MEASURED} requests"  # was ~1.8 MB per 1,000
        store = httpx.get(p.url + "/health", trust_env=False).json()["store"]
        assert store["entries"] == STORE_CAP and 0 < store["bytes"] <= store["max_bytes"]
    finally:
        for c in clients:
            c.close()
        backend.default_turn = lambda rec: Turn()
        backend.clear()
        p.stop()
