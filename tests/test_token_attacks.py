"""Attacks on the token verifier, the front door to AWS credentials.

Every forged, confused, replayed or malformed token here must end in a 401
`invalid_token` whose description says nothing about keys or internals, and must
never reach AWS. Keys are generated per test run; every server is on loopback.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from service.app import create_app
from service.logs import configure_logging
from tests.support import (
    AUDIENCE,
    ISSUER,
    Client,
    bearer,
    claims_for,
    eventually,
    hs256_token,
    settings_for,
)

if TYPE_CHECKING:
    from aiohttp import ClientResponse

    from tests.conftest import AiohttpClient, AiohttpServer, Standin

Signer = Callable[[bytes], bytes]
Jwk = dict[str, Any]

# What no error description may contain: stack traces, library names, URLs, paths.
_INTERNAL_MARKERS: Final = (
    "Traceback",
    "Error",
    "Exception",
    "PyJWT",
    "cryptography",
    "http://",
    "https://",
    "/work/",
    "\n",
)


# --- Building tokens by hand -------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_segment(value: object) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def _jws(header: dict[str, Any], claims: object, signer: Signer) -> str:
    """A compact JWS over any header and claims, signed by `signer`."""
    signing_input = f"{_json_segment(header)}.{_json_segment(claims)}"
    return f"{signing_input}.{_b64url(signer(signing_input.encode()))}"


def _rsa_signer(key: rsa.RSAPrivateKey) -> Signer:
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _hmac_signer(secret: bytes) -> Signer:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def _ec_signer(key: ec.EllipticCurvePrivateKey, digest: hashes.HashAlgorithm) -> Signer:
    """ECDSA in JOSE's raw r||s form, sized for the key's own curve."""
    size = (key.curve.key_size + 7) // 8

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    return sign


def _constant_signer(signature: bytes) -> Signer:
    return lambda _data: signature


def _rsa_jwk(key: rsa.RSAPrivateKey, kid: str | None, **extra: object) -> Jwk:
    jwk: Jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(extra)
    return jwk


def _ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> Jwk:
    jwk: Jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    return jwk


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _rs256(key: rsa.RSAPrivateKey, kid: str | None, **overrides: Any) -> str:
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return _jws(header, claims_for("alice", **overrides), _rsa_signer(key))


async def _assert_invalid_token(
    response: ClientResponse, *, leaks: tuple[str, ...] = ()
) -> None:
    """A 401 invalid_token whose description gives nothing away."""
    assert response.status == 401, await response.text()
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="')
    assert 'error="invalid_token"' in challenge
    detail = (await response.json())["detail"]
    assert isinstance(detail, str)
    assert detail
    for secret in (*_INTERNAL_MARKERS, *leaks):
        assert secret not in detail, (secret, detail)
        assert secret not in challenge, (secret, challenge)


# --- An identity provider, and an address no one should ever call ------------


@dataclasses.dataclass
class Provider:
    """A JWKS endpoint on loopback whose keys a test sets."""

    keys: list[Jwk] = dataclasses.field(default_factory=list)
    url: str = ""
    fetches: int = 0


@pytest.fixture
async def provider(aiohttp_server: AiohttpServer) -> Provider:
    """A loopback JWKS endpoint, empty until a test gives it keys."""
    provider = Provider()

    async def jwks(_request: web.Request) -> web.Response:
        provider.fetches += 1
        return web.json_response({"keys": provider.keys})

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    server = await aiohttp_server(app)
    provider.url = str(server.make_url("/jwks.json"))
    return provider


@dataclasses.dataclass
class Trap:
    """A loopback server that counts every request; a token points at it."""

    base: str = ""
    requests: list[str] = dataclasses.field(default_factory=list)


@pytest.fixture
async def trap(aiohttp_server: AiohttpServer, rsa_key: rsa.RSAPrivateKey) -> Trap:
    """A server a token names in jku or x5u; it must never hear from the service."""
    trap = Trap()

    async def anything(request: web.Request) -> web.Response:
        trap.requests.append(request.path_qs)
        return web.json_response({"keys": [_rsa_jwk(rsa_key, "k1")]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    server = await aiohttp_server(app)
    trap.base = str(server.make_url("")).rstrip("/")
    return trap


StartClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def start_jwks_client(
    aiohttp_client: AiohttpClient, standin: Standin, provider: Provider
) -> StartClient:
    """Start the app on the provider's JWKS holding `keys`, and wait until ready."""
    del standin

    async def start(
        keys: list[Jwk],
        *,
        algorithms: tuple[str, ...] = ("RS256",),
        wait_ready: bool = True,
        **overrides: object,
    ) -> Client:
        provider.keys = keys
        settings = settings_for(
            jwt_jwks_url=provider.url, jwt_algorithms=algorithms, **overrides
        )
        client = await aiohttp_client(create_app(settings))
        if wait_ready:

            async def ready() -> bool:
                return (await client.get("/readyz")).status == 200

            await eventually(ready)
        return client

    return start


@pytest.fixture
def attacker_key() -> rsa.RSAPrivateKey:
    """A key the identity provider never published."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- alg none ----------------------------------------------------------------

_NONE_SPELLINGS: Final = ("none", "None", "NONE", "nOnE")


@pytest.mark.parametrize("alg", _NONE_SPELLINGS)
@pytest.mark.parametrize("signature", [b"", b"\x00", b"not-a-signature"])
async def test_alg_none_is_refused_with_a_shared_secret(
    client: Client, standin: Standin, alg: str, signature: bytes
) -> None:
    """An unsigned token, in any spelling of none, is a 401 and never reaches AWS."""
    token = _jws({"alg": alg, "typ": "JWT"}, claims_for("mallory"), lambda _: b"")
    token = token + _b64url(signature)

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)
    assert standin.state.call_count("AssumeRole") == 0


@pytest.mark.parametrize("alg", _NONE_SPELLINGS)
async def test_alg_none_is_refused_with_a_jwks(
    start_jwks_client: StartClient, rsa_key: rsa.RSAPrivateKey, alg: str
) -> None:
    """An unsigned token naming a published kid is refused just the same."""
    client = await start_jwks_client([_rsa_jwk(rsa_key, "k1")])
    token = _jws({"alg": alg, "kid": "k1"}, claims_for("mallory"), lambda _: b"")

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response, leaks=("k1",))


async def test_alg_none_is_refused_even_when_the_allow_list_names_it(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """A misconfigured allow-list naming none still cannot verify an unsigned token."""
    del standin
    settings = settings_for(jwt_secret=hs256_secret, jwt_algorithms=("HS256", "none"))
    client = await aiohttp_client(create_app(settings))
    token = _jws({"alg": "none"}, claims_for("mallory"), lambda _: b"")

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


# --- Algorithm confusion: the public key as an HMAC secret -------------------


def _public_key_forms(key: rsa.RSAPrivateKey) -> dict[str, bytes]:
    """Every way an attacker might spell the public key as an HMAC secret."""
    public = key.public_key()
    spki_pem = _pem(key)
    return {
        "spki-pem": spki_pem,
        "spki-pem-no-newline": spki_pem.rstrip(b"\n"),
        "pkcs1-pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "spki-der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": RSAAlgorithm.to_jwk(public).encode(),
        "jwk-json-with-kid": json.dumps(_rsa_jwk(key, "k1")).encode(),
        "jwk-n": _rsa_jwk(key, None)["n"].encode(),
    }


_FORMS: Final = (
    "spki-pem",
    "spki-pem-no-newline",
    "pkcs1-pem",
    "spki-der",
    "jwk-json",
    "jwk-json-with-kid",
    "jwk-n",
)


@pytest.mark.parametrize("form", _FORMS)
@pytest.mark.parametrize("algorithms", [("RS256",), ("RS256", "HS256")])
async def test_hs256_signed_with_the_pem_public_key_is_refused(
    aiohttp_client: AiohttpClient,
    standin: Standin,
    rsa_key: rsa.RSAPrivateKey,
    form: str,
    algorithms: tuple[str, ...],
) -> None:
    """With a PEM key, HS256 over any form of it fails, even if HS256 is allowed."""
    settings = settings_for(jwt_public_key_pem=_pem(rsa_key), jwt_algorithms=algorithms)
    del standin
    client = await aiohttp_client(create_app(settings))
    secret = _public_key_forms(rsa_key)[form]
    forged = _jws(
        {"alg": "HS256", "typ": "JWT"}, claims_for("mallory"), _hmac_signer(secret)
    )

    response = await client.post("/v1/sign-in", headers=bearer(forged))

    await _assert_invalid_token(response)


@pytest.mark.parametrize("form", _FORMS)
async def test_hs256_signed_with_the_jwks_public_key_is_refused(
    start_jwks_client: StartClient, rsa_key: rsa.RSAPrivateKey, form: str
) -> None:
    """With a JWKS, HS256 over any form of the published key fails for its kid."""
    client = await start_jwks_client(
        [_rsa_jwk(rsa_key, "k1")], algorithms=("RS256", "HS256")
    )
    secret = _public_key_forms(rsa_key)[form]
    forged = _jws(
        {"alg": "HS256", "kid": "k1"}, claims_for("mallory"), _hmac_signer(secret)
    )

    response = await client.post("/v1/sign-in", headers=bearer(forged))

    await _assert_invalid_token(response, leaks=("k1",))


async def test_rs256_token_is_refused_with_a_shared_secret(
    client: Client, rsa_key: rsa.RSAPrivateKey
) -> None:
    """The confusion the other way round: an RS256 token never meets the secret."""
    response = await client.post("/v1/sign-in", headers=bearer(_rs256(rsa_key, None)))

    await _assert_invalid_token(response)


# --- Keys a token brings along ------------------------------------------------


def _key_bringing_headers(
    trap: Trap, attacker_key: rsa.RSAPrivateKey
) -> list[dict[str, Any]]:
    attacker_jwk = _rsa_jwk(attacker_key, "attacker")
    return [
        {"alg": "RS256", "kid": "attacker", "jku": f"{trap.base}/jwks.json"},
        {"alg": "RS256", "kid": "k1", "jku": f"{trap.base}/jwks.json"},
        {"alg": "RS256", "jku": f"{trap.base}/jwks.json"},
        {"alg": "RS256", "kid": "attacker", "x5u": f"{trap.base}/cert.pem"},
        {"alg": "RS256", "x5u": f"{trap.base}/cert.pem"},
        {"alg": "RS256", "kid": "attacker", "jwk": attacker_jwk},
        {"alg": "RS256", "kid": "k1", "jwk": attacker_jwk},
        {"alg": "RS256", "jwk": attacker_jwk},
        {"alg": "RS256", "kid": "k1", "x5c": [_b64url(b"not a certificate")]},
        {
            "alg": "RS256",
            "kid": "attacker",
            "jku": f"{trap.base}/jwks.json",
            "x5u": f"{trap.base}/cert.pem",
            "jwk": attacker_jwk,
        },
    ]


async def test_token_keys_and_key_urls_are_ignored_with_a_jwks(
    start_jwks_client: StartClient,
    provider: Provider,
    trap: Trap,
    rsa_key: rsa.RSAPrivateKey,
    attacker_key: rsa.RSAPrivateKey,
) -> None:
    """Embedded jwk, jku and x5u never verify a token, and no URL from one is called."""
    client = await start_jwks_client(
        [_rsa_jwk(rsa_key, "k1")], jwt_jwks_refetch_cooldown_seconds=0.0
    )
    fetches_before = provider.fetches

    for header in _key_bringing_headers(trap, attacker_key):
        token = _jws(header, claims_for("mallory"), _rsa_signer(attacker_key))
        response = await client.post("/v1/sign-in", headers=bearer(token))
        await _assert_invalid_token(response, leaks=(trap.base, "attacker"))

    assert trap.requests == []
    # Unknown kids did refetch, but only from the configured JWKS URL.
    assert provider.fetches > fetches_before


async def test_token_keys_and_key_urls_are_ignored_with_a_pem_key(
    aiohttp_client: AiohttpClient,
    standin: Standin,
    trap: Trap,
    rsa_key: rsa.RSAPrivateKey,
    attacker_key: rsa.RSAPrivateKey,
) -> None:
    """With a PEM key too, a token's own keys and key URLs are never used."""
    del standin
    settings = settings_for(jwt_public_key_pem=_pem(rsa_key), jwt_algorithms=("RS256",))
    client = await aiohttp_client(create_app(settings))

    for header in _key_bringing_headers(trap, attacker_key):
        token = _jws(header, claims_for("mallory"), _rsa_signer(attacker_key))
        response = await client.post("/v1/sign-in", headers=bearer(token))
        await _assert_invalid_token(response, leaks=(trap.base,))

    assert trap.requests == []


# --- Signatures that are missing, cut or degenerate ---------------------------


_B64URL_ALPHABET: Final = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)


def _flip_unused_bit(last: str) -> str:
    """The same bytes spelt differently: a final character's unused low bit set."""
    return _B64URL_ALPHABET[_B64URL_ALPHABET.index(last) ^ 1]


def _signature_variants(token: str) -> dict[str, str]:
    head, _, signature = token.rpartition(".")
    return {
        "empty": f"{head}.",
        "no-segment": head,
        "cut-by-one": f"{head}.{signature[:-1]}",
        "cut-by-four": f"{head}.{signature[:-4]}",
        "half": f"{head}.{signature[: len(signature) // 2]}",
        "one-character": f"{head}.{signature[:1]}",
        "zeros": f"{head}.{_b64url(bytes(256))}",
        "non-canonical": f"{head}.{signature[:-1]}{_flip_unused_bit(signature[-1])}",
        "doubled": f"{head}.{signature}{signature}",
        "extra-segment": f"{token}.{signature}",
    }


@pytest.mark.parametrize(
    "variant",
    [
        "empty",
        "no-segment",
        "cut-by-one",
        "cut-by-four",
        "half",
        "one-character",
        "zeros",
        "non-canonical",
        "doubled",
        "extra-segment",
    ],
)
async def test_rs256_signature_tampering_is_refused(
    start_jwks_client: StartClient, rsa_key: rsa.RSAPrivateKey, variant: str
) -> None:
    """A genuine RS256 token with its signature removed or mangled is a 401."""
    client = await start_jwks_client([_rsa_jwk(rsa_key, "k1")])
    token = _signature_variants(_rs256(rsa_key, "k1"))[variant]

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


@pytest.mark.parametrize(
    "variant", ["empty", "cut-by-one", "half", "zeros", "non-canonical"]
)
async def test_hs256_signature_tampering_is_refused(
    client: Client, hs256_secret: str, variant: str
) -> None:
    """A genuine HS256 token with its MAC removed or mangled is a 401."""
    token = _signature_variants(hs256_token(hs256_secret, "alice"))[variant]

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


async def test_payload_tampering_is_refused(client: Client, hs256_secret: str) -> None:
    """A genuine token whose claims were swapped for another user's is a 401."""
    header, _, signature = hs256_token(hs256_secret, "alice").split(".")
    swapped = f"{header}.{_json_segment(claims_for('admin'))}.{signature}"

    response = await client.post("/v1/sign-in", headers=bearer(swapped))

    await _assert_invalid_token(response)


_P256_ORDER: Final = int(
    "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16
)


@pytest.mark.parametrize(
    "signature",
    [
        bytes(64),  # r = s = 0
        bytes(32) + (1).to_bytes(32, "big"),  # r = 0, s = 1
        (1).to_bytes(32, "big") + bytes(32),  # r = 1, s = 0
        _P256_ORDER.to_bytes(32, "big") * 2,  # r = s = n
        b"\xff" * 64,  # r, s beyond n
        bytes(63),  # one byte short
        bytes(66),  # sized for P-521
        b"",
    ],
    ids=["r=s=0", "r=0", "s=0", "r=s=n", "beyond-n", "short", "long", "empty"],
)
async def test_es256_degenerate_signatures_are_refused(
    start_jwks_client: StartClient, signature: bytes
) -> None:
    """ECDSA signatures of zeros or of the group order never verify."""
    key = ec.generate_private_key(ec.SECP256R1())
    client = await start_jwks_client([_ec_jwk(key, "ec1")], algorithms=("ES256",))
    genuine = _jws(
        {"alg": "ES256", "kid": "ec1"},
        claims_for("alice"),
        _ec_signer(key, hashes.SHA256()),
    )
    forged = _jws(
        {"alg": "ES256", "kid": "ec1"},
        claims_for("mallory"),
        _constant_signer(signature),
    )

    assert (await client.post("/v1/sign-in", headers=bearer(genuine))).status == 200
    response = await client.post("/v1/sign-in", headers=bearer(forged))

    await _assert_invalid_token(response, leaks=("ec1",))


# --- Time claims --------------------------------------------------------------


Claims = Callable[[int], dict[str, object]]


@pytest.mark.parametrize(
    "claims_at",
    [
        pytest.param(lambda now: {"exp": now - 3600}, id="expired-an-hour-ago"),
        pytest.param(lambda now: {"exp": now - 60}, id="expired-past-leeway"),
        pytest.param(lambda _now: {"exp": 0}, id="expired-at-the-epoch"),
        pytest.param(lambda _now: {"exp": -(2**40)}, id="expired-before-the-epoch"),
        pytest.param(lambda now: {"nbf": now + 3600}, id="nbf-in-an-hour"),
        pytest.param(lambda now: {"nbf": now + 60}, id="nbf-past-leeway"),
        pytest.param(lambda now: {"iat": now + 3600}, id="iat-in-an-hour"),
        pytest.param(lambda now: {"iat": now + 60}, id="iat-past-leeway"),
        pytest.param(lambda now: {"exp": str(now + 600)}, id="exp-string"),
        pytest.param(lambda now: {"iat": str(now)}, id="iat-string"),
        pytest.param(lambda now: {"nbf": str(now)}, id="nbf-string"),
        pytest.param(lambda _now: {"exp": True}, id="exp-boolean"),
        pytest.param(lambda _now: {"iat": True}, id="iat-boolean"),
        pytest.param(lambda _now: {"nbf": False}, id="nbf-boolean"),
        pytest.param(lambda now: {"exp": [now + 600]}, id="exp-list"),
        pytest.param(lambda now: {"exp": {"at": now + 600}}, id="exp-object"),
        pytest.param(lambda _now: {"iat": "now"}, id="iat-word"),
        pytest.param(lambda _now: {"exp": "1e12"}, id="exp-numeric-string"),
    ],
)
async def test_time_claims_out_of_range_or_not_numbers_are_refused(
    client: Client, standin: Standin, hs256_secret: str, claims_at: Claims
) -> None:
    """Expired, not-yet-valid, future-issued and non-numeric time claims are 401s."""
    token = hs256_token(hs256_secret, "alice", **claims_at(int(time.time())))

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)
    assert standin.state.call_count("AssumeRole") == 0


@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["huge", "-huge"])
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
async def test_time_claims_beyond_float_range_are_refused(
    client: Client, hs256_secret: str, claim: str, value: int
) -> None:
    """A JSON integer too large for a float is a 401, never an overflow 500."""
    token = hs256_token(hs256_secret, "alice", **{claim: value})

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
async def test_time_claims_of_json_null_are_refused(
    client: Client, hs256_secret: str, claim: str
) -> None:
    """A time claim present as JSON null is refused, not treated as absent."""
    claims = claims_for("alice")
    claims[claim] = None
    token = jwt.encode(claims, hs256_secret, algorithm="HS256")

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


@pytest.mark.parametrize(
    "claims_at",
    [
        pytest.param(lambda now: {"exp": now - 5}, id="exp-within-leeway"),
        pytest.param(lambda now: {"nbf": now + 5}, id="nbf-within-leeway"),
        pytest.param(lambda now: {"iat": now + 5}, id="iat-within-leeway"),
        pytest.param(
            lambda now: {"exp": now + 600.5, "iat": now - 0.5}, id="fractional"
        ),
    ],
)
async def test_time_claims_within_leeway_or_fractional_are_accepted(
    client: Client, hs256_secret: str, claims_at: Claims
) -> None:
    """Clock skew within the leeway, and fractional JSON numbers, still sign in."""
    token = hs256_token(hs256_secret, "alice", **claims_at(int(time.time())))

    response = await client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 200, await response.text()


# --- Issuer and audience -----------------------------------------------------

_WRONG_ISSUERS: Final = (
    "https://idp.example.test",  # trailing slash dropped
    "https://idp.example.test//",
    "https://idp.example.test/x",
    "https://idp.example.test/.",
    "xhttps://idp.example.test/",
    "https://idp.example.test.evil.test/",
    "https://idp.example.tes/",
    "https://evil.test/https://idp.example.test/",
    "http://idp.example.test/",
    "HTTPS://IDP.EXAMPLE.TEST/",
    "https://idp.example.test/ ",
    " https://idp.example.test/",
    "https://idp.example.test/\u0000",
    "https://idp.example.test/%2e",
    "https://idp.example.test:443/",
    "",
)


@pytest.mark.parametrize("issuer", _WRONG_ISSUERS)
async def test_issuer_variants_are_refused(
    client: Client, standin: Standin, hs256_secret: str, issuer: str
) -> None:
    """The issuer is compared exactly: prefixes, suffixes and slashes all fail."""
    token = hs256_token(hs256_secret, "alice", iss=issuer)

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response, leaks=(ISSUER,))
    assert standin.state.call_count("AssumeRole") == 0


@pytest.mark.parametrize(
    "issuer", [[ISSUER], {"iss": ISSUER}, 1, True, [ISSUER, "https://evil.test/"]]
)
async def test_issuer_that_is_not_a_string_is_refused(
    client: Client, hs256_secret: str, issuer: object
) -> None:
    """An iss claim holding the right issuer inside a list or object is refused."""
    claims = claims_for("alice", iss=issuer)
    token = _jws({"alg": "HS256"}, claims, _hmac_signer(hs256_secret.encode()))

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


async def test_issuer_configured_without_slash_refuses_a_slashed_token(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """A trailing-slash difference matters in the other direction too."""
    del standin
    settings = settings_for(jwt_secret=hs256_secret, jwt_issuer=ISSUER.rstrip("/"))
    client = await aiohttp_client(create_app(settings))

    slashed = await client.post(
        "/v1/sign-in", headers=bearer(hs256_token(hs256_secret, "alice"))
    )
    exact = await client.post(
        "/v1/sign-in",
        headers=bearer(hs256_token(hs256_secret, "alice", iss=ISSUER.rstrip("/"))),
    )

    await _assert_invalid_token(slashed)
    assert exact.status == 200


@pytest.mark.parametrize(
    "audience",
    [
        "another-service",
        "",
        AUDIENCE[:-1],
        AUDIENCE + "-x",
        AUDIENCE.upper(),
        f" {AUDIENCE}",
        [],
        ["another-service"],
        [[AUDIENCE]],
        {"aud": AUDIENCE},
        1,
        True,
    ],
    ids=repr,
)
async def test_audience_variants_are_refused(
    client: Client, hs256_secret: str, audience: object
) -> None:
    """A token for another audience, or with a malformed aud, is a 401."""
    token = hs256_token(hs256_secret, "alice", aud=audience)

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response, leaks=(AUDIENCE,))


async def test_audience_missing_is_refused(client: Client, hs256_secret: str) -> None:
    """A token with no aud at all is refused while an audience is configured."""
    token = hs256_token(hs256_secret, "alice", aud=None)

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


async def test_audience_is_any_of_the_configured_list(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """A token naming any configured audience, alone or among others, signs in."""
    del standin
    settings = settings_for(jwt_secret=hs256_secret, jwt_audience=("web", "mobile"))
    client = await aiohttp_client(create_app(settings))

    statuses = [
        (
            await client.post(
                "/v1/sign-in",
                headers=bearer(hs256_token(hs256_secret, "alice", aud=audience)),
            )
        ).status
        for audience in ("mobile", ["other", "web"], ["tv"], "web-x")
    ]

    assert statuses == [200, 200, 401, 401]


# --- Key ids ----------------------------------------------------------------

_HOSTILE_KIDS: Final = (
    "../../etc/passwd",
    "/etc/passwd",
    "..\\..\\windows\\win.ini",
    "' OR 1=1 --",
    '" OR ""="',
    "k1' --",
    "k1\u0000",
    "k1 ",
    "K1",
    "",
    "%6b1",
    "${jndi:ldap://127.0.0.1/x}",
    "k" * 4000,
)


async def test_kid_that_looks_like_a_path_or_sql_is_refused(
    start_jwks_client: StartClient, provider: Provider, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Hostile kids, even on a genuinely signed token, are 401s and one refetch."""
    client = await start_jwks_client([_rsa_jwk(rsa_key, "k1")])
    fetches_before = provider.fetches

    for kid in _HOSTILE_KIDS:
        response = await client.post(
            "/v1/sign-in", headers=bearer(_rs256(rsa_key, kid))
        )
        await _assert_invalid_token(response, leaks=(kid,) if len(kid) > 2 else ())

    assert provider.fetches <= fetches_before + 1


@pytest.mark.parametrize(
    "kid", [1, 0, True, None, ["k1"], {"kid": "k1"}, 1.5], ids=repr
)
async def test_kid_that_is_not_a_string_is_refused(
    start_jwks_client: StartClient, rsa_key: rsa.RSAPrivateKey, kid: object
) -> None:
    """A kid of any JSON type but string is a 401, never a lookup."""
    client = await start_jwks_client([_rsa_jwk(rsa_key, "k1")])
    token = _jws(
        {"alg": "RS256", "kid": kid}, claims_for("alice"), _rsa_signer(rsa_key)
    )

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


async def test_kid_of_a_published_key_with_another_signer_is_refused(
    start_jwks_client: StartClient,
    attacker_key: rsa.RSAPrivateKey,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    """Naming the provider's kid does not make the attacker's signature valid."""
    client = await start_jwks_client([_rsa_jwk(rsa_key, "k1")])

    response = await client.post(
        "/v1/sign-in", headers=bearer(_rs256(attacker_key, "k1"))
    )

    await _assert_invalid_token(response, leaks=("k1",))


# --- The header's own shape -------------------------------------------------


@pytest.mark.parametrize(
    "alg",
    [["HS256"], {"HS256": True}, ["none"], None, 256, True, "", "hs256", "HS256 "],
    ids=repr,
)
async def test_alg_that_is_not_an_allowed_string_is_refused(
    client: Client, hs256_secret: str, alg: object
) -> None:
    """An alg of another JSON type or spelling is a 401, never a 500."""
    token = _jws(
        {"alg": alg}, claims_for("mallory"), _hmac_signer(hs256_secret.encode())
    )

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "crit": ["exp"]},
        {"alg": "HS256", "crit": ["b64"], "b64": False},
        {"alg": "HS256", "crit": []},
        {"alg": "HS256", "b64": False},
    ],
    ids=["crit-exp", "crit-b64", "crit-empty", "b64-false"],
)
async def test_header_extensions_are_not_honoured(
    client: Client, hs256_secret: str, header: dict[str, Any]
) -> None:
    """Critical extensions and unencoded payloads are refused, signed or not."""
    token = _jws(header, claims_for("mallory"), _hmac_signer(hs256_secret.encode()))

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


async def test_deeply_nested_header_is_refused(client: Client) -> None:
    """A header of nested arrays as deep as 8 KiB allows is a 401, not a 500."""
    depth = 2900
    header_segment = _b64url(
        b'{"alg":"HS256","x":' + b"[" * depth + b"]" * depth + b"}"
    )
    token = f"{header_segment}.{_json_segment({})}.{_b64url(b'x')}"
    assert len(token) < 8000

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


@pytest.mark.parametrize(
    "payload",
    [b"[" * 2500 + b"]" * 2500, b"not json", b"[]", b'"alice"', b"null", b"\xff\xfe"],
    ids=["nested", "not-json", "array", "string", "null", "not-utf8"],
)
async def test_payload_that_is_not_a_claims_object_is_refused(
    client: Client, hs256_secret: str, payload: bytes
) -> None:
    """A validly signed payload that is no JSON object is a 401, not a 500."""
    header = _json_segment({"alg": "HS256", "typ": "JWT"})
    signing_input = f"{header}.{_b64url(payload)}"
    signature = _hmac_signer(hs256_secret.encode())(signing_input.encode())
    token = f"{signing_input}.{_b64url(signature)}"

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


# --- The user id ---------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [42, 0, 1.5, True, ["alice"], {"id": "alice"}, "", " ", "\t\n", "x" * 5000],
    ids=[
        "int",
        "zero",
        "float",
        "bool",
        "list",
        "object",
        "empty",
        "blank",
        "ws",
        "huge",
    ],
)
async def test_user_id_that_is_not_a_bounded_string_is_refused(
    client: Client, standin: Standin, hs256_secret: str, subject: object
) -> None:
    """Numbers, lists, objects, blanks and huge strings are never coerced into ids."""
    token = hs256_token(hs256_secret, "alice", sub=subject)

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)
    assert standin.state.call_count("AssumeRole") == 0


async def test_user_id_of_json_null_is_refused(
    client: Client, hs256_secret: str
) -> None:
    """A sub of JSON null is refused, not read as the string "None"."""
    claims = claims_for("alice")
    claims["sub"] = None
    token = jwt.encode(claims, hs256_secret, algorithm="HS256")

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response)


async def test_user_id_claim_configured_elsewhere_ignores_sub(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """With another user-id claim, a token carrying only sub is refused."""
    del standin
    settings = settings_for(jwt_secret=hs256_secret, jwt_user_id_claim="oid")
    client = await aiohttp_client(create_app(settings))

    only_sub = await client.post(
        "/v1/sign-in", headers=bearer(hs256_token(hs256_secret, "alice"))
    )
    numeric_oid = await client.post(
        "/v1/sign-in", headers=bearer(hs256_token(hs256_secret, "alice", oid=7))
    )

    await _assert_invalid_token(only_sub)
    await _assert_invalid_token(numeric_oid)


# --- Key families ------------------------------------------------------------


async def test_oct_key_in_a_jwks_never_verifies(
    start_jwks_client: StartClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    """An HMAC key published in the JWKS verifies nothing, even with HS256 allowed."""
    secret = b"published-hmac-secret-of-32-bytes!!"
    client = await start_jwks_client(
        [{"kty": "oct", "k": _b64url(secret), "kid": "hmac"}, _rsa_jwk(rsa_key, "k1")],
        algorithms=("RS256", "HS256"),
    )
    forged = _jws(
        {"alg": "HS256", "kid": "hmac"}, claims_for("mallory"), _hmac_signer(secret)
    )

    response = await client.post("/v1/sign-in", headers=bearer(forged))

    await _assert_invalid_token(response, leaks=("hmac",))


async def test_oct_only_jwks_never_becomes_ready(
    start_jwks_client: StartClient, provider: Provider
) -> None:
    """A JWKS of nothing but an HMAC key loads no key: not ready, nothing verifies."""
    secret = b"published-hmac-secret-of-32-bytes!!"
    client = await start_jwks_client(
        [{"kty": "oct", "k": _b64url(secret), "kid": "hmac"}],
        algorithms=("RS256", "HS256"),
        wait_ready=False,
    )

    async def fetched() -> bool:
        return provider.fetches >= 1

    await eventually(fetched)
    forged = _jws(
        {"alg": "HS256", "kid": "hmac"}, claims_for("mallory"), _hmac_signer(secret)
    )
    response = await client.post("/v1/sign-in", headers=bearer(forged))

    assert (await client.get("/readyz")).status == 503
    assert response.status in {401, 503}


async def test_p384_key_never_verifies_an_es256_token(
    start_jwks_client: StartClient,
) -> None:
    """ES256 is bound to P-256: a P-384 key refuses it and still verifies ES384."""
    key = ec.generate_private_key(ec.SECP384R1())
    client = await start_jwks_client(
        [_ec_jwk(key, "p384")], algorithms=("ES256", "ES384")
    )
    mismatched = _jws(
        {"alg": "ES256", "kid": "p384"},
        claims_for("mallory"),
        _ec_signer(key, hashes.SHA256()),
    )
    matched = _jws(
        {"alg": "ES384", "kid": "p384"},
        claims_for("alice"),
        _ec_signer(key, hashes.SHA384()),
    )

    refused = await client.post("/v1/sign-in", headers=bearer(mismatched))
    accepted = await client.post("/v1/sign-in", headers=bearer(matched))

    await _assert_invalid_token(refused, leaks=("p384",))
    assert accepted.status == 200


async def test_jwk_declaring_its_alg_refuses_another(
    start_jwks_client: StartClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    """A key published for RS256 does not verify PS256, though both are allowed."""
    client = await start_jwks_client(
        [_rsa_jwk(rsa_key, "k1", alg="RS256")], algorithms=("RS256", "PS256")
    )
    token = jwt.encode(
        claims_for("alice"), rsa_key, algorithm="PS256", headers={"kid": "k1"}
    )

    response = await client.post("/v1/sign-in", headers=bearer(token))

    await _assert_invalid_token(response, leaks=("k1",))


async def test_encryption_key_in_a_jwks_is_ignored(
    start_jwks_client: StartClient,
    rsa_key: rsa.RSAPrivateKey,
    attacker_key: rsa.RSAPrivateKey,
) -> None:
    """A `use: enc` key never verifies a token, while the signing key still does."""
    client = await start_jwks_client(
        [_rsa_jwk(attacker_key, "enc", use="enc"), _rsa_jwk(rsa_key, "k1", use="sig")]
    )

    refused = await client.post(
        "/v1/sign-in", headers=bearer(_rs256(attacker_key, "enc"))
    )
    accepted = await client.post("/v1/sign-in", headers=bearer(_rs256(rsa_key, "k1")))

    await _assert_invalid_token(refused, leaks=("enc",))
    assert accepted.status == 200


async def test_ed25519_key_verifies_eddsa_only(
    start_jwks_client: StartClient, rsa_key: rsa.RSAPrivateKey
) -> None:
    """An Ed25519 key verifies EdDSA tokens and nothing else."""
    key = ed25519.Ed25519PrivateKey.generate()
    jwk: Jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "ed"
    client = await start_jwks_client(
        [jwk, _rsa_jwk(rsa_key, "k1")], algorithms=("EdDSA", "RS256")
    )
    genuine = _jws({"alg": "EdDSA", "kid": "ed"}, claims_for("alice"), key.sign)
    confused = _jws({"alg": "RS256", "kid": "ed"}, claims_for("mallory"), key.sign)

    accepted = await client.post("/v1/sign-in", headers=bearer(genuine))
    refused = await client.post("/v1/sign-in", headers=bearer(confused))

    assert accepted.status == 200
    await _assert_invalid_token(refused, leaks=("ed",))


async def test_single_jwk_without_kid_verifies_a_token_without_kid(
    start_jwks_client: StartClient,
    rsa_key: rsa.RSAPrivateKey,
    attacker_key: rsa.RSAPrivateKey,
) -> None:
    """A one-key JWKS without kids serves kid-less tokens, and only its own."""
    client = await start_jwks_client([_rsa_jwk(rsa_key, None)])

    accepted = await client.post("/v1/sign-in", headers=bearer(_rs256(rsa_key, None)))
    refused = await client.post(
        "/v1/sign-in", headers=bearer(_rs256(attacker_key, None))
    )

    assert accepted.status == 200
    await _assert_invalid_token(refused)


# --- Tokens outside the Authorization header -----------------------------------


@pytest.mark.parametrize("name", ["access_token", "%61ccess_token"])
async def test_query_token_is_refused_even_when_valid(
    client: Client, standin: Standin, hs256_secret: str, name: str
) -> None:
    """A valid token in the query string is refused, alone or beside a header."""
    token = hs256_token(hs256_secret, "alice")
    url = f"/v1/sign-in?{name}={token}"

    alone = await client.post(url)
    with_header = await client.post(url, headers=bearer(token))

    assert alone.status == 400
    assert with_header.status == 400
    assert token not in await alone.text()
    assert standin.state.call_count("AssumeRole") == 0


async def test_form_body_token_is_not_accepted(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """RFC 6750's form-body method is not offered: a body token signs nobody in."""
    token = hs256_token(hs256_secret, "alice")

    response = await client.post("/v1/sign-in", data={"access_token": token})

    assert response.status in {400, 401}
    assert standin.state.call_count("AssumeRole") == 0


@pytest.fixture
def captured_logs() -> io.StringIO:
    """The service's JSON logs at debug level, as production writes them."""
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream, cache_loggers=False)
    return stream


@pytest.fixture
async def production_client(
    standin: Standin, hs256_secret: str, captured_logs: io.StringIO
) -> AsyncIterator[Client]:
    """The app served as `python -m service` serves it: no aiohttp access log."""
    del standin, captured_logs
    server = TestServer(create_app(settings_for(jwt_secret=hs256_secret)))
    await server.start_server(access_log=None)
    client: Client = TestClient(server)
    await client.start_server()
    yield client
    await client.close()


async def test_tokens_are_never_logged(
    production_client: Client, captured_logs: io.StringIO, hs256_secret: str
) -> None:
    """Neither a query-string token nor a header token, valid or opaque, is logged."""
    opaque = "opaque0SECRET0token0value"
    valid = hs256_token(hs256_secret, "alice")
    forged = jwt.encode(claims_for("mallory"), "x" * 48, algorithm="HS256")
    signature_of = {token: token.rsplit(".", 1)[-1] for token in (valid, forged)}

    statuses = [
        (await production_client.post(f"/v1/sign-in?access_token={opaque}")).status,
        (await production_client.post(f"/v1/sign-in?access_token={valid}")).status,
        (await production_client.post("/v1/sign-in", headers=bearer(opaque))).status,
        (await production_client.post("/v1/sign-in", headers=bearer(forged))).status,
        (await production_client.post("/v1/sign-in", headers=bearer(valid))).status,
    ]

    logs = captured_logs.getvalue()
    assert statuses == [400, 400, 401, 401, 200]
    assert '"request"' in logs  # the access log did run
    assert opaque not in logs
    for token, signature in signature_of.items():
        assert token not in logs
        assert signature not in logs
