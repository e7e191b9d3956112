"""The sign-in flow end to end: real app over HTTP, real aiobotocore, the stand-in."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiobotocore.session import get_session

from service.credentials import USER_TAG
from service.user_ids import role_session_name
from tests.support import APP_INSTANCE_ARN, Client, bearer, hs256_token

if TYPE_CHECKING:
    from tests.conftest import Standin

_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


async def test_sign_in_returns_the_documented_shape(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """A valid token gets a user ARN, the user id and tagged credentials."""
    token = hs256_token(hs256_secret, "alice", name="  Alice   Example ")

    response = await client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert list(body) == [
        "ChimeAppInstanceUserArn",
        "ChimeUserId",
        "ChimeCredentials",
        "ChimeDisplayName",
    ]
    assert body["ChimeUserId"] == "alice"
    assert body["ChimeAppInstanceUserArn"] == f"{APP_INSTANCE_ARN}/user/alice"
    assert body["ChimeDisplayName"] == "Alice Example"
    credentials = body["ChimeCredentials"]
    assert list(credentials) == [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ]
    assert _ISO_UTC.fullmatch(credentials["Expiration"])
    session = standin.state.sessions[credentials["AccessKeyId"]]
    assert session.tag_map == {USER_TAG: "alice"}
    assert session.role_session_name == role_session_name("alice") == "chime_alice"
    assert session.source_identity is None


async def test_sign_in_maps_an_unusual_user_id_the_same_everywhere(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """The tag, the user id, the ARN's last segment and the response agree."""
    token = hs256_token(hs256_secret, "auth0|5f7c8ec7c33c6c004bbafe82")

    response = await client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 200
    body = await response.json()
    chime_id = body["ChimeUserId"]
    assert chime_id != "auth0|5f7c8ec7c33c6c004bbafe82"
    assert body["ChimeAppInstanceUserArn"].rsplit("/", 1)[-1] == chime_id
    session = standin.state.sessions[body["ChimeCredentials"]["AccessKeyId"]]
    assert session.tag_map[USER_TAG] == chime_id
    assert body["ChimeDisplayName"] == "auth0|5f7c8ec7c33c6c004bbafe82"


async def test_sign_in_again_makes_no_aws_call(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """A returning user is answered from the caches, with the same credentials."""
    first = await client.post(
        "/v1/sign-in", headers=bearer(hs256_token(hs256_secret, "bob"))
    )
    calls_after_first = _aws_calls(standin)

    second = await client.post(
        "/v1/sign-in", headers=bearer(hs256_token(hs256_secret, "bob"))
    )

    assert first.status == second.status == 200
    assert _aws_calls(standin) == calls_after_first == 2
    first_body, second_body = await first.json(), await second.json()
    assert first_body["ChimeCredentials"] == second_body["ChimeCredentials"]


async def test_sign_in_storm_of_one_user_makes_one_call_per_api(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """A thousand simultaneous sign-ins of one cold user cause one AssumeRole."""
    token = hs256_token(hs256_secret, "carol")

    responses = await asyncio.gather(
        *(client.post("/v1/sign-in", headers=bearer(token)) for _ in range(1000))
    )

    assert {response.status for response in responses} == {200}
    assert standin.state.call_count("AssumeRole") == 1
    assert standin.state.call_count("CreateAppInstanceUser") == 1
    keys = {(await r.json())["ChimeCredentials"]["AccessKeyId"] for r in responses}
    assert len(keys) == 1


async def test_sign_in_of_an_existing_chime_user_describes_them(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """A user created earlier, by another replica or by hand, is found again."""
    async with get_session().create_client("chime-sdk-identity", "us-east-1") as chime:
        await chime.create_app_instance_user(
            AppInstanceArn=APP_INSTANCE_ARN,
            AppInstanceUserId="dave",
            Name="Dave",
            ClientRequestToken="created-by-hand",
        )
    token = hs256_token(hs256_secret, "dave", name="Dave")

    response = await client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 200
    body = await response.json()
    assert body["ChimeAppInstanceUserArn"] == f"{APP_INSTANCE_ARN}/user/dave"
    assert body["ChimeDisplayName"] == "Dave"
    assert standin.state.call_count("CreateAppInstanceUser", "ConflictException") == 1
    assert standin.state.call_count("DescribeAppInstanceUser") == 1
    assert standin.state.call_count("UpdateAppInstanceUser") == 0


async def test_sign_in_expiration_is_utc_and_in_the_future(
    client: Client, hs256_secret: str
) -> None:
    """The credentials' expiry parses as UTC and leaves the session its duration."""
    response = await client.post(
        "/v1/sign-in", headers=bearer(hs256_token(hs256_secret, "erin"))
    )

    expiration = (await response.json())["ChimeCredentials"]["Expiration"]
    moment = datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    left = (moment - datetime.now(UTC)).total_seconds()
    assert 3000 < left <= 3600


def _aws_calls(standin: Standin) -> int:
    return sum(standin.state.call_count(api) for api in list(standin.state.calls))
