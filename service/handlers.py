"""The HTTP endpoints: sign-in, and the probes an orchestrator asks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from service import json_codec
from service.app_state import LIFECYCLE, METRICS, SHARED_CACHE, SIGN_IN, VERIFIER
from service.bearer import bearer_token
from service.errors import SignInError
from service.openapi import openapi_document
from service.problems import problem_response
from service.shared_cache import RedisCache

if TYPE_CHECKING:
    from service.signin import SignInResult

__all__ = ["healthz", "metrics", "openapi", "readyz", "sign_in"]

_OPENAPI_BODY: Final = json_codec.dumps(openapi_document())

# Credentials must never be stored by a browser or a proxy on the way.
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def sign_in(request: web.Request) -> web.Response:
    """Exchange the bearer token for Chime messaging credentials."""
    metrics = request.app[METRICS]
    try:
        token = bearer_token(request)
        result = await request.app[SIGN_IN].sign_in(token)
    except SignInError as error:
        metrics.observe_sign_in(error)
        raise

    metrics.observe_sign_in(None)
    structlog.contextvars.bind_contextvars(cache="hit" if result.cache_hit else "miss")
    return web.Response(
        body=_sign_in_body(result),
        content_type="application/json",
        headers=_NO_STORE,
    )


async def healthz(_request: web.Request) -> web.Response:
    """Answer while the process can answer at all; it checks no dependency."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Answer 200 only while the service can sign users in and is not shutting down."""
    lifecycle = request.app[LIFECYCLE]
    problems = []
    if lifecycle.shutting_down:
        problems.append("shutting down")
    if not lifecycle.aws_open:
        problems.append("AWS clients are not open")
    if not request.app[VERIFIER].ready:
        problems.append("identity provider keys are not loaded")

    if problems:
        return problem_response(503, "; ".join(problems))

    body = {"status": "ready"}
    shared = request.app[SHARED_CACHE]
    if isinstance(shared, RedisCache):
        # Redis down is not a reason to stop routing here: replicas fall back to
        # their own caches. The body says so, for a person reading it.
        body["redis"] = shared.circuit_state.value
    return web.json_response(body)


async def openapi(_request: web.Request) -> web.Response:
    """Serve the API's OpenAPI document."""
    return web.Response(body=_OPENAPI_BODY, content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    """Serve the metrics in Prometheus' text format."""
    return web.Response(
        body=request.app[METRICS].exposition(),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


def _sign_in_body(result: SignInResult) -> bytes:
    credentials = result.credentials
    return json_codec.dumps(
        {
            "ChimeAppInstanceUserArn": result.user.arn,
            "ChimeUserId": result.chime_user_id,
            "ChimeCredentials": {
                "AccessKeyId": credentials.access_key_id,
                "SecretAccessKey": credentials.secret_access_key,
                "SessionToken": credentials.session_token,
                "Expiration": credentials.expiration_iso,
            },
            "ChimeDisplayName": result.user.name,
        }
    )
