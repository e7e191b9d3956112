"""Verifying the identity provider's JWT and reading the user out of it.

PyJWT does the cryptography; this module decides what a valid token is for this
service: the algorithm comes from the operator's allow-list and must suit the key,
`exp`, `iat` and `iss` are required, time claims must be JSON numbers, and the user
id must be a non-empty string. Whatever a token holds, verifying it ends in a
`Principal` or an `InvalidTokenError` whose message is safe to show the client.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import re
import time
from typing import TYPE_CHECKING, Any, Final

import jwt
import structlog
from cachetools import LRUCache

from service.errors import (
    InsufficientScopeError,
    InvalidTokenError,
    KeysUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from service.keys import KeySource
    from service.settings import Settings

__all__ = ["MAX_DISPLAY_NAME_UNITS", "Principal", "TokenVerifier", "display_name_of"]

logger = structlog.get_logger(__name__)

MAX_DISPLAY_NAME_UNITS: Final = 100
"""Chime's `Name` limit, counted as AWS counts: UTF-16 code units."""

MAX_USER_ID_LENGTH: Final = 1024
_TIME_CLAIMS: Final = ("exp", "iat", "nbf")
_MAX_EXACT_INTEGER: Final = 2**53
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token says the caller is."""

    user_id: str
    display_name: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Verified:
    """A token that passed every check, and the window in which it stays valid."""

    principal: Principal
    not_before: float
    expires: float
    key_generation: int


class TokenVerifier:
    """Turns a bearer token into a `Principal`, or refuses it.

    Clients reconnecting with the same token are common, and a signature check is
    the costliest step of a warm sign-in. So a token that passed is remembered by
    its SHA-256 until it expires: a repeat is answered after checking only its time
    window and that the provider's keys have not changed since.
    """

    def __init__(
        self,
        settings: Settings,
        keys: KeySource,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._verified: LRUCache[bytes, _Verified] | None = (
            LRUCache(maxsize=settings.jwt_verified_cache_size)
            if settings.jwt_verified_cache_size
            else None
        )
        self._algorithms = frozenset(settings.jwt_algorithms)
        self._issuer = settings.jwt_issuer
        self._audience = frozenset(settings.jwt_audience)
        self._client_id = settings.jwt_client_id
        self._token_use = settings.jwt_token_use
        self._required_claims = settings.jwt_required_claims
        self._leeway = settings.jwt_leeway_seconds
        self._user_id_claim = settings.jwt_user_id_claim
        self._name_claims = settings.jwt_display_name_claims
        self._decoder = jwt.PyJWT(
            options={
                "require": ["exp", "iat", "iss", settings.jwt_user_id_claim],
                "verify_signature": True,
                # Checked below: the user-id claim, whichever it is, and the
                # audience, which a client_id may stand in for.
                "verify_sub": False,
                "verify_jti": False,
                "verify_aud": False,
                # Time is checked below too, on the service's clock, so a token
                # remembered as verified expires on the same clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            }
        )

    @property
    def ready(self) -> bool:
        """Whether keys are loaded, so tokens can be verified."""
        return self._keys.ready

    async def verify(self, token: str) -> Principal:
        """Return who the token names, or raise `InvalidTokenError`."""
        if self._verified is None:
            return await self._verify(token)

        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        known = self._verified.get(digest)
        if known is not None and self._still_valid(known):
            return known.principal

        principal, verified = await self._verify_and_remember(token)
        self._verified[digest] = verified
        return principal

    def _still_valid(self, known: _Verified) -> bool:
        now = self._clock()
        return (
            known.not_before <= now < known.expires
            and known.key_generation == self._keys.generation
            and self._keys.ready
        )

    async def _verify(self, token: str) -> Principal:
        principal, _ = await self._verify_and_remember(token)
        return principal

    async def _verify_and_remember(self, token: str) -> tuple[Principal, _Verified]:
        generation = self._keys.generation
        header = _unverified_header(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise InvalidTokenError("the token's algorithm is not accepted")

        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidTokenError("the token's key id is malformed")

        key = await self._keys.key_for(kid)
        if key is None:
            if not self._keys.ready:
                raise KeysUnavailableError("the identity provider's keys are loading")
            raise InvalidTokenError("the token is signed with an unknown key")
        if algorithm not in key.algorithms:
            raise InvalidTokenError("the token's algorithm does not suit its key")

        claims = self._decode(token, key.key, algorithm)
        self._check_time(claims)
        self._check_recipient(claims)
        # An invalid token is a 401 even when it also lacks a required claim.
        principal = self._principal(claims)
        self._check_required_claims(claims)

        verified = _Verified(
            principal=principal,
            not_before=claims.get("nbf", float("-inf")) - self._leeway,
            expires=claims["exp"] + self._leeway,
            key_generation=generation,
        )
        return principal, verified

    def _decode(self, token: str, key: object, algorithm: str) -> dict[str, Any]:
        try:
            claims = self._decoder.decode(
                token,
                key,  # type: ignore[arg-type]  # a key object PyJWT accepts
                algorithms=[algorithm],
                issuer=self._issuer,
            )
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("the token is not meant for this service") from None
        except jwt.MissingRequiredClaimError as error:
            raise InvalidTokenError(
                f"the token lacks the {error.claim} claim"
            ) from None
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("the token's signature does not verify") from None
        except Exception as error:  # noqa: BLE001 -- any input, any library: a 401
            logger.debug("token refused", error=type(error).__name__)
            raise InvalidTokenError("the token is malformed") from None

        for claim in _TIME_CLAIMS:
            value = claims.get(claim)
            if claim in claims and not _is_numeric_date(value):
                raise InvalidTokenError(
                    f"the token's {claim} claim is not a valid time"
                )
        return claims

    def _check_time(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        if now >= claims["exp"] + self._leeway:
            raise InvalidTokenError("the token has expired")
        if "nbf" in claims and now < claims["nbf"] - self._leeway:
            raise InvalidTokenError("the token is not valid yet")
        if claims["iat"] > now + self._leeway:
            raise InvalidTokenError("the token is not valid yet")

    def _check_recipient(self, claims: Mapping[str, Any]) -> None:
        """Refuse tokens issued to another client or API of the same provider.

        A token with an `aud` must name one of ours (RFC 7519, 4.1.3), whatever
        else it says. Cognito access tokens carry no `aud` and name the client in
        `client_id`, which is then what binds the token to this service.
        """
        if "aud" in claims:
            audience = claims["aud"]
            audiences = [audience] if isinstance(audience, str) else audience
            for_us = isinstance(audiences, list) and any(
                isinstance(a, str) and a in self._audience for a in audiences
            )
        else:
            for_us = (
                self._client_id is not None
                and claims.get("client_id") == self._client_id
            )
        if not for_us:
            raise InvalidTokenError("the token is not meant for this service")

        if self._token_use is not None and claims.get("token_use") != self._token_use:
            raise InvalidTokenError(
                f"the service accepts {self._token_use} tokens only"
            )

    def _check_required_claims(self, claims: Mapping[str, Any]) -> None:
        for claim, wanted in self._required_claims:
            value = claims.get(claim)
            held = value == wanted or (isinstance(value, list) and wanted in value)
            if not held:
                raise InsufficientScopeError(
                    "the token lacks a claim this service requires"
                )

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        user_id = claims.get(self._user_id_claim)
        if not isinstance(user_id, str) or not user_id.strip():
            raise InvalidTokenError(
                f"the token's {self._user_id_claim} claim is not a user id"
            )
        if len(user_id) > MAX_USER_ID_LENGTH:
            raise InvalidTokenError(
                f"the token's {self._user_id_claim} claim is too long"
            )

        candidates = (claims.get(claim) for claim in self._name_claims)
        name = next((display_name_of(c) for c in candidates if isinstance(c, str)), "")
        return Principal(user_id=user_id, display_name=name or display_name_of(user_id))


def display_name_of(raw: str) -> str:
    """Clean a name for Chime: no control characters, runs of white space folded.

    The result is cut to Chime's limit of 100 UTF-16 code units without splitting a
    surrogate pair; it is empty when nothing printable remains.
    """
    printable = raw.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    name = " ".join(_CONTROL_CHARACTERS.sub(" ", printable).split())
    units = name.encode("utf-16-le", "surrogatepass")
    if len(units) > 2 * MAX_DISPLAY_NAME_UNITS:
        name = units[: 2 * MAX_DISPLAY_NAME_UNITS].decode("utf-16-le", "ignore")
    return name.rstrip()


def _is_numeric_date(value: object) -> bool:
    """Whether `value` is a JSON number every JWT library reads the same way.

    I-JSON (RFC 7493) numbers: finite, and integers within a double's exact
    range. Python would happily compare 10**400 or `Infinity`, and never expire.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    # Beyond 2**53 seconds (285 million years) a time is not a time: it would
    # make a token that never expires. (An int is compared exactly, never cast.)
    return abs(value) <= _MAX_EXACT_INTEGER


def _unverified_header(token: str) -> dict[str, Any]:
    """Read the JOSE header alone, to choose the key; PyJWT checks it all later.

    `jwt.get_unverified_header` decodes every segment, which PyJWT's decode then
    does again; the header segment is all that is needed here.
    """
    segment, separator, _ = token.partition(".")
    if not separator:
        raise InvalidTokenError("the token is malformed")

    try:
        padded = segment + "=" * (-len(segment) % 4)
        header = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except Exception:  # noqa: BLE001 -- any input, any library: a 401
        raise InvalidTokenError("the token is malformed") from None
    if not isinstance(header, dict):
        raise InvalidTokenError("the token is malformed")
    return header
