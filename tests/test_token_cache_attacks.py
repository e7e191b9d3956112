"""Replaying remembered tokens: the verified-token cache must never outlive a check.

A token that passed is remembered by its SHA-256; these tests replay such tokens
over HTTP after what should end their welcome: expiry on the service's clock, a
clock stepped back before `nbf`, and the provider retiring the signing key. They
also check that a twin of a remembered token is verified on its own merits.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from service.app import create_app
from tests.support import (
    Client,
    FakeClock,
    bearer,
    claims_for,
    eventually,
    hs256_token,
    settings_for,
)

if TYPE_CHECKING:
    from tests.conftest import AiohttpClient, AiohttpServer, Standin

_LEEWAY = 30


@pytest.fixture
def clock() -> FakeClock:
    """The service's wall clock, moved by hand."""
    return FakeClock()


@pytest.fixture
async def clocked_client(
    aiohttp_client: AiohttpClient,
    standin: Standin,
    hs256_secret: str,
    clock: FakeClock,
) -> Client:
    """The shared-secret app on the test's clock, with the verified-token cache on."""
    del standin
    settings = settings_for(
        jwt_secret=hs256_secret,
        jwt_leeway_seconds=_LEEWAY,
        jwt_verified_cache_size=100,
    )
    return await aiohttp_client(create_app(settings, clock=clock))


async def _status(client: Client, token: str) -> int:
    return (await client.post("/v1/sign-in", headers=bearer(token))).status


async def test_remembered_token_expires_on_the_service_clock(
    clocked_client: Client, clock: FakeClock, hs256_secret: str
) -> None:
    """A token remembered as valid is refused once exp plus leeway has passed."""
    exp = int(clock.now) + 120
    token = hs256_token(hs256_secret, "alice", exp=exp)

    fresh = await _status(clocked_client, token)
    clock.now = exp + _LEEWAY - 1
    within_leeway = await _status(clocked_client, token)
    clock.now = exp + _LEEWAY
    expired = await _status(clocked_client, token)
    clock.now = exp + 10 * _LEEWAY
    long_expired = await _status(clocked_client, token)

    assert (fresh, within_leeway, expired, long_expired) == (200, 200, 401, 401)


async def test_remembered_token_is_refused_when_the_clock_steps_back(
    clocked_client: Client, clock: FakeClock, hs256_secret: str
) -> None:
    """A token remembered after its nbf is refused if the clock steps back before it."""
    start = clock.now
    nbf = int(start) + 300
    token = hs256_token(hs256_secret, "alice", nbf=nbf, exp=nbf + 600)

    too_early = await _status(clocked_client, token)
    clock.now = nbf
    valid = await _status(clocked_client, token)
    clock.now = start
    stepped_back = await _status(clocked_client, token)

    assert (too_early, valid, stepped_back) == (401, 200, 401)


async def test_remembered_token_twin_with_another_signature_is_verified(
    clocked_client: Client, hs256_secret: str
) -> None:
    """A remembered token's claims under a forged signature are not let through."""
    token = hs256_token(hs256_secret, "alice")
    head, _, _ = token.rpartition(".")
    forged_signature = jwt.encode(claims_for("alice"), "y" * 48, algorithm="HS256")
    twin = f"{head}.{forged_signature.rpartition('.')[2]}"

    assert await _status(clocked_client, token) == 200
    assert await _status(clocked_client, twin) == 401


# --- Key rotation, with a real JWKS ------------------------------------------------


@dataclasses.dataclass
class Provider:
    """A loopback JWKS endpoint whose keys the test replaces."""

    keys: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    url: str = ""


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    return jwk


@pytest.fixture
async def jwks_client(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    standin: Standin,
    rsa_key: rsa.RSAPrivateKey,
) -> tuple[Client, Provider]:
    """The app on a JWKS serving `rsa_key` as k1, refetching on every unknown kid."""
    del standin
    provider = Provider(keys=[_jwk(rsa_key, "k1")])

    async def jwks(_request: web.Request) -> web.Response:
        return web.json_response({"keys": provider.keys})

    idp = web.Application()
    idp.router.add_get("/jwks.json", jwks)
    server = await aiohttp_server(idp)
    provider.url = str(server.make_url("/jwks.json"))
    settings = settings_for(
        jwt_jwks_url=provider.url,
        jwt_algorithms=("RS256",),
        jwt_jwks_refetch_cooldown_seconds=0.0,
        jwt_verified_cache_size=100,
    )
    client = await aiohttp_client(create_app(settings))

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(ready)
    return client, provider


async def test_remembered_token_dies_with_its_retired_key(
    jwks_client: tuple[Client, Provider], rsa_key: rsa.RSAPrivateKey
) -> None:
    """Once a refresh drops the signing key, a token remembered under it is refused."""
    client, provider = jwks_client
    old = jwt.encode(claims_for("alice"), rsa_key, "RS256", headers={"kid": "k1"})
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new = jwt.encode(claims_for("bob"), new_key, "RS256", headers={"kid": "k2"})

    remembered = await _status(client, old)
    provider.keys = [_jwk(new_key, "k2")]
    rotated = await _status(client, new)  # an unknown kid: the set is refetched
    replayed = await _status(client, old)

    assert (remembered, rotated, replayed) == (200, 200, 401)


async def test_remembered_token_survives_a_refresh_that_keeps_its_key(
    jwks_client: tuple[Client, Provider], rsa_key: rsa.RSAPrivateKey
) -> None:
    """Adding a key leaves tokens of the kept key valid (no false lock-out)."""
    client, provider = jwks_client
    old = jwt.encode(claims_for("alice"), rsa_key, "RS256", headers={"kid": "k1"})
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new = jwt.encode(claims_for("bob"), new_key, "RS256", headers={"kid": "k2"})

    remembered = await _status(client, old)
    provider.keys = [_jwk(rsa_key, "k1"), _jwk(new_key, "k2")]
    added = await _status(client, new)
    replayed = await _status(client, old)

    assert (remembered, added, replayed) == (200, 200, 200)
