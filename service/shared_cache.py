"""A second cache level in Redis, shared by every replica of the deployment.

Each process keeps its own caches (`service.credentials`, `service.chime`); on a
miss there, this level is asked before AWS, and filled after AWS answers. So a
login storm after a deploy costs one `AssumeRole` per user for the deployment,
not one per replica:

- Entries are sealed (`service.sealing`): names are keyed hashes, values are
  encrypted and bound to their names. Entries that do not open are ignored.
- Concurrent misses of one user on several replicas make one AWS call in total:
  one replica takes a short lock (a random token, an expiry, renewed while it
  works, released only by compare-and-delete), the others poll for its result.
  A replica that dies holding the lock delays the others by the lock's expiry
  at most; then one of them takes the lock and calls AWS itself.
- Redis is never needed for a sign-in: every Redis call is bounded by
  `REDIS_TIMEOUT_SECONDS`, a failure falls back to asking AWS as if there were
  no Redis, and a circuit breaker stops calling a Redis that keeps failing.

Without `REDIS_URL`, `LOCAL_ONLY` stands in: every miss goes straight to AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import secrets
import time
from collections import Counter
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from service.breaker import CircuitBreaker, CircuitState
from service.metrics import PREFIX
from service.sealing import Sealer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from prometheus_client.core import Metric

    from service.sealing import Slot
    from service.settings import Settings

__all__ = [
    "LOCAL_ONLY",
    "ClusterLock",
    "EntryKind",
    "RedisCache",
    "SharedCache",
    "SharedCacheCollector",
    "SharedCacheUnavailableError",
    "SharedEntries",
    "open_redis_cache",
]

logger = structlog.get_logger(__name__)

_V = TypeVar("_V")
_T = TypeVar("_T")

# Redis answers in well under a millisecond, so a few connections carry thousands
# of sign-ins a second; the bound keeps a storm from opening thousands.
_MAX_CONNECTIONS: Final = 64

# Waiting replicas poll for the lock holder's result: soon at first (AWS often
# answers in tens of milliseconds), then less often, with jitter so that replicas
# do not poll in step.
_FIRST_POLL_SECONDS: Final = 0.01
_LAST_POLL_SECONDS: Final = 0.25

# The lock is renewed this many times per expiry while its holder works, so a
# slow AWS call keeps it and a dead holder loses it within one expiry.
_RENEWALS_PER_EXPIRY: Final = 3

# Only the holder's token releases or renews a lock; anyone else's is left alone.
_RELEASE_SCRIPT: Final = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""
_RENEW_SCRIPT: Final = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
"""

# What a failed Redis call can raise: redis-py's errors (its timeouts and
# connection errors included), socket errors, and our own timeout.
_REDIS_FAILURES: Final = (RedisError, OSError, TimeoutError)

_LOOKUP_OUTCOMES: Final = ("hit", "miss", "stale", "rejected")
_LOCK_OUTCOMES: Final = ("acquired", "took_over", "shared", "waited_out")


class SharedCacheUnavailableError(Exception):
    """Redis failed, timed out or is behind an open circuit: do without it."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EntryKind(Generic[_V]):
    """How one kind of value is stored: its name, its bytes and its lifetime."""

    name: str
    """Part of every Redis key of this kind, in clear: `credentials`, `user`."""

    scope: str
    """What the values belong to besides the user: the role, the app instance."""

    encode: Callable[[_V], bytes]
    decode: Callable[[bytes], _V]
    """Raises ValueError, KeyError or TypeError for bytes it cannot read."""

    lifetime: Callable[[_V], float]
    """Seconds the value may stay in Redis from now; nothing is stored at or below 0."""

    fresh: Callable[[_V], bool] = lambda _value: True
    """Whether a stored value may be used as it is, rather than fetched again."""


class SharedEntries(Protocol[_V]):
    """The second cache level for one kind of value, keyed by Chime user id."""

    async def get_or_create(
        self, subject: str, create: Callable[[], Awaitable[_V]]
    ) -> _V:
        """Return the shared value, or the outcome of `create()`, then shared."""

    async def put(self, subject: str, value: _V) -> None:
        """Share a value that changed, for other replicas to find."""


class SharedCache(Protocol):
    """Where the second level's entries of each kind are kept."""

    def entries(self, kind: EntryKind[_V]) -> SharedEntries[_V]:
        """Return the second level for values of `kind`."""


class _Unshared(Generic[_V]):
    """No second level: every miss is created in this process."""

    async def get_or_create(
        self, subject: str, create: Callable[[], Awaitable[_V]]
    ) -> _V:
        del subject
        return await create()

    async def put(self, subject: str, value: _V) -> None:
        del subject, value


class _LocalOnly:
    """The second level when Redis is not configured: there is none."""

    def entries(self, kind: EntryKind[_V]) -> SharedEntries[_V]:
        del kind
        return _Unshared()


LOCAL_ONLY: Final[SharedCache] = _LocalOnly()
"""The shared cache of a deployment without Redis."""


@dataclasses.dataclass(slots=True)
class SharedCacheStats:
    """Running counts, read by the metrics endpoint."""

    lookups: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    locks: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    redis_failures: int = 0
    redis_skipped: int = 0


class RedisCache:
    """The second level in Redis; every call bounded, and guarded by a breaker."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.sealer = Sealer(settings.cache_encryption_keys)
        self.stats = SharedCacheStats()
        self.wait_seconds = settings.sign_in_deadline_seconds
        self._breaker = CircuitBreaker(
            "redis",
            failures=settings.redis_breaker_failures,
            cooldown_seconds=settings.redis_breaker_cooldown_seconds,
            clock=monotonic,
        )
        self._timeout = settings.redis_timeout_seconds
        self._lock_seconds = settings.redis_lock_seconds
        self._release = redis.register_script(_RELEASE_SCRIPT)
        self._renew = redis.register_script(_RENEW_SCRIPT)

    @property
    def circuit_state(self) -> CircuitState:
        """Whether Redis is being used (closed) or done without (open, half-open)."""
        return self._breaker.state

    def entries(self, kind: EntryKind[_V]) -> SharedEntries[_V]:
        """Return the second level for values of `kind`."""
        # Every series exists from the start, so rates work from the first scrape.
        for outcome in _LOOKUP_OUTCOMES:
            self.stats.lookups.setdefault((kind.name, outcome), 0)
        for outcome in _LOCK_OUTCOMES:
            self.stats.locks.setdefault((kind.name, outcome), 0)
        return _RedisEntries(self, kind)

    def lock(self, name: str) -> ClusterLock:
        """Return a lock on `name`, not yet taken, with a token of its own."""
        return ClusterLock(self, name, self._lock_seconds)

    async def call(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Run one Redis call within the timeout; raise if Redis cannot answer."""
        if not self._breaker.allows():
            self.stats.redis_skipped += 1
            raise SharedCacheUnavailableError

        try:
            async with asyncio.timeout(self._timeout):
                result = await operation()
        except _REDIS_FAILURES as error:
            self._breaker.failed()
            self.stats.redis_failures += 1
            logger.debug("redis call failed", error=type(error).__name__)
            raise SharedCacheUnavailableError from error
        except BaseException:
            self._breaker.abandoned()
            raise

        self._breaker.succeeded()
        return result

    async def release(self, name: str, token: str) -> None:
        """Delete the lock `name` if `token` still holds it."""
        await self.call(lambda: self._release(keys=[name], args=[token]))

    async def renew(self, name: str, token: str, milliseconds: int) -> bool:
        """Extend the lock `name` if `token` still holds it; False if it does not."""
        renewed = await self.call(
            lambda: self._renew(keys=[name], args=[token, milliseconds])
        )
        return bool(renewed)


class ClusterLock:
    """A lock across replicas that only its holder releases, and that expires."""

    __slots__ = ("_cache", "_name", "_seconds", "_token")

    def __init__(self, cache: RedisCache, name: str, seconds: float) -> None:
        self._cache = cache
        self._name = name
        self._seconds = seconds
        self._token = secrets.token_hex(16)

    async def acquire(self) -> bool:
        """Take the lock if nobody holds it; False if somebody does."""
        redis = self._cache.redis
        taken = await self._cache.call(
            lambda: redis.set(
                self._name, self._token, nx=True, px=_milliseconds(self._seconds)
            )
        )
        return bool(taken)

    async def release(self) -> None:
        """Let go of the lock if it is still ours; never raises.

        A lock that expired and was taken by another replica is that replica's:
        compare-and-delete leaves it alone.
        """
        with contextlib.suppress(SharedCacheUnavailableError):
            await self._cache.release(self._name, self._token)

    @contextlib.asynccontextmanager
    async def kept_alive(self) -> AsyncIterator[None]:
        """Renew the lock while the body runs, so slow work keeps it."""
        renewing = asyncio.create_task(self._keep_renewing(), name="lock-renewal")
        try:
            yield
        finally:
            renewing.cancel()
            # Unlike awaiting it directly, this lets our own cancellation through.
            await asyncio.gather(renewing, return_exceptions=True)

    async def _keep_renewing(self) -> None:
        while True:
            await asyncio.sleep(self._seconds / _RENEWALS_PER_EXPIRY)
            try:
                renewed = await self._cache.renew(
                    self._name, self._token, _milliseconds(self._seconds)
                )
                if not renewed:
                    logger.debug("lock lost before its work ended")
                    return
            except SharedCacheUnavailableError:
                return


class _RedisEntries(Generic[_V]):
    """One kind of value in Redis, sealed, with single flight across replicas."""

    __slots__ = ("_cache", "_kind")

    def __init__(self, cache: RedisCache, kind: EntryKind[_V]) -> None:
        self._cache = cache
        self._kind = kind

    async def get_or_create(
        self, subject: str, create: Callable[[], Awaitable[_V]]
    ) -> _V:
        """Return the shared value, or create it once for the whole deployment."""
        slots = self._slots(subject)
        try:
            found = await self._read(slots, record=True)
            if found is not None:
                return found
            return await self._create_once(slots, create)
        except SharedCacheUnavailableError:
            # Raised by Redis calls before `create` ran: without Redis, as before.
            return await create()

    async def put(self, subject: str, value: _V) -> None:
        """Write `value` for other replicas; without Redis, do nothing."""
        await self._write(self._slots(subject)[0], value)

    def _slots(self, subject: str) -> tuple[Slot, ...]:
        return self._cache.sealer.slots(self._kind.name, self._kind.scope, subject)

    async def _create_once(
        self, slots: tuple[Slot, ...], create: Callable[[], Awaitable[_V]]
    ) -> _V:
        """Create the value under the lock, or wait for the replica holding it."""
        stats = self._cache.stats
        lock = self._cache.lock(f"{slots[0].name}:lock")
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._cache.wait_seconds
        pause = _FIRST_POLL_SECONDS

        waited = False
        while not await lock.acquire():
            waited = True
            left = give_up_at - loop.time()
            if left <= 0:
                stats.locks[self._kind.name, "waited_out"] += 1
                return await create()

            await asyncio.sleep(min(_jittered(pause), left))
            pause = min(pause * 2, _LAST_POLL_SECONDS)
            found = await self._read(slots, record=False)
            if found is not None:
                stats.locks[self._kind.name, "shared"] += 1
                return found

        try:
            # The previous holder may have written and let go since we looked.
            found = await self._read(slots, record=False)
            if found is not None:
                stats.locks[self._kind.name, "shared"] += 1
                return found

            stats.locks[self._kind.name, "took_over" if waited else "acquired"] += 1
            async with lock.kept_alive():
                value = await create()
            await self._write(slots[0], value)
            return value
        finally:
            await lock.release()

    async def _read(self, slots: tuple[Slot, ...], *, record: bool) -> _V | None:
        """Return a fresh value from any slot, the newest key's first."""
        redis = self._cache.redis
        names = [slot.name for slot in slots]
        sealed_values = await self._cache.call(lambda: redis.mget(names))

        found: _V | None = None
        outcome = "miss"
        for slot, sealed in zip(slots, sealed_values, strict=True):
            if not isinstance(sealed, bytes):
                continue

            value = self._open(slot, sealed)
            if value is None:
                outcome = "rejected" if outcome == "miss" else outcome
            elif self._kind.fresh(value):
                found, outcome = value, "hit"
                break
            else:
                outcome = "stale"

        if record:
            self._cache.stats.lookups[self._kind.name, outcome] += 1
        return found

    async def _write(self, slot: Slot, value: _V) -> None:
        """Store `value` for its lifetime; a failure only means others miss it."""
        milliseconds = _milliseconds(self._kind.lifetime(value))
        if milliseconds <= 0:
            return

        sealed = slot.seal(self._kind.encode(value))
        redis = self._cache.redis
        with contextlib.suppress(SharedCacheUnavailableError):
            await self._cache.call(
                lambda: redis.set(slot.name, sealed, px=milliseconds)
            )

    def _open(self, slot: Slot, sealed: bytes) -> _V | None:
        plaintext = slot.open(sealed)
        if plaintext is not None:
            try:
                return self._kind.decode(plaintext)
            except (ValueError, KeyError, TypeError):
                pass

        # Not sealed with this slot's key for this slot: never ours to use.
        logger.warning(
            "shared cache entry ignored: it does not open", kind=self._kind.name
        )
        return None


class SharedCacheCollector(Collector):
    """Reads the Redis level's counts and circuit state when Prometheus scrapes."""

    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        """Yield the lookups, lock outcomes, Redis failures and circuit state."""
        stats = self._cache.stats
        lookups = CounterMetricFamily(
            f"{PREFIX}_shared_cache_lookups",
            "Second-level lookups in Redis after a local miss, by kind and outcome "
            "(rejected: an entry that did not decrypt).",
            labels=["kind", "outcome"],
        )
        for (kind, outcome), count in sorted(stats.lookups.items()):
            lookups.add_metric([kind, outcome], count)
        yield lookups

        locks = CounterMetricFamily(
            f"{PREFIX}_shared_cache_locks",
            "Cluster-wide single flight after a shared miss, by kind: this replica "
            "took the lock at once (acquired) or once its holder let go without a "
            "result or died (took_over), used the holder's result (shared), or "
            "stopped waiting at the sign-in deadline and called AWS (waited_out).",
            labels=["kind", "outcome"],
        )
        for (kind, outcome), count in sorted(stats.locks.items()):
            locks.add_metric([kind, outcome], count)
        yield locks

        yield CounterMetricFamily(
            f"{PREFIX}_redis_failures",
            "Redis calls that failed or took longer than REDIS_TIMEOUT_SECONDS.",
            value=stats.redis_failures,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_redis_skipped",
            "Redis calls not made because the circuit was open.",
            value=stats.redis_skipped,
        )
        state = GaugeMetricFamily(
            f"{PREFIX}_redis_circuit_state",
            "1 for the circuit's state: closed (Redis in use), open or half_open "
            "(each replica on its own caches).",
            labels=["state"],
        )
        for candidate in CircuitState:
            current = self._cache.circuit_state is candidate
            state.add_metric([candidate.value], 1 if current else 0)
        yield state


@contextlib.asynccontextmanager
async def open_redis_cache(settings: Settings) -> AsyncIterator[RedisCache]:
    """Connect lazily to `REDIS_URL`; close the connections on exit.

    Nothing is awaited here: a Redis that is down at startup must not keep the
    service from starting, so the first sign-in finds out, and the breaker opens.
    """
    if settings.redis_url is None:
        raise ValueError("open_redis_cache needs REDIS_URL")

    timeout = settings.redis_timeout_seconds
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=_MAX_CONNECTIONS,
        timeout=timeout,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        # The breaker decides when to try again, not redis-py's own retries.
        retry=Retry(NoBackoff(), 0),
    )
    redis = Redis.from_pool(pool)
    logger.debug("redis client opened")
    try:
        yield RedisCache(redis, settings)
    finally:
        logger.debug("redis client closing")
        await redis.aclose()


def _milliseconds(seconds: float) -> int:
    return int(seconds * 1000)


def _jittered(seconds: float) -> float:
    # Not crypto: spreads the polls of waiting replicas.
    return random.uniform(seconds / 2, seconds)  # noqa: S311
