"""The credentials cache: refresh margin, refresh ahead and stale-if-error.

Time is a controlled clock handed to the app, so nothing here sleeps.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from service.app import create_app
from service.app_state import CREDENTIALS
from standin.faults import FaultSpec
from tests.support import Client, FakeClock, bearer, hs256_token, settings_for

if TYPE_CHECKING:
    from tests.conftest import AiohttpClient, Standin

DURATION = 3600
MARGIN = 300
STALE_MIN = 120


@pytest.fixture
def clock() -> FakeClock:
    """The service's clock."""
    return FakeClock()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, standin: Standin, clock: FakeClock, hs256_secret: str
) -> Client:
    """The app on the controlled clock."""
    del standin
    settings = settings_for(
        jwt_secret=hs256_secret,
        credentials_duration_seconds=DURATION,
        credentials_refresh_margin_seconds=MARGIN,
        credentials_stale_min_seconds=STALE_MIN,
        aws_max_attempts=1,
    )
    return await aiohttp_client(create_app(settings, clock=clock))


async def _sign_in(client: Client, secret: str) -> tuple[int, dict[str, str]]:
    response = await client.post("/v1/sign-in", headers=bearer(_token(secret)))
    body = await response.json()
    return response.status, body.get("ChimeCredentials", body)


def _token(secret: str) -> str:
    # Valid for a day: the service's clock moves up to an hour ahead here.
    return hs256_token(secret, "ivan", exp=int(time.time()) + 86_400)


async def _expiry(client: Client) -> float:
    assert client.app is not None
    cache = client.app[CREDENTIALS]
    cached = cache.fresh("ivan") or await cache.for_user("ivan")
    return cached.expiration


async def test_credentials_are_reused_until_the_margin(
    client: Client, standin: Standin, clock: FakeClock, hs256_secret: str
) -> None:
    """Just before the margin the same credentials come back, without STS."""
    _, first = await _sign_in(client, hs256_secret)
    clock.now = await _expiry(client) - MARGIN - 1

    status, again = await _sign_in(client, hs256_secret)

    assert status == 200
    assert again["AccessKeyId"] == first["AccessKeyId"]
    assert standin.state.call_count("AssumeRole") == 1


async def test_credentials_inside_the_margin_are_refreshed(
    client: Client, standin: Standin, clock: FakeClock, hs256_secret: str
) -> None:
    """Inside the margin the next sign-in gets new credentials from STS."""
    _, first = await _sign_in(client, hs256_secret)
    clock.now = await _expiry(client) - MARGIN + 1

    status, again = await _sign_in(client, hs256_secret)

    assert status == 200
    assert again["AccessKeyId"] != first["AccessKeyId"]
    assert standin.state.call_count("AssumeRole") == 2


async def test_credentials_are_served_stale_while_sts_throttles(
    client: Client, standin: Standin, clock: FakeClock, hs256_secret: str
) -> None:
    """A failed refresh serves the cached credentials while they have time left."""
    _, first = await _sign_in(client, hs256_secret)
    clock.now = await _expiry(client) - STALE_MIN - 1
    standin.state.faults.set("AssumeRole", FaultSpec(throttle=1.0))

    status, again = await _sign_in(client, hs256_secret)

    assert status == 200
    assert again["AccessKeyId"] == first["AccessKeyId"]
    assert client.app is not None
    assert client.app[CREDENTIALS].stats.stale_served == 1


async def test_credentials_too_close_to_expiry_are_not_served_stale(
    client: Client, standin: Standin, clock: FakeClock, hs256_secret: str
) -> None:
    """Past the stale minimum, a failed refresh is a 503 with Retry-After."""
    await _sign_in(client, hs256_secret)
    clock.now = await _expiry(client) - STALE_MIN + 1
    standin.state.faults.set("AssumeRole", FaultSpec(throttle=1.0))

    response = await client.post("/v1/sign-in", headers=bearer(_token(hs256_secret)))

    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert "Throttling" not in await response.text()


async def test_credentials_recover_when_sts_does(
    client: Client, standin: Standin, clock: FakeClock, hs256_secret: str
) -> None:
    """Once STS answers again, the next sign-in refreshes as usual."""
    await _sign_in(client, hs256_secret)
    clock.now = await _expiry(client) - STALE_MIN + 1
    standin.state.faults.set("AssumeRole", FaultSpec(throttle=1.0))
    failed, _ = await _sign_in(client, hs256_secret)
    standin.state.faults.clear()

    status, _ = await _sign_in(client, hs256_secret)

    assert (failed, status) == (503, 200)
