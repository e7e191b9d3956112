"""Logging: the access line, request ids, and redaction of every secret."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from service.logs import REDACTED, configure_logging
from tests.support import Client, bearer, hs256_token

_TOKEN = hs256_token("k" * 40, "leaky")
_SESSION_TOKEN = "IQoJb3JpZ2luX2VjE" + "Ab+/" * 40


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


@pytest.fixture
def stream() -> io.StringIO:
    """The JSON log output, as production writes it."""
    output = io.StringIO()
    configure_logging("debug", "json", stream=output, cache_loggers=False)
    return output


def test_redact_blanks_secrets_by_name(stream: io.StringIO) -> None:
    """Values under sensitive names are blanked, however they are nested."""
    structlog.get_logger("t").info(
        "event",
        SessionToken=_SESSION_TOKEN,
        authorization=f"Bearer {_TOKEN}",
        nested={"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
    )

    (line,) = _json_lines(stream)

    assert line["SessionToken"] == REDACTED
    assert line["authorization"] == REDACTED
    assert line["nested"] == {"SecretAccessKey": REDACTED}


def test_redact_blanks_tokens_by_shape(stream: io.StringIO) -> None:
    """A JWT or a session token inside any text is blanked, the rest kept."""
    structlog.get_logger("t").warning(f"odd header Bearer {_TOKEN} seen", user="x")
    logging.getLogger("aiohttp.access").warning("GET /?t=%s", _SESSION_TOKEN)

    output = stream.getvalue()

    assert _TOKEN.split(".")[1] not in output
    assert _SESSION_TOKEN[20:60] not in output
    assert output.count(REDACTED) == 2
    assert "odd header Bearer" in output


def test_redact_blanks_tokens_in_tracebacks(stream: io.StringIO) -> None:
    """An exception whose message holds a token is logged without it."""
    try:
        raise ValueError(f"cannot parse {_TOKEN}")  # noqa: TRY301 -- the point
    except ValueError:
        structlog.get_logger("t").exception("failed")

    output = stream.getvalue()

    assert "ValueError: cannot parse [redacted]" in output
    assert _TOKEN.split(".")[1] not in output


async def test_access_log_has_one_line_per_request(
    client: Client, hs256_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sign-in is logged once, with request id, user, cache and status."""
    configure_logging("info", "json", cache_loggers=False)
    capsys.readouterr()

    response = await client.post(
        "/v1/sign-in",
        headers={"X-Request-ID": "req-123", **bearer(hs256_token(hs256_secret, "lee"))},
    )

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    access = [line for line in lines if line["event"] == "request"]
    assert response.headers["X-Request-ID"] == "req-123"
    assert len(access) == 1
    assert access[0]["request_id"] == "req-123"
    assert access[0]["user_id"] == "lee"
    assert access[0]["cache"] == "miss"
    assert access[0]["status"] == 200
    assert access[0]["path"] == "/v1/sign-in"


@pytest.mark.parametrize("given", ["", "x" * 129, "a b", "ünï", "\u2028"])
async def test_access_log_replaces_a_malformed_request_id(
    client: Client, given: str
) -> None:
    """A request id that is empty, too long or odd is replaced by a fresh one."""
    response = await client.get("/healthz", headers={"X-Request-ID": given})

    echoed = response.headers["X-Request-ID"]
    assert echoed != given
    assert len(echoed) == 32
