"""The identity provider's JWKS endpoint misbehaving: slow, down, odd, or rotating.

Sign-ins with known keys must keep flowing whatever the endpoint does; a refetch
for an unknown kid must never hold them up; a key the provider removed must stop
verifying once a refresh succeeds; and nothing the endpoint serves may turn a
sign-in into a 500 or stop the background refresh. Every server is on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import jwt
import jwt.utils
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa, x25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

import service.jwks
from service.app import create_app
from service.jwks import JwksKeySource
from tests.support import Client, bearer, claims_for, eventually, settings_for

if TYPE_CHECKING:
    from aiohttp.test_utils import TestServer

    from tests.conftest import AiohttpClient, AiohttpServer, Standin

Jwk = dict[str, Any]

# Stands in for a stalled endpoint: long enough that only a release ends it.
_STALL_GUARD_SECONDS: Final = 30.0


def _rsa_jwk(key: rsa.RSAPrivateKey, kid: str | None) -> Jwk:
    jwk: Jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def _rs256(key: rsa.RSAPrivateKey, kid: str, subject: str = "alice") -> str:
    return jwt.encode(claims_for(subject), key, algorithm="RS256", headers={"kid": kid})


def _new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclasses.dataclass
class Provider:
    """A JWKS endpoint a test can slow down, break, split or rotate."""

    body: bytes = b'{"keys": []}'
    status: int = 200
    cache_control: str | None = None
    location: str | None = None
    split: bool = False
    stalled: bool = False
    arrived: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    release: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    fetches: int = 0
    redirected_fetches: int = 0
    url: str = ""
    server: TestServer | None = None

    def publish(self, *keys: object) -> None:
        """Serve a healthy document holding `keys`."""
        self.body = json.dumps({"keys": list(keys)}).encode()
        self.status = 200
        self.location = None


@pytest.fixture
async def provider(aiohttp_server: AiohttpServer) -> AsyncIterator[Provider]:
    """A loopback JWKS endpoint; a stall is always released when the test ends."""
    provider = Provider()

    async def jwks(request: web.Request) -> web.StreamResponse:
        provider.fetches += 1
        if provider.stalled:
            provider.arrived.set()
            async with asyncio.timeout(_STALL_GUARD_SECONDS):
                await provider.release.wait()
        headers = {}
        if provider.cache_control is not None:
            headers["Cache-Control"] = provider.cache_control
        if provider.location is not None:
            headers["Location"] = provider.location
        if not provider.split:
            return web.Response(
                status=provider.status,
                body=provider.body,
                content_type="application/json",
                headers=headers,
            )

        # The same document, sent as two pieces a moment apart, as a slow network
        # or a chunked reverse proxy delivers it.
        response = web.StreamResponse(status=provider.status, headers=headers)
        response.content_type = "application/json"
        await response.prepare(request)
        middle = len(provider.body) // 2
        await response.write(provider.body[:middle])
        await asyncio.sleep(0.05)
        await response.write(provider.body[middle:])
        await response.write_eof()
        return response

    async def elsewhere(_request: web.Request) -> web.Response:
        provider.redirected_fetches += 1
        return web.Response(body=provider.body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    app.router.add_get("/elsewhere.json", elsewhere)
    provider.server = await aiohttp_server(app)
    provider.url = str(provider.server.make_url("/jwks.json"))
    yield provider
    provider.release.set()


StartClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def start_client(
    aiohttp_client: AiohttpClient, standin: Standin, provider: Provider
) -> StartClient:
    """Start the app on the provider's JWKS; wait for readiness unless told not to."""
    del standin

    async def start(
        *, wait_ready: bool = True, url: str | None = None, **overrides: object
    ) -> Client:
        settings = settings_for(
            jwt_jwks_url=url or provider.url, jwt_algorithms=("RS256",), **overrides
        )
        client = await aiohttp_client(create_app(settings))
        if wait_ready:
            await eventually(lambda: _is_ready(client))
        return client

    return start


async def _is_ready(client: Client) -> bool:
    return (await client.get("/readyz")).status == 200


async def _sign_in(client: Client, token: str) -> int:
    response = await client.post("/v1/sign-in", headers=bearer(token))
    return response.status


@pytest.fixture
def fast_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the background refresh run every few tens of milliseconds."""
    monkeypatch.setattr(service.jwks, "MIN_REFRESH_SECONDS", 0.05)
    monkeypatch.setattr(service.jwks, "RETRY_MIN_SECONDS", 0.05)
    monkeypatch.setattr(service.jwks, "RETRY_MAX_SECONDS", 0.1)


# --- A slow endpoint ------------------------------------------------------------


async def test_jwks_stalled_refetch_does_not_hold_up_known_keys(
    start_client: StartClient, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """While a refetch for an unknown kid hangs, a known key's sign-in completes."""
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client(jwt_jwks_refetch_cooldown_seconds=0.0)
    provider.stalled = True

    unknown = asyncio.create_task(_sign_in(client, _rs256(rsa_key, "rotated")))
    await eventually(_event_is_set(provider.arrived))
    known = await _sign_in(client, _rs256(rsa_key, "k1"))
    ready_during_stall = await _is_ready(client)
    still_waiting = not unknown.done()
    provider.release.set()

    assert known == 200
    assert ready_during_stall
    assert still_waiting
    assert await unknown == 401


async def test_jwks_flood_of_unknown_kids_fetches_at_most_once(
    start_client: StartClient, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A hundred concurrent made-up kids are all 401s and cost at most one fetch."""
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client()
    fetches_before = provider.fetches

    statuses = await asyncio.gather(
        *(_sign_in(client, _rs256(rsa_key, f"random-{n}")) for n in range(100))
    )

    assert set(statuses) == {401}
    assert provider.fetches <= fetches_before + 1


class _FakeClock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_jwks_refetch_cooldown_allows_one_fetch_per_window(
    provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Unknown kids refetch once per cooldown window, concurrent or not."""
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    clock = _FakeClock()
    async with aiohttp.ClientSession() as session:
        settings = settings_for(
            jwt_jwks_url=provider.url,
            jwt_algorithms=("RS256",),
            jwt_jwks_refetch_cooldown_seconds=10.0,
        )
        source = JwksKeySource(settings, session, clock=clock)
        assert await source.key_for("k1") is not None  # the first load
        after_load = provider.fetches

        clock.now += 10.0
        first_window = await asyncio.gather(
            *(source.key_for(f"random-{n}") for n in range(50))
        )
        after_first_window = provider.fetches
        clock.now += 9.0
        same_window = [await source.key_for(f"again-{n}") for n in range(50)]
        after_same_window = provider.fetches
        clock.now += 1.0
        await source.key_for("next-window")

    assert first_window == [None] * 50
    assert same_window == [None] * 50
    assert after_first_window == after_load + 1
    assert after_same_window == after_first_window
    assert provider.fetches == after_first_window + 1


# --- A failing endpoint -------------------------------------------------------


async def test_jwks_answering_500_keeps_known_keys(
    start_client: StartClient, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Stale-if-error: while the endpoint fails, known keys verify; others are 401s."""
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client(jwt_jwks_refetch_cooldown_seconds=0.0)
    provider.status = 500
    fetches_before = provider.fetches

    unknown = await _sign_in(client, _rs256(rsa_key, "rotated"))
    known = await _sign_in(client, _rs256(rsa_key, "k1"))

    assert provider.fetches > fetches_before  # the refetch did fail
    assert unknown == 401
    assert known == 200
    assert await _is_ready(client)


async def test_jwks_connection_refused_keeps_known_keys(
    start_client: StartClient, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """With the endpoint gone altogether, known keys still verify."""
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client(jwt_jwks_refetch_cooldown_seconds=0.0)
    assert provider.server is not None
    await provider.server.close()

    unknown = await _sign_in(client, _rs256(rsa_key, "rotated"))
    known = await _sign_in(client, _rs256(rsa_key, "k1"))

    assert unknown == 401
    assert known == 200
    assert await _is_ready(client)


def _closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


async def test_jwks_unreachable_at_startup_serves_but_is_not_ready(
    start_client: StartClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    """With the IdP refusing connections, the service starts, unready, with 503s."""
    client = await start_client(
        url=_closed_port_url(),
        wait_ready=False,
        jwt_jwks_refetch_cooldown_seconds=0.0,
    )

    health = await client.get("/healthz")
    readiness = await client.get("/readyz")
    sign_in = await client.post("/v1/sign-in", headers=bearer(_rs256(rsa_key, "k1")))

    assert health.status == 200
    assert readiness.status == 503
    assert sign_in.status == 503
    assert "Retry-After" in sign_in.headers


async def test_jwks_down_at_startup_becomes_ready_when_keys_arrive(
    start_client: StartClient, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """The background refresh keeps trying, and readiness follows the keys."""
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    provider.status = 503
    client = await start_client(wait_ready=False)
    await eventually(_at_least(provider, 1))

    unready = await client.get("/readyz")
    early = await _sign_in(client, _rs256(rsa_key, "k1"))
    provider.status = 200
    await eventually(lambda: _is_ready(client), attempts=600)

    assert unready.status == 503
    assert early == 503
    assert await _sign_in(client, _rs256(rsa_key, "k1")) == 200


# --- Rotation ---------------------------------------------------------------------


async def test_jwks_rotation_on_unknown_kid_retires_the_old_key(
    start_client: StartClient, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A refetch for the new kid installs it, and the removed key stops verifying."""
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client(jwt_jwks_refetch_cooldown_seconds=0.0)
    new_key = _new_rsa_key()
    provider.publish(_rsa_jwk(new_key, "k2"))

    new = await _sign_in(client, _rs256(new_key, "k2"))
    old = await _sign_in(client, _rs256(rsa_key, "k1"))

    assert new == 200
    assert old == 401


@pytest.mark.usefixtures("fast_schedule")
async def test_jwks_rotation_on_schedule_retires_the_old_key(
    start_client: StartClient, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """The scheduled refresh alone (no unknown kid seen) retires a removed key."""
    provider.cache_control = "public, max-age=0"
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client()
    old_token = _rs256(rsa_key, "k1")
    assert await _sign_in(client, old_token) == 200
    new_key = _new_rsa_key()

    provider.publish(_rsa_jwk(new_key, "k2"))
    await eventually(_refused(client, old_token))

    assert await _sign_in(client, _rs256(new_key, "k2")) == 200


# --- Documents the endpoint should not have served ------------------------------

_DEEP: Final = b"[" * 200_000 + b"]" * 200_000


def _bad_documents(provider: Provider) -> dict[str, tuple[int, bytes, str | None]]:
    """Status, body and Location of each kind of bad answer."""
    return {
        "deeply-nested": (200, _DEEP, None),
        "deeply-nested-keys": (200, b'{"keys": ' + _DEEP + b"}", None),
        "not-json": (200, b"<html>maintenance</html>", None),
        "not-utf8": (200, b"\xff\xfe\x00", None),
        "empty": (200, b"", None),
        "array": (200, b"[]", None),
        "keys-not-a-list": (200, b'{"keys": "k1"}', None),
        "no-keys": (200, b'{"keys": []}', None),
        "over-a-mebibyte": (
            200,
            b'{"keys": [], "pad": "' + b"x" * (2 << 20) + b'"}',
            None,
        ),
        "redirect": (302, b"", provider.url.replace("jwks.json", "elsewhere.json")),
    }


_BAD_DOCUMENTS: Final = (
    "deeply-nested",
    "deeply-nested-keys",
    "not-json",
    "not-utf8",
    "empty",
    "array",
    "keys-not-a-list",
    "no-keys",
    "over-a-mebibyte",
    "redirect",
)


@pytest.mark.parametrize("document", _BAD_DOCUMENTS)
async def test_jwks_bad_document_keeps_known_keys_and_never_500s(
    start_client: StartClient,
    provider: Provider,
    rsa_key: rsa.RSAPrivateKey,
    document: str,
) -> None:
    """A bad answer on refetch leaves the last good keys in use: 401s, never 500s."""
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client(jwt_jwks_refetch_cooldown_seconds=0.0)
    status, body, location = _bad_documents(provider)[document]
    provider.status, provider.body, provider.location = status, body, location
    fetches_before = provider.fetches

    unknown = await _sign_in(client, _rs256(rsa_key, "rotated"))
    known = await _sign_in(client, _rs256(rsa_key, "k1"))

    assert provider.fetches > fetches_before
    assert unknown == 401
    assert known == 200
    assert await _is_ready(client)
    assert provider.redirected_fetches == 0


def _unusable_entries() -> dict[str, object]:
    """JWKs a real provider may publish that this service cannot or must not use."""
    p256: Jwk = json.loads(
        ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    )
    return {
        "ed448": {
            **json.loads(
                OKPAlgorithm.to_jwk(ed448.Ed448PrivateKey.generate().public_key())
            ),
            "kid": "ed448",
        },
        "x25519-without-use": {
            "kty": "OKP",
            "crv": "X25519",
            "kid": "ecdh",
            "x": _b64url_raw_x25519(),
        },
        "unknown-kty": {"kty": "AKP", "kid": "pq", "pub": "AAAA"},
        "secp256k1": {
            **json.loads(
                ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256K1()).public_key())
            ),
            "kid": "k256",
        },
        "encryption-alg": {
            **_rsa_jwk(_new_rsa_key(), "oaep"),
            "alg": "RSA-OAEP-256",
        },
        "missing-kty": {"kid": "nokty", "n": "AQAB", "e": "AQAB"},
        "rsa-n-not-a-string": {"kty": "RSA", "kid": "badn", "n": 5, "e": "AQAB"},
        "rsa-e-zero": {**_rsa_jwk(_new_rsa_key(), "e0"), "e": "AA"},
        "ec-wrong-length": {**p256, "kid": "short", "crv": "P-384"},
        "alg-none": {**_rsa_jwk(_new_rsa_key(), "none"), "alg": "none"},
        "not-an-object": "k1",
    }


def _b64url_raw_x25519() -> str:
    raw = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    return jwt.utils.base64url_encode(raw).decode()


_UNUSABLE: Final = (
    "ed448",
    "x25519-without-use",
    "unknown-kty",
    "secp256k1",
    "encryption-alg",
    "missing-kty",
    "rsa-n-not-a-string",
    "rsa-e-zero",
    "ec-wrong-length",
    "alg-none",
    "not-an-object",
)


@pytest.mark.parametrize("entry", _UNUSABLE)
async def test_jwks_unusable_entry_is_skipped_at_startup(
    start_client: StartClient,
    provider: Provider,
    rsa_key: rsa.RSAPrivateKey,
    entry: str,
) -> None:
    """One JWK the service cannot use is ignored (RFC 7517 section 5), not fatal."""
    provider.publish(_unusable_entries()[entry], _rsa_jwk(rsa_key, "k1"))
    client = await start_client(wait_ready=False)

    await eventually(lambda: _is_ready(client))
    assert await _sign_in(client, _rs256(rsa_key, "k1")) == 200


@pytest.mark.parametrize("entry", ["ed448", "x25519-without-use", "rsa-n-not-a-string"])
async def test_jwks_unusable_entry_on_rotation_never_500s(
    start_client: StartClient,
    provider: Provider,
    rsa_key: rsa.RSAPrivateKey,
    entry: str,
) -> None:
    """A rotation that also publishes an unusable JWK still installs the new key."""
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client(jwt_jwks_refetch_cooldown_seconds=0.0)
    new_key = _new_rsa_key()
    provider.publish(_unusable_entries()[entry], _rsa_jwk(new_key, "k2"))

    new = await _sign_in(client, _rs256(new_key, "k2"))
    old = await _sign_in(client, _rs256(rsa_key, "k1"))

    assert new == 200
    assert old == 401


@pytest.mark.usefixtures("fast_schedule")
@pytest.mark.parametrize("breakage", ["deeply-nested", "unusable-entry", "status-500"])
async def test_jwks_background_refresh_survives_a_bad_answer(
    start_client: StartClient,
    provider: Provider,
    rsa_key: rsa.RSAPrivateKey,
    breakage: str,
) -> None:
    """After a bad answer the schedule keeps running, so a later rotation lands."""
    provider.cache_control = "max-age=0"
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client()
    old_token = _rs256(rsa_key, "k1")
    new_key = _new_rsa_key()

    if breakage == "deeply-nested":
        provider.body = _DEEP
    elif breakage == "unusable-entry":
        provider.publish(_unusable_entries()["ed448"], _rsa_jwk(rsa_key, "k1"))
    else:
        provider.status = 500
    served_bad_from = provider.fetches
    await eventually(_at_least(provider, served_bad_from + 2))
    provider.publish(_rsa_jwk(new_key, "k2"))
    rotated_from = provider.fetches

    # Only known-kid tokens from here on: the schedule alone must notice.
    await eventually(_at_least(provider, rotated_from + 1))
    await eventually(_refused(client, old_token))
    assert await _sign_in(client, _rs256(new_key, "k2")) == 200


async def test_jwks_split_delivery_is_read_whole(
    start_client: StartClient, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A document that arrives in two pieces is read to its end, not cut."""
    provider.split = True
    provider.publish(_rsa_jwk(rsa_key, "k1"))
    client = await start_client(wait_ready=False)

    await eventually(_at_least(provider, 1))
    await eventually(lambda: _is_ready(client), attempts=300)
    assert await _sign_in(client, _rs256(rsa_key, "k1")) == 200


# --- Small helpers for `eventually` -------------------------------------------


def _event_is_set(event: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return event.is_set()

    return check


def _at_least(provider: Provider, fetches: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return provider.fetches >= fetches

    return check


def _refused(client: Client, token: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await _sign_in(client, token) == 401

    return check
