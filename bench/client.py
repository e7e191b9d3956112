"""A small asynchronous client for what wrk cannot do: count-bounded sign-ins.

Warming users before a figure, capturing one real answer, and filling the
caches with a given number of users all need an exact number of sign-ins, each
checked; wrk runs for a duration instead.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Final

import aiohttp

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["sign_in_all", "sign_in_once"]

SIGN_IN_PATH: Final = "/v1/sign-in"
_TIMEOUT: Final = aiohttp.ClientTimeout(total=30)


def sign_in_all(
    url: str, tokens: Iterable[str], *, concurrency: int = 64
) -> Counter[int]:
    """Sign in once with each token, `concurrency` at a time; count the statuses."""
    return asyncio.run(_sign_in_all(url, iter(tokens), concurrency))


def sign_in_once(url: str, token: str) -> tuple[int, bytes]:
    """Sign in once; return the status and the body."""
    return asyncio.run(_sign_in_once(url, token))


async def _sign_in_all(
    url: str, tokens: Iterator[str], concurrency: int
) -> Counter[int]:
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)

    async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session:

        async def sign_in_in_turn() -> None:
            for token in tokens:  # one iterator shared by every task: each token once
                headers = {"Authorization": f"Bearer {token}"}
                async with session.post(url + SIGN_IN_PATH, headers=headers) as answer:
                    await answer.read()
                    statuses[answer.status] += 1

        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(sign_in_in_turn())

    return statuses


async def _sign_in_once(url: str, token: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession(timeout=_TIMEOUT) as session,
        session.post(
            url + SIGN_IN_PATH, headers={"Authorization": f"Bearer {token}"}
        ) as answer,
    ):
        return answer.status, await answer.read()
