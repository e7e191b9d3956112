"""Short-lived AWS credentials per user from STS `AssumeRole`, cached until near expiry.

A user's credentials are kept until `CREDENTIALS_REFRESH_MARGIN_SECONDS` before they
expire, so repeat sign-ins skip STS and every response leaves the client that margin
to use them. Past the margin the next sign-in refreshes them. If that refresh fails
because AWS is throttling or down, the old credentials are still served while they
have at least `CREDENTIALS_STALE_MIN_SECONDS` left: a client with a working session
beats a `503`. Entries leave the cache at that point, so memory holds nothing that
could never be served.

With Redis configured, a miss here asks the deployment's shared level first
(`service.shared_cache`), under the same rule: entries live there until the
stale minimum, and are used only while no refresh is due.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from cachetools import TLRUCache

from service.errors import AwsUnavailableError
from service.shared_cache import LOCAL_ONLY, EntryKind
from service.singleflight import SingleFlight
from service.user_ids import role_session_name, source_identity

if TYPE_CHECKING:
    from types_aiobotocore_sts import STSClient
    from types_aiobotocore_sts.type_defs import AssumeRoleRequestTypeDef

    from service.aws import AwsGate
    from service.settings import Settings
    from service.shared_cache import SharedCache

__all__ = ["USER_TAG", "CacheStats", "Credentials", "CredentialsCache"]

logger = structlog.get_logger(__name__)

USER_TAG = "UserUUID"
"""The session tag the role's IAM policy reads as `${aws:PrincipalTag/UserUUID}`."""

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """One user's temporary AWS credentials."""

    access_key_id: str
    secret_access_key: str = dataclasses.field(repr=False)
    session_token: str = dataclasses.field(repr=False)
    expiration: float
    """When STS says they expire, in seconds since the epoch."""

    @property
    def expiration_iso(self) -> str:
        """The expiry as ISO-8601 UTC, the way the AWS SDKs for JavaScript read it."""
        return _iso_utc(self.expiration)


@functools.lru_cache(maxsize=4096)
def _iso_utc(moment: float) -> str:
    # Returning users are answered with the same expiry again and again; the
    # formatting is done once per expiry, in a bounded cache, not per user.
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(slots=True)
class CacheStats:
    """Running counts, read by the metrics endpoint."""

    hits: int = 0
    misses: int = 0
    stale_served: int = 0


class CredentialsCache:
    """Hands out a user's credentials, calling STS only when the cache cannot."""

    def __init__(
        self,
        sts: STSClient,
        gate: AwsGate,
        settings: Settings,
        *,
        clock: Clock = time.time,
        shared: SharedCache = LOCAL_ONLY,
    ) -> None:
        self._sts = sts
        self._gate = gate
        self._role_arn = settings.user_role_arn
        self._duration = settings.credentials_duration_seconds
        self._refresh_margin = settings.credentials_refresh_margin_seconds
        self._stale_min = settings.credentials_stale_min_seconds
        self._set_source_identity = settings.sts_set_source_identity
        self._clock = clock
        self._entries: TLRUCache[tuple[str, str], Credentials] = TLRUCache(
            maxsize=settings.cache_max_users, ttu=self._servable_until, timer=clock
        )
        self._flights: SingleFlight[tuple[str, str], Credentials] = SingleFlight()
        self._shared = shared.entries(
            EntryKind(
                name="credentials",
                scope=self._role_arn,
                encode=_credentials_to_bytes,
                decode=_credentials_from_bytes,
                lifetime=self._seconds_servable,
                fresh=self._needs_no_refresh,
            )
        )
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def stats_and_size(self) -> tuple[int, int, int, int]:
        """Return hits, misses, stale serves and entries, for the metrics."""
        stats = self.stats
        return stats.hits, stats.misses, stats.stale_served, len(self._entries)

    def fresh(self, chime_id: str) -> Credentials | None:
        """Return the user's cached credentials if no refresh is due, else None."""
        cached = self._entries.get((self._role_arn, chime_id))
        if cached is None or not self._needs_no_refresh(cached):
            return None

        self.stats.hits += 1
        return cached

    async def for_user(self, chime_id: str) -> Credentials:
        """Return credentials for the user with at least the refresh margin left."""
        return self.fresh(chime_id) or await self.refresh(chime_id)

    async def refresh(
        self, chime_id: str, *, deadline: float | None = None
    ) -> Credentials:
        """Call STS for the user's credentials; concurrent calls share one request.

        If STS is unavailable, or has not answered by `deadline` (event loop time),
        the cached credentials are returned while they have at least the stale
        minimum left. The call itself goes on and fills the cache when it ends.
        """
        key = (self._role_arn, chime_id)
        cached = self._entries.get(key)
        self.stats.misses += 1
        try:
            async with asyncio.timeout_at(deadline):
                return await self._flights.run(key, lambda: self._obtain(chime_id))
        except (AwsUnavailableError, TimeoutError) as error:
            if cached is None or cached.expiration - self._clock() < self._stale_min:
                if isinstance(error, TimeoutError):
                    raise AwsUnavailableError.timed_out() from None
                raise

        self.stats.stale_served += 1
        logger.warning(
            "serving cached credentials while STS fails",
            seconds_left=int(cached.expiration - self._clock()),
        )
        return cached

    async def aclose(self) -> None:
        """Stop the refreshes still running, at shutdown."""
        await self._flights.aclose()

    async def _obtain(self, chime_id: str) -> Credentials:
        """Take the deployment's shared credentials, or assume the role, and keep them.

        This runs in the single flight's task: a sign-in that stops waiting still
        leaves the credentials in the cache for the next one.
        """
        credentials = await self._shared.get_or_create(
            chime_id, lambda: self._assume_role(chime_id)
        )
        self._entries[(self._role_arn, chime_id)] = credentials
        return credentials

    async def _assume_role(self, chime_id: str) -> Credentials:
        request: AssumeRoleRequestTypeDef = {
            "RoleArn": self._role_arn,
            "RoleSessionName": role_session_name(chime_id),
            "DurationSeconds": self._duration,
            "Tags": [{"Key": USER_TAG, "Value": chime_id}],
        }
        if self._set_source_identity:
            request["SourceIdentity"] = source_identity(chime_id)

        response = await self._gate.call(
            "AssumeRole", lambda: self._sts.assume_role(**request)
        )

        issued = response["Credentials"]
        return Credentials(
            access_key_id=issued["AccessKeyId"],
            secret_access_key=issued["SecretAccessKey"],
            session_token=issued["SessionToken"],
            expiration=issued["Expiration"].timestamp(),
        )

    def _needs_no_refresh(self, credentials: Credentials) -> bool:
        return credentials.expiration - self._clock() > self._refresh_margin

    def _seconds_servable(self, credentials: Credentials) -> float:
        return credentials.expiration - self._stale_min - self._clock()

    def _servable_until(
        self, _key: tuple[str, str], credentials: Credentials, _now: float
    ) -> float:
        return credentials.expiration - self._stale_min


def _credentials_to_bytes(credentials: Credentials) -> bytes:
    return json.dumps(
        {
            "AccessKeyId": credentials.access_key_id,
            "SecretAccessKey": credentials.secret_access_key,
            "SessionToken": credentials.session_token,
            "Expiration": credentials.expiration,
        }
    ).encode()


def _credentials_from_bytes(data: bytes) -> Credentials:
    fields = json.loads(data)
    return Credentials(
        access_key_id=str(fields["AccessKeyId"]),
        secret_access_key=str(fields["SecretAccessKey"]),
        session_token=str(fields["SessionToken"]),
        expiration=float(fields["Expiration"]),
    )
