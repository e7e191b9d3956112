"""Everything the stand-in remembers, typed so tests can read it directly.

Tests and load tests need more than the wire answers: how many calls each API
took and how they ended, how many were in flight at once, and what each issued
access key was minted for (so a test can prove the service tagged the session
with the right user id). One `StandinState` holds all of it plus the app
instance users and the fault plan; the app reads and writes it on the event
loop, so no locking is needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from standin.faults import FaultInjector

if TYPE_CHECKING:
    from collections.abc import Callable

    from standin.jsontypes import JsonObject

OUTCOME_OK: Final = "ok"
"""The outcome recorded for a successful call; failures record their code."""

OUTCOME_HANG: Final = "hang"
"""Recorded for a call the fault plan hung, once its client gives up."""

OUTCOME_DROP: Final = "drop"
"""Recorded for a call whose connection the fault plan closed unanswered."""

OUTCOME_ABANDONED: Final = "abandoned"
"""Recorded for a call whose client left before its answer was decided."""

DEFAULT_ACCOUNT_ID: Final = "123456789012"


def utc_now() -> datetime:
    """Return the current time, timezone-aware, as AWS timestamps are."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Tag:
    """A key/value tag, as STS session tags and Chime resource tags have."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """What one AssumeRole call minted, keyed by the access key it returned."""

    access_key_id: str
    role_arn: str
    role_session_name: str
    assumed_role_id: str
    assumed_role_arn: str
    account_id: str
    tags: tuple[Tag, ...]
    transitive_tag_keys: tuple[str, ...]
    source_identity: str | None
    expiration: datetime

    @property
    def tag_map(self) -> dict[str, str]:
        """Return the session tags as a dict, the form assertions want."""
        return {tag.key: tag.value for tag in self.tags}

    def to_json(self) -> JsonObject:
        """Describe the session for the admin endpoint."""
        return {
            "AccessKeyId": self.access_key_id,
            "RoleArn": self.role_arn,
            "RoleSessionName": self.role_session_name,
            "AssumedRoleId": self.assumed_role_id,
            "AssumedRoleArn": self.assumed_role_arn,
            "Account": self.account_id,
            "Tags": [{"Key": tag.key, "Value": tag.value} for tag in self.tags],
            "TransitiveTagKeys": list(self.transitive_tag_keys),
            "SourceIdentity": self.source_identity,
            "Expiration": self.expiration.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class UserCreation:
    """The parameters of the call that created a user.

    A retry carrying the same ClientRequestToken and these same parameters is
    the same request, and AWS answers it again instead of with a conflict.
    """

    app_instance_arn: str
    user_id: str
    name: str
    metadata: str | None
    tags: tuple[Tag, ...]
    expiration_days: int | None
    expiration_criterion: str | None
    client_request_token: str


@dataclass(slots=True)
class AppInstanceUser:
    """A Chime SDK AppInstanceUser as the stand-in stores it."""

    arn: str
    name: str
    metadata: str | None
    created: datetime
    last_updated: datetime
    creation: UserCreation


@dataclass(slots=True)
class StandinState:
    """The stand-in's configuration, records and fault plan.

    `app_instance_arns` and `role_arns`, when given, are the only app instances
    and roles that exist; by default any well-formed ARN does. `clock` is
    injectable so tests can assert exact timestamps.
    """

    account_id: str = DEFAULT_ACCOUNT_ID
    app_instance_arns: frozenset[str] | None = None
    role_arns: frozenset[str] | None = None
    clock: Callable[[], datetime] = utc_now
    faults: FaultInjector = field(default_factory=FaultInjector)
    calls: dict[str, Counter[str]] = field(default_factory=dict, init=False)
    sessions: dict[str, IssuedSession] = field(default_factory=dict, init=False)
    users: dict[str, AppInstanceUser] = field(default_factory=dict, init=False)
    in_flight: int = field(default=0, init=False)
    peak_in_flight: int = field(default=0, init=False)

    def record_call(self, api: str, outcome: str) -> None:
        """Count one finished call by API and outcome (`ok` or an error code)."""
        self.calls.setdefault(api, Counter())[outcome] += 1

    def call_count(self, api: str, outcome: str | None = None) -> int:
        """Return how many calls to `api` ended with `outcome` (any, if None)."""
        outcomes = self.calls.get(api, Counter())

        if outcome is None:
            return outcomes.total()

        return outcomes[outcome]

    def begin_call(self) -> None:
        """Count a call as in flight and raise the peak if it is a new high."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def end_call(self) -> None:
        """Count a call as finished, however it ended."""
        self.in_flight -= 1

    def remember_session(self, session: IssuedSession) -> None:
        """Record what an access key was minted for."""
        self.sessions[session.access_key_id] = session

    def session(self, access_key_id: str) -> IssuedSession | None:
        """Return what `access_key_id` was minted for, if the stand-in issued it."""
        return self.sessions.get(access_key_id)

    def reset(self) -> None:
        """Forget calls, sessions and users; keep configuration and faults.

        The peak restarts from the calls still in flight, which stay counted
        until they finish.
        """
        self.calls.clear()
        self.sessions.clear()
        self.users.clear()
        self.peak_in_flight = self.in_flight

    def stats_json(self) -> JsonObject:
        """Summarize the records for the admin endpoint."""
        return {
            "calls": {
                api: dict(sorted(outcomes.items()))
                for api, outcomes in sorted(self.calls.items())
            },
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "sessions": len(self.sessions),
            "app_instance_users": len(self.users),
        }
