"""Several real `python -m service` processes sharing one Redis, as on Kubernetes.

Each replica is its own process with its own in-memory caches; all of them call
the stand-in in this process, whose records count the AWS calls of the whole
deployment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import sys
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.test_utils import unused_port
from prometheus_client.parser import text_string_to_metric_families

from service.credentials import USER_TAG
from standin.faults import FaultSpec, FixedLatency
from tests.support import bearer, eventually, hs256_token, service_environment

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from tests.conftest import Standin
    from tests.redis_server import RedisServer

# A replica that dies holding the lock delays the others this long at most; the
# deadline leaves room beyond it, so a sign-in that waits it out still succeeds.
_LOCK_SECONDS = 1.0
_DEADLINE_SECONDS = 5.0
# Long enough that every replica is cold while the first one's call is running.
_AWS_LATENCY = FaultSpec(latency=FixedLatency(1.0))


@dataclass
class Replica:
    """One service process and where it listens."""

    url: str
    process: asyncio.subprocess.Process


@dataclass
class Deployment:
    """The replicas, the client the test drives them with, and their settings."""

    replicas: list[Replica]
    session: aiohttp.ClientSession
    secret: str

    async def sign_in(self, replica: int, subject: str) -> tuple[int, Any]:
        """Sign `subject` in on one replica; return the status and the body."""
        token = hs256_token(self.secret, subject)
        async with self.session.post(
            f"{self.replicas[replica].url}/v1/sign-in", headers=bearer(token)
        ) as response:
            return response.status, await response.json()

    async def metric(self, replica: int, name: str, **labels: str) -> float:
        """Read one sample of a replica's metrics."""
        async with self.session.get(f"{self.replicas[replica].url}/metrics") as got:
            text = await got.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        raise AssertionError(f"{name} {labels} is not exposed")

    async def total(self, name: str, **labels: str) -> float:
        """Add up one sample over every replica still running."""
        alive = [
            number
            for number, replica in enumerate(self.replicas)
            if replica.process.returncode is None
        ]
        values = [await self.metric(number, name, **labels) for number in alive]
        return sum(values)


def _environment(
    standin: Standin, secret: str, port: int, redis: RedisServer | None, key: bytes
) -> dict[str, str]:
    environment = service_environment(
        standin.url,
        secret,
        port,
        SHUTDOWN_DRAIN_SECONDS="0",
        SIGN_IN_DEADLINE_SECONDS=str(_DEADLINE_SECONDS),
    )
    if redis is not None:
        environment |= {
            "REDIS_URL": redis.url,
            "CACHE_ENCRYPTION_KEYS": base64.urlsafe_b64encode(key).decode(),
            # Generous: two cores run the replicas, Redis and the stand-in here.
            "REDIS_TIMEOUT_SECONDS": "1",
            "REDIS_LOCK_SECONDS": str(_LOCK_SECONDS),
            "REDIS_BREAKER_FAILURES": "3",
            "REDIS_BREAKER_COOLDOWN_SECONDS": "0.2",
        }
    return environment


@contextlib.asynccontextmanager
async def _deployment(
    count: int,
    standin: Standin,
    secret: str,
    redis: RedisServer | None,
    logs: Path,
) -> AsyncIterator[Deployment]:
    """Start `count` replicas, wait until all are ready; stop them on exit."""
    key = secrets.token_bytes(32)
    replicas = []
    for number in range(count):
        port = unused_port()
        with (logs / f"replica-{number}.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "service",
                env=_environment(standin, secret, port, redis, key),
                stdout=log,
                stderr=log,
            )
        replicas.append(Replica(f"http://127.0.0.1:{port}", process))

    try:
        # Closed before the replicas stop, so no keep-alive connection holds them.
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:
            for replica in replicas:
                await eventually(_ready(session, replica), attempts=1000)
            yield Deployment(replicas, session, secret)
    except BaseException:
        # Shown with the failure: what each replica said.
        for number in range(count):
            said = (logs / f"replica-{number}.log").read_text(errors="replace")
            print(f"--- replica {number}\n{said[-4000:]}")  # noqa: T201
        raise
    finally:
        await _stop(replicas)


def _ready(
    session: aiohttp.ClientSession, replica: Replica
) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        assert replica.process.returncode is None, "the replica exited at startup"
        try:
            async with session.get(f"{replica.url}/readyz") as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    return ready


async def _stop(replicas: list[Replica]) -> None:
    for replica in replicas:
        if replica.process.returncode is None:
            replica.process.terminate()
    for replica in replicas:
        try:
            await asyncio.wait_for(replica.process.wait(), timeout=30)
        except TimeoutError:
            replica.process.kill()
            await replica.process.wait()


def _sessions_of(standin: Standin, chime_id: str) -> int:
    sessions = standin.state.sessions.values()
    return sum(1 for session in sessions if session.tag_map[USER_TAG] == chime_id)


async def test_replicas_make_one_assume_role_for_a_storm_of_one_user(
    standin: Standin, redis_server: RedisServer, hs256_secret: str, tmp_path: Path
) -> None:
    """500 simultaneous cold sign-ins of one user over three replicas: one call each."""
    standin.state.faults.set("AssumeRole", _AWS_LATENCY)
    standin.state.faults.set("CreateAppInstanceUser", _AWS_LATENCY)

    async with _deployment(3, standin, hs256_secret, redis_server, tmp_path) as cluster:
        results = await asyncio.gather(
            *(cluster.sign_in(number % 3, "storm") for number in range(500))
        )
        locks = {
            (kind, outcome): await cluster.total(
                "chime_sign_in_shared_cache_locks_total", kind=kind, outcome=outcome
            )
            for kind in ("credentials", "user")
            for outcome in ("acquired", "shared")
        }

    assert Counter(status for status, _ in results) == {200: 500}
    assert standin.state.calls["AssumeRole"] == {"ok": 1}
    assert standin.state.calls["CreateAppInstanceUser"] == {"ok": 1}
    keys = {body["ChimeCredentials"]["AccessKeyId"] for _, body in results}
    assert len(keys) == 1
    # Per kind, one replica called AWS and the two others waited for its result.
    assert locks == {
        ("credentials", "acquired"): 1,
        ("credentials", "shared"): 2,
        ("user", "acquired"): 1,
        ("user", "shared"): 2,
    }


async def test_replicas_without_redis_each_call_aws(
    standin: Standin, hs256_secret: str, tmp_path: Path
) -> None:
    """Without Redis the same storm costs one AssumeRole per replica."""
    standin.state.faults.set("AssumeRole", _AWS_LATENCY)

    async with _deployment(3, standin, hs256_secret, None, tmp_path) as cluster:
        results = await asyncio.gather(
            *(cluster.sign_in(number % 3, "storm") for number in range(300))
        )

    assert Counter(status for status, _ in results) == {200: 300}
    assert standin.state.calls["AssumeRole"] == {"ok": 3}


async def test_replicas_answer_a_repeat_sign_in_on_another_replica_from_redis(
    standin: Standin, redis_server: RedisServer, hs256_secret: str, tmp_path: Path
) -> None:
    """A user signed in on one replica signs in on another with no AWS call."""
    async with _deployment(2, standin, hs256_secret, redis_server, tmp_path) as cluster:
        first = await cluster.sign_in(0, "returning")
        calls = {api: standin.state.call_count(api) for api in standin.state.calls}
        second = await cluster.sign_in(1, "returning")

    assert first[0] == second[0] == 200
    assert second[1] == first[1]
    assert calls == {"AssumeRole": 1, "CreateAppInstanceUser": 1}
    assert {api: standin.state.call_count(api) for api in standin.state.calls} == calls


async def test_replicas_keep_signing_in_while_redis_is_down_and_use_it_again(
    standin: Standin, redis_server: RedisServer, hs256_secret: str, tmp_path: Path
) -> None:
    """Redis killed under load fails no sign-in; once it is back, it is shared again."""
    statuses: list[int] = []
    sending = True

    async with _deployment(2, standin, hs256_secret, redis_server, tmp_path) as cluster:

        async def client(number: int) -> None:
            turn = 0
            while sending:
                # New users and returning ones, on both replicas.
                subject = f"user-{number}-{turn // 2}"
                status, _ = await cluster.sign_in(turn % 2, subject)
                statuses.append(status)
                turn += 1

        def answered(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return len(statuses) >= count

            return check

        clients = [asyncio.create_task(client(number)) for number in range(8)]
        await eventually(answered(100), attempts=1000)
        await redis_server.kill()
        down_from = len(statuses)
        await eventually(answered(down_from + 200), attempts=1000)
        down_until = len(statuses)
        await redis_server.start()
        await eventually(answered(down_until + 100), attempts=1000)
        sending = False
        await asyncio.gather(*clients)

        async def closed_everywhere() -> bool:
            state = await cluster.total(
                "chime_sign_in_redis_circuit_state", state="closed"
            )
            return state == 2

        await eventually(closed_everywhere, attempts=500)
        skipped = await cluster.total("chime_sign_in_redis_skipped_total")
        first = await cluster.sign_in(0, "after-the-outage")
        second = await cluster.sign_in(1, "after-the-outage")

    assert Counter(statuses) == {200: len(statuses)}
    assert skipped > 0, "the circuit never opened while Redis was down"
    assert first[0] == second[0] == 200
    assert _sessions_of(standin, "after-the-outage") == 1


async def test_replicas_take_over_the_lock_of_a_replica_that_died(
    standin: Standin, redis_server: RedisServer, hs256_secret: str, tmp_path: Path
) -> None:
    """A lock whose holder was killed delays the next replica by its expiry at most."""
    standin.state.faults.set("AssumeRole", FaultSpec(hang=1.0))

    async with (
        _deployment(2, standin, hs256_secret, redis_server, tmp_path) as cluster,
        redis_server.client() as redis,
    ):
        doomed = asyncio.create_task(cluster.sign_in(0, "orphaned"))

        async def locked() -> bool:
            pattern = "chime-sign-in:v1:credentials:*:lock"
            return [name async for name in redis.scan_iter(pattern)] != []

        await eventually(locked, attempts=1000)
        cluster.replicas[0].process.kill()
        await cluster.replicas[0].process.wait()
        with contextlib.suppress(aiohttp.ClientError):
            await doomed
        standin.state.faults.clear()

        status, body = await cluster.sign_in(1, "orphaned")
        took_over = await cluster.metric(
            1,
            "chime_sign_in_shared_cache_locks_total",
            kind="credentials",
            outcome="took_over",
        )

    # Within the deadline, so the wait was shorter than it: the lock's expiry.
    assert status == 200, body
    assert took_over == 1
    assert standin.state.call_count("AssumeRole", "ok") == 1
    assert _sessions_of(standin, "orphaned") == 1
