"""Collapse concurrent calls for the same key into one.

A login storm brings many sign-ins of the same user at once; each would miss the
cache and call AWS. `SingleFlight` lets the first caller start the work and every
later caller for that key await the same result, so a thousand simultaneous
sign-ins of one user make one `AssumeRole`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class SingleFlight(Generic[_K, _V]):
    """Runs at most one call per key at a time and shares its outcome."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[_K, asyncio.Task[_V]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    async def run(self, key: _K, call: Callable[[], Awaitable[_V]]) -> _V:
        """Return the outcome of `call()`, or of the call already running for `key`.

        The call runs in its own task, so a caller that gives up (its client went
        away, its deadline passed) neither cancels it for the others nor loses its
        result, which still reaches the cache.
        """
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._calls[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))

        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Cancel the calls still running, at shutdown."""
        tasks = list(self._calls.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, key: _K, task: asyncio.Task[_V]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            # Mark the outcome as seen: every waiter may have given up already.
            task.exception()
