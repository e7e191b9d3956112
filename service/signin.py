"""The sign-in itself: a verified token in, a Chime user and credentials out.

A returning user's sign-in is answered from memory: the token is verified, and both
caches are read without awaiting anything. Only a cache miss reaches AWS, and then
STS and Chime are called side by side under one deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, TypeVar

import structlog

from service.errors import AwsUnavailableError
from service.user_ids import chime_user_id

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from service.chime import AppInstanceUser, AppInstanceUsers
    from service.credentials import Credentials, CredentialsCache
    from service.tokens import TokenVerifier

__all__ = ["SignIn", "SignInResult"]

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class SignInResult:
    """What a client needs to start a Chime SDK messaging session."""

    chime_user_id: str
    user: AppInstanceUser
    credentials: Credentials
    cache_hit: bool


class SignIn:
    """Exchanges a bearer token for a Chime user and their credentials."""

    def __init__(
        self,
        verifier: TokenVerifier,
        credentials: CredentialsCache,
        users: AppInstanceUsers,
        *,
        deadline_seconds: float,
    ) -> None:
        self._verifier = verifier
        self._credentials = credentials
        self._users = users
        self._deadline = deadline_seconds

    async def sign_in(self, token: str) -> SignInResult:
        """Verify `token` and return the user's Chime identity and credentials."""
        principal = await self._verifier.verify(token)
        chime_id = chime_user_id(principal.user_id)
        name = principal.display_name or chime_id
        structlog.contextvars.bind_contextvars(user_id=chime_id)

        user = self._users.known(chime_id, name)
        credentials = self._credentials.fresh(chime_id)
        if user is not None and credentials is not None:
            return SignInResult(chime_id, user, credentials, cache_hit=True)

        # One deadline for both; the credentials cache applies it itself, so that
        # it can still serve stale credentials when STS hangs.
        deadline = asyncio.get_running_loop().time() + self._deadline
        # Both run to the end even if one fails, so neither is orphaned.
        fetched, created = await asyncio.gather(
            _given(credentials)
            or self._credentials.refresh(chime_id, deadline=deadline),
            _given(user) or _by(deadline, self._users.ensure(chime_id, name)),
            return_exceptions=True,
        )

        if isinstance(fetched, BaseException):
            raise fetched
        if isinstance(created, BaseException):
            raise created
        return SignInResult(chime_id, created, fetched, cache_hit=False)


async def _by(deadline: float, pending: Awaitable[_T]) -> _T:
    """Await `pending` until `deadline` (event loop time), then give up with a 503."""
    try:
        async with asyncio.timeout_at(deadline):
            return await pending
    except TimeoutError:
        raise AwsUnavailableError.timed_out() from None


def _given(value: _T | None) -> Awaitable[_T] | None:
    """Wrap a value already at hand as an awaitable, so it can join a gather."""
    if value is None:
        return None

    ready: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
    ready.set_result(value)
    return ready
