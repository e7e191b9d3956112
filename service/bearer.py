"""Reading the bearer token out of a request, as RFC 6750 says a server must.

The token is accepted from the `Authorization` header only: tokens in query strings
end up in proxy logs and browser history, so they are refused, not read.
"""

from __future__ import annotations

import re
from typing import Final

from aiohttp import hdrs, web

from service.errors import AuthenticationRequiredError, InvalidRequestError

__all__ = ["MAX_AUTHORIZATION_LENGTH", "bearer_token"]

MAX_AUTHORIZATION_LENGTH: Final = 8192
"""Longer headers are refused before any parsing; real JWTs are a few KiB at most."""

_SCHEME = re.compile(r"\S+")
# RFC 6750, 2.1: the scheme, one or more spaces, one token without white space.
_BEARER_CREDENTIALS = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+)")


def bearer_token(request: web.Request) -> str:
    """Return the request's bearer token, or raise what RFC 6750 prescribes."""
    if "access_token" in request.query:
        raise InvalidRequestError("send the token in the Authorization header")

    values = request.headers.getall(hdrs.AUTHORIZATION, [])
    if not values:
        raise AuthenticationRequiredError("sign-in needs a bearer token")
    if len(values) > 1:
        raise InvalidRequestError("send exactly one Authorization header")

    value = values[0].strip()
    if len(value) > MAX_AUTHORIZATION_LENGTH:
        raise InvalidRequestError("the Authorization header is too large")

    scheme = _SCHEME.match(value)
    if scheme is None or scheme[0].lower() != "bearer":
        raise AuthenticationRequiredError("sign-in needs a bearer token")

    credentials = _BEARER_CREDENTIALS.fullmatch(value)
    if credentials is None:
        raise InvalidRequestError("the Authorization header is malformed")
    return credentials[1]
