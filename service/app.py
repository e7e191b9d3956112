"""The application factory: routes, middlewares, and one cleanup context per resource.

Resources enter in order (identity provider keys, then AWS) and leave in reverse,
also when a later one fails to start. Everything the handlers use is built here from
the settings passed in and kept under the typed keys of `service.app_state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import aiohttp
import structlog
from aiohttp import web

from service import handlers
from service.app_state import (
    CLOCK,
    CREDENTIALS,
    GATE,
    LIFECYCLE,
    SETTINGS,
    SIGN_IN,
    USERS,
    VERIFIER,
    Lifecycle,
)
from service.aws import AwsGate, open_aws_clients
from service.chime import AppInstanceUsers
from service.credentials import CredentialsCache
from service.jwks import JwksKeySource
from service.keys import KeySource, static_key_source
from service.logs import access_log_middleware
from service.problems import problem_middleware
from service.settings import Settings, is_loopback_url
from service.signin import SignIn
from service.tokens import TokenVerifier

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["create_app"]

logger = structlog.get_logger(__name__)

# A sign-in carries its token in a header; a body is never needed.
_MAX_BODY_BYTES = 16 * 1024
# Past aiohttp's default, so an oversized Authorization header gets our answer.
_MAX_HEADER_BYTES = 16 * 1024


def create_app(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> web.Application:
    """Build the service for `settings`; `clock` is wall-clock time, for tests."""
    app = web.Application(
        middlewares=[access_log_middleware, problem_middleware],
        client_max_size=_MAX_BODY_BYTES,
        handler_args={"max_field_size": _MAX_HEADER_BYTES},
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[LIFECYCLE] = Lifecycle()

    app.cleanup_ctx.append(_identity_provider_keys)
    app.cleanup_ctx.append(_aws)

    app.router.add_post("/v1/sign-in", handlers.sign_in)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    return app


async def _identity_provider_keys(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    _warn_about_plain_http(settings)

    if settings.jwt_jwks_url is None:
        app[VERIFIER] = TokenVerifier(settings, static_key_source(settings))
        yield
        return

    async with aiohttp.ClientSession() as session:
        jwks = JwksKeySource(
            settings.jwt_jwks_url,
            session,
            algorithms=frozenset(settings.jwt_algorithms),
            refetch_cooldown_seconds=settings.jwt_jwks_refetch_cooldown_seconds,
        )
        source: KeySource = jwks
        app[VERIFIER] = TokenVerifier(settings, source)
        # Start serving at once: readiness says when the keys have arrived.
        refreshing = asyncio.create_task(jwks.keep_fresh(), name="jwks-refresh")

        yield

        refreshing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refreshing


async def _aws(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    gate = AwsGate(
        max_concurrency=settings.aws_max_concurrency,
        queue_timeout_seconds=settings.aws_queue_timeout_seconds,
    )

    async with open_aws_clients(settings) as clients:
        credentials = CredentialsCache(clients.sts, gate, settings, clock=app[CLOCK])
        users = AppInstanceUsers(
            clients.chime,
            gate,
            app_instance_arn=settings.chime_app_instance_arn,
            max_users=settings.cache_max_users,
        )
        app[GATE] = gate
        app[CREDENTIALS] = credentials
        app[USERS] = users
        app[SIGN_IN] = SignIn(
            app[VERIFIER],
            credentials,
            users,
            deadline_seconds=settings.sign_in_deadline_seconds,
        )
        app[LIFECYCLE].aws_open = True

        yield

        app[LIFECYCLE].aws_open = False
        await credentials.aclose()
        await users.aclose()


def _warn_about_plain_http(settings: Settings) -> None:
    for name, url in (
        ("JWT_ISSUER", settings.jwt_issuer),
        ("JWT_JWKS_URL", settings.jwt_jwks_url),
    ):
        if url and url.startswith("http://") and not is_loopback_url(url):
            logger.warning("plain http to a remote host", setting=name, url=url)
