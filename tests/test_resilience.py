"""Staying up when AWS is slow, throttling or failing: storms, faults and leaks.

Every test drives the real app over HTTP against the stand-in, whose fault plan
makes AWS throttle, fail, hang or drop connections. Nothing asserts a duration:
"during" and "after" are established by what the stand-in has in flight or has
recorded, and "no leak" by counting tasks, descriptors, single-flight entries and
gate slots before and after.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.app_state import CREDENTIALS, GATE, SETTINGS, USERS
from service.credentials import USER_TAG
from service.user_ids import chime_user_id, role_session_name
from standin.app import create_standin_app
from standin.faults import FaultSpec, FixedLatency, UniformLatency
from standin.state import StandinState
from tests.support import (
    APP_INSTANCE_ARN,
    ROLE_ARN,
    Client,
    FakeClock,
    bearer,
    eventually,
    hs256_token,
    settings_for,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterator, Mapping, Sequence

    from aiohttp import web

    from service.settings import Settings
    from tests.conftest import AiohttpClient, AiohttpServer, Standin

# Short timeouts so a hung call costs a fraction of a second.
READ_TIMEOUT: Final = 0.3
DEADLINE: Final = 2.0
MAX_CONCURRENCY: Final = 8

# Words of AWS's own answers that must never reach a client.
AWS_WORDS: Final = (
    "Throttl",
    "Rate exceeded",
    "InternalFailure",
    "ServiceFailure",
    "ServiceUnavailable",
    "AccessDenied",
    "not authorized",
    "ValidationError",
    "NotFound",
    "arn:aws",
    "127.0.0.1",
)

FAULTS: Final[Mapping[str, FaultSpec]] = {
    # A little latency with each, so the calls are in flight while healthz is asked.
    "throttle": FaultSpec(latency=FixedLatency(0.2), throttle=1.0),
    "server_error": FaultSpec(latency=FixedLatency(0.2), server_error=1.0),
    "hang": FaultSpec(hang=1.0),
    "drop": FaultSpec(latency=FixedLatency(0.2), drop=1.0),
}
SIGN_IN_APIS: Final = ("AssumeRole", "CreateAppInstanceUser")
ROUND_USERS: Final = 8


@dataclasses.dataclass(frozen=True)
class Reply:
    """One sign-in's answer, read in full."""

    status: int
    headers: Mapping[str, str]
    body: dict[str, Any]
    text: str


@dataclasses.dataclass(frozen=True)
class Footprint:
    """What a process holds that a fault could leak."""

    tasks: int
    fds: int
    flights: int
    aws_in_flight: int
    pooled: int
    """How many idle AWS connections may come and go: both pools, full."""


@pytest.fixture
def settings(hs256_secret: str) -> Settings:
    """Short AWS timeouts and a small pool, so faults resolve quickly."""
    return fault_settings(hs256_secret)


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


def fault_settings(secret: str, **overrides: Any) -> Settings:
    """Settings for fault tests: short timeouts, one attempt, a small pool."""
    base: dict[str, Any] = {
        "jwt_secret": secret,
        "aws_read_timeout_seconds": READ_TIMEOUT,
        "aws_connect_timeout_seconds": READ_TIMEOUT,
        "sign_in_deadline_seconds": DEADLINE,
        "aws_max_attempts": 1,
        "aws_max_concurrency": MAX_CONCURRENCY,
        "aws_queue_timeout_seconds": DEADLINE,
    }
    base.update(overrides)
    return settings_for(**base)


async def burst(client: Client, tokens: Sequence[str]) -> list[Reply]:
    """Sign every token in at once, each on its own connection."""
    url = client.make_url("/v1/sign-in")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(token: str) -> Reply:
            async with session.post(url, headers=bearer(token)) as response:
                text = await response.text()
                return Reply(
                    response.status,
                    dict(response.headers),
                    await response.json(content_type=None),
                    text,
                )

        return await asyncio.gather(*(one(token) for token in tokens))


def app_of(client: Client) -> web.Application:
    """The app behind the test client."""
    assert client.app is not None
    return client.app


def footprint(app: web.Application) -> Footprint:
    """Count tasks, descriptors, single-flight entries and gate slots now."""
    users = app[USERS]
    flights = (
        len(app[CREDENTIALS]._flights)
        + len(users._flights)
        + len(users._renaming)
        + len(users._wanted_names)
    )
    return Footprint(
        tasks=len(asyncio.all_tasks()),
        fds=sum(1 for _ in Path("/proc/self/fd").iterdir()),
        flights=flights,
        aws_in_flight=app[GATE].in_flight,
        pooled=2 * app[SETTINGS].aws_max_concurrency,
    )


async def settled(app: web.Application, baseline: Footprint) -> Footprint:
    """Wait (by a bounded number of polls) until the app is back to `baseline`.

    Returns the last footprint either way, so the caller's assertion names the
    numbers that did not come back.
    """
    latest = footprint(app)
    for _ in range(500):
        latest = footprint(app)
        if _within(baseline, latest):
            break
        await asyncio.sleep(0.02)
    return latest


def _within(before: Footprint, after: Footprint) -> bool:
    return (
        after.flights == 0
        and after.aws_in_flight == 0
        and after.tasks <= before.tasks + before.pooled
        and after.fds <= before.fds + 2 * before.pooled
    )


def assert_no_leak(before: Footprint, after: Footprint) -> None:
    """Nothing the fault round created is still held, beyond idle pooled connections.

    The AWS connection pools may keep more idle connections than at `before`
    (never more than their size): each is one stand-in handler task and two
    descriptors here. A leak of one task or descriptor per sign-in exceeds that.
    """
    assert after.flights == 0, (before, after)
    assert after.aws_in_flight == 0, (before, after)
    assert after.tasks <= before.tasks + before.pooled, (before, after)
    assert after.fds <= before.fds + 2 * before.pooled, (before, after)


def assert_unavailable(reply: Reply) -> None:
    """A 503 the client may retry, in problem+json, saying nothing of AWS."""
    assert reply.status == 503, reply
    assert int(reply.headers["Retry-After"]) >= 1
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    assert reply.body["status"] == 503
    for word in AWS_WORDS:
        assert word not in reply.text, (word, reply.text)


def assert_minted_for(standin: Standin, reply: Reply, subject: str) -> None:
    """The reply is a success whose credentials were minted for `subject`."""
    assert reply.status == 200, reply
    chime_id = chime_user_id(subject)
    assert reply.body["ChimeUserId"] == chime_id
    assert (
        reply.body["ChimeAppInstanceUserArn"] == f"{APP_INSTANCE_ARN}/user/{chime_id}"
    )
    session = standin.state.sessions[reply.body["ChimeCredentials"]["AccessKeyId"]]
    assert session.role_session_name == role_session_name(chime_id)
    assert session.tag_map == {USER_TAG: chime_id}


async def warm_pools(client: Client, standin: Standin, secret: str) -> Footprint:
    """Open a connection in each AWS pool and the caches' first entries, then measure.

    What later rounds add beyond this is bounded by the pools' size, which
    `assert_no_leak` allows for.
    """
    replies = await burst(client, [hs256_token(secret, "warm-0")])
    assert_minted_for(standin, replies[0], "warm-0")
    app = app_of(client)
    await eventually(lambda: _no_aws_in_flight(app))
    return footprint(app)


async def with_health_checks(
    client: Client, standin: Standin, sign_ins: Awaitable[list[Reply]]
) -> tuple[list[Reply], list[int]]:
    """Run `sign_ins`, asking /healthz over and over while AWS calls are under way.

    Returns the sign-ins' replies and the status of every health check made while
    the stand-in had calls in flight and the sign-ins were still running.
    """
    pending = asyncio.ensure_future(sign_ins)
    statuses: list[int] = []
    while not pending.done():
        if standin.state.in_flight > 0:
            async with client.get("/healthz") as response:
                if not pending.done():
                    statuses.append(response.status)
        await asyncio.sleep(0.01)
    return await pending, statuses


async def _no_aws_in_flight(app: web.Application) -> bool:
    return app[GATE].in_flight == 0


# Storms ------------------------------------------------------------------------


async def test_storm_of_one_cold_user_makes_one_assume_role(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str, quiet_logs: None
) -> None:
    """A thousand simultaneous sign-ins of one cold user cost one AssumeRole."""
    del quiet_logs
    client = await aiohttp_client(create_app(settings_for(jwt_secret=hs256_secret)))
    # Slow AWS a little, so every sign-in arrives while the first call is running.
    standin.state.faults.set("AssumeRole", FaultSpec(latency=FixedLatency(0.2)))
    standin.state.faults.set(
        "CreateAppInstanceUser", FaultSpec(latency=FixedLatency(0.2))
    )

    replies = await burst(client, [hs256_token(hs256_secret, "storm-user")] * 1000)

    assert {reply.status for reply in replies} == {200}
    assert standin.state.call_count("AssumeRole") == 1
    assert standin.state.call_count("CreateAppInstanceUser") <= 1
    assert standin.state.call_count("DescribeAppInstanceUser") == 0
    keys = {reply.body["ChimeCredentials"]["AccessKeyId"] for reply in replies}
    assert len(keys) == 1
    assert_minted_for(standin, replies[0], "storm-user")
    # Most of the thousand joined the one flight rather than reading the cache.
    assert app_of(client)[CREDENTIALS].stats.misses > 1


async def test_storm_of_cold_users_stays_within_the_concurrency_bound(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str, quiet_logs: None
) -> None:
    """A thousand cold users never have more AWS calls in flight than the bound."""
    del quiet_logs
    settings = settings_for(
        jwt_secret=hs256_secret,
        aws_max_concurrency=MAX_CONCURRENCY,
        aws_queue_timeout_seconds=60.0,
        sign_in_deadline_seconds=60.0,
    )
    client = await aiohttp_client(create_app(settings))
    for api in SIGN_IN_APIS:
        standin.state.faults.set(api, FaultSpec(latency=FixedLatency(0.01)))
    subjects = [f"crowd-{i}" for i in range(1000)]

    replies = await burst(client, [hs256_token(hs256_secret, s) for s in subjects])

    assert {reply.status for reply in replies} == {200}
    # The bound held, and was reached: the calls did overlap.
    assert standin.state.peak_in_flight == MAX_CONCURRENCY
    assert standin.state.call_count("AssumeRole") == 1000
    assert app_of(client)[GATE].in_flight == 0
    for subject, reply in zip(subjects, replies, strict=True):
        assert_minted_for(standin, reply, subject)


async def test_storm_beyond_the_queue_timeout_sheds_load_with_503(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str, quiet_logs: None
) -> None:
    """Sign-ins that wait past the queue timeout get 503 + Retry-After, never 500."""
    del quiet_logs
    settings = settings_for(
        jwt_secret=hs256_secret,
        aws_max_concurrency=MAX_CONCURRENCY,
        aws_queue_timeout_seconds=0.05,
    )
    client = await aiohttp_client(create_app(settings))
    for api in SIGN_IN_APIS:
        standin.state.faults.set(api, FaultSpec(latency=FixedLatency(0.2)))
    subjects = [f"queue-{i}" for i in range(1000)]

    replies, health = await with_health_checks(
        client, standin, burst(client, [hs256_token(hs256_secret, s) for s in subjects])
    )

    assert set(health) == {200}  # asked at least once, and answered every time

    statuses = {reply.status for reply in replies}
    assert statuses == {200, 503}
    assert standin.state.peak_in_flight <= MAX_CONCURRENCY
    for subject, reply in zip(subjects, replies, strict=True):
        if reply.status == 503:
            assert_unavailable(reply)
        else:
            assert_minted_for(standin, reply, subject)
    # The load is gone, so the service answers again at once.
    standin.state.faults.clear()
    again = await burst(client, [hs256_token(hs256_secret, "queue-after")])
    assert_minted_for(standin, again[0], "queue-after")
    assert app_of(client)[GATE].in_flight == 0


async def _stand_in_busy(standin: Standin) -> bool:
    return standin.state.in_flight > 0


# Each fault alone ----------------------------------------------------------------


@pytest.mark.parametrize("api", SIGN_IN_APIS)
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_alone_answers_503_then_recovers_without_leaks(
    client: Client, standin: Standin, hs256_secret: str, api: str, fault: str
) -> None:
    """Throttling, 5xx, hangs and drops give 503s, healthz stays up, nothing leaks."""
    app = app_of(client)
    before = await warm_pools(client, standin, hs256_secret)
    subjects = [f"{fault}-{api}-{i}" for i in range(10)]
    tokens = [hs256_token(hs256_secret, s) for s in subjects]
    ok_before = standin.state.call_count(api, "ok")
    calls_before = standin.state.call_count(api)
    standin.state.faults.set(api, FAULTS[fault])

    replies, health = await with_health_checks(client, standin, burst(client, tokens))

    assert set(health) == {200}  # asked at least once, and answered every time

    for reply in replies:
        assert_unavailable(reply)
    assert standin.state.call_count(api, "ok") == ok_before
    # The fault was met: calls reached the stand-in (the queue holds the rest).
    assert standin.state.call_count(api) > calls_before

    standin.state.faults.clear()
    # Calls begun during the fault finish (or time out) before recovery is judged.
    await settled(app, before)
    recovered = await burst(client, tokens)
    for subject, reply in zip(subjects, recovered, strict=True):
        assert_minted_for(standin, reply, subject)
    assert_no_leak(before, await settled(app, before))


async def test_fault_hang_past_the_deadline_answers_503_and_frees_everything(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """A call that outlives the sign-in deadline is a 503; its slot comes back after."""
    settings = fault_settings(
        hs256_secret,
        aws_read_timeout_seconds=1.0,
        aws_max_attempts=1,
        sign_in_deadline_seconds=0.4,
    )
    client = await aiohttp_client(create_app(settings))
    app = app_of(client)
    before = await warm_pools(client, standin, hs256_secret)
    standin.state.faults.set("AssumeRole", FaultSpec(hang=1.0))
    subjects = [f"deadline-{i}" for i in range(10)]
    tokens = [hs256_token(hs256_secret, s) for s in subjects]

    replies = await burst(client, tokens)

    for reply in replies:
        assert_unavailable(reply)
        assert "in time" in reply.body["detail"]
    # The hung calls outlived their sign-ins, holding gate slots meanwhile.
    assert app[GATE].in_flight > 0
    standin.state.faults.clear()
    assert_no_leak(before, await settled(app, before))
    recovered = await burst(client, tokens)
    for subject, reply in zip(subjects, recovered, strict=True):
        assert_minted_for(standin, reply, subject)


async def test_fault_mix_on_every_api_keeps_answering_and_recovers(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str, quiet_logs: None
) -> None:
    """With every API misbehaving at once, answers are 200 or 503, never another."""
    del quiet_logs
    client = await aiohttp_client(create_app(fault_settings(hs256_secret)))
    app = app_of(client)
    before = await warm_pools(client, standin, hs256_secret)
    standin.state.faults.reseed(20261204)
    mix = FaultSpec(
        latency=UniformLatency(0.0, 0.05),
        throttle=0.2,
        server_error=0.1,
        hang=0.05,
        drop=0.05,
    )
    for api in (*SIGN_IN_APIS, "DescribeAppInstanceUser", "UpdateAppInstanceUser"):
        standin.state.faults.set(api, mix)
    subjects = [f"mix-{i}" for i in range(60)]
    tokens = [hs256_token(hs256_secret, s) for s in subjects]

    replies, health = await with_health_checks(client, standin, burst(client, tokens))

    assert set(health) == {200}  # asked at least once, and answered every time
    assert {reply.status for reply in replies} == {200, 503}
    for subject, reply in zip(subjects, replies, strict=True):
        if reply.status == 503:
            assert_unavailable(reply)
        else:
            assert_minted_for(standin, reply, subject)

    standin.state.faults.clear()
    # Calls begun during the faults finish (or time out) before recovery is judged.
    await settled(app, before)
    recovered = await burst(client, tokens)
    for subject, reply in zip(subjects, recovered, strict=True):
        assert_minted_for(standin, reply, subject)
    assert_no_leak(before, await settled(app, before))


async def test_fault_rounds_keep_memory_and_descriptors_bounded(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str, quiet_logs: None
) -> None:
    """Round after round of faults, memory, tasks and descriptors stay bounded."""
    del quiet_logs
    # Room for every call of a round at once: the rounds measure leaks, not queues.
    settings = fault_settings(hs256_secret, aws_max_concurrency=2 * ROUND_USERS)
    client = await aiohttp_client(create_app(settings))
    app = app_of(client)
    before = await warm_pools(client, standin, hs256_secret)
    tokens = [hs256_token(hs256_secret, f"round-{i}") for i in range(ROUND_USERS)]
    plans = [dataclasses.replace(spec, latency=None) for spec in FAULTS.values()]
    traced: list[int] = []
    rss: list[int] = []
    footprints: list[Footprint] = []

    tracemalloc.start()
    try:
        for round_number in range(2 * len(plans)):
            for api in SIGN_IN_APIS:
                standin.state.faults.set(api, plans[round_number % len(plans)])
            replies = await burst(client, tokens)
            assert {reply.status for reply in replies} == {503}
            # Calls that outlive their sign-ins end under the fault, not after it.
            footprints.append(await settled(app, before))
            standin.state.faults.clear()
            gc.collect()
            traced.append(tracemalloc.get_traced_memory()[0])
            rss.append(_rss_bytes())
    finally:
        tracemalloc.stop()

    for measured in footprints:
        assert_no_leak(before, measured)
    # Once every kind of fault has run, the second cycle (ending, like the first,
    # with connections dropped) keeps less than 8 KiB per failed sign-in: a leaked
    # flight keeps its task, exception, traceback and frames, tens of KiB each.
    growth = traced[-1] - traced[len(plans) - 1]
    assert growth < len(plans) * ROUND_USERS * 8 * 1024, traced
    assert rss[-1] - rss[len(plans) - 1] < 16 * 1024 * 1024, rss


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:  # noqa: PTH123
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


# The gate's own retry of Chime's throttling ---------------------------------------


async def test_gate_retries_chime_throttling_until_most_sign_ins_succeed(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """With half of the creates throttled, retries let most sign-ins through."""
    # Room for every sign-in at once, so only the throttling can fail one.
    settings = settings_for(jwt_secret=hs256_secret, aws_max_attempts=1)
    client = await aiohttp_client(create_app(settings))
    standin.state.faults.reseed(7)
    standin.state.faults.set("CreateAppInstanceUser", FaultSpec(throttle=0.5))
    subjects = [f"retried-{i}" for i in range(100)]

    replies = await burst(client, [hs256_token(hs256_secret, s) for s in subjects])

    succeeded = [reply for reply in replies if reply.status == 200]
    assert len(succeeded) >= 75
    creates = standin.state.calls["CreateAppInstanceUser"]
    assert creates["ThrottledClientException"] > 0
    assert creates.total() > len(subjects)
    for subject, reply in zip(subjects, replies, strict=True):
        if reply.status == 200:
            assert_minted_for(standin, reply, subject)
        else:
            assert_unavailable(reply)


async def test_gate_retries_of_chime_throttling_are_bounded(
    client: Client, standin: Standin, hs256_secret: str
) -> None:
    """A create that is always throttled is tried a few times, then answered 503."""
    standin.state.faults.set("CreateAppInstanceUser", FaultSpec(throttle=1.0))

    replies = await burst(client, [hs256_token(hs256_secret, "always-throttled")])

    assert_unavailable(replies[0])
    attempts = standin.state.call_count("CreateAppInstanceUser")
    assert 1 < attempts <= 6
    assert attempts == standin.state.call_count(
        "CreateAppInstanceUser", "ThrottledClientException"
    )


# Configuration faults ------------------------------------------------------------


OTHER_ROLE_ARN: Final = "arn:aws:iam::123456789012:role/some-other-role"


@pytest.fixture
async def refusing_standin(
    aiohttp_server: AiohttpServer, monkeypatch: pytest.MonkeyPatch
) -> Standin:
    """A stand-in where the service's role does not exist for it: AccessDenied."""
    from tests.conftest import Standin  # noqa: PLC0415 -- a runtime import of a type

    state = StandinState(
        app_instance_arns=frozenset({APP_INSTANCE_ARN}),
        role_arns=frozenset({OTHER_ROLE_ARN}),
    )
    server = await aiohttp_server(create_standin_app(state))
    url = str(server.make_url("")).rstrip("/")
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    return Standin(state=state, url=url)


async def test_configuration_fault_access_denied_answers_502_and_logs_the_code(
    aiohttp_client: AiohttpClient, refusing_standin: Standin, hs256_secret: str
) -> None:
    """An AssumeRole refused by IAM is a 502 logged as AccessDenied, never shown."""
    client = await aiohttp_client(create_app(fault_settings(hs256_secret)))
    app = app_of(client)
    tokens = [hs256_token(hs256_secret, f"denied-{i}") for i in range(5)]

    with structlog.testing.capture_logs() as logs:
        replies = await burst(client, tokens)

    for reply in replies:
        _assert_misconfigured(reply)
    logged = [entry for entry in logs if entry.get("aws_error_code") == "AccessDenied"]
    assert logged
    assert logged[0]["log_level"] == "error"
    assert (await client.get("/healthz")).status == 200
    assert app[GATE].in_flight == 0
    assert len(app[CREDENTIALS]._flights) == 0

    # The operator fixes the trust policy; the service needs no restart.
    refusing_standin.state.role_arns = frozenset({ROLE_ARN, OTHER_ROLE_ARN})
    recovered = await burst(client, tokens[:1])
    assert_minted_for(refusing_standin, recovered[0], "denied-0")


async def test_configuration_fault_validation_error_answers_502(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """A role ARN STS rejects as malformed is a 502 logged as ValidationError."""
    del standin
    not_a_role = "arn:aws:iam::123456789012:user/not-a-role"
    settings = fault_settings(hs256_secret, user_role_arn=not_a_role)
    client = await aiohttp_client(create_app(settings))

    with structlog.testing.capture_logs() as logs:
        replies = await burst(client, [hs256_token(hs256_secret, "invalid-role")])

    _assert_misconfigured(replies[0])
    codes = {entry.get("aws_error_code") for entry in logs}
    assert "ValidationError" in codes


async def test_configuration_fault_unknown_app_instance_answers_502(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """An app instance Chime does not know is a 502 logged with Chime's code."""
    unknown = (
        APP_INSTANCE_ARN.rsplit("/", 1)[0] + "/99999999-0000-4000-8000-000000000000"
    )
    settings = fault_settings(hs256_secret, chime_app_instance_arn=unknown)
    client = await aiohttp_client(create_app(settings))

    with structlog.testing.capture_logs() as logs:
        replies = await burst(client, [hs256_token(hs256_secret, "nowhere")])

    _assert_misconfigured(replies[0])
    codes = {entry.get("aws_error_code") for entry in logs}
    assert "NotFoundException" in codes
    assert standin.state.call_count("CreateAppInstanceUser", "NotFoundException") == 1


def _assert_misconfigured(reply: Reply) -> None:
    assert reply.status == 502, reply
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    assert reply.body["status"] == 502
    for word in AWS_WORDS:
        assert word not in reply.text, (word, reply.text)


# Stale-if-error when STS is slow rather than failing -------------------------------


async def test_stale_credentials_are_served_when_sts_hangs_past_the_deadline(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """A hanging STS is "AWS down" too: servable cached credentials beat a 503.

    The timeouts keep the defaults' proportions (deadline 10 s, read timeout 5 s,
    3 attempts), under which the deadline always fires before botocore gives up.
    """
    clock = FakeClock()
    settings = fault_settings(
        hs256_secret,
        aws_read_timeout_seconds=0.5,
        aws_max_attempts=3,
        sign_in_deadline_seconds=1.0,
    )
    client = await aiohttp_client(create_app(settings, clock=clock))
    # The app's clock also judges the token, so it must outlive the clock's jump.
    token = hs256_token(hs256_secret, "slow-sts", exp=int(time.time()) + 7200)
    first = (await burst(client, [token]))[0]
    assert_minted_for(standin, first, "slow-sts")
    cached = app_of(client)[CREDENTIALS].fresh(chime_user_id("slow-sts"))
    assert cached is not None
    # Inside the refresh margin, well above the stale minimum.
    clock.now = cached.expiration - 200
    standin.state.faults.set("AssumeRole", FaultSpec(hang=1.0))

    again = (await burst(client, [token]))[0]

    assert again.status == 200, again
    assert again.body["ChimeCredentials"] == first.body["ChimeCredentials"]


# Shutdown with work still running -----------------------------------------------


async def test_shutdown_leaves_no_rename_running(
    standin: Standin, hs256_secret: str
) -> None:
    """A display name still being written at shutdown is stopped, not left running."""
    server = TestServer(create_app(fault_settings(hs256_secret)))
    client: Client = TestClient(server)
    await client.start_server()
    try:
        first = await burst(client, [hs256_token(hs256_secret, "leaver", name="Old")])
        assert first[0].status == 200
        standin.state.faults.set(
            "DescribeAppInstanceUser", FaultSpec(latency=FixedLatency(0.2))
        )
        renamed = await burst(client, [hs256_token(hs256_secret, "leaver", name="New")])
        assert renamed[0].body["ChimeDisplayName"] == "New"
        # The rename is under way: its Describe is waiting at the stand-in.
        await eventually(lambda: _stand_in_busy(standin))
    finally:
        with structlog.testing.capture_logs() as logs:
            await client.close()
            await eventually(_no_rename_running)

    events = [entry["event"] for entry in logs]
    closing = events.index("aws clients closing")
    # Whatever happens to the rename after the clients close, it must not run on.
    assert events[closing + 1 :] == [], events
    assert standin.state.call_count("UpdateAppInstanceUser") == 0


async def _no_rename_running() -> bool:
    return not any(
        "AppInstanceUsers._rename" in getattr(task.get_coro(), "__qualname__", "")
        for task in asyncio.all_tasks()
    )


# botocore's attempts ------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 2])
async def test_retry_attempts_match_aws_max_attempts(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str, attempts: int
) -> None:
    """AWS_MAX_ATTEMPTS counts every attempt, the first included, as in the AWS SDKs."""
    # A deadline longer than botocore's backoff, so the answer waits for every attempt.
    settings = fault_settings(
        hs256_secret, aws_max_attempts=attempts, sign_in_deadline_seconds=10.0
    )
    client = await aiohttp_client(create_app(settings))
    standin.state.faults.set("AssumeRole", FaultSpec(server_error=1.0))

    replies = await burst(client, [hs256_token(hs256_secret, "counted")])

    assert_unavailable(replies[0])
    assert "failing" in replies[0].body["detail"]
    assert app_of(client)[GATE].in_flight == 0
    assert standin.state.call_count("AssumeRole") == attempts
