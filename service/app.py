"""The application factory: routes, middlewares, and one cleanup context per resource.

Resources enter in order (identity provider keys, Redis, then AWS) and leave in
reverse, also when a later one fails to start. Everything the handlers use is built
here from the settings passed in and kept under the typed keys of `service.app_state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import aiohttp
import aiohttp_cors
import structlog
from aiohttp import web

from service import handlers
from service.app_state import (
    CLOCK,
    CREDENTIALS,
    GATE,
    LIFECYCLE,
    METRICS,
    SETTINGS,
    SHARED_CACHE,
    SIGN_IN,
    USERS,
    VERIFIER,
    Lifecycle,
)
from service.aws import AwsGate, check_role_chaining, open_aws_clients
from service.chime import AppInstanceUsers
from service.credentials import CredentialsCache
from service.jwks import JwksKeySource
from service.keys import KeySource, static_key_source
from service.logs import access_log_middleware
from service.metrics import CacheCollector, Metrics, metrics_middleware
from service.problems import problem_middleware
from service.settings import Settings, is_loopback_url
from service.shared_cache import LOCAL_ONLY, SharedCacheCollector, open_redis_cache
from service.signin import SignIn
from service.tokens import TokenVerifier

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from aiohttp.typedefs import Handler

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
    metrics = Metrics()
    app = web.Application(
        middlewares=[
            access_log_middleware,
            _close_connections_while_draining,
            metrics_middleware(metrics),
            problem_middleware,
        ],
        client_max_size=_MAX_BODY_BYTES,
        handler_args={"max_field_size": _MAX_HEADER_BYTES},
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[LIFECYCLE] = Lifecycle()
    app[METRICS] = metrics

    app.cleanup_ctx.append(_identity_provider_keys)
    app.cleanup_ctx.append(_shared_cache)
    app.cleanup_ctx.append(_aws)

    sign_in = app.router.add_post("/v1/sign-in", handlers.sign_in)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/openapi.json", handlers.openapi)

    _allow_browser_origins(app, sign_in, settings.cors_allowed_origins)
    return app


@web.middleware
async def _close_connections_while_draining(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """While draining, ask keep-alive clients to reconnect, to another replica.

    Kubernetes stops routing new connections to a pod that is not ready, but a
    client's open keep-alive connection would stay on it until it dies.
    """
    response = await handler(request)
    if request.app[LIFECYCLE].shutting_down:
        response.force_close()
    return response


def _allow_browser_origins(
    app: web.Application, sign_in: web.AbstractRoute, origins: tuple[str, ...]
) -> None:
    """Let browser clients on `origins` call sign-in, preflight included.

    The token travels in the Authorization header, not in a cookie, so browsers are
    not asked to send credentials, and no wildcard origin is ever allowed.
    """
    if not origins:
        return

    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]  # aiohttp-cors has no annotations on this class
        allow_credentials=False,
        allow_headers=("Authorization", "Content-Type", "X-Request-ID"),
        # Browser code must see why it was refused and when to retry.
        expose_headers=("X-Request-ID", "Retry-After", "WWW-Authenticate"),
        allow_methods=("POST",),
        max_age=600,
    )
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(origins, options))
    cors.add(sign_in)


async def _identity_provider_keys(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    _warn_about_plain_http(settings)

    if settings.jwt_jwks_url is None:
        app[VERIFIER] = TokenVerifier(
            settings, static_key_source(settings), clock=app[CLOCK]
        )
        yield
        return

    async with aiohttp.ClientSession() as session:
        jwks = JwksKeySource(
            settings, session, on_fetch=app[METRICS].observe_jwks_refresh
        )
        source: KeySource = jwks
        app[VERIFIER] = TokenVerifier(settings, source, clock=app[CLOCK])
        # Start serving at once: readiness says when the keys have arrived.
        refreshing = asyncio.create_task(jwks.keep_fresh(), name="jwks-refresh")

        yield

        refreshing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refreshing
        await jwks.aclose()


async def _shared_cache(app: web.Application) -> AsyncIterator[None]:
    """Share cache entries with the other replicas through Redis, if configured."""
    settings = app[SETTINGS]
    if settings.redis_url is None:
        app[SHARED_CACHE] = LOCAL_ONLY
        yield
        return

    if settings.redis_url.startswith("redis://") and not is_loopback_url(
        settings.redis_url
    ):
        # Entries are sealed either way; Redis' password and commands are not.
        logger.warning("plain redis:// to a remote host", setting="REDIS_URL")

    async with open_redis_cache(settings) as cache:
        app[SHARED_CACHE] = cache
        unregister = app[METRICS].read_at_scrape(SharedCacheCollector(cache))

        yield

        unregister()


async def _aws(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    gate = AwsGate(
        max_concurrency=settings.aws_max_concurrency,
        queue_timeout_seconds=settings.aws_queue_timeout_seconds,
        observer=metrics.observe_aws_call,
    )

    async with open_aws_clients(settings) as clients:
        await check_role_chaining(clients.sts, settings)
        credentials = CredentialsCache(
            clients.sts,
            gate,
            settings,
            clock=app[CLOCK],
            shared=app[SHARED_CACHE],
        )
        users = AppInstanceUsers(
            clients.chime,
            gate,
            app_instance_arn=settings.chime_app_instance_arn,
            max_users=settings.cache_max_users,
            shared=app[SHARED_CACHE],
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
        unregister = metrics.read_at_scrape(
            CacheCollector(
                credentials_stats=credentials.stats_and_size,
                users_cached=users.__len__,
                aws_in_flight=lambda: gate.in_flight,
            )
        )

        yield

        unregister()
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
