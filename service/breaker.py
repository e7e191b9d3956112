"""A circuit breaker: stop waiting on a dependency that keeps failing.

Redis is an optimisation here, never a requirement. While it answers, every call
is tried; after `failures` consecutive failures the circuit opens and calls are
refused at once, so sign-ins stop paying the timeout on a dead Redis. After
`cooldown_seconds` one trial call is let through (half-open): its success closes
the circuit, its failure opens it for another cool-down.
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CircuitBreaker", "CircuitState"]

logger = structlog.get_logger(__name__)


class CircuitState(enum.Enum):
    """Whether calls are tried (closed), refused (open), or one is trying (half)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one dependency and decides what to try."""

    __slots__ = (
        "_clock",
        "_cooldown",
        "_failures",
        "_name",
        "_opened_at",
        "_state",
        "_threshold",
        "_trial_running",
    )

    def __init__(
        self,
        name: str,
        *,
        failures: int,
        cooldown_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._threshold = failures
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False

    @property
    def state(self) -> CircuitState:
        """The state as of the last call; an open circuit half-opens when tried."""
        return self._state

    def allows(self) -> bool:
        """Whether to try a call now; after True, report how it went exactly once."""
        if self._state is CircuitState.CLOSED:
            return True

        if self._state is CircuitState.OPEN:
            if self._clock() - self._opened_at < self._cooldown:
                return False
            self._state = CircuitState.HALF_OPEN

        if self._trial_running:
            return False
        self._trial_running = True
        return True

    def succeeded(self) -> None:
        """Record a call that worked: the dependency is back, if it was away."""
        self._failures = 0
        self._trial_running = False
        if self._state is not CircuitState.CLOSED:
            self._state = CircuitState.CLOSED
            logger.info("circuit closed", dependency=self._name)

    def failed(self) -> None:
        """Record a call that failed or timed out."""
        self._failures += 1
        self._trial_running = False
        if self._state is CircuitState.HALF_OPEN or (
            self._state is CircuitState.CLOSED and self._failures >= self._threshold
        ):
            self._open()

    def abandoned(self) -> None:
        """Record a call given up before it ended: it proves nothing either way."""
        self._trial_running = False

    def _open(self) -> None:
        if self._state is CircuitState.CLOSED:
            logger.warning(
                "circuit open: calls skipped until a trial succeeds",
                dependency=self._name,
                failures=self._failures,
                cooldown_seconds=self._cooldown,
            )
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()
