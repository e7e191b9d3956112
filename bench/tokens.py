"""Tokens for the benchmark: HS256 with a secret made per run, RS256 with the local key.

Every token is new (its own `jti`), so a figure that must not repeat a token can
send each once. RS256 tokens are signed by the local identity provider, whose
public key the stand-in serves as the service's JWKS.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Final

import jwt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from standin.identity_provider import LocalIdentityProvider

__all__ = ["TokenMinter"]

_LIFETIME_SECONDS: Final = 3600


class TokenMinter:
    """Mints a new token for a user id, with one algorithm and key."""

    def __init__(
        self, algorithm: str, sign: Callable[[str, str, dict[str, object]], str]
    ) -> None:
        self.algorithm = algorithm
        self._sign = sign

    @classmethod
    def hs256(cls, secret: str, *, issuer: str, audience: str) -> TokenMinter:
        """Sign with a shared secret, as a service with JWT_SECRET checks."""

        def sign(user_id: str, name: str, extra: dict[str, object]) -> str:
            now = int(time.time())
            claims = {
                "iss": issuer,
                "aud": audience,
                "sub": user_id,
                "name": name,
                "iat": now,
                "exp": now + _LIFETIME_SECONDS,
                **extra,
            }
            return jwt.encode(claims, secret, algorithm="HS256")

        return cls("HS256", sign)

    @classmethod
    def rs256(cls, provider: LocalIdentityProvider, *, audience: str) -> TokenMinter:
        """Sign with the local identity provider's RSA key, as its JWKS checks."""

        def sign(user_id: str, name: str, extra: dict[str, object]) -> str:
            return provider.mint(
                user_id,
                audience=audience,
                name=name,
                lifetime_seconds=_LIFETIME_SECONDS,
                extra_claims=extra,
            )

        return cls("RS256", sign)

    def mint(self, user_id: str) -> str:
        """Return a token for `user_id` that no earlier call returned."""
        return self._sign(user_id, f"Bench {user_id}", {"jti": secrets.token_hex(8)})

    def stream(self, user_ids: Iterable[str]) -> Iterator[str]:
        """Mint a token for each user id, lazily."""
        return (self.mint(user_id) for user_id in user_ids)

    def write(self, path: Path, user_ids: Iterable[str]) -> Path:
        """Write one new token per user id, a line each, for wrk's script."""
        with path.open("w") as file:
            for token in self.stream(user_ids):
                file.write(token + "\n")

        return path
