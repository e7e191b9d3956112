"""Logging: structlog, one JSON line per event in production, and no secrets ever.

Every log line, the service's own and those of aiohttp and botocore, passes through
`redact`, which blanks values under sensitive names and anything shaped like a JWT or
a session token, wherever it appears. The access log is one line per request with
the request id, which is taken from `X-Request-ID` when it is well-formed and echoed
in the response either way.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import secrets
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final, TextIO

import structlog
from aiohttp import web

from service import json_codec

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

    from service.settings import LogFormat


__all__ = ["REDACTED", "access_log_middleware", "configure_logging", "redact"]

REDACTED: Final = "[redacted]"
REQUEST_ID_HEADER: Final = "X-Request-ID"

_SENSITIVE_KEY = re.compile(
    r"secret|token|authorization|password|credential|signature", re.IGNORECASE
)
# A JWS compact serialisation, whole or cut: base64url header starting "eyJ".
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){0,2}")
# STS session tokens and other long base64 runs that no log needs.
_LONG_BASE64_LENGTH: Final = 80
_LONG_BASE64 = re.compile(rf"[A-Za-z0-9+/]{{{_LONG_BASE64_LENGTH},}}={{0,2}}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_REQUEST_ID_PREFIX: Final = secrets.token_hex(8)
_request_counter = itertools.count()

# Libraries whose debug output carries request and response bodies.
_QUIET_LIBRARIES: Final = ("botocore", "aiobotocore", "urllib3")

access_logger = structlog.get_logger("service.access")


def redact(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Blank every secret in a log event, by key name and by shape."""
    return {key: _redacted(key, value) for key, value in event.items()}


@functools.lru_cache(maxsize=1024)
def _is_sensitive(key: str) -> bool:
    # Keys come from code, so a few hundred at most: each is judged once.
    return key != "event" and _SENSITIVE_KEY.search(key) is not None


def _redacted(key: str, value: object) -> object:
    if _is_sensitive(key):
        return REDACTED
    if isinstance(value, str):
        # The cheap tests first: most values are short and hold no "eyJ".
        if "eyJ" in value:
            value = _JWT.sub(REDACTED, value)
        if len(value) >= _LONG_BASE64_LENGTH:
            value = _LONG_BASE64.sub(REDACTED, value)
        return value
    if isinstance(value, Mapping):
        return {str(k): _redacted(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted("", item) for item in value]
    return value


def configure_logging(
    level: str,
    log_format: LogFormat,
    *,
    stream: TextIO | None = None,
    cache_loggers: bool = True,
) -> None:
    """Send structlog's and the standard library's records to `stream` as one format.

    Handlers others put on the root logger (a test runner's) are left in place.
    `cache_loggers` is turned off by tests, which configure logging once per test.
    """
    renderer: structlog.types.Processor = (
        _render_json
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    numeric_level = logging.getLevelNamesMapping()[level.upper()]

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=cache_loggers,
    )

    handler = _ServiceHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for previous in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric_level, logging.INFO))


def _render_json(_logger: object, _method: str, event: MutableMapping[str, Any]) -> str:
    """Render one log line with the fast encoder."""
    return json_codec.dumps(event).decode()


class _ServiceHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs, told apart from anyone else's."""


@web.middleware
async def access_log_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Bind a request id for the request's logs, and log one line when it ends."""
    request_id = _request_id(request.headers.get(REQUEST_ID_HEADER))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()

    response = await handler(request)

    response.headers[REQUEST_ID_HEADER] = request_id
    access_logger.info(
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return response


def _request_id(given: str | None) -> str:
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    # A random prefix per process and a counter: unique, and no system call per
    # request as uuid4 makes.
    return f"{_REQUEST_ID_PREFIX}{next(_request_counter):016x}"
