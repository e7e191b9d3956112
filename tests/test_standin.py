"""The AWS stand-in, driven by real aiobotocore clients over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import sys
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from aiohttp import web
from botocore import UNSIGNED
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from standin import (
    FaultInjector,
    FaultSpec,
    FixedLatency,
    StandinState,
    UniformLatency,
    create_standin_app,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from pytest_aiohttp import AiohttpServer
    from types_aiobotocore_chime_sdk_identity import ChimeSDKIdentityClient
    from types_aiobotocore_sts import STSClient

ACCOUNT_ID: Final = "123456789012"
ROLE_ARN: Final = f"arn:aws:iam::{ACCOUNT_ID}:role/chime-user"
APP_INSTANCE_ARN: Final = (
    f"arn:aws:chime:us-east-1:{ACCOUNT_ID}:app-instance/"
    "0f2d4c1e-9a1b-4c55-8f0e-6b7a1c2d3e4f"
)
USER_ARN: Final = f"{APP_INSTANCE_ARN}/user/alice"
START: Final = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
REPO_ROOT: Final = Path(__file__).resolve().parent.parent


class ManualClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, now: datetime) -> None:
        """Start at `now`."""
        self.now = now

    def __call__(self) -> datetime:
        """Return the current manual time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def _no_machine_aws_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep this machine's AWS files and the metadata address out of the clients."""
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def clock() -> ManualClock:
    """A clock the tests control, so timestamps can be asserted exactly."""
    return ManualClock(START)


@pytest.fixture
def state(clock: ManualClock) -> StandinState:
    """A stand-in state with a fixed seed and a manual clock."""
    return StandinState(clock=clock, faults=FaultInjector(seed=20301))


@pytest.fixture
async def endpoint(aiohttp_server: AiohttpServer, state: StandinState) -> str:
    """The URL of a stand-in serving `state` on loopback."""
    server = await aiohttp_server(create_standin_app(state))

    return str(server.make_url("")).rstrip("/")


def _config(**overrides: Any) -> AioConfig:
    """A client config without retries, so each test sees the first answer."""
    return AioConfig(retries={"total_max_attempts": 1}, **overrides)


@asynccontextmanager
async def _sts(
    endpoint: str,
    config: AioConfig,
    access_key_id: str = "testing",
    secret_access_key: str = "testing",  # noqa: S107 - the stand-in checks no secret
    session_token: str | None = None,
) -> AsyncIterator[STSClient]:
    """Open an STS client on the stand-in."""
    async with AioSession().create_client(
        "sts",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        config=config,
    ) as client:
        yield client


@asynccontextmanager
async def _chime(
    endpoint: str, config: AioConfig
) -> AsyncIterator[ChimeSDKIdentityClient]:
    """Open a Chime SDK Identity client on the stand-in."""
    async with AioSession().create_client(
        "chime-sdk-identity",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    ) as client:
        yield client


@pytest.fixture
async def sts(endpoint: str) -> AsyncIterator[STSClient]:
    """An STS client that validates parameters as botocore normally does."""
    async with _sts(endpoint, _config()) as client:
        yield client


@pytest.fixture
async def chime(endpoint: str) -> AsyncIterator[ChimeSDKIdentityClient]:
    """A Chime SDK Identity client that validates parameters as usual."""
    async with _chime(endpoint, _config()) as client:
        yield client


@pytest.fixture
async def unchecked_sts(endpoint: str) -> AsyncIterator[STSClient]:
    """An STS client that sends invalid values for the server to reject."""
    async with _sts(endpoint, _config(parameter_validation=False)) as client:
        yield client


@pytest.fixture
async def unchecked_chime(endpoint: str) -> AsyncIterator[ChimeSDKIdentityClient]:
    """A Chime client that sends invalid values for the server to reject."""
    async with _chime(endpoint, _config(parameter_validation=False)) as client:
        yield client


_SIGNED: Final = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20300102/us-east-1/sts/"
    "aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    "X-Amz-Date": "20300102T030405Z",
}
"""Headers of a request signed for the stand-in, which checks form, not signature."""


def _noise(index: int) -> str:
    """Return 256 hex characters that compress poorly, for packed-size limits."""
    return hashlib.sha512(str(index).encode()).hexdigest() * 2


def _code_and_status(error: ClientError) -> tuple[str, int]:
    """Return the error code botocore parsed and the HTTP status it came with."""
    return error.response["Error"]["Code"], error.response["ResponseMetadata"][
        "HTTPStatusCode"
    ]


async def _eventually(condition: Callable[[], bool]) -> bool:
    """Poll a condition the server reaches asynchronously, for at most ~5 s."""
    for _ in range(250):
        if condition():
            return True
        await asyncio.sleep(0.02)

    return condition()


async def _create_alice(
    chime: ChimeSDKIdentityClient,
    token: str = "token-1",  # noqa: S107 - an idempotency token, not a secret
) -> str:
    """Create the user most tests use and return its ARN."""
    created = await chime.create_app_instance_user(
        AppInstanceArn=APP_INSTANCE_ARN,
        AppInstanceUserId="alice",
        Name="Alice Example",
        Metadata='{"team":"blue"}',
        ClientRequestToken=token,
    )

    return created["AppInstanceUserArn"]


# --- STS: successful calls ---------------------------------------------------


async def test_assume_role_returns_credentials_in_botocore_shape(
    sts: STSClient,
) -> None:
    """AssumeRole parses into botocore's result with AWS-shaped credentials."""
    result = await sts.assume_role(
        RoleArn=ROLE_ARN,
        RoleSessionName="chime_alice",
        Tags=[{"Key": "chime-user-id", "Value": "alice"}],
        SourceIdentity="alice",
    )

    credentials = result["Credentials"]
    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", credentials["AccessKeyId"])
    assert len(credentials["SecretAccessKey"]) == 40
    assert len(credentials["SessionToken"]) >= 400
    assert credentials["Expiration"] == START + timedelta(seconds=3600)
    assert result["AssumedRoleUser"]["Arn"] == (
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/chime-user/chime_alice"
    )
    assert re.fullmatch(
        r"AROA[A-Z0-9]{17}:chime_alice", result["AssumedRoleUser"]["AssumedRoleId"]
    )
    assert result["SourceIdentity"] == "alice"
    assert 1 <= result["PackedPolicySize"] <= 100
    assert result["ResponseMetadata"]["RequestId"]


async def test_assume_role_expiration_follows_duration_seconds(sts: STSClient) -> None:
    """Expiration is the stand-in's clock plus the requested DurationSeconds."""
    result = await sts.assume_role(
        RoleArn=ROLE_ARN, RoleSessionName="short", DurationSeconds=900
    )

    assert result["Credentials"]["Expiration"] == START + timedelta(seconds=900)
    assert "PackedPolicySize" not in result


async def test_assume_role_issues_fresh_credentials_each_call(sts: STSClient) -> None:
    """Two identical calls get different keys, secrets and tokens."""
    first = await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="same")
    second = await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="same")

    assert first["Credentials"]["AccessKeyId"] != second["Credentials"]["AccessKeyId"]
    assert (
        first["Credentials"]["SecretAccessKey"]
        != second["Credentials"]["SecretAccessKey"]
    )
    assert first["Credentials"]["SessionToken"] != second["Credentials"]["SessionToken"]
    assert first["AssumedRoleUser"] == second["AssumedRoleUser"]


async def test_assume_role_pads_token_to_minimum_session_token_size(
    sts: STSClient,
) -> None:
    """MinimumSessionTokenSize makes the token at least that long."""
    result = await sts.assume_role(
        RoleArn=ROLE_ARN, RoleSessionName="padded", MinimumSessionTokenSize=4096
    )

    assert len(result["Credentials"]["SessionToken"]) >= 4096


async def test_assume_role_records_session_per_access_key(
    sts: STSClient, state: StandinState
) -> None:
    """The state remembers the session name, tags and source identity per key."""
    result = await sts.assume_role(
        RoleArn=ROLE_ARN,
        RoleSessionName="chime_bob",
        Tags=[
            {"Key": "chime-user-id", "Value": "bob"},
            {"Key": "tier", "Value": "gold"},
        ],
        TransitiveTagKeys=["tier"],
        SourceIdentity="bob",
    )

    session = state.session(result["Credentials"]["AccessKeyId"])
    assert session is not None
    assert session.role_session_name == "chime_bob"
    assert session.tag_map == {"chime-user-id": "bob", "tier": "gold"}
    assert session.transitive_tag_keys == ("tier",)
    assert session.source_identity == "bob"
    assert session.role_arn == ROLE_ARN
    assert session.expiration == START + timedelta(seconds=3600)


async def test_assume_role_accepts_unicode_letters_in_tags(
    sts: STSClient, state: StandinState
) -> None:
    r"""Tag patterns use \p{L}, so letters beyond ASCII are valid."""
    result = await sts.assume_role(
        RoleArn=ROLE_ARN,
        RoleSessionName="zoe",
        Tags=[{"Key": "name", "Value": "Zoë Ångström"}],
    )

    session = state.session(result["Credentials"]["AccessKeyId"])
    assert session is not None
    assert session.tag_map == {"name": "Zoë Ångström"}


async def test_get_caller_identity_names_the_issued_session(
    sts: STSClient, endpoint: str
) -> None:
    """Signing with issued credentials identifies the assumed-role session."""
    issued = (await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="who"))[
        "Credentials"
    ]

    async with _sts(
        endpoint,
        _config(),
        access_key_id=issued["AccessKeyId"],
        secret_access_key=issued["SecretAccessKey"],
        session_token=issued["SessionToken"],
    ) as as_session:
        identity = await as_session.get_caller_identity()

    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/chime-user/who"
    assert identity["Account"] == ACCOUNT_ID
    assert identity["UserId"].endswith(":who")


async def test_get_caller_identity_names_a_user_for_unknown_keys(
    sts: STSClient,
) -> None:
    """Keys the stand-in did not issue belong to a user of the default account."""
    identity = await sts.get_caller_identity()

    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:user/standin"
    assert identity["Account"] == ACCOUNT_ID
    assert identity["UserId"].startswith("AIDA")


# --- STS: rejected calls -----------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"RoleSessionName": None},
            "Value null at 'roleSessionName' failed to satisfy constraint: "
            "Member must not be null",
            id="required",
        ),
        pytest.param(
            {"RoleSessionName": "a"},
            "Value 'a' at 'roleSessionName' failed to satisfy constraint: "
            "Member must have length greater than or equal to 2",
            id="string-min",
        ),
        pytest.param(
            {"RoleSessionName": "s" * 65},
            "Member must have length less than or equal to 64",
            id="string-max",
        ),
        pytest.param(
            {"RoleSessionName": "has space"},
            "Value 'has space' at 'roleSessionName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            id="pattern",
        ),
        pytest.param(
            {"RoleSessionName": "café"},
            "at 'roleSessionName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern",
            id="pattern-ascii-word",
        ),
        pytest.param(
            {"RoleSessionName": "<b>&amp;"},
            "Value '<b>&amp;' at 'roleSessionName' failed to satisfy constraint",
            id="xml-escaped",
        ),
        pytest.param(
            {"DurationSeconds": "an hour"},
            "Value 'an hour' at 'durationSeconds' failed to satisfy constraint: "
            "Member must be an integer",
            id="integer-type",
        ),
        pytest.param(
            {"DurationSeconds": 43201},
            "Value '43201' at 'durationSeconds' failed to satisfy constraint: "
            "Member must have value less than or equal to 43200",
            id="integer-max",
        ),
        pytest.param(
            {"DurationSeconds": 899},
            "Member must have value greater than or equal to 900",
            id="integer-min",
        ),
        pytest.param(
            {"Tags": [{"Key": f"k{index}", "Value": "v"} for index in range(51)]},
            "at 'tags' failed to satisfy constraint: "
            "Member must have length less than or equal to 50",
            id="list-max",
        ),
        pytest.param(
            {"Tags": [{"Key": "bad*key", "Value": "v"}]},
            "Value 'bad*key' at 'tags.1.member.key' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern",
            id="nested-pattern",
        ),
        pytest.param(
            {"Tags": [{"Key": "k", "Value": "v" * 257}]},
            "at 'tags.1.member.value' failed to satisfy constraint: "
            "Member must have length less than or equal to 256",
            id="nested-max",
        ),
        pytest.param(
            {"Tags": [{"Key": "k"}]},
            "Value null at 'tags.1.member.value' failed to satisfy constraint: "
            "Member must not be null",
            id="nested-required",
        ),
    ],
)
async def test_assume_role_rejects_each_model_constraint(
    unchecked_sts: STSClient, overrides: dict[str, Any], expected: str
) -> None:
    """Every kind of model constraint is enforced server-side as ValidationError."""
    params: dict[str, Any] = {"RoleArn": ROLE_ARN, "RoleSessionName": "valid"}
    params.update(overrides)
    params = {name: value for name, value in params.items() if value is not None}

    with pytest.raises(ClientError) as caught:
        await unchecked_sts.assume_role(**params)

    assert _code_and_status(caught.value) == ("ValidationError", 400)
    assert expected in caught.value.response["Error"]["Message"]
    assert caught.value.response["Error"]["Message"].startswith(
        "1 validation error detected: "
    )


async def test_assume_role_reports_all_violations_in_one_message(
    unchecked_sts: STSClient,
) -> None:
    """Several broken constraints are counted and listed together, as AWS does."""
    with pytest.raises(ClientError) as caught:
        await unchecked_sts.assume_role(RoleArn="short", RoleSessionName="a")

    message = caught.value.response["Error"]["Message"]
    assert message.startswith("2 validation errors detected: ")
    assert "'roleArn'" in message
    assert "'roleSessionName'" in message


@pytest.mark.parametrize(
    ("overrides", "code", "status"),
    [
        pytest.param(
            {"SourceIdentity": "aws:admin"}, "ValidationError", 400, id="aws-prefix"
        ),
        pytest.param(
            {"SourceIdentity": "AWS:admin"},
            "ValidationError",
            400,
            id="aws-prefix-case",
        ),
        pytest.param(
            {"Tags": [{"Key": "Team", "Value": "a"}, {"Key": "team", "Value": "b"}]},
            "ValidationError",
            400,
            id="duplicate-tag-keys",
        ),
        pytest.param(
            {"RoleArn": f"arn:aws:iam::{ACCOUNT_ID}:user/someone"},
            "ValidationError",
            400,
            id="not-a-role",
        ),
        pytest.param(
            {"Policy": "not json"}, "MalformedPolicyDocument", 400, id="policy"
        ),
        pytest.param(
            {
                "Tags": [
                    {"Key": f"key{index}", "Value": _noise(index)}
                    for index in range(50)
                ]
            },
            "PackedPolicyTooLarge",
            400,
            id="packed-size",
        ),
    ],
)
async def test_assume_role_enforces_rules_beyond_the_model(
    sts: STSClient, overrides: dict[str, Any], code: str, status: int
) -> None:
    """AWS's documented semantic rules fail with AWS's codes."""
    params: dict[str, Any] = {"RoleArn": ROLE_ARN, "RoleSessionName": "valid"}
    params.update(overrides)

    with pytest.raises(ClientError) as caught:
        await sts.assume_role(**params)

    assert _code_and_status(caught.value) == (code, status)
    error: Mapping[str, object] = caught.value.response["Error"]
    assert error["Type"] == "Sender"


async def test_assume_role_denies_roles_outside_the_configured_set(
    aiohttp_server: AiohttpServer,
) -> None:
    """With a role list configured, other roles are AccessDenied with status 403."""
    state = StandinState(role_arns=frozenset({ROLE_ARN}))
    server = await aiohttp_server(create_standin_app(state))
    other_role = f"arn:aws:iam::{ACCOUNT_ID}:role/other"

    async with _sts(str(server.make_url("")), _config()) as client:
        allowed = await client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="ok")
        with pytest.raises(ClientError) as caught:
            await client.assume_role(RoleArn=other_role, RoleSessionName="no")

    assert allowed["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert _code_and_status(caught.value) == ("AccessDenied", 403)
    assert other_role in caught.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("form", "code"),
    [
        pytest.param({"Version": "2011-06-15"}, "MissingAction", id="no-action"),
        pytest.param(
            {"Action": "GetSessionToken", "Version": "2011-06-15"},
            "InvalidAction",
            id="unserved-action",
        ),
        pytest.param(
            {"Action": "AssumeRole", "Version": "1999-01-01"},
            "InvalidAction",
            id="wrong-version",
        ),
    ],
)
async def test_sts_refuses_requests_naming_no_served_operation(
    endpoint: str, form: dict[str, str], code: str
) -> None:
    """Missing or unknown actions get the query protocol's error document."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(endpoint + "/", data=form, headers=_SIGNED) as response,
    ):
        body = await response.text()

    assert response.status == 400
    assert "<ErrorResponse" in body
    assert f"<Code>{code}</Code>" in body


# --- Chime SDK Identity ------------------------------------------------------


async def test_create_app_instance_user_returns_arn_under_app_instance(
    chime: ChimeSDKIdentityClient,
) -> None:
    """The ARN is the app instance's ARN plus /user/<id>, with status 201."""
    created = await chime.create_app_instance_user(
        AppInstanceArn=APP_INSTANCE_ARN,
        AppInstanceUserId="alice",
        Name="Alice",
        ClientRequestToken="create-token",
    )

    assert created["AppInstanceUserArn"] == USER_ARN
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201


async def test_describe_app_instance_user_returns_the_stored_user(
    chime: ChimeSDKIdentityClient,
) -> None:
    """Describe returns name, metadata and epoch timestamps botocore parses."""
    await chime.create_app_instance_user(
        AppInstanceArn=APP_INSTANCE_ARN,
        AppInstanceUserId="alice",
        Name="Alice",
        Metadata="m",
        ClientRequestToken="describe-token",
        ExpirationSettings={
            "ExpirationDays": 30,
            "ExpirationCriterion": "CREATED_TIMESTAMP",
        },
    )

    described = (await chime.describe_app_instance_user(AppInstanceUserArn=USER_ARN))[
        "AppInstanceUser"
    ]

    assert described["AppInstanceUserArn"] == USER_ARN
    assert described["Name"] == "Alice"
    assert described["Metadata"] == "m"
    assert described["CreatedTimestamp"] == START
    assert described["LastUpdatedTimestamp"] == START
    assert described["ExpirationSettings"] == {
        "ExpirationDays": 30,
        "ExpirationCriterion": "CREATED_TIMESTAMP",
    }


async def test_update_app_instance_user_replaces_name_and_metadata(
    chime: ChimeSDKIdentityClient, clock: ManualClock
) -> None:
    """Update changes name, metadata and the last-updated time only."""
    arn = await _create_alice(chime)
    clock.advance(60)

    updated = await chime.update_app_instance_user(
        AppInstanceUserArn=arn, Name="Alice B.", Metadata=""
    )
    described = (await chime.describe_app_instance_user(AppInstanceUserArn=arn))[
        "AppInstanceUser"
    ]

    assert updated["AppInstanceUserArn"] == arn
    assert described["Name"] == "Alice B."
    assert described["Metadata"] == ""
    assert described["CreatedTimestamp"] == START
    assert described["LastUpdatedTimestamp"] == START + timedelta(seconds=60)


async def test_create_app_instance_user_conflicts_when_the_user_exists(
    chime: ChimeSDKIdentityClient,
) -> None:
    """A second creation with another token is ConflictException with status 409."""
    await _create_alice(chime, token="first-token")

    with pytest.raises(chime.exceptions.ConflictException) as caught:
        await _create_alice(chime, token="second-token")

    assert _code_and_status(caught.value) == ("ConflictException", 409)


async def test_create_app_instance_user_retry_with_same_token_is_idempotent(
    chime: ChimeSDKIdentityClient, state: StandinState
) -> None:
    """Repeating the creating call with its token succeeds with the same ARN."""
    first = await _create_alice(chime, token="retry-token")
    again = await _create_alice(chime, token="retry-token")

    assert first == again == USER_ARN
    assert list(state.users) == [USER_ARN]
    assert state.call_count("CreateAppInstanceUser", "ok") == 2


async def test_create_app_instance_user_same_token_other_parameters_conflicts(
    chime: ChimeSDKIdentityClient,
) -> None:
    """Reusing a token with different parameters is not a retry but a conflict."""
    await _create_alice(chime, token="retry-token")

    with pytest.raises(ClientError) as caught:
        await chime.create_app_instance_user(
            AppInstanceArn=APP_INSTANCE_ARN,
            AppInstanceUserId="alice",
            Name="Someone Else",
            ClientRequestToken="retry-token",
        )

    assert _code_and_status(caught.value) == ("ConflictException", 409)


async def test_describe_app_instance_user_unknown_user_is_not_found(
    chime: ChimeSDKIdentityClient,
) -> None:
    """Describing a user never created is NotFoundException with status 404."""
    with pytest.raises(chime.exceptions.NotFoundException) as caught:
        await chime.describe_app_instance_user(AppInstanceUserArn=USER_ARN)

    assert _code_and_status(caught.value) == ("NotFoundException", 404)


async def test_update_app_instance_user_unknown_user_is_not_found(
    chime: ChimeSDKIdentityClient,
) -> None:
    """Updating a user never created is NotFoundException."""
    with pytest.raises(ClientError) as caught:
        await chime.update_app_instance_user(
            AppInstanceUserArn=USER_ARN, Name="Nobody", Metadata=""
        )

    assert _code_and_status(caught.value) == ("NotFoundException", 404)


async def test_describe_app_instance_user_rejects_an_arn_naming_no_user(
    chime: ChimeSDKIdentityClient,
) -> None:
    """An ARN that is well-formed but not an AppInstanceUser's is a bad request."""
    with pytest.raises(ClientError) as caught:
        await chime.describe_app_instance_user(AppInstanceUserArn=APP_INSTANCE_ARN)

    assert _code_and_status(caught.value) == ("BadRequestException", 400)


async def test_create_app_instance_user_unconfigured_app_instance_is_not_found(
    aiohttp_server: AiohttpServer,
) -> None:
    """With app instances configured, any other app instance is NotFoundException."""
    state = StandinState(app_instance_arns=frozenset({APP_INSTANCE_ARN}))
    server = await aiohttp_server(create_standin_app(state))
    other = f"arn:aws:chime:us-east-1:{ACCOUNT_ID}:app-instance/other"

    async with _chime(str(server.make_url("")), _config()) as client:
        with pytest.raises(ClientError) as caught:
            await client.create_app_instance_user(
                AppInstanceArn=other,
                AppInstanceUserId="alice",
                Name="Alice",
                ClientRequestToken="other-token",
            )

    assert _code_and_status(caught.value) == ("NotFoundException", 404)
    assert state.users == {}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"Name": None},
            "Value null at 'name' failed to satisfy constraint: "
            "Member must not be null",
            id="required",
        ),
        pytest.param(
            {"AppInstanceUserId": "-alice"},
            "Value at 'appInstanceUserId' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern",
            id="pattern-sensitive",
        ),
        pytest.param(
            {"Name": 5},
            "Value at 'name' failed to satisfy constraint: Member must be a string",
            id="string-type",
        ),
        pytest.param(
            {"Tags": [{"Key": "k", "Value": "v"}] * 51},
            "at 'tags' failed to satisfy constraint: "
            "Member must have length less than or equal to 50",
            id="list-max",
        ),
        pytest.param(
            {"AppInstanceUserId": "a" * 65},
            "at 'appInstanceUserId' failed to satisfy constraint: "
            "Member must have length less than or equal to 64",
            id="string-max",
        ),
        pytest.param(
            {"Name": "   "},
            "Value at 'name' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: .*\\S.*",
            id="pattern-blank-name",
        ),
        pytest.param(
            {"Metadata": "m" * 1025},
            "at 'metadata' failed to satisfy constraint: "
            "Member must have length less than or equal to 1024",
            id="metadata-max",
        ),
        pytest.param(
            {"ClientRequestToken": "t"},
            "Value 't' at 'clientRequestToken' failed to satisfy constraint: "
            "Member must have length greater than or equal to 2",
            id="string-min",
        ),
        pytest.param(
            {"Tags": []},
            "at 'tags' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1",
            id="list-min",
        ),
        pytest.param(
            {
                "ExpirationSettings": {
                    "ExpirationDays": 0,
                    "ExpirationCriterion": "CREATED_TIMESTAMP",
                }
            },
            "Value '0' at 'expirationSettings.expirationDays' failed to satisfy "
            "constraint: Member must have value greater than or equal to 1",
            id="integer-min",
        ),
        pytest.param(
            {
                "ExpirationSettings": {
                    "ExpirationDays": 1,
                    "ExpirationCriterion": "NEVER",
                }
            },
            "Member must satisfy enum value set: [CREATED_TIMESTAMP]",
            id="enum",
        ),
        pytest.param(
            {"AppInstanceArn": "not-an-arn"},
            "at 'appInstanceArn' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern",
            id="arn-pattern",
        ),
    ],
)
async def test_create_app_instance_user_rejects_each_model_constraint(
    unchecked_chime: ChimeSDKIdentityClient, overrides: dict[str, Any], expected: str
) -> None:
    """Every kind of model constraint is a BadRequestException with status 400."""
    params: dict[str, Any] = {
        "AppInstanceArn": APP_INSTANCE_ARN,
        "AppInstanceUserId": "alice",
        "Name": "Alice",
        "ClientRequestToken": "valid-token",
    }
    params.update(overrides)
    params = {name: value for name, value in params.items() if value is not None}

    with pytest.raises(ClientError) as caught:
        await unchecked_chime.create_app_instance_user(**params)

    assert _code_and_status(caught.value) == ("BadRequestException", 400)
    assert expected in caught.value.response["Error"]["Message"]


async def test_create_app_instance_user_never_echoes_sensitive_values(
    unchecked_chime: ChimeSDKIdentityClient,
) -> None:
    """Values the model marks sensitive stay out of error messages."""
    with pytest.raises(ClientError) as caught:
        await unchecked_chime.create_app_instance_user(
            AppInstanceArn=APP_INSTANCE_ARN,
            AppInstanceUserId="secret-id-",
            Name="n" * 101,
            ClientRequestToken="sensitive-token",
        )

    message = caught.value.response["Error"]["Message"]
    assert "secret-id-" not in message
    assert "n" * 101 not in message
    assert message.startswith("2 validation errors detected: ")


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2]", b"\xff\xfe"], ids=["syntax", "array", "bytes"]
)
async def test_create_app_instance_user_rejects_a_body_that_is_not_an_object(
    endpoint: str, body: bytes
) -> None:
    """A body that is not a JSON object is a BadRequestException, never a crash."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            endpoint + "/app-instance-users", data=body, headers=_SIGNED
        ) as response,
    ):
        answer = await response.json()

    assert response.status == 400
    assert response.headers["x-amzn-ErrorType"] == "BadRequestException"
    assert answer["Code"] == "BadRequest"


# --- Signatures ----------------------------------------------------------------


async def test_sts_unsigned_request_is_missing_authentication_token(
    endpoint: str, state: StandinState
) -> None:
    """An anonymous STS call fails as AWS fails it, before any operation runs."""
    async with _sts(endpoint, _config(signature_version=UNSIGNED)) as anonymous:
        with pytest.raises(ClientError) as caught:
            await anonymous.assume_role(RoleArn=ROLE_ARN, RoleSessionName="anon")

    assert _code_and_status(caught.value) == ("MissingAuthenticationToken", 403)
    assert state.sessions == {}
    assert state.call_count("AssumeRole", "MissingAuthenticationToken") == 1


async def test_chime_unsigned_request_is_missing_authentication_token(
    endpoint: str, state: StandinState
) -> None:
    """An anonymous Chime call is MissingAuthenticationTokenException, status 403."""
    async with _chime(endpoint, _config(signature_version=UNSIGNED)) as anonymous:
        with pytest.raises(ClientError) as caught:
            await anonymous.describe_app_instance_user(AppInstanceUserArn=USER_ARN)

    assert _code_and_status(caught.value) == (
        "MissingAuthenticationTokenException",
        403,
    )
    assert state.call_count("DescribeAppInstanceUser") == 1


async def test_sts_malformed_signature_is_incomplete_signature(endpoint: str) -> None:
    """An Authorization header without its SigV4 fields is IncompleteSignature."""
    form = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}
    headers = {
        "Authorization": (
            "AWS4-HMAC-SHA256 Credential=testing/20300102/us-east-1/sts/aws4_request"
        ),
        "X-Amz-Date": "20300102T030405Z",
    }

    async with (
        aiohttp.ClientSession() as http,
        http.post(endpoint + "/", data=form, headers=headers) as response,
    ):
        body = await response.text()

    assert response.status == 400
    assert "<Code>IncompleteSignature</Code>" in body
    assert "requires 'Signature' parameter" in body


# --- Faults ------------------------------------------------------------------


async def test_assume_role_throttle_fault_is_throttling(
    sts: STSClient, state: StandinState
) -> None:
    """A throttled AssumeRole reaches botocore as Throttling with status 400."""
    state.faults.set("AssumeRole", FaultSpec(throttle=1.0))

    with pytest.raises(ClientError) as caught:
        await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="busy")

    assert _code_and_status(caught.value) == ("Throttling", 400)
    assert state.call_count("AssumeRole", "Throttling") == 1
    assert state.sessions == {}


@pytest.mark.parametrize(
    "api", ["CreateAppInstanceUser", "DescribeAppInstanceUser", "UpdateAppInstanceUser"]
)
async def test_chime_throttle_fault_is_throttled_client_exception(
    chime: ChimeSDKIdentityClient, state: StandinState, api: str
) -> None:
    """Each Chime API throttles separately, as ThrottledClientException with 429."""
    await _create_alice(chime)
    state.faults.set(api, FaultSpec(throttle=1.0))
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "CreateAppInstanceUser": lambda: _create_alice(chime, token="other"),
        "DescribeAppInstanceUser": lambda: chime.describe_app_instance_user(
            AppInstanceUserArn=USER_ARN
        ),
        "UpdateAppInstanceUser": lambda: chime.update_app_instance_user(
            AppInstanceUserArn=USER_ARN, Name="A", Metadata=""
        ),
    }

    with pytest.raises(chime.exceptions.ThrottledClientException) as caught:
        await calls[api]()

    assert _code_and_status(caught.value) == ("ThrottledClientException", 429)
    assert state.call_count(api, "ThrottledClientException") == 1


async def test_faults_apply_only_to_the_api_they_are_set_for(
    sts: STSClient, chime: ChimeSDKIdentityClient, state: StandinState
) -> None:
    """Throttling AssumeRole leaves the other APIs answering normally."""
    state.faults.set("AssumeRole", FaultSpec(throttle=1.0))

    identity = await sts.get_caller_identity()
    arn = await _create_alice(chime)

    assert identity["Account"] == ACCOUNT_ID
    assert arn == USER_ARN


async def test_sts_server_error_fault_answers_internal_failure_and_unavailable(
    sts: STSClient, state: StandinState
) -> None:
    """STS's 5xx share answers InternalFailure (500) and ServiceUnavailable (503)."""
    state.faults.set("AssumeRole", FaultSpec(server_error=1.0))
    answers: set[tuple[str, int]] = set()

    for _ in range(20):
        with pytest.raises(ClientError) as caught:
            await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="fail")
        answers.add(_code_and_status(caught.value))

    assert answers == {("InternalFailure", 500), ("ServiceUnavailable", 503)}


async def test_chime_server_error_fault_answers_service_failure_and_unavailable(
    chime: ChimeSDKIdentityClient, state: StandinState
) -> None:
    """Chime's 5xx share answers ServiceFailure (500) and ServiceUnavailable (503)."""
    state.faults.set("DescribeAppInstanceUser", FaultSpec(server_error=1.0))
    answers: set[tuple[str, int]] = set()

    for _ in range(20):
        with pytest.raises(ClientError) as caught:
            await chime.describe_app_instance_user(AppInstanceUserArn=USER_ARN)
        answers.add(_code_and_status(caught.value))

    assert answers == {
        ("ServiceFailureException", 500),
        ("ServiceUnavailableException", 503),
    }


@asynccontextmanager
async def _serve(
    state: StandinState, *, handler_cancellation: bool
) -> AsyncIterator[str]:
    """Serve the stand-in on a loopback port with aiohttp's cancellation setting.

    The test server cancels handlers when clients leave; `web.run_app` and
    the CLI do not. Hangs must end in both cases, so both are exercised.
    """
    runner = web.AppRunner(
        create_standin_app(state), handler_cancellation=handler_cancellation
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("handler_cancellation", [True, False])
async def test_hang_fault_makes_the_client_time_out(
    state: StandinState, handler_cancellation: bool
) -> None:
    """A hung call never answers; the client's read timeout fires and the slot frees."""
    state.faults.set("AssumeRole", FaultSpec(hang=1.0))

    async with _serve(state, handler_cancellation=handler_cancellation) as url:
        async with _sts(url, _config(read_timeout=0.3)) as impatient:
            with pytest.raises(ReadTimeoutError):
                await impatient.assume_role(RoleArn=ROLE_ARN, RoleSessionName="hung")

        assert await _eventually(lambda: state.call_count("AssumeRole", "hang") == 1)
        assert state.in_flight == 0
        assert state.sessions == {}


async def test_hung_calls_count_as_in_flight_together(
    endpoint: str, state: StandinState
) -> None:
    """Concurrent hung calls are all in flight at once, which the peak records."""
    state.faults.set("CreateAppInstanceUser", FaultSpec(hang=1.0))

    async with _chime(endpoint, _config(read_timeout=1.0)) as impatient:
        outcomes = await asyncio.gather(
            *(_create_alice(impatient, token=f"token-{index}") for index in range(3)),
            return_exceptions=True,
        )

    assert all(isinstance(outcome, ReadTimeoutError) for outcome in outcomes)
    assert state.peak_in_flight == 3
    assert await _eventually(lambda: state.in_flight == 0)


async def test_drop_fault_is_a_connection_error(
    sts: STSClient, state: StandinState
) -> None:
    """A dropped call closes the connection unanswered: a botocore connection error."""
    state.faults.set("AssumeRole", FaultSpec(drop=1.0))

    with pytest.raises(ConnectionClosedError):
        await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="dropped")

    assert state.call_count("AssumeRole", "drop") == 1
    assert state.sessions == {}


async def test_latency_fault_outlasts_a_short_read_timeout(
    endpoint: str, state: StandinState
) -> None:
    """An added latency longer than the client's patience times the call out."""
    state.faults.set("GetCallerIdentity", FaultSpec(latency=FixedLatency(30.0)))

    async with _sts(endpoint, _config(read_timeout=0.3)) as impatient:
        with pytest.raises(ReadTimeoutError):
            await impatient.get_caller_identity()

    assert state.call_count("GetCallerIdentity", "ok") == 0


async def test_small_latency_fault_still_answers(
    sts: STSClient, state: StandinState
) -> None:
    """A latency within the client's patience delays but does not fail the call."""
    state.faults.set("AssumeRole", FaultSpec(latency=UniformLatency(0.001, 0.01)))

    result = await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="slow")

    assert result["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert state.call_count("AssumeRole", "ok") == 1


async def test_fault_shares_follow_the_seeded_random_source(
    aiohttp_server: AiohttpServer,
) -> None:
    """Two stand-ins with the same seed fail the same calls in the same order."""
    sequences: list[list[str]] = []

    for _ in range(2):
        state = StandinState(faults=FaultInjector(seed=7))
        state.faults.set("AssumeRole", FaultSpec(throttle=0.5))
        server = await aiohttp_server(create_standin_app(state))
        outcomes: list[str] = []
        async with _sts(str(server.make_url("")), _config()) as client:
            for _ in range(12):
                try:
                    await client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="seeded")
                    outcomes.append("ok")
                except ClientError as error:
                    outcomes.append(error.response["Error"]["Code"])
        sequences.append(outcomes)

    assert sequences[0] == sequences[1]
    assert set(sequences[0]) == {"ok", "Throttling"}


# --- Admin endpoints ---------------------------------------------------------


async def _admin(
    endpoint: str, method: str, path: str, body: object = None
) -> tuple[int, Any]:
    """Call an admin endpoint and return its status and JSON body."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{endpoint}/_standin{path}", json=body) as response,
    ):
        return response.status, await response.json()


async def test_admin_stats_reports_calls_by_api_and_outcome(
    sts: STSClient, chime: ChimeSDKIdentityClient, endpoint: str
) -> None:
    """Stats count each API's calls by outcome, with in-flight and its peak."""
    await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="stats")
    await _create_alice(chime)
    with pytest.raises(ClientError):
        await _create_alice(chime, token="other-token")

    status, stats = await _admin(endpoint, "GET", "/stats")

    assert status == 200
    assert stats["calls"] == {
        "AssumeRole": {"ok": 1},
        "CreateAppInstanceUser": {"ConflictException": 1, "ok": 1},
    }
    assert stats["in_flight"] == 0
    assert stats["peak_in_flight"] == 1
    assert stats["sessions"] == 1
    assert stats["app_instance_users"] == 1


async def test_admin_reset_forgets_calls_sessions_and_users(
    sts: STSClient, chime: ChimeSDKIdentityClient, endpoint: str, state: StandinState
) -> None:
    """Reset empties the records but keeps the fault plan."""
    await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="reset")
    await _create_alice(chime)
    state.faults.set("AssumeRole", FaultSpec(throttle=0.25))

    status, stats = await _admin(endpoint, "POST", "/reset")

    assert status == 200
    assert stats["calls"] == {}
    assert stats["sessions"] == stats["app_instance_users"] == 0
    assert state.users == {}
    assert state.faults.spec("AssumeRole") == FaultSpec(throttle=0.25)
    assert await _create_alice(chime) == USER_ARN


async def test_admin_session_lookup_returns_what_a_key_was_minted_for(
    sts: STSClient, endpoint: str
) -> None:
    """The session endpoint returns the key's session name, tags and source."""
    issued = await sts.assume_role(
        RoleArn=ROLE_ARN,
        RoleSessionName="chime_carol",
        Tags=[{"Key": "chime-user-id", "Value": "carol"}],
        SourceIdentity="carol",
    )
    access_key_id = issued["Credentials"]["AccessKeyId"]

    status, session = await _admin(endpoint, "GET", f"/sessions/{access_key_id}")

    assert status == 200
    assert session["RoleSessionName"] == "chime_carol"
    assert session["Tags"] == [{"Key": "chime-user-id", "Value": "carol"}]
    assert session["SourceIdentity"] == "carol"
    assert session["AssumedRoleArn"] == issued["AssumedRoleUser"]["Arn"]


async def test_admin_session_lookup_unknown_key_is_404(endpoint: str) -> None:
    """A key the stand-in never issued has no session."""
    status, body = await _admin(endpoint, "GET", "/sessions/ASIAUNKNOWNKEY000000")

    assert status == 404
    assert "ASIAUNKNOWNKEY000000" in body["error"]


async def test_admin_faults_put_takes_effect_and_reads_back(
    sts: STSClient, endpoint: str, state: StandinState
) -> None:
    """A plan PUT over HTTP throttles the API and GET returns it with its seed."""
    plan = {
        "seed": 99,
        "faults": {
            "AssumeRole": {
                "throttle": 1.0,
                "latency": {"distribution": "uniform", "low": 0.0, "high": 0.001},
            }
        },
    }

    put_status, _ = await _admin(endpoint, "PUT", "/faults", plan)
    get_status, current = await _admin(endpoint, "GET", "/faults")
    with pytest.raises(ClientError) as caught:
        await sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="admin")

    assert (put_status, get_status) == (200, 200)
    assert current == {
        "seed": 99,
        "faults": {
            "AssumeRole": {
                "latency": {"distribution": "uniform", "low": 0.0, "high": 0.001},
                "throttle": 1.0,
                "server_error": 0.0,
                "hang": 0.0,
                "drop": 0.0,
            }
        },
    }
    assert _code_and_status(caught.value) == ("Throttling", 400)
    assert state.faults.seed == 99


async def test_admin_fault_for_one_api_and_clearing(
    endpoint: str, state: StandinState
) -> None:
    """PUT /faults/{api} sets one API; DELETE /faults removes every fault."""
    state.faults.set("AssumeRole", FaultSpec(drop=0.5))

    status, plan = await _admin(
        endpoint, "PUT", "/faults/UpdateAppInstanceUser", {"server_error": 0.2}
    )

    assert status == 200
    assert sorted(plan["faults"]) == ["AssumeRole", "UpdateAppInstanceUser"]
    assert state.faults.spec("UpdateAppInstanceUser") == FaultSpec(server_error=0.2)

    status, plan = await _admin(endpoint, "DELETE", "/faults")

    assert status == 200
    assert plan["faults"] == {}
    assert state.faults.spec("AssumeRole") == FaultSpec()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(
            "/faults", {"faults": {"AssumeRole": {"throttle": 1.5}}}, id="share>1"
        ),
        pytest.param(
            "/faults",
            {"faults": {"AssumeRole": {"throttle": 0.6, "drop": 0.6}}},
            id="sum>1",
        ),
        pytest.param("/faults", {"faults": {"NoSuchApi": {}}}, id="unknown-api"),
        pytest.param("/faults/AssumeRole", {"jitter": 1}, id="unknown-key"),
        pytest.param(
            "/faults/AssumeRole",
            {"latency": {"distribution": "pareto", "mean": 1}},
            id="unknown-distribution",
        ),
        pytest.param("/faults", {"faults": {}, "seed": "x"}, id="seed-type"),
    ],
)
async def test_admin_faults_reject_invalid_plans(
    endpoint: str, state: StandinState, path: str, body: object
) -> None:
    """An invalid plan is refused with 400 and leaves the current plan alone."""
    state.faults.set("AssumeRole", FaultSpec(throttle=0.1))

    status, answer = await _admin(endpoint, "PUT", path, body)

    assert status == 400
    assert answer["error"]
    assert state.faults.spec("AssumeRole") == FaultSpec(throttle=0.1)


async def test_unserved_path_is_an_unknown_operation(
    chime: ChimeSDKIdentityClient, endpoint: str
) -> None:
    """A Chime operation the stand-in does not serve fails with a readable code."""
    with pytest.raises(ClientError) as caught:
        await chime.delete_app_instance_user(AppInstanceUserArn=USER_ARN)

    status, body = await _admin(endpoint, "GET", "/nothing-here")

    assert _code_and_status(caught.value) == ("UnknownOperationException", 404)
    assert status == 404
    assert "/nothing-here" in body["error"]


async def test_create_standin_app_lets_embedders_add_routes(
    aiohttp_server: AiohttpServer,
) -> None:
    """A route added after the factory (say, a JWKS document) is still served."""
    app = create_standin_app(StandinState())

    async def extra(_request: web.Request) -> web.Response:
        return web.json_response({"keys": []})

    app.router.add_get("/.well-known/jwks.json", extra)
    server = await aiohttp_server(app)

    async with (
        aiohttp.ClientSession() as http,
        http.get(str(server.make_url("/.well-known/jwks.json"))) as response,
    ):
        body = await response.json()

    assert response.status == 200
    assert body == {"keys": []}


# --- Command line --------------------------------------------------------------


async def test_cli_serves_on_loopback_with_faults_from_flags() -> None:
    """`python -m standin` announces its URL and applies --fault from the start."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "standin",
        "--port",
        "0",
        "--seed",
        "3",
        "--fault",
        "AssumeRole:throttle=1",
        "--app-instance-arn",
        APP_INSTANCE_ARN,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        announcement = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        url = announcement.strip().rsplit(" ", 1)[-1]

        async with _sts(url, _config()) as client:
            with pytest.raises(ClientError) as caught:
                await client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="cli")
        status, plan = await _admin(url, "GET", "/faults")
    finally:
        process.send_signal(signal.SIGTERM)
        exit_status = await asyncio.wait_for(process.wait(), 30)

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    assert _code_and_status(caught.value) == ("Throttling", 400)
    assert status == 200
    assert plan["seed"] == 3
    assert plan["faults"]["AssumeRole"]["throttle"] == 1.0
    assert exit_status == 0
