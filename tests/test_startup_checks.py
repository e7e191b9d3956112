"""Startup checks that need AWS: role chaining and the credentials duration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from aiobotocore.session import get_session
from aiohttp import web

from service.app import create_app
from service.settings import SettingsError
from tests.support import ROLE_ARN, settings_for

if TYPE_CHECKING:
    from tests.conftest import AiohttpClient, Standin


async def _run_on_assumed_role_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the process's own AWS credentials to a role session, as IRSA gives."""
    async with get_session().create_client("sts", region_name="us-east-1") as sts:
        session = await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="service")
    credentials = session["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials["SessionToken"])


async def test_startup_refuses_long_sessions_on_assumed_role_credentials(
    standin: Standin, hs256_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two-hour sessions cannot be chained from a role session: startup says so."""
    del standin
    await _run_on_assumed_role_credentials(monkeypatch)
    settings = settings_for(jwt_secret=hs256_secret, credentials_duration_seconds=7200)
    runner = web.AppRunner(create_app(settings))

    with pytest.raises(SettingsError) as raised:
        await runner.setup()
    await runner.cleanup()

    assert "caps role chaining" in str(raised.value)


async def test_startup_allows_long_sessions_on_user_credentials(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """With an IAM user's keys, sessions up to STS's maximum are allowed."""
    settings = settings_for(jwt_secret=hs256_secret, credentials_duration_seconds=7200)

    client = await aiohttp_client(create_app(settings))

    assert (await client.get("/readyz")).status == 200
    assert standin.state.call_count("GetCallerIdentity") == 1


async def test_startup_skips_the_check_for_an_hour_or_less(
    aiohttp_client: AiohttpClient,
    standin: Standin,
    hs256_secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An hour is always allowed, so startup asks AWS nothing."""
    await _run_on_assumed_role_credentials(monkeypatch)
    settings = settings_for(jwt_secret=hs256_secret, credentials_duration_seconds=3600)

    client = await aiohttp_client(create_app(settings))

    assert (await client.get("/readyz")).status == 200
    assert standin.state.call_count("GetCallerIdentity") == 0
