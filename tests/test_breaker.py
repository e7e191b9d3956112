"""The circuit breaker in front of Redis: open, half-open, closed, by the rules."""

from __future__ import annotations

import pytest

from service.breaker import CircuitBreaker, CircuitState
from tests.support import FakeClock

FAILURES = 3
COOLDOWN = 5.0


@pytest.fixture
def clock() -> FakeClock:
    """The breaker's clock, moved by the tests."""
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    """A closed breaker that opens after three failures."""
    return CircuitBreaker(
        "redis", failures=FAILURES, cooldown_seconds=COOLDOWN, clock=clock
    )


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allows()
        breaker.failed()


def test_breaker_opens_after_consecutive_failures(breaker: CircuitBreaker) -> None:
    """N failures in a row open it; until then every call is tried."""
    _fail(breaker, FAILURES - 1)
    before = breaker.state

    _fail(breaker, 1)

    assert before is CircuitState.CLOSED
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allows()


def test_breaker_counts_only_consecutive_failures(breaker: CircuitBreaker) -> None:
    """A success in between starts the count again."""
    _fail(breaker, FAILURES - 1)
    assert breaker.allows()
    breaker.succeeded()

    _fail(breaker, FAILURES - 1)

    assert breaker.state is CircuitState.CLOSED


def test_breaker_half_opens_for_one_trial_after_the_cooldown(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    """After the cool-down exactly one call is tried; others wait for its outcome."""
    _fail(breaker, FAILURES)
    clock.now += COOLDOWN - 0.1
    assert not breaker.allows()
    clock.now += 0.1

    trial = breaker.allows()
    second = breaker.allows()

    assert trial
    assert not second
    assert breaker.state is CircuitState.HALF_OPEN


def test_breaker_closes_when_the_trial_succeeds(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    """A successful trial puts every call back through."""
    _fail(breaker, FAILURES)
    clock.now += COOLDOWN
    assert breaker.allows()

    breaker.succeeded()

    assert breaker.state is CircuitState.CLOSED
    assert breaker.allows()
    assert breaker.allows()


def test_breaker_reopens_for_a_full_cooldown_when_the_trial_fails(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    """One failed trial is enough to open it again, from that moment."""
    _fail(breaker, FAILURES)
    clock.now += COOLDOWN
    assert breaker.allows()

    breaker.failed()

    assert breaker.state is CircuitState.OPEN
    clock.now += COOLDOWN - 0.1
    assert not breaker.allows()


def test_breaker_lets_another_trial_through_when_one_is_abandoned(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    """A trial cancelled before it ended proves nothing: the next call tries."""
    _fail(breaker, FAILURES)
    clock.now += COOLDOWN
    assert breaker.allows()

    breaker.abandoned()

    assert breaker.allows()
    assert breaker.state is CircuitState.HALF_OPEN
