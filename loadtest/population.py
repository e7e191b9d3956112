"""Who signs in during a load test: user ids, how often each comes back, their tokens.

Kept apart from the locustfile so it imports without gevent: the runner and the
tests use it too. Tokens are signed with the local identity provider's key, the
one `config/local.env` trusts, and minted once per user id: a client keeps its
token until it nears expiry, so repeat sign-ins send the same token.
"""

from __future__ import annotations

import bisect
import itertools
import time
from typing import TYPE_CHECKING, Final

from standin.identity_provider import LocalIdentityProvider
from standin.local_config import KEY_DIRECTORY, LOCAL_ENV_FILE, read_env_file

if TYPE_CHECKING:
    import random
    from pathlib import Path

__all__ = ["TokenBook", "ZipfRanks", "local_token_book"]

_TOKEN_LIFETIME_SECONDS: Final = 3600
# A token is minted again once half its life is gone, so none expires mid-run.
_REMINT_AFTER_SECONDS: Final = _TOKEN_LIFETIME_SECONDS / 2


class ZipfRanks:
    """Draws user ranks 0..n-1, rank k with a weight of 1 / (k + 1) ** exponent.

    A few users sign in again and again and a long tail rarely does, as in a
    chat product's real audience.
    """

    def __init__(self, population: int, exponent: float, rng: random.Random) -> None:
        if population < 1:
            raise ValueError(f"population must be at least 1, got {population}")
        if exponent <= 0:
            raise ValueError(f"the Zipf exponent must be > 0, got {exponent}")

        weights = ((rank + 1) ** -exponent for rank in range(population))
        self._cumulative = list(itertools.accumulate(weights))
        self._rng = rng

    def draw(self) -> int:
        """Return one rank."""
        point = self._rng.random() * self._cumulative[-1]

        return min(
            bisect.bisect_right(self._cumulative, point), len(self._cumulative) - 1
        )


class TokenBook:
    """Mints each user's token once and hands the same one out until it ages."""

    def __init__(self, provider: LocalIdentityProvider, *, audience: str) -> None:
        self._provider = provider
        self._audience = audience
        self._tokens: dict[str, tuple[str, float]] = {}

    def token_for(self, user_id: str) -> str:
        """Return the user's current token, minting it if none is young enough."""
        now = time.monotonic()
        held = self._tokens.get(user_id)
        if held is not None and now - held[1] < _REMINT_AFTER_SECONDS:
            return held[0]

        token = self._provider.mint(
            user_id,
            audience=self._audience,
            name=f"Load {user_id}",
            lifetime_seconds=_TOKEN_LIFETIME_SECONDS,
        )
        self._tokens[user_id] = (token, now)

        return token


def local_token_book(
    *,
    key_directory: Path = KEY_DIRECTORY,
    issuer: str | None = None,
    audience: str | None = None,
) -> TokenBook:
    """Build a book signing with the local key, for the local settings by default."""
    settings = read_env_file(LOCAL_ENV_FILE)
    provider = LocalIdentityProvider.from_key_directory(
        key_directory, issuer=issuer or settings["JWT_ISSUER"]
    )
    first_audience = settings["JWT_AUDIENCE"].split(",")[0].strip()

    return TokenBook(provider, audience=audience or first_audience)
