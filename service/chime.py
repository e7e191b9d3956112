"""Each user's `AppInstanceUser`, created on first sign-in and remembered after.

The user's ARN never changes once the user exists, so it is kept in a bounded LRU
cache and later sign-ins make no Chime call at all. A display name that changed at
the identity provider is written back in the background: the sign-in that noticed it
answers with the new name at once and does not wait for Chime.

With Redis configured, the deployment shares what it learns (`service.shared_cache`):
a user is created once per deployment rather than once per replica, and a rename
is shared too, so other replicas do not write it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING

import structlog
from botocore.exceptions import ClientError
from cachetools import LRUCache

from service.errors import AwsConfigurationError, SignInError
from service.shared_cache import LOCAL_ONLY, EntryKind
from service.singleflight import SingleFlight

if TYPE_CHECKING:
    from types_aiobotocore_chime_sdk_identity import ChimeSDKIdentityClient

    from service.aws import AwsGate
    from service.shared_cache import SharedCache

__all__ = ["AppInstanceUser", "AppInstanceUsers"]

logger = structlog.get_logger(__name__)

# A user's ARN never changes, but an entry per user ever seen would fill Redis;
# a user who signs in daily is looked up again at most once a day.
_SHARED_USER_SECONDS = 86_400.0


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
        shared: SharedCache = LOCAL_ONLY,
    ) -> None:
        self._chime = chime
        self._gate = gate
        self._app_instance_arn = app_instance_arn
        self._known: LRUCache[str, AppInstanceUser] = LRUCache(maxsize=max_users)
        self._flights: SingleFlight[str, AppInstanceUser] = SingleFlight()
        self._shared = shared.entries(
            EntryKind(
                name="user",
                scope=app_instance_arn,
                encode=_user_to_bytes,
                decode=_user_from_bytes,
                lifetime=lambda _user: _SHARED_USER_SECONDS,
            )
        )
        # The latest name to write per user, and the one task writing it.
        self._wanted_names: dict[str, str] = {}
        self._renaming: dict[str, asyncio.Task[None]] = {}

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
                chime_id, lambda: self._find_or_create(chime_id, name)
            )

        if user.name != name:
            user = dataclasses.replace(user, name=name)
            self._known[chime_id] = user
            self._rename_in_background(chime_id, user)
        return user

    async def aclose(self) -> None:
        """Finish nothing more: cancel creations and renames still running."""
        await self._flights.aclose()
        renames = list(self._renaming.values())
        for task in renames:
            task.cancel()
        await asyncio.gather(*renames, return_exceptions=True)

    async def _find_or_create(self, chime_id: str, name: str) -> AppInstanceUser:
        """Take the user as the deployment knows them, or ask Chime; remember them."""
        user = await self._shared.get_or_create(
            chime_id, lambda: self._create_or_describe(chime_id, name)
        )
        self._check_arn(user.arn, chime_id)
        self._known[chime_id] = user
        return user

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

    def _rename_in_background(self, chime_id: str, user: AppInstanceUser) -> None:
        self._wanted_names[chime_id] = user.name
        if chime_id in self._renaming:
            return

        task = asyncio.create_task(self._write_names(chime_id, user.arn))
        self._renaming[chime_id] = task
        task.add_done_callback(lambda _: self._renaming.pop(chime_id, None))

    async def _write_names(self, chime_id: str, arn: str) -> None:
        """Write the user's latest wanted name until Chime holds it.

        One writer per user, so a slow write of an older name can never land
        after a newer one; names wanted meanwhile are written next, once each.
        """
        while (name := self._wanted_names.get(chime_id)) is not None:
            try:
                await self._write_name(arn, name)
            except SignInError as error:
                # Forget the user so a later sign-in tries again.
                self._wanted_names.pop(chime_id, None)
                self._known.pop(chime_id, None)
                logger.warning("display name not updated", error=error.detail)
                return

            if self._wanted_names.get(chime_id) == name:
                del self._wanted_names[chime_id]
                logger.info("display name updated")
                await self._shared.put(chime_id, AppInstanceUser(arn=arn, name=name))

    async def _write_name(self, arn: str, name: str) -> None:
        # Describe first: UpdateAppInstanceUser replaces Metadata, which is kept.
        response = await self._gate.call(
            "DescribeAppInstanceUser",
            lambda: self._chime.describe_app_instance_user(AppInstanceUserArn=arn),
        )
        metadata = response["AppInstanceUser"].get("Metadata", "")
        await self._gate.call(
            "UpdateAppInstanceUser",
            lambda: self._chime.update_app_instance_user(
                AppInstanceUserArn=arn, Name=name, Metadata=metadata
            ),
        )

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
            raise AwsConfigurationError("AWS refused the service's configuration")


def _user_to_bytes(user: AppInstanceUser) -> bytes:
    return json.dumps({"AppInstanceUserArn": user.arn, "Name": user.name}).encode()


def _user_from_bytes(data: bytes) -> AppInstanceUser:
    fields = json.loads(data)
    return AppInstanceUser(
        arn=str(fields["AppInstanceUserArn"]), name=str(fields["Name"])
    )
