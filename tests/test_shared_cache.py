"""The Redis level shared by replicas: sealed entries, expiry, rotation, failures.

Replicas here are apps in this process, each with its own in-memory caches, all
talking to one real Redis server; `test_replicas.py` runs real processes.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.app_state import CREDENTIALS
from service.credentials import USER_TAG
from service.sealing import KEY_PREFIX, Sealer
from service.shared_cache import open_redis_cache
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
    from aiohttp import ClientResponse

    from service.settings import Settings
    from tests.conftest import AiohttpClient, Standin
    from tests.redis_server import RedisServer

MARGIN = 300
STALE_MIN = 120


def _settings(
    secret: str, redis: RedisServer, keys: tuple[bytes, ...], **overrides: Any
) -> Settings:
    # Generous unless a test is about timeouts: on a loaded machine a Redis call
    # may take longer than the production default, and would then be done without.
    overrides.setdefault("redis_timeout_seconds", 2.0)
    return settings_for(
        jwt_secret=secret,
        redis_url=redis.url,
        cache_encryption_keys=keys,
        credentials_refresh_margin_seconds=MARGIN,
        credentials_stale_min_seconds=STALE_MIN,
        **overrides,
    )


async def _sign_in(client: Client, secret: str, subject: str, **claims: Any) -> Any:
    response = await client.post(
        "/v1/sign-in",
        headers=bearer(
            hs256_token(secret, subject, exp=int(time.time()) + 86_400, **claims)
        ),
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def _metric(client: Client, name: str, **labels: str) -> float:
    response: ClientResponse = await client.get("/metrics")
    text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name} {labels} is not exposed")


def _aws_calls(standin: Standin) -> int:
    return sum(standin.state.call_count(api) for api in list(standin.state.calls))


@pytest.fixture
def key() -> bytes:
    """An encryption key made for this test."""
    return secrets.token_bytes(32)


async def test_shared_cache_serves_a_second_replica_without_aws(
    aiohttp_client: AiohttpClient,
    standin: Standin,
    redis_server: RedisServer,
    hs256_secret: str,
    key: bytes,
) -> None:
    """A user signed in on one replica is signed in on another from Redis alone."""
    settings = _settings(hs256_secret, redis_server, (key,))
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))

    one = await _sign_in(first, hs256_secret, "alice", name="Alice")
    calls = _aws_calls(standin)
    two = await _sign_in(second, hs256_secret, "alice", name="Alice")

    assert _aws_calls(standin) == calls == 2
    assert two == one
    assert (
        await _metric(
            second,
            "chime_sign_in_shared_cache_lookups_total",
            kind="credentials",
            outcome="hit",
        )
        == 1
    )


async def test_shared_cache_reads_entries_sealed_before_a_key_rotation(
    aiohttp_client: AiohttpClient,
    standin: Standin,
    redis_server: RedisServer,
    hs256_secret: str,
    key: bytes,
) -> None:
    """With the old key listed second, entries written under it are still used."""
    new_key = secrets.token_bytes(32)
    before = await aiohttp_client(
        create_app(_settings(hs256_secret, redis_server, (key,)))
    )
    after = await aiohttp_client(
        create_app(_settings(hs256_secret, redis_server, (new_key, key)))
    )

    old = await _sign_in(before, hs256_secret, "bob")
    rotated = await _sign_in(after, hs256_secret, "bob")

    assert rotated["ChimeCredentials"] == old["ChimeCredentials"]
    assert standin.state.call_count("AssumeRole") == 1
    assert standin.state.call_count("CreateAppInstanceUser") == 1


async def test_shared_cache_ignores_entries_sealed_with_another_key(
    aiohttp_client: AiohttpClient,
    standin: Standin,
    redis_server: RedisServer,
    hs256_secret: str,
    key: bytes,
) -> None:
    """A replica with a wrong key finds nothing it can use, and asks STS afresh."""
    right = await aiohttp_client(
        create_app(_settings(hs256_secret, redis_server, (key,)))
    )
    wrong = await aiohttp_client(
        create_app(_settings(hs256_secret, redis_server, (secrets.token_bytes(32),)))
    )

    first = await _sign_in(right, hs256_secret, "carol")
    second = await _sign_in(wrong, hs256_secret, "carol")

    assert standin.state.call_count("AssumeRole") == 2
    assert (
        second["ChimeCredentials"]["AccessKeyId"]
        != first["ChimeCredentials"]["AccessKeyId"]
    )
    assert second["ChimeAppInstanceUserArn"] == first["ChimeAppInstanceUserArn"]


async def test_shared_cache_refuses_an_entry_moved_to_another_user(
    aiohttp_client: AiohttpClient,
    standin: Standin,
    redis_server: RedisServer,
    hs256_secret: str,
    key: bytes,
) -> None:
    """Credentials copied under another user's name do not open for that user."""
    settings = _settings(hs256_secret, redis_server, (key,))
    writer = await aiohttp_client(create_app(settings))
    await _sign_in(writer, hs256_secret, "dave")
    sealer = Sealer((key,))
    (dave,) = sealer.slots("credentials", ROLE_ARN, "dave")
    (erin,) = sealer.slots("credentials", ROLE_ARN, "erin")
    async with redis_server.client() as redis:
        stolen = await redis.get(dave.name)
        assert stolen is not None
        await redis.set(erin.name, stolen, px=600_000)
    reader = await aiohttp_client(create_app(settings))

    body = await _sign_in(reader, hs256_secret, "erin")

    session = standin.state.sessions[body["ChimeCredentials"]["AccessKeyId"]]
    assert session.tag_map == {USER_TAG: "erin"}
    assert standin.state.call_count("AssumeRole") == 2
    assert (
        await _metric(
            reader,
            "chime_sign_in_shared_cache_lookups_total",
            kind="credentials",
            outcome="rejected",
        )
        == 1
    )


async def test_shared_cache_stores_no_user_id_or_credential_in_clear(
    aiohttp_client: AiohttpClient,
    redis_server: RedisServer,
    standin: Standin,
    hs256_secret: str,
    key: bytes,
) -> None:
    """Every key and value in Redis is free of ids, names, ARNs and credentials."""
    del standin
    client = await aiohttp_client(
        create_app(_settings(hs256_secret, redis_server, (key,)))
    )
    subjects = ("frank", "auth0|5f7c8ec7c33c6c004bbafe82", "grace+chat@example.com")
    revealing: set[str] = {ROLE_ARN, APP_INSTANCE_ARN, "AccessKeyId", "Frank Example"}
    for subject in subjects:
        body = await _sign_in(client, hs256_secret, subject, name="Frank Example")
        credentials = body["ChimeCredentials"]
        revealing |= {subject, body["ChimeUserId"], body["ChimeAppInstanceUserArn"]}
        revealing |= {
            credentials[field]
            for field in ("AccessKeyId", "SecretAccessKey", "SessionToken")
        }

    async with redis_server.client() as redis:
        stored = {name: await redis.get(name) async for name in redis.scan_iter()}

    assert len(stored) == 2 * len(subjects)
    for name, value in stored.items():
        assert name.startswith(f"{KEY_PREFIX}:".encode())
        assert value is not None
        for text in revealing:
            assert text.encode() not in name
            assert text.encode() not in value


async def test_shared_cache_entries_expire_at_the_stale_minimum(
    aiohttp_client: AiohttpClient,
    redis_server: RedisServer,
    standin: Standin,
    hs256_secret: str,
    key: bytes,
) -> None:
    """Redis drops credentials when the local cache would: expiry less the minimum."""
    del standin
    clock = FakeClock()
    client = await aiohttp_client(
        create_app(_settings(hs256_secret, redis_server, (key,)), clock=clock)
    )
    body = await _sign_in(client, hs256_secret, "heidi")
    assert client.app is not None
    cached = client.app[CREDENTIALS].fresh(body["ChimeUserId"])
    assert cached is not None
    sealer = Sealer((key,))
    (credentials,) = sealer.slots("credentials", ROLE_ARN, "heidi")
    (user,) = sealer.slots("user", APP_INSTANCE_ARN, "heidi")

    async with redis_server.client() as redis:
        credentials_ms = await redis.pttl(credentials.name)
        user_seconds = await redis.ttl(user.name)

    expected_ms = (cached.expiration - STALE_MIN - clock.now) * 1000
    assert expected_ms - 30_000 < credentials_ms <= expected_ms
    assert 86_400 - 30 < user_seconds <= 86_400


async def test_shared_cache_refreshes_an_entry_inside_the_refresh_margin(
    aiohttp_client: AiohttpClient,
    redis_server: RedisServer,
    standin: Standin,
    hs256_secret: str,
    key: bytes,
) -> None:
    """Freshness is judged as locally: a shared entry due for refresh is not used."""
    early_clock, late_clock = FakeClock(), FakeClock()
    settings = _settings(hs256_secret, redis_server, (key,))
    early = await aiohttp_client(create_app(settings, clock=early_clock))
    late = await aiohttp_client(create_app(settings, clock=late_clock))
    first = await _sign_in(early, hs256_secret, "ivan")
    assert early.app is not None
    cached = early.app[CREDENTIALS].fresh("ivan")
    assert cached is not None
    late_clock.now = cached.expiration - MARGIN + 1

    refreshed = await _sign_in(late, hs256_secret, "ivan")
    shared = await _sign_in(
        await aiohttp_client(create_app(settings, clock=early_clock)),
        hs256_secret,
        "ivan",
    )

    assert standin.state.call_count("AssumeRole") == 2
    assert refreshed["ChimeCredentials"] != first["ChimeCredentials"]
    assert shared["ChimeCredentials"] == refreshed["ChimeCredentials"]


async def test_shared_cache_does_without_a_paused_redis_then_returns_to_it(
    aiohttp_client: AiohttpClient,
    redis_server: RedisServer,
    standin: Standin,
    hs256_secret: str,
    key: bytes,
) -> None:
    """A Redis that stops answering costs a timeout, then nothing, until it is back."""
    del standin
    client = await aiohttp_client(
        create_app(
            _settings(
                hs256_secret,
                redis_server,
                (key,),
                redis_timeout_seconds=0.05,
                redis_breaker_failures=2,
                redis_breaker_cooldown_seconds=0.1,
            )
        )
    )
    redis_server.pause()

    for number in range(6):
        await _sign_in(client, hs256_secret, f"paused-{number}")
    open_state = await _metric(
        client, "chime_sign_in_redis_circuit_state", state="open"
    )
    skipped = await _metric(client, "chime_sign_in_redis_skipped_total")
    redis_server.resume()
    users = iter(range(1000))

    async def closed_again() -> bool:
        await _sign_in(client, hs256_secret, f"resumed-{next(users)}")
        state = await _metric(
            client, "chime_sign_in_redis_circuit_state", state="closed"
        )
        return state == 1

    await eventually(closed_again)
    async with redis_server.client() as redis:
        stored = [name async for name in redis.scan_iter()]

    assert open_state == 1
    assert skipped > 0
    assert stored


async def test_shared_cache_with_redis_down_at_startup_signs_users_in(
    aiohttp_client: AiohttpClient,
    redis_server: RedisServer,
    standin: Standin,
    hs256_secret: str,
    key: bytes,
) -> None:
    """A Redis that is not there when the service starts stops nothing."""
    await redis_server.kill()
    client = await aiohttp_client(
        create_app(_settings(hs256_secret, redis_server, (key,)))
    )

    ready = await client.get("/readyz")
    body = await _sign_in(client, hs256_secret, "judy")

    assert ready.status == 200
    assert (await ready.json())["redis"] in {"closed", "open", "half_open"}
    assert body["ChimeUserId"] == "judy"
    assert standin.state.call_count("AssumeRole") == 1
    assert await _metric(client, "chime_sign_in_redis_failures_total") > 0


async def test_cluster_lock_is_released_only_by_its_holder(
    redis_server: RedisServer, hs256_secret: str, key: bytes
) -> None:
    """A holder whose lock expired and passed on cannot delete the new holder's."""
    settings = _settings(hs256_secret, redis_server, (key,), redis_lock_seconds=0.1)
    async with open_redis_cache(settings) as cache, redis_server.client() as redis:
        first, second = cache.lock("test:lock"), cache.lock("test:lock")
        assert await first.acquire()
        assert not await second.acquire()

        async def expired() -> bool:
            return await redis.exists("test:lock") == 0

        await eventually(expired)
        assert await second.acquire()
        await first.release()
        still_held = await redis.exists("test:lock")
        await second.release()
        released = await redis.exists("test:lock")

    assert still_held == 1
    assert released == 0


async def test_cluster_lock_expires_within_its_seconds(
    redis_server: RedisServer, hs256_secret: str, key: bytes
) -> None:
    """A lock nobody releases (its holder died) lives at most REDIS_LOCK_SECONDS."""
    settings = _settings(hs256_secret, redis_server, (key,), redis_lock_seconds=2.5)
    async with open_redis_cache(settings) as cache, redis_server.client() as redis:
        assert await cache.lock("test:lock").acquire()
        left = await redis.pttl("test:lock")

    assert 0 < left <= 2500


async def test_cluster_lock_is_kept_alive_while_its_work_runs(
    redis_server: RedisServer, hs256_secret: str, key: bytes
) -> None:
    """A holder still working renews its lock, so slow work is not done twice."""
    settings = _settings(hs256_secret, redis_server, (key,), redis_lock_seconds=0.3)
    async with open_redis_cache(settings) as cache, redis_server.client() as redis:
        lock = cache.lock("test:lock")
        assert await lock.acquire()
        previous = await redis.pttl("test:lock")
        renewals = 0

        async def renewed_three_times() -> bool:
            nonlocal previous, renewals
            left = await redis.pttl("test:lock")
            assert left > 0, "the lock expired while its holder worked"
            if left > previous:
                renewals += 1
            previous = left
            return renewals >= 3

        async with lock.kept_alive():
            await eventually(renewed_three_times, pause=0.01)
        await lock.release()
