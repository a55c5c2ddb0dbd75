"""The suite does not depend on the calendar: its login fixture, written on any day, is a fresh login on
that day. (It once held a fixed `last_refresh` date; eight days after it the proxy refreshed that opaque
token, the session-wide fake rotated it, and every later test got 401, on every machine from then on.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from codex_api_proxy.auth.credentials import Credentials
from codex_api_proxy.testing.fake_backend import FakeBackend

from .conftest import ACCESS_TOKEN, ACCOUNT_ID, REFRESH_TOKEN, write_auth

DAY = 24 * 3600.0


@pytest.mark.parametrize("days_later", [0, 8, 30, 400])
async def test_login_fixture_is_fresh_on_any_day(tmp_path: Path, days_later: int) -> None:
    """The fixture and the proxy's credentials, both on a clock `days_later` days ahead of today, use the
    login as written: no refresh call, the fixture's access token sent as is."""

    def clock() -> float:
        return time.time() + days_later * DAY

    path = write_auth(tmp_path, clock=clock)
    with FakeBackend(
        access_tokens={ACCESS_TOKEN}, account_id=ACCOUNT_ID, refresh_tokens={REFRESH_TOKEN}
    ) as fb:
        creds = Credentials(path, token_url=fb.token_url, clock=clock)
        auth = await creds.get()
        assert fb.token_grants == []
    assert auth.token == ACCESS_TOKEN
    assert creds.refresh_outcomes["ok"] == 0


async def test_a_fixed_date_would_age_into_a_refresh(tmp_path: Path) -> None:
    """The check above can fail: a login written 30 days before the clock is refreshed."""
    path = write_auth(tmp_path, clock=lambda: time.time() - 30 * DAY)
    with FakeBackend(
        access_tokens={ACCESS_TOKEN}, account_id=ACCOUNT_ID, refresh_tokens={REFRESH_TOKEN}
    ) as fb:
        await Credentials(path, token_url=fb.token_url).get()
        assert len(fb.token_grants) == 1
