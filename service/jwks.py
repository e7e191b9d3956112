"""An identity provider's signing keys, fetched from its JWKS URL and kept fresh.

Fetching never happens on the path of a sign-in whose key is known: a background
task refreshes the set on the provider's schedule (`Cache-Control: max-age`, within
bounds). A token naming an unknown `kid` (the provider rotated keys) triggers one
refetch, at most once per cooldown window, so a flood of made-up `kid`s costs the
provider one request per window. When the provider is down the last good set stays
in use for `STALE_LIMIT_SECONDS`; a key the provider removed stops verifying at the
next successful refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import TYPE_CHECKING, Final

import aiohttp
import structlog

from service.keys import VerificationKey, key_from_jwk

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from service.settings import Settings

__all__ = ["JwksKeySource"]

logger = structlog.get_logger(__name__)

DEFAULT_REFRESH_SECONDS: Final = 300.0
MIN_REFRESH_SECONDS: Final = 30.0
MAX_REFRESH_SECONDS: Final = 86_400.0
RETRY_MIN_SECONDS: Final = 1.0
RETRY_MAX_SECONDS: Final = 60.0
STALE_LIMIT_SECONDS: Final = 86_400.0
FETCH_TIMEOUT_SECONDS: Final = 5.0
MAX_JWKS_BYTES: Final = 1 << 20

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*(\d+)", re.IGNORECASE)


class JwksError(Exception):
    """The JWKS endpoint did not give a usable key set."""


class JwksKeySource:
    """The current keys of one JWKS URL."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        *,
        on_fetch: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.jwt_jwks_url is None:
            raise ValueError("JwksKeySource needs JWT_JWKS_URL")

        self._url = settings.jwt_jwks_url
        self._session = session
        self._algorithms = frozenset(settings.jwt_algorithms)
        self._cooldown = settings.jwt_jwks_refetch_cooldown_seconds
        self._on_fetch = on_fetch
        self._clock = clock
        self._keys: dict[str | None, VerificationKey] = {}
        self._document: object = None
        self._generation = 0
        self._loaded_at: float | None = None
        self._last_attempt = float("-inf")
        self._fetching: asyncio.Task[float] | None = None

    @property
    def ready(self) -> bool:
        """Whether a key set is loaded and not older than the stale limit."""
        return (
            self._loaded_at is not None
            and self._clock() - self._loaded_at < STALE_LIMIT_SECONDS
        )

    @property
    def generation(self) -> int:
        """A number that changes whenever a refresh brings a different key set."""
        return self._generation

    async def key_for(self, kid: str | None) -> VerificationKey | None:
        """Return the key for `kid`, refetching once if it is unknown."""
        key = self._lookup(kid)
        if key is None and self._clock() - self._last_attempt >= self._cooldown:
            try:
                await asyncio.shield(self._refresh())
            except JwksError:
                return None
            key = self._lookup(kid)
        return key

    async def keep_fresh(self) -> None:
        """Refresh the key set forever, on the provider's schedule; run as a task."""
        delay = RETRY_MIN_SECONDS
        while True:
            try:
                wait = await asyncio.shield(self._refresh())
            except JwksError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue

            delay = RETRY_MIN_SECONDS
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        """Stop a fetch still running, at shutdown."""
        if self._fetching is not None and not self._fetching.done():
            self._fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError, JwksError):
                await self._fetching

    def _lookup(self, kid: str | None) -> VerificationKey | None:
        if not self.ready:
            return None
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _refresh(self) -> asyncio.Task[float]:
        # One fetch at a time, shared by the schedule and unknown-kid refetches.
        if self._fetching is None or self._fetching.done():
            self._last_attempt = self._clock()
            self._fetching = asyncio.ensure_future(self._fetch())
            # Seen here, so a failure nobody waited for is not reported as lost.
            self._fetching.add_done_callback(_retrieve)
        return self._fetching

    async def _fetch(self) -> float:
        """Fetch and install the key set; return seconds until the next refresh."""
        try:
            async with self._session.get(
                self._url,
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
                allow_redirects=False,
            ) as response:
                response.raise_for_status()
                body = await _read_bounded(response)
                max_age = _max_age(response.headers.get("Cache-Control", ""))
            document = _parse(body)
            keys = self._keys_of(document)
        except Exception as error:
            # Whatever went wrong (network, size, JSON nested past the parser's
            # depth), the fetch failed and the keys already known stay in use.
            logger.warning(
                "jwks fetch failed", url=self._url, error=type(error).__name__
            )
            self._report("failure")
            raise JwksError(type(error).__name__) from error

        if not keys:
            logger.warning("jwks holds no usable signing key", url=self._url)
            self._report("no_usable_key")
            raise JwksError("no usable signing key")

        if document != self._document:
            self._generation += 1
            self._document = document
        self._keys = keys
        self._loaded_at = self._clock()
        logger.info("jwks loaded", url=self._url, keys=len(keys))
        self._report("success")
        return max_age

    def _report(self, outcome: str) -> None:
        if self._on_fetch is not None:
            self._on_fetch(outcome)

    def _keys_of(
        self, document: Mapping[str, object]
    ) -> dict[str | None, VerificationKey]:
        entries = document.get("keys")
        if not isinstance(entries, list):
            return {}

        keys: dict[str | None, VerificationKey] = {}
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            kid = entry.get("kid")
            key = key_from_jwk(entry, self._algorithms)
            if key is not None and (kid is None or isinstance(kid, str)):
                keys[kid] = key
        return keys


def _retrieve(task: asyncio.Task[float]) -> None:
    if not task.cancelled():
        task.exception()


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """Read the whole body, however it is chunked, refusing more than the bound."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("the JWKS document is too large")
    return bytes(body)


def _parse(body: bytes) -> Mapping[str, object]:
    document = json.loads(body)
    if not isinstance(document, dict):
        raise TypeError("the JWKS document is not a JSON object")
    return document


def _max_age(cache_control: str) -> float:
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return DEFAULT_REFRESH_SECONDS
    return min(max(float(match[1]), MIN_REFRESH_SECONDS), MAX_REFRESH_SECONDS)
