"""Sign-in with public keys: a PEM file and an identity provider's JWKS."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from service.app import create_app
from tests.support import Client, bearer, claims_for, eventually, settings_for

if TYPE_CHECKING:
    from tests.conftest import AiohttpClient, AiohttpServer, Standin


def _rs256_token(key: rsa.RSAPrivateKey, subject: str, kid: str | None) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims_for(subject), key, algorithm="RS256", headers=headers)


def _jwks(key: rsa.RSAPrivateKey, kid: str | None) -> dict[str, object]:
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    if kid is not None:
        jwk["kid"] = kid
    return {"keys": [jwk]}


def _hmac_signed(
    header: dict[str, object], claims: dict[str, object], key: bytes
) -> str:
    """Sign by hand, since PyJWT rightly refuses to use a public key as a secret."""
    signing_input = b".".join(
        _b64url(json.dumps(part).encode()) for part in (header, claims)
    )
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64url(signature)).decode()


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@dataclasses.dataclass
class IdentityProvider:
    """A JWKS endpoint whose document a test can change."""

    document: dict[str, object]
    fetches: int = 0


@pytest.fixture
async def identity_provider(
    aiohttp_server: AiohttpServer, rsa_key: rsa.RSAPrivateKey
) -> tuple[IdentityProvider, str]:
    """A JWKS endpoint on loopback serving the test key as `kid` "k1"."""
    provider = IdentityProvider(_jwks(rsa_key, "k1"))

    async def jwks(_request: web.Request) -> web.Response:
        provider.fetches += 1
        return web.json_response(provider.document)

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    server = await aiohttp_server(app)
    return provider, str(server.make_url("/jwks.json"))


StartClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def start_jwks_client(
    aiohttp_client: AiohttpClient,
    standin: Standin,
    identity_provider: tuple[IdentityProvider, str],
) -> StartClient:
    """Start the app on the provider's JWKS, with `overrides`, once it is ready."""
    del standin
    _, url = identity_provider

    async def start(**overrides: object) -> Client:
        settings = settings_for(
            jwt_jwks_url=url, jwt_algorithms=("RS256",), **overrides
        )
        client = await aiohttp_client(create_app(settings))

        async def ready() -> bool:
            return (await client.get("/readyz")).status == 200

        await eventually(ready)
        return client

    return start


async def test_sign_in_with_rs256_via_jwks(
    start_jwks_client: StartClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A token signed with the provider's key, named by `kid`, signs the user in."""
    client = await start_jwks_client()

    response = await client.post(
        "/v1/sign-in", headers=bearer(_rs256_token(rsa_key, "frank", "k1"))
    )

    assert response.status == 200
    assert (await response.json())["ChimeUserId"] == "frank"


async def test_sign_in_with_an_unknown_kid_refetches_once(
    start_jwks_client: StartClient, identity_provider: tuple[IdentityProvider, str]
) -> None:
    """A rotated key is picked up by one refetch of the provider's JWKS."""
    provider, _ = identity_provider
    client = await start_jwks_client(jwt_jwks_refetch_cooldown_seconds=0.0)
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider.document = _jwks(rotated, "k2")
    fetches_before = provider.fetches

    response = await client.post(
        "/v1/sign-in", headers=bearer(_rs256_token(rotated, "grace", "k2"))
    )

    assert response.status == 200
    assert provider.fetches == fetches_before + 1


async def test_sign_in_with_a_kid_never_published_is_unauthorized(
    start_jwks_client: StartClient,
    identity_provider: tuple[IdentityProvider, str],
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    """Made-up kids are 401s and cost the provider one refetch per cooldown."""
    provider, _ = identity_provider
    client = await start_jwks_client()
    fetches_before = provider.fetches

    responses = [
        await client.post(
            "/v1/sign-in", headers=bearer(_rs256_token(rsa_key, "h", f"bogus-{n}"))
        )
        for n in range(20)
    ]

    assert {response.status for response in responses} == {401}
    assert provider.fetches <= fetches_before + 1


async def test_sign_in_with_a_pem_public_key(
    aiohttp_client: AiohttpClient, standin: Standin, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A PEM public key verifies RS256 tokens, with or without a `kid`."""
    del standin
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = settings_for(jwt_public_key_pem=pem, jwt_algorithms=("RS256",))
    client = await aiohttp_client(create_app(settings))

    response = await client.post(
        "/v1/sign-in", headers=bearer(_rs256_token(rsa_key, "heidi", None))
    )

    assert response.status == 200


async def test_sign_in_with_hs256_signed_by_the_public_key_is_refused(
    aiohttp_client: AiohttpClient, standin: Standin, rsa_key: rsa.RSAPrivateKey
) -> None:
    """The algorithm-confusion attack: the public key used as an HMAC secret fails."""
    del standin
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = settings_for(jwt_public_key_pem=pem, jwt_algorithms=("RS256",))
    client = await aiohttp_client(create_app(settings))
    forged = _hmac_signed({"alg": "HS256", "typ": "JWT"}, claims_for("mallory"), pem)

    response = await client.post("/v1/sign-in", headers=bearer(forged))

    assert response.status == 401
