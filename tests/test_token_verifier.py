"""The verifier on its own: remembered tokens, its clock, and odd time claims."""

from __future__ import annotations

import jwt
import pytest

from service.errors import InvalidTokenError
from service.keys import StaticKeySource, VerificationKey, static_key_source
from service.tokens import TokenVerifier
from tests.support import FakeClock, claims_for, hs256_token, settings_for


class CountingKeys:
    """A real key source that counts how often a key is looked up."""

    def __init__(self, inner: StaticKeySource) -> None:
        self.inner = inner
        self.lookups = 0
        self.generation = 0

    @property
    def ready(self) -> bool:
        """As ready as the key it wraps."""
        return self.inner.ready

    async def key_for(self, kid: str | None) -> VerificationKey:
        """Count, then look the key up."""
        self.lookups += 1
        return await self.inner.key_for(kid)


@pytest.fixture
def clock() -> FakeClock:
    """The verifier's clock."""
    return FakeClock()


@pytest.fixture
def keys(hs256_secret: str) -> CountingKeys:
    """The shared-secret key, counted."""
    return CountingKeys(static_key_source(settings_for(jwt_secret=hs256_secret)))


def _verifier(
    keys: CountingKeys, clock: FakeClock, **overrides: object
) -> TokenVerifier:
    settings = settings_for(jwt_leeway_seconds=0, **overrides)
    return TokenVerifier(settings, keys, clock=clock)


async def test_verifier_remembers_a_token_until_it_expires(
    keys: CountingKeys, clock: FakeClock, hs256_secret: str
) -> None:
    """A repeated token skips the signature check, but not its expiry."""
    verifier = _verifier(keys, clock)
    token = hs256_token(hs256_secret, "mia", exp=int(clock.now) + 60)

    first = await verifier.verify(token)
    second = await verifier.verify(token)
    clock.now += 61
    with pytest.raises(InvalidTokenError, match="expired"):
        await verifier.verify(token)

    assert first == second
    assert keys.lookups == 2


async def test_verifier_forgets_tokens_when_the_keys_change(
    keys: CountingKeys, clock: FakeClock, hs256_secret: str
) -> None:
    """A new key set means every token is verified afresh."""
    verifier = _verifier(keys, clock)
    token = hs256_token(hs256_secret, "noa")
    await verifier.verify(token)

    keys.generation += 1
    await verifier.verify(token)

    assert keys.lookups == 2


async def test_verifier_without_a_cache_checks_every_time(
    keys: CountingKeys, clock: FakeClock, hs256_secret: str
) -> None:
    """With JWT_VERIFIED_CACHE_SIZE=0 each call verifies the signature."""
    verifier = _verifier(keys, clock, jwt_verified_cache_size=0)
    token = hs256_token(hs256_secret, "oli")

    for _ in range(3):
        await verifier.verify(token)

    assert keys.lookups == 3


async def test_verifier_refuses_a_token_before_its_nbf_on_its_clock(
    keys: CountingKeys, clock: FakeClock, hs256_secret: str
) -> None:
    """Time claims are judged on the service's clock, not the machine's."""
    verifier = _verifier(keys, clock)
    token = hs256_token(hs256_secret, "pia", nbf=int(clock.now) + 30)

    with pytest.raises(InvalidTokenError, match="not valid yet"):
        await verifier.verify(token)
    clock.now += 31
    principal = await verifier.verify(token)

    assert principal.user_id == "pia"


@pytest.mark.parametrize(
    "value", [float("inf"), float("nan"), float("-inf"), 1e20, 2**60]
)
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
async def test_verifier_refuses_time_claims_that_are_not_finite(
    keys: CountingKeys,
    clock: FakeClock,
    hs256_secret: str,
    claim: str,
    value: float,
) -> None:
    """`Infinity`, `NaN` and times past 2**53 seconds never pass: no endless tokens."""
    verifier = _verifier(keys, clock)
    token = jwt.encode(claims_for("quinn", **{claim: value}), hs256_secret, "HS256")

    with pytest.raises(InvalidTokenError, match="not a valid time"):
        await verifier.verify(token)
