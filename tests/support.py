"""Constants and small helpers the tests share: settings, token minting, polling."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any, Final

import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

Client = TestClient[web.Request, web.Application]

ACCOUNT_ID: Final = "123456789012"
ROLE_ARN: Final = f"arn:aws:iam::{ACCOUNT_ID}:role/chime-messaging-user"
APP_INSTANCE_ARN: Final = (
    f"arn:aws:chime:us-east-1:{ACCOUNT_ID}:app-instance/"
    "11111111-2222-4333-8444-555555555555"
)
ISSUER: Final = "https://idp.example.test/"
AUDIENCE: Final = "chime-sign-in-tests"


class FakeClock:
    """Wall-clock time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        """Return the time the test set."""
        return self.now


def settings_for(**overrides: Any) -> Settings:
    """Settings for a test: HS256 unless the overrides say otherwise."""
    base = Settings(
        user_role_arn=ROLE_ARN,
        chime_app_instance_arn=APP_INSTANCE_ARN,
        aws_region="us-east-1",
        jwt_issuer=ISSUER,
        jwt_audience=(AUDIENCE,),
        jwt_algorithms=("HS256",),
        log_format="console",
    )
    return dataclasses.replace(base, **overrides)


def claims_for(subject: str, **overrides: Any) -> dict[str, Any]:
    """Claims of a valid token for `subject`; an override of None drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def hs256_token(secret: str, subject: str, **overrides: Any) -> str:
    """A token signed with the shared secret."""
    return jwt.encode(claims_for(subject, **overrides), secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    """The request headers that carry `token`."""
    return {"Authorization": f"Bearer {token}"}


async def eventually(
    check: Callable[[], Awaitable[bool]], *, attempts: int = 200, pause: float = 0.02
) -> None:
    """Wait until `check` passes, bounded by a number of attempts, not a duration."""
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(pause)
    raise AssertionError("the condition never held")


def service_environment(
    aws_endpoint: str, secret: str, port: int, **overrides: str
) -> dict[str, str]:
    """The environment of a real `python -m service` process in a test.

    HS256 on loopback, AWS at `aws_endpoint` with the stand-in's dummy keys, and
    nothing of this machine's own AWS configuration.
    """
    return {
        "PATH": os.environ.get("PATH", ""),
        "USER_ROLE_ARN": ROLE_ARN,
        "CHIME_APP_INSTANCE_ARN": APP_INSTANCE_ARN,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_SECRET": secret,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_FORMAT": "json",
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ACCESS_KEY_ID": "tests-standin",
        "AWS_SECRET_ACCESS_KEY": "tests-standin-not-a-secret",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        **overrides,
    }
