"""The keys tokens are verified with, and which algorithm each key may verify.

A key is bound to the algorithms its type can serve *and* the operator allowed, so
an RSA public key can never be used as an HMAC secret, and an ES256 token is only
checked against a P-256 key. The token names an algorithm; this module decides
whether that algorithm may be used with the key at hand.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt import PyJWK

if TYPE_CHECKING:
    from collections.abc import Mapping

    from service.settings import Settings

__all__ = [
    "KeySource",
    "StaticKeySource",
    "VerificationKey",
    "key_from_jwk",
    "static_key_source",
]

_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHM_CURVES: Mapping[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


@dataclasses.dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key and the algorithms it may verify."""

    key: object = dataclasses.field(repr=False)
    algorithms: frozenset[str]


class KeySource(Protocol):
    """Where a token's key comes from: a fixed key, or an identity provider's JWKS."""

    @property
    def ready(self) -> bool:
        """Whether keys are loaded and tokens can be verified."""
        ...

    @property
    def generation(self) -> int:
        """A number that changes whenever the set of keys does."""
        ...

    async def key_for(self, kid: str | None) -> VerificationKey | None:
        """Return the key for a token's `kid`, or None if there is none."""
        ...


class StaticKeySource:
    """A single key given by configuration; a token's `kid` does not matter."""

    def __init__(self, key: VerificationKey) -> None:
        self._key = key

    @property
    def ready(self) -> bool:
        """A configured key is always ready."""
        return True

    @property
    def generation(self) -> int:
        """A configured key never changes."""
        return 0

    async def key_for(self, kid: str | None) -> VerificationKey:  # noqa: ARG002 -- one key
        """Return the configured key."""
        return self._key


def static_key_source(settings: Settings) -> StaticKeySource:
    """Build the key source for a shared secret or a PEM public key."""
    allowed = frozenset(settings.jwt_algorithms)
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.encode()
        return StaticKeySource(VerificationKey(secret, allowed & _HMAC_ALGORITHMS))

    if settings.jwt_public_key_pem is None:
        msg = "static_key_source needs JWT_SECRET or JWT_PUBLIC_KEY_FILE"
        raise ValueError(msg)

    public_key = serialization.load_pem_public_key(settings.jwt_public_key_pem)
    return StaticKeySource(VerificationKey(public_key, _usable(public_key, allowed)))


def key_from_jwk(
    jwk: Mapping[str, object], allowed: frozenset[str]
) -> VerificationKey | None:
    """Return the verification key a JWK describes, or None if it cannot serve.

    Keys for encryption (`use` other than `sig`), of an unsupported type, or whose
    `alg` the operator did not allow are left out.
    """
    if jwk.get("use", "sig") != "sig" or jwk.get("kty") == "oct":
        return None

    try:
        parsed = PyJWK(dict(jwk))
    except Exception:  # noqa: BLE001 -- RFC 7517, 5: skip what cannot be used
        # PyJWT raises InvalidKeyError, NotImplementedError and more on odd keys.
        return None

    algorithms = _usable(parsed.key, allowed)
    declared = jwk.get("alg")
    if declared is not None:
        algorithms &= {declared}
    return VerificationKey(parsed.key, algorithms) if algorithms else None


def _usable(key: object, allowed: frozenset[str]) -> frozenset[str]:
    if isinstance(key, rsa.RSAPublicKey):
        return allowed & _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return frozenset(
            algorithm
            for algorithm in allowed
            if isinstance(key.curve, _EC_ALGORITHM_CURVES.get(algorithm, type(None)))
        )
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return allowed & {"EdDSA"}
    return frozenset()
