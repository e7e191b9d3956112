"""Fuzzing the front door: the Authorization header and JWT-shaped garbage.

Hypothesis runs in a worker thread and hands each request to the test's event
loop, where the real app serves it over loopback: whatever the header or token, the
answer is a 400 or a 401, never a 500. The number of examples is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import TYPE_CHECKING, Any, Final, TypeVar

import jwt
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import RSAAlgorithm

from service.app import create_app
from service.tokens import MAX_USER_ID_LENGTH
from tests.support import (
    Client,
    bearer,
    claims_for,
    eventually,
    hs256_token,
    settings_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping

    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.conftest import AiohttpClient, AiohttpServer, Standin

_T = TypeVar("_T")

_FUZZ: Final = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_REQUEST_TIMEOUT_SECONDS: Final = 30.0


def _on_loop(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run `coroutine` on the test's loop from Hypothesis's thread, and wait."""
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    return future.result(timeout=_REQUEST_TIMEOUT_SECONDS)


async def _fuzz(check: Callable[[], None]) -> None:
    """Run a Hypothesis test in a thread while this loop serves its requests."""
    await asyncio.to_thread(check)


# --- Raw requests, so any byte can go in a header --------------------------------


async def _raw_sign_in(client: Client, lines: list[bytes]) -> tuple[int, bytes]:
    """POST sign-in with header `lines` added verbatim; return status and head."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        request = (
            b"POST /v1/sign-in HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n"
            + b"".join(line + b"\r\n" for line in lines)
            + b"\r\n"
        )
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status = int(head.split(b" ", 2)[1])
    return status, head


_NOT_LINE_BREAKS: Final = st.binary(max_size=300).map(
    lambda raw: raw.replace(b"\r", b"").replace(b"\n", b"")
)
_PRINTABLE: Final = st.text(
    st.characters(min_codepoint=0x20, exclude_categories=("Cs", "Cc")),
    max_size=300,
)
_TOKEN_CHARACTERS: Final = st.text(
    st.sampled_from(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+/="
    ),
    min_size=1,
    max_size=40,
)
_SCHEMES: Final = st.sampled_from(
    ["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "Digest", "Bearer,", "", "Token"]
)
_SEPARATORS: Final = st.sampled_from([" ", "  ", "\t", " \t ", ""])

_HEADER_VALUES: Final = st.one_of(
    _PRINTABLE.map(lambda text: text.encode()),
    _NOT_LINE_BREAKS,
    st.builds(
        lambda scheme, separator, text: f"{scheme}{separator}{text}".encode(),
        _SCHEMES,
        _SEPARATORS,
        _PRINTABLE,
    ),
    st.builds(
        lambda scheme, raw: scheme.encode() + b" " + raw,
        _SCHEMES,
        _NOT_LINE_BREAKS,
    ),
    st.builds(
        lambda scheme, parts: f"{scheme} {' '.join(parts)}".encode(),
        _SCHEMES,
        st.lists(_TOKEN_CHARACTERS, min_size=2, max_size=400),
    ),
    st.builds(
        lambda scheme, size: f"{scheme} ".encode() + b"A" * size,
        _SCHEMES,
        st.integers(min_value=8000, max_value=20_000),
    ),
)


async def test_authorization_header_fuzz_is_400_or_401(client: Client) -> None:
    """Any bytes in one or several Authorization headers earn a 400 or a 401."""
    loop = asyncio.get_running_loop()

    @_FUZZ
    @given(values=st.lists(_HEADER_VALUES, max_size=4))
    def check(values: list[bytes]) -> None:
        lines = [b"Authorization: " + value for value in values]
        status, head = _on_loop(loop, _raw_sign_in(client, lines))
        assert status in {400, 401}, (values, head)
        if len(values) > 1:
            assert status == 400, (values, head)

    await _fuzz(check)


async def test_authorization_header_case_variants_repeated_are_400(
    client: Client, hs256_secret: str
) -> None:
    """Two Authorization headers differing only in the name's case are a 400."""
    value = f"Bearer {hs256_token(hs256_secret, 'alice')}".encode()

    status, head = await _raw_sign_in(
        client, [b"Authorization: " + value, b"AUTHORIZATION: " + value]
    )

    assert status == 400, head


@pytest.mark.parametrize(
    ("length", "status"), [(8192, 401), (8193, 400), (16_000, 400)]
)
async def test_authorization_header_size_limit_is_exact(
    client: Client, length: int, status: int
) -> None:
    """A header of 8 KiB is parsed (a bad token, 401); one byte more is a 400."""
    value = "Bearer " + "A" * (length - len("Bearer "))

    response = await client.post("/v1/sign-in", headers={"Authorization": value})

    assert response.status == status
    if status == 400:
        assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


# --- JWT-shaped garbage ---------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_JSON: Final = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_ALG_NAMES: Final = st.sampled_from(
    ["HS256", "HS384", "RS256", "PS256", "ES256", "EdDSA", "none", "None", ""]
)
_ALGS: Final = st.one_of(
    _ALG_NAMES,
    st.lists(_ALG_NAMES, max_size=2),
    st.dictionaries(_ALG_NAMES, _ALG_NAMES, max_size=1),
    _JSON,
)
_HEADERS: Final = st.builds(
    lambda required, extra: {**extra, **required},
    st.fixed_dictionaries(
        {},
        optional={
            "alg": _ALGS,
            "kid": st.one_of(st.text(max_size=30), _JSON),
            "typ": _JSON,
            "crit": _JSON,
            "b64": _JSON,
            "jku": _JSON,
            "jwk": _JSON,
        },
    ),
    st.dictionaries(st.text(max_size=8), _JSON, max_size=3),
)
_CLAIMS: Final = st.builds(
    lambda base, extra: {**base, **extra},
    st.just(claims_for("fuzz")),
    st.dictionaries(
        st.sampled_from(["iss", "aud", "sub", "exp", "iat", "nbf", "client_id"]),
        _JSON,
        max_size=4,
    ),
)


def _segment(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[str]:
    """A base64url segment of JSON from `strategy`, or of arbitrary bytes."""
    return st.one_of(
        strategy.map(lambda value: _b64url(json.dumps(value).encode())),
        st.binary(max_size=200).map(_b64url),
        st.text(max_size=40),
    )


_JWT_SHAPED: Final = st.builds(
    lambda header, payload, signature: f"{header}.{payload}.{signature}",
    _segment(_HEADERS),
    _segment(_CLAIMS | _JSON),
    st.binary(max_size=300).map(_b64url),
)


async def _status_of(client: Client, token: str) -> tuple[int, str]:
    response = await client.post("/v1/sign-in", headers=bearer(token))
    return response.status, await response.text()


def _token_header_safe(token: str) -> bool:
    """Whether the token is one header-safe run: no spaces, controls or breaks."""
    return bool(token) and all(0x21 <= ord(c) <= 0x7E for c in token)


async def test_jwt_shaped_garbage_is_401_with_a_shared_secret(
    client: Client, standin: Standin
) -> None:
    """Three segments of random JSON or bytes are always a 401 and never reach AWS."""
    loop = asyncio.get_running_loop()

    @_FUZZ
    @given(token=_JWT_SHAPED.filter(_token_header_safe))
    def check(token: str) -> None:
        status, body = _on_loop(loop, _status_of(client, token))
        assert status == 401, (token, body)

    await _fuzz(check)
    assert standin.state.call_count("AssumeRole") == 0


async def test_jwt_shaped_garbage_is_401_with_a_jwks(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    standin: Standin,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    """Against a JWKS too, garbage of any kid or alg is a 401, never a 500."""
    del standin
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk["kid"] = "k1"

    async def jwks(_request: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk]})

    idp = web.Application()
    idp.router.add_get("/jwks.json", jwks)
    server = await aiohttp_server(idp)
    settings_ = settings_for(
        jwt_jwks_url=str(server.make_url("/jwks.json")),
        jwt_algorithms=("RS256", "ES256"),
    )
    client = await aiohttp_client(create_app(settings_))

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(ready)
    loop = asyncio.get_running_loop()

    @_FUZZ
    @given(token=_JWT_SHAPED.filter(_token_header_safe))
    def check(token: str) -> None:
        status, body = _on_loop(loop, _status_of(client, token))
        assert status == 401, (token, body)

    await _fuzz(check)


# --- Claims of every JSON type behind a valid signature ---------------------------

# Claims no check reads, so they can never be why a token is refused.
_EXTRA_CLAIMS: Final = st.dictionaries(
    st.text(max_size=8).map(lambda name: f"x-{name}"), _JSON, max_size=3
)
_SUBJECTS: Final = st.one_of(
    _JSON,
    st.text(max_size=200),
    st.text(
        st.characters(codec=None, categories=("Cs", "Lo", "Zs", "Cc", "So")),
        max_size=50,
    ),
)


async def test_signed_claims_of_any_json_type_are_200_or_401(
    client: Client, hs256_secret: str
) -> None:
    """Validly signed tokens with arbitrary sub and name are never a 500."""
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(subject=_SUBJECTS, name=_SUBJECTS, extra=_EXTRA_CLAIMS)
    def check(subject: object, name: object, extra: Mapping[str, object]) -> None:
        claims = {**extra, **claims_for("x", sub=subject, name=name)}
        claims["sub"] = subject
        token = jwt.encode(claims, hs256_secret, algorithm="HS256")
        status, body = _on_loop(loop, _status_of(client, token))
        valid_id = (
            isinstance(subject, str)
            and subject.strip() != ""
            and len(subject) <= MAX_USER_ID_LENGTH
        )
        assert status == (200 if valid_id else 401), (subject, name, body)

    await _fuzz(check)


_TIME_VALUES: Final = st.one_of(
    _JSON,
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.integers(min_value=-(10**400), max_value=-(10**300)),
    st.floats(),
    st.just(None),
)


async def test_signed_time_claims_of_any_json_are_200_or_401(
    client: Client, hs256_secret: str
) -> None:
    """Validly signed exp, iat and nbf of any JSON value are never a 500."""
    loop = asyncio.get_running_loop()

    @_FUZZ
    @given(
        claim=st.sampled_from(["exp", "iat", "nbf"]),
        value=_TIME_VALUES,
    )
    def check(claim: str, value: object) -> None:
        claims = claims_for("fuzz-time")
        claims[claim] = value
        token = jwt.encode(claims, hs256_secret, algorithm="HS256")
        status, body = _on_loop(loop, _status_of(client, token))
        assert status in {200, 401}, (claim, value, body)

    await _fuzz(check)
