"""Never another user's credentials: thousands of concurrent sign-ins, each checked.

Every answer is checked against what the stand-in recorded when it minted the access
key: the session name and the `UserUUID` tag must be the Chime user id derived from
the token's own subject, and so must the answer's user id and the ARN's last segment.
A mix-up anywhere (cache key, single-flight key, a closure over the wrong user)
shows as a key minted for someone else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import pytest
import structlog

from service.app import create_app
from service.app_state import CREDENTIALS, GATE
from service.credentials import USER_TAG
from service.user_ids import chime_user_id, role_session_name
from standin.faults import FaultSpec, FixedLatency, UniformLatency
from tests.support import (
    APP_INSTANCE_ARN,
    Client,
    FakeClock,
    bearer,
    eventually,
    hs256_token,
    settings_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from tests.conftest import AiohttpClient, Standin

SIGN_IN_APIS: Final = ("AssumeRole", "CreateAppInstanceUser")

# Ids whose mapped forms come close to each other: each must stay its own user.
LOOKALIKES: Final = (
    "auth0|abc",
    "auth0_abc",
    "Alice",
    "alice",
    "a..b",
    "a_b",
    "a.b",
    "us-east-1:0f0e0d0c-0000-4000-8000-000000000001",
    "us-east-1_0f0e0d0c-0000-4000-8000-000000000001",
    "x" * 64,
    "x" * 65,
    "x" * 66,
    "jose@example.com",
    "josé@example.com",
    "jose+chat@example.com",
)


@dataclasses.dataclass(frozen=True)
class Reply:
    """One sign-in's answer, read in full."""

    subject: str
    status: int
    headers: Mapping[str, str]
    body: dict[str, Any]


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Drop log lines below error: thousands of access log lines cost seconds."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR)
    )
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)
    structlog.reset_defaults()


def subjects_of_every_shape(count: int, prefix: str) -> list[str]:
    """`count` distinct ids: plain, IdP-prefixed, emails, region-scoped, non-ASCII."""
    shapes = (
        lambda i: f"{prefix}-{i}",
        lambda i: f"auth0|{prefix}{i:020x}",
        lambda i: f"{prefix}+{i}@example.com",
        lambda i: f"us-east-1:{uuid.uuid5(uuid.NAMESPACE_URL, f'{prefix}{i}')}",
        lambda i: f"ユーザー{prefix}{i}",
    )
    return [shapes[i % len(shapes)](i) for i in range(count)]


def token_for(secret: str, subject: str) -> str:
    """A token for `subject`, named after it, valid for two hours."""
    return hs256_token(
        secret, subject, name=f"Name of {subject}", exp=int(time.time()) + 7200
    )


async def burst(client: Client, secret: str, subjects: Sequence[str]) -> list[Reply]:
    """Sign every subject in at once, each on its own connection."""
    url = client.make_url("/v1/sign-in")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(subject: str) -> Reply:
            headers = bearer(token_for(secret, subject))
            async with session.post(url, headers=headers) as response:
                body = await response.json(content_type=None)
                return Reply(subject, response.status, dict(response.headers), body)

        return await asyncio.gather(*(one(subject) for subject in subjects))


def assert_minted_for_its_subject(standin: Standin, reply: Reply) -> str:
    """The reply's credentials, user and name are its own subject's; return the key."""
    assert reply.status == 200, reply
    chime_id = chime_user_id(reply.subject)
    body = reply.body
    assert body["ChimeUserId"] == chime_id, reply
    assert body["ChimeAppInstanceUserArn"] == f"{APP_INSTANCE_ARN}/user/{chime_id}"
    assert body["ChimeAppInstanceUserArn"].rsplit("/", 1)[-1] == chime_id
    assert body["ChimeDisplayName"] == f"Name of {reply.subject}"
    key = str(body["ChimeCredentials"]["AccessKeyId"])
    session = standin.state.sessions[key]
    assert session.role_session_name == role_session_name(chime_id), reply
    assert session.tag_map == {USER_TAG: chime_id}, reply
    return key


async def test_isolation_of_two_thousand_concurrent_users(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str, quiet_logs: None
) -> None:
    """Two thousand users signing in at once each get credentials minted for them."""
    del quiet_logs
    settings = settings_for(
        jwt_secret=hs256_secret,
        aws_queue_timeout_seconds=60.0,
        sign_in_deadline_seconds=60.0,
    )
    client = await aiohttp_client(create_app(settings))
    subjects = [*LOOKALIKES, *subjects_of_every_shape(2000 - len(LOOKALIKES), "iso")]
    assert len({chime_user_id(subject) for subject in subjects}) == len(subjects)

    replies = await burst(client, hs256_secret, subjects)

    keys = [assert_minted_for_its_subject(standin, reply) for reply in replies]
    assert len(set(keys)) == len(subjects)
    assert standin.state.call_count("AssumeRole") == len(subjects)
    assert standin.state.call_count("CreateAppInstanceUser") == len(subjects)


async def test_isolation_holds_while_aws_throttles_and_stale_credentials_are_served(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str, quiet_logs: None
) -> None:
    """Under throttling, retries and stale serving, every key is its user's own."""
    del quiet_logs
    clock = FakeClock()
    settings = settings_for(
        jwt_secret=hs256_secret,
        aws_max_attempts=1,
        aws_read_timeout_seconds=0.3,
        aws_max_concurrency=32,
        aws_queue_timeout_seconds=30.0,
        sign_in_deadline_seconds=30.0,
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    app = client.app
    assert app is not None
    returning = subjects_of_every_shape(200, "back")
    first = await burst(client, hs256_secret, returning)
    old_keys = {r.subject: assert_minted_for_its_subject(standin, r) for r in first}
    # Every returning user's credentials are due for refresh, yet still servable.
    cached = app[CREDENTIALS].fresh(chime_user_id(returning[0]))
    assert cached is not None
    clock.now = cached.expiration - settings.credentials_stale_min_seconds - 60
    standin.state.faults.reseed(1204)
    standin.state.faults.set("AssumeRole", FaultSpec(throttle=0.5, server_error=0.1))
    standin.state.faults.set("CreateAppInstanceUser", FaultSpec(throttle=0.5))
    newcomers = subjects_of_every_shape(200, "new")
    everyone = [*returning, *newcomers]
    random.Random(5).shuffle(everyone)  # noqa: S311 -- an order, not a secret

    replies = await burst(client, hs256_secret, everyone)

    assert {reply.status for reply in replies} <= {200, 503}
    outcomes: Counter[str] = Counter()
    for reply in replies:
        if reply.status == 503:
            # Returning users always have stale credentials to fall back on.
            assert reply.subject not in old_keys, reply
            assert int(reply.headers["Retry-After"]) >= 1
            outcomes["503"] += 1
            continue
        key = assert_minted_for_its_subject(standin, reply)
        if reply.subject in old_keys:
            outcomes["stale" if key == old_keys[reply.subject] else "refreshed"] += 1
    # Every path ran: stale serving, real refreshes, and newcomers created on retry.
    assert outcomes["stale"] > 0
    assert outcomes["refreshed"] > 0
    assert app[CREDENTIALS].stats.stale_served == outcomes["stale"]
    creates = standin.state.calls["CreateAppInstanceUser"]
    assert creates["ThrottledClientException"] > 0
    assert creates["ok"] > len(returning)
    assert standin.state.calls["AssumeRole"]["Throttling"] > 0
    assert outcomes["503"] < len(newcomers)
    assert app[GATE].in_flight == 0


async def test_isolation_of_users_sharing_single_flight_windows(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str, quiet_logs: None
) -> None:
    """Users each signing in many times at once share flights only with themselves."""
    del quiet_logs
    client = await aiohttp_client(create_app(settings_for(jwt_secret=hs256_secret)))
    for api in SIGN_IN_APIS:
        standin.state.faults.set(api, FaultSpec(latency=FixedLatency(0.2)))
    users = [*LOOKALIKES[:10], *subjects_of_every_shape(15, "shared")]
    requests = [user for user in users for _ in range(40)]
    random.Random(11).shuffle(requests)  # noqa: S311 -- an order, not a secret

    replies = await burst(client, hs256_secret, requests)

    keys_by_user: dict[str, set[str]] = {}
    for reply in replies:
        key = assert_minted_for_its_subject(standin, reply)
        keys_by_user.setdefault(reply.subject, set()).add(key)
    assert all(len(keys) == 1 for keys in keys_by_user.values()), keys_by_user
    assert len({next(iter(keys)) for keys in keys_by_user.values()}) == len(users)
    tagged = Counter(s.tag_map[USER_TAG] for s in standin.state.sessions.values())
    assert tagged == Counter({chime_user_id(user): 1 for user in users})
    # The windows were shared: far more sign-ins missed the cache than STS was called.
    assert client.app is not None
    assert client.app[CREDENTIALS].stats.misses > 2 * len(users)


async def test_isolation_of_renamed_users_signing_in_together(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """Users renamed at once each get their own new name, never a neighbour's."""
    client = await aiohttp_client(create_app(settings_for(jwt_secret=hs256_secret)))
    users = subjects_of_every_shape(30, "renamed")
    first = await burst(client, hs256_secret, users)
    assert {reply.status for reply in first} == {200}
    standin.state.faults.set(
        "UpdateAppInstanceUser", FaultSpec(latency=UniformLatency(0.0, 0.1))
    )
    url = client.make_url("/v1/sign-in")

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0)
    ) as session:

        async def renamed(subject: str) -> tuple[str, dict[str, Any]]:
            token = hs256_token(hs256_secret, subject, name=f"New name of {subject}")
            async with session.post(url, headers=bearer(token)) as response:
                assert response.status == 200
                return subject, await response.json()

        answers = await asyncio.gather(*(renamed(user) for user in users * 3))

    for subject, body in answers:
        assert body["ChimeUserId"] == chime_user_id(subject)
        assert body["ChimeDisplayName"] == f"New name of {subject}"

    async def all_written() -> bool:
        return standin.state.call_count("UpdateAppInstanceUser") >= len(users)

    await eventually(all_written)
    for user in users:
        arn = f"{APP_INSTANCE_ARN}/user/{chime_user_id(user)}"
        assert standin.state.users[arn].name == f"New name of {user}"
    assert standin.state.call_count("UpdateAppInstanceUser") == len(users)
