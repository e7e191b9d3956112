"""Where the service's errors become HTTP answers: problem+json (RFC 9457).

This is the only place that knows which status code each domain error earns. Bearer
token failures also carry the `WWW-Authenticate` challenge of RFC 6750, and answers
a client should retry carry `Retry-After`. Anything unexpected is logged with its
traceback and answered with a bare 500 that says nothing about the cause.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web

from service.errors import (
    AuthenticationRequiredError,
    AwsConfigurationError,
    AwsUnavailableError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    KeysUnavailableError,
    SignInError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiohttp.typedefs import Handler

__all__ = ["PROBLEM_CONTENT_TYPE", "problem_middleware", "problem_response"]

logger = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
REALM: Final = "chime-sign-in"

# Domain error -> (HTTP status, RFC 6750 error code or None).
_ANSWERS: Final[Mapping[type[SignInError], tuple[int, str | None]]] = {
    AuthenticationRequiredError: (401, None),
    InvalidRequestError: (400, "invalid_request"),
    InvalidTokenError: (401, "invalid_token"),
    InsufficientScopeError: (403, "insufficient_scope"),
    KeysUnavailableError: (503, None),
    AwsUnavailableError: (503, None),
    AwsConfigurationError: (502, None),
}
_BEARER_ERRORS: Final = (
    AuthenticationRequiredError,
    InvalidRequestError,
    InvalidTokenError,
    InsufficientScopeError,
)


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Build a problem+json answer."""
    body: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if code is not None:
        body["code"] = code

    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Answer every failure of `handler` as problem+json."""
    try:
        return await handler(request)
    except SignInError as error:
        return _answer_sign_in_error(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _answer_http_exception(error)
    except Exception:
        logger.exception("unhandled error")
        return problem_response(500)


def _answer_sign_in_error(error: SignInError) -> web.Response:
    status, code = _ANSWERS[type(error)]
    headers: dict[str, str] = {}

    if isinstance(error, _BEARER_ERRORS):
        challenge = f'Bearer realm="{REALM}"'
        if code is not None:
            challenge += f', error="{code}", error_description="{error.detail}"'
        headers["WWW-Authenticate"] = challenge
    if isinstance(error, AwsUnavailableError):
        headers["Retry-After"] = str(error.retry_after_seconds)
    elif isinstance(error, KeysUnavailableError):
        headers["Retry-After"] = "1"

    return problem_response(status, error.detail, code=code, headers=headers)


def _answer_http_exception(error: web.HTTPException) -> web.Response:
    # Keep what the framework set that a client relies on (Allow on a 405).
    kept = {k: v for k, v in error.headers.items() if k in {"Allow", "Retry-After"}}
    return problem_response(error.status, error.reason, headers=kept)
