"""Fixtures: a real stand-in server, the real app over HTTP, and generated keys."""

from __future__ import annotations

import dataclasses
import re
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING

import pytest
import structlog
from aiohttp.test_utils import TestServer
from aiohttp.web import Application
from cryptography.hazmat.primitives.asymmetric import rsa

from service.app import create_app
from service.logs import configure_logging
from standin.app import create_standin_app
from standin.state import StandinState
from tests.redis_server import RedisServer, running_redis
from tests.support import APP_INSTANCE_ARN, Client, settings_for

if TYPE_CHECKING:
    from pathlib import Path

    from service.settings import Settings

AiohttpServer = Callable[[Application], Awaitable[TestServer]]
AiohttpClient = Callable[[Application], Awaitable[Client]]

# A JWS (header and payload), or a run of base64 as long as a session token.
_SECRET_SHAPES = re.compile(
    r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.|[A-Za-z0-9+/]{80,}"
)

_AWS_VARIABLES_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_CHIME_SDK_IDENTITY",
)


@dataclasses.dataclass(frozen=True)
class Standin:
    """A running stand-in and what it records."""

    state: StandinState
    url: str


@pytest.fixture(autouse=True)
def _isolated_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's AWS configuration and metadata address out of every test."""
    for name in _AWS_VARIABLES_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "tests-standin")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "tests-standin-not-a-secret")


@pytest.fixture(autouse=True)
def _production_logging() -> Iterator[None]:
    """Log through the service's own pipeline, redaction included, in every test."""
    structlog.contextvars.clear_contextvars()
    configure_logging("debug", "console", stream=sys.stdout, cache_loggers=False)
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Fail any test whose captured output holds a token or session credentials.

    Together over the whole suite, this shows no secret reaches a log line. Only
    stdout and stderr are read, where the service's pipeline writes; pytest's own
    "Captured log" sections hold raw records that never pass a formatter.
    """
    del item, call
    report: pytest.TestReport = yield
    if report.passed:
        for title, content in report.sections:
            if "Captured log" in title:
                continue
            leaked = _SECRET_SHAPES.search(content)
            if leaked is not None:
                report.outcome = "failed"
                report.longrepr = (
                    f"{title} holds what looks like a secret: {leaked[0][:16]}..."
                )
    return report


@pytest.fixture(scope="session")
def hs256_secret() -> str:
    """A shared secret made for this test run."""
    return secrets.token_urlsafe(48)


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA signing key made for this test run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def standin(
    aiohttp_server: AiohttpServer, monkeypatch: pytest.MonkeyPatch
) -> Standin:
    """The AWS stand-in on a loopback port, reached through AWS_ENDPOINT_URL."""
    state = StandinState(app_instance_arns=frozenset({APP_INSTANCE_ARN}))
    server = await aiohttp_server(create_standin_app(state))
    url = str(server.make_url("")).rstrip("/")
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    return Standin(state=state, url=url)


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A real Redis server on a loopback port, for this test alone."""
    directory = tmp_path / "redis"
    directory.mkdir()
    async with running_redis(directory) as server:
        yield server


@pytest.fixture
def settings(hs256_secret: str) -> Settings:
    """HS256 settings; tests that need others override this fixture."""
    return settings_for(jwt_secret=hs256_secret)


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, standin: Standin, settings: Settings
) -> Client:
    """The real app, started with `settings`, driven over HTTP."""
    del standin  # started first, so AWS_ENDPOINT_URL is set before the app starts
    return await aiohttp_client(create_app(settings))
