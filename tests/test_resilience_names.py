"""Display names: written back once per change, in the background, keeping Metadata.

The sign-in that notices a new name answers with it at once; the write to Chime
(Describe, then UpdateAppInstanceUser with the Metadata it found) happens after, so
a slow or failing Chime never slows or fails the sign-in. "After" is established
by what the stand-in has finished, never by a duration.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

import pytest
from aiobotocore.session import get_session

from service.app_state import USERS
from service.user_ids import chime_user_id
from standin.faults import FaultSpec, FixedLatency
from tests.support import (
    APP_INSTANCE_ARN,
    Client,
    bearer,
    eventually,
    hs256_token,
    settings_for,
)

if TYPE_CHECKING:
    from service.settings import Settings
    from standin.state import AppInstanceUser
    from tests.conftest import Standin

UPDATE: Final = "UpdateAppInstanceUser"
DESCRIBE: Final = "DescribeAppInstanceUser"


@pytest.fixture
def settings(hs256_secret: str) -> Settings:
    """Short AWS timeouts, so a hung write-back ends quickly."""
    return settings_for(
        jwt_secret=hs256_secret,
        aws_read_timeout_seconds=0.6,
        aws_connect_timeout_seconds=0.6,
        sign_in_deadline_seconds=5.0,
        aws_max_attempts=1,
    )


async def sign_in(client: Client, secret: str, subject: str, name: str) -> Any:
    """Sign `subject` in under `name`; return the 200 answer's body."""
    token = hs256_token(secret, subject, name=name)
    response = await client.post("/v1/sign-in", headers=bearer(token))
    assert response.status == 200, await response.text()
    return await response.json()


def stored(standin: Standin, subject: str) -> AppInstanceUser:
    """The user as the stand-in holds them."""
    return standin.state.users[f"{APP_INSTANCE_ARN}/user/{chime_user_id(subject)}"]


async def background_done(client: Client) -> None:
    """Wait until no rename is running or queued in the app."""
    assert client.app is not None
    users = client.app[USERS]

    async def idle() -> bool:
        return not users._renaming and not users._wanted_names

    await eventually(idle)


async def test_display_name_change_is_answered_at_once_and_written_once(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """The new name comes back at once; Chime is updated once per change."""
    await sign_in(client, hs256_secret, "namer", "First")
    # Chime is slow to write: the sign-in must not wait for it.
    standin.state.faults.set(UPDATE, FaultSpec(latency=FixedLatency(0.3)))

    body = await sign_in(client, hs256_secret, "namer", "Second")

    assert body["ChimeDisplayName"] == "Second"
    assert standin.state.call_count(UPDATE) == 0  # answered before the write ended
    bodies = await asyncio.gather(
        *(sign_in(client, hs256_secret, "namer", "Second") for _ in range(50))
    )
    assert {b["ChimeDisplayName"] for b in bodies} == {"Second"}
    await background_done(client)
    assert standin.state.call_count(UPDATE, "ok") == 1
    assert stored(standin, "namer").name == "Second"

    standin.state.faults.clear()
    for _ in range(3):
        again = await sign_in(client, hs256_secret, "namer", "Third")
        assert again["ChimeDisplayName"] == "Third"
    await background_done(client)
    assert standin.state.call_count(UPDATE) == 2
    assert stored(standin, "namer").name == "Third"
    # Renames never needed new credentials.
    assert standin.state.call_count("AssumeRole") == 1


async def test_display_name_update_keeps_metadata_set_by_someone_else(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """Metadata another program wrote survives every rename the service makes."""
    user_arn = f"{APP_INSTANCE_ARN}/user/{chime_user_id('meta')}"
    async with get_session().create_client("chime-sdk-identity", "us-east-1") as chime:
        await chime.create_app_instance_user(
            AppInstanceArn=APP_INSTANCE_ARN,
            AppInstanceUserId=chime_user_id("meta"),
            Name="Before",
            Metadata='{"team": "blue"}',
            ClientRequestToken="created-elsewhere",
        )

        first = await sign_in(client, hs256_secret, "meta", "After")
        await background_done(client)
        assert first["ChimeDisplayName"] == "After"
        assert stored(standin, "meta").name == "After"
        assert stored(standin, "meta").metadata == '{"team": "blue"}'

        # Someone changes the Metadata of a user the service already knows.
        await chime.update_app_instance_user(
            AppInstanceUserArn=user_arn, Name="After", Metadata='{"team": "red"}'
        )
        second = await sign_in(client, hs256_secret, "meta", "After Again")
        await background_done(client)

    assert second["ChimeDisplayName"] == "After Again"
    assert stored(standin, "meta").name == "After Again"
    assert stored(standin, "meta").metadata == '{"team": "red"}'
    # One update by the other program, one per change by the service.
    assert standin.state.call_count(UPDATE, "ok") == 3


@pytest.mark.parametrize(
    "fault",
    [FaultSpec(throttle=1.0), FaultSpec(server_error=1.0), FaultSpec(hang=1.0)],
    ids=["throttle", "server_error", "hang"],
)
async def test_display_name_update_failure_does_not_fail_the_sign_in(
    client: Client, standin: Standin, hs256_secret: str, fault: FaultSpec
) -> None:
    """A failing UpdateAppInstanceUser leaves the sign-in a 200; a later one retries."""
    await sign_in(client, hs256_secret, "flaky", "Old")
    standin.state.faults.set(UPDATE, fault)

    body = await sign_in(client, hs256_secret, "flaky", "New")

    assert body["ChimeDisplayName"] == "New"
    await background_done(client)
    assert standin.state.call_count(UPDATE) >= 1
    assert standin.state.call_count(UPDATE, "ok") == 0
    assert stored(standin, "flaky").name == "Old"
    assert (await client.get("/healthz")).status == 200

    standin.state.faults.clear()
    again = await sign_in(client, hs256_secret, "flaky", "New")
    await background_done(client)
    assert again["ChimeDisplayName"] == "New"
    assert stored(standin, "flaky").name == "New"
    assert standin.state.call_count(UPDATE, "ok") == 1


async def test_display_name_changes_in_quick_succession_end_with_the_latest(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """Two renames in flight at once leave Chime with the name signed in last."""
    await sign_in(client, hs256_secret, "racer", "A")
    # The write of B is slow; the write of C, which starts later, is not.
    standin.state.faults.set(UPDATE, FaultSpec(latency=FixedLatency(0.3)))
    await sign_in(client, hs256_secret, "racer", "B")

    async def writing_b() -> bool:
        return standin.state.call_count(DESCRIBE) == 1 and standin.state.in_flight == 1

    await eventually(writing_b)
    standin.state.faults.clear()
    await sign_in(client, hs256_secret, "racer", "C")
    await background_done(client)
    # Later sign-ins under the same name are answered from the cache.
    latest = await sign_in(client, hs256_secret, "racer", "C")
    await background_done(client)

    assert latest["ChimeDisplayName"] == "C"
    assert standin.state.call_count(UPDATE, "ok") == 2
    assert stored(standin, "racer").name == "C"
