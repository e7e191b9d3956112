"""Each user's `AppInstanceUser`, created on first sign-in and remembered after.

The user's ARN never changes once the user exists, so it is kept in a bounded LRU
cache and later sign-ins make no Chime call at all. A display name that changed at
the identity provider is written back in the background: the sign-in that noticed it
answers with the new name at once and does not wait for Chime.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from typing import TYPE_CHECKING

import structlog
from botocore.exceptions import ClientError
from cachetools import LRUCache

from service.errors import AwsConfigurationError, SignInError
from service.singleflight import SingleFlight

if TYPE_CHECKING:
    from types_aiobotocore_chime_sdk_identity import ChimeSDKIdentityClient

    from service.aws import AwsGate

__all__ = ["AppInstanceUser", "AppInstanceUsers"]

logger = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class AppInstanceUser:
    """A user as Chime knows them."""

    arn: str
    name: str


class AppInstanceUsers:
    """Creates users on first sign-in and remembers their ARNs."""

    def __init__(
        self,
        chime: ChimeSDKIdentityClient,
        gate: AwsGate,
        *,
        app_instance_arn: str,
        max_users: int,
    ) -> None:
        self._chime = chime
        self._gate = gate
        self._app_instance_arn = app_instance_arn
        self._known: LRUCache[str, AppInstanceUser] = LRUCache(maxsize=max_users)
        self._flights: SingleFlight[str, AppInstanceUser] = SingleFlight()
        self._renames: SingleFlight[tuple[str, str], None] = SingleFlight()
        self._background: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._known)

    def known(self, chime_id: str, name: str) -> AppInstanceUser | None:
        """Return the user if they exist with this name already, else None."""
        user = self._known.get(chime_id)
        return user if user is not None and user.name == name else None

    async def ensure(self, chime_id: str, name: str) -> AppInstanceUser:
        """Return the user, creating them or renaming them as needed."""
        user = self._known.get(chime_id)
        if user is None:
            user = await self._flights.run(
                chime_id, lambda: self._create_or_describe(chime_id, name)
            )

        if user.name != name:
            user = dataclasses.replace(user, name=name)
            self._known[chime_id] = user
            self._rename_in_background(user)
        return user

    async def aclose(self) -> None:
        """Finish nothing more: cancel creations and renames still running."""
        await self._flights.aclose()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _create_or_describe(self, chime_id: str, name: str) -> AppInstanceUser:
        try:
            response = await self._gate.call(
                "CreateAppInstanceUser",
                lambda: self._chime.create_app_instance_user(
                    AppInstanceArn=self._app_instance_arn,
                    AppInstanceUserId=chime_id,
                    Name=name,
                    ClientRequestToken=self._request_token(chime_id, name),
                ),
                expected_errors={"ConflictException"},
            )
        except ClientError:
            user = await self._describe(chime_id)
        else:
            user = AppInstanceUser(arn=response["AppInstanceUserArn"], name=name)

        self._check_arn(user.arn, chime_id)
        self._known[chime_id] = user
        return user

    async def _describe(self, chime_id: str) -> AppInstanceUser:
        response = await self._gate.call(
            "DescribeAppInstanceUser",
            lambda: self._chime.describe_app_instance_user(
                AppInstanceUserArn=self._user_arn(chime_id)
            ),
        )
        described = response["AppInstanceUser"]
        return AppInstanceUser(
            arn=described.get("AppInstanceUserArn", self._user_arn(chime_id)),
            name=described.get("Name", ""),
        )

    def _rename_in_background(self, user: AppInstanceUser) -> None:
        chime_id = user.arn.rsplit("/", 1)[-1]
        task = asyncio.ensure_future(
            self._renames.run((chime_id, user.name), lambda: self._rename(user))
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _rename(self, user: AppInstanceUser) -> None:
        try:
            # Describe first: UpdateAppInstanceUser replaces Metadata, which is kept.
            response = await self._gate.call(
                "DescribeAppInstanceUser",
                lambda: self._chime.describe_app_instance_user(
                    AppInstanceUserArn=user.arn
                ),
            )
            metadata = response["AppInstanceUser"].get("Metadata", "")
            await self._gate.call(
                "UpdateAppInstanceUser",
                lambda: self._chime.update_app_instance_user(
                    AppInstanceUserArn=user.arn, Name=user.name, Metadata=metadata
                ),
            )
        except SignInError as error:
            # Forget the name so a later sign-in tries again.
            chime_id = user.arn.rsplit("/", 1)[-1]
            self._known.pop(chime_id, None)
            logger.warning("display name not updated", error=error.detail)
        else:
            logger.info("display name updated")

    def _user_arn(self, chime_id: str) -> str:
        return f"{self._app_instance_arn}/user/{chime_id}"

    def _request_token(self, chime_id: str, name: str) -> str:
        # The same request always carries the same token, so a retried create is
        # idempotent at Chime; 64 hex characters fit its [-_a-zA-Z0-9]{2,64}.
        seed = f"{self._app_instance_arn}\n{chime_id}\n{name}".encode(
            "utf-8", "surrogatepass"
        )
        return hashlib.sha256(seed).hexdigest()

    def _check_arn(self, arn: str, chime_id: str) -> None:
        # The IAM policy matches the ARN's last segment against the session tag.
        if arn != self._user_arn(chime_id):
            logger.error("unexpected AppInstanceUser ARN", arn=arn)
            raise AwsConfigurationError("the service cannot reach AWS as configured")
