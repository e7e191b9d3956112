"""`python -m bench`: every figure of BENCHMARKS.md, measured in one run.

One server process at a time answers on loopback while wrk loads it for a fixed
duration; the others are stopped or idle. Throughput figures are reported as a
ratio to B0, the bare aiohttp endpoint measured in the same run, so they compare
across machines. The figures:

- B0: a bare aiohttp endpoint returning a real sign-in answer's bytes.
- P: the reference peer (`bench.peers`), HS256 and RS256.
- B1: the service, warm users sending the same token again and again.
- B2: the service, warm users sending a new token every request.
- B3: cold sign-ins against a stand-in adding a fixed latency to every AWS call.
- B4: resident memory with 0, then 10,000, then 100,000 cached users.
- B5: time from starting `python -m service` to `/readyz` answering 200.

The service runs as in production (`LOG_FORMAT=json`, info logs, metrics on),
configured by `config/local.env` aimed at a stand-in on a free port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import secrets
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from bench.client import sign_in_all, sign_in_once
from bench.peers import ANNOUNCEMENT
from bench.processes import cpu_seconds, resident_bytes
from bench.tokens import TokenMinter
from bench.wrk import Load, WrkResult, run_wrk
from loadtest.aws_calls import fetch_text, read_counters
from loadtest.local_stack import (
    LOOPBACK,
    free_port,
    local_service_environment,
    running_announced,
    running_service,
    running_standin,
    wait_until_ready,
)
from standin.identity_provider import KEY_FILE_NAME, LocalIdentityProvider
from standin.local_config import KEY_DIRECTORY, LOCAL_ENV_FILE, read_env_file

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

__all__ = [
    "FIGURES",
    "FULL",
    "SMOKE",
    "Bench",
    "Plan",
    "prepare_bench",
    "run_bench",
    "running_bench_service",
]

FIGURES: Final = (
    "B0",
    "P_HS256",
    "P_RS256",
    "B1_HS256",
    "B1_RS256",
    "B2_HS256",
    "B2_RS256",
    "B3",
    "B4",
    "B5",
)
"""The figures of a run, by their key in the results file."""


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """How long and how much each figure measures."""

    duration_seconds: float
    warmup_seconds: float
    connections: int
    threads: int
    warm_users: int
    peer_tokens: int
    cache_users: tuple[int, int]
    startup_runs: int
    max_tokens: int | None = None
    """A cap on the tokens a figure mints; a smoke run need not avoid repeats."""
    aws_latency_seconds: float = 0.03
    smoke: bool = False


FULL: Final = Plan(
    duration_seconds=10,
    warmup_seconds=2,
    connections=64,
    threads=1,
    warm_users=1000,
    peer_tokens=5000,
    cache_users=(10_000, 100_000),
    startup_runs=3,
)
SMOKE: Final = Plan(
    duration_seconds=1,
    warmup_seconds=0,
    connections=64,
    threads=1,
    warm_users=10,
    peer_tokens=200,
    cache_users=(20, 100),
    startup_runs=1,
    max_tokens=1000,
    smoke=True,
)

# B2 mints this many more tokens than B1's rate says it can send, so none repeats.
_TOKEN_MARGIN: Final = 1.3
_FILL_CONCURRENCY: Final = 64
_COLD_WARM_UP_USERS: Final = 20


@dataclasses.dataclass(slots=True)
class Bench:
    """What every figure shares: the plan, wrk, keys, minters and directories."""

    plan: Plan
    wrk: str
    work: Path
    logs: Path
    issuer: str
    audience: str
    rs256: TokenMinter
    hs256: TokenMinter
    secret: str
    public_key_file: Path
    answer_file: Path
    standin_url: str = ""


def run_bench(plan: Plan, wrk: str, output_dir: Path) -> dict[str, Any]:
    """Measure every figure; return them with the plan they followed."""
    bench = prepare_bench(plan, wrk, output_dir)
    figures: dict[str, Any] = {}

    with running_standin(bench.logs / "standin.log") as (standin_url, _standin):
        bench.standin_url = standin_url
        _step("B5: start-up to ready")
        figures["B5"] = _startup(bench)
        _step("B0: bare aiohttp")
        figures["B0"] = _peer(bench, "bare", bench.rs256)
        for minter in (bench.hs256, bench.rs256):
            _step(f"P {minter.algorithm}: reference peer")
            figures[f"P_{minter.algorithm}"] = _peer(bench, minter.algorithm, minter)
        for minter in (bench.hs256, bench.rs256):
            _step(f"B1, B2 {minter.algorithm}: warm sign-ins")
            b1, b2 = _warm_sign_ins(bench, minter)
            figures[f"B1_{minter.algorithm}"] = b1
            figures[f"B2_{minter.algorithm}"] = b2
        _step("B4: memory per cached user")
        figures["B4"] = _memory(bench)

    _step("B3: cold sign-ins with added AWS latency")
    figures["B3"] = _cold_sign_ins(bench)

    _add_ratios(figures)
    return {"plan": dataclasses.asdict(plan), "figures": figures}


def prepare_bench(plan: Plan, wrk: str, output_dir: Path) -> Bench:
    """Make the directories, the keys and the minters a run shares."""
    work = output_dir / "work"
    logs = output_dir / "logs"
    for directory in (work, logs):
        directory.mkdir(parents=True, exist_ok=True)

    settings = read_env_file(LOCAL_ENV_FILE)
    issuer = settings["JWT_ISSUER"]
    audience = settings["JWT_AUDIENCE"].split(",")[0].strip()
    provider = LocalIdentityProvider.from_key_directory(issuer=issuer)
    secret = secrets.token_urlsafe(48)

    public_key_file = work / "rs256-public.pem"
    private_key = serialization.load_pem_private_key(
        (KEY_DIRECTORY / KEY_FILE_NAME).read_bytes(), password=None
    )
    public_key_file.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    return Bench(
        plan=plan,
        wrk=wrk,
        work=work,
        logs=logs,
        issuer=issuer,
        audience=audience,
        rs256=TokenMinter.rs256(provider, audience=audience),
        hs256=TokenMinter.hs256(secret, issuer=issuer, audience=audience),
        secret=secret,
        public_key_file=public_key_file,
        answer_file=work / "answer.json",
    )


def _startup(bench: Bench) -> dict[str, Any]:
    """B5: start the service afresh and time it to ready, then its first sign-in.

    The first sign-in is a cold one, and the first AWS calls of a process load
    botocore's models; keeping one real answer for B0 and P is a side effect.
    """
    seconds = []
    first_sign_in_ms = []

    for run in range(bench.plan.startup_runs):
        log = bench.logs / f"b5-service-{run}.log"
        port = free_port()
        environment = _service_environment(bench, "RS256", bench.standin_url, port)
        started = time.monotonic()

        with running_service(environment, log) as process:
            url = f"http://{LOOPBACK}:{port}"
            ready = wait_until_ready(url, process, log_path=log)
            seconds.append(ready - started)

            token = bench.rs256.mint(f"first-{run}-{secrets.token_hex(4)}")
            asked = time.monotonic()
            status, answer = sign_in_once(url, token)
            first_sign_in_ms.append((time.monotonic() - asked) * 1000)
            if status != 200:
                raise RuntimeError(f"the service answered {status}: {answer!r}")
            bench.answer_file.write_bytes(answer)

    return {
        "seconds": round(statistics.median(seconds), 3),
        "runs": [round(value, 3) for value in seconds],
        "first_sign_in_ms": [round(value, 1) for value in first_sign_in_ms],
        "answer_bytes": bench.answer_file.stat().st_size,
    }


def _peer(bench: Bench, kind: str, minter: TokenMinter) -> dict[str, Any]:
    """B0 and P: one peer process under wrk.

    The peer caches nothing per token, so the tokens may repeat without making
    its work lighter.
    """
    tokens = minter.write(
        bench.work / f"peer-{kind.lower()}.tokens",
        (f"peer-{n % bench.plan.warm_users}" for n in range(bench.plan.peer_tokens)),
    )
    command = [
        sys.executable,
        "-m",
        "bench.peers",
        "--kind",
        kind.lower(),
        "--answer-file",
        str(bench.answer_file),
        "--issuer",
        bench.issuer,
        "--audience",
        bench.audience,
    ]
    if kind != "bare":
        key_file = bench.work / "hs256.secret"
        key_file.write_text(bench.secret)
        command += [
            "--key-file",
            str(key_file if kind == "HS256" else bench.public_key_file),
        ]

    log = bench.logs / f"peer-{kind.lower()}.log"
    with running_announced(command, log, ANNOUNCEMENT) as (url, process):
        _warm_up(bench, url, tokens)
        return _measure(bench, url, tokens, {"server": process.pid})


def _warm_sign_ins(
    bench: Bench, minter: TokenMinter
) -> tuple[dict[str, Any], dict[str, Any]]:
    """B1 then B2 against one service: the same tokens, then a new one each time."""
    plan = bench.plan
    users = [f"warm-{minter.algorithm}-{n}" for n in range(plan.warm_users)]
    algorithm = minter.algorithm.lower()
    same_tokens = minter.write(bench.work / f"b1-{algorithm}.tokens", users)

    with running_bench_service(
        bench, minter.algorithm, bench.standin_url, f"b1-b2-{algorithm}"
    ) as (
        url,
        pid,
    ):
        _check_all_ok(sign_in_all(url, _lines(same_tokens)), "warming users")
        _warm_up(bench, url, same_tokens)
        b1 = _measure(bench, url, same_tokens, {"server": pid})

        expected = b1["throughput_per_second"] * plan.duration_seconds * _TOKEN_MARGIN
        count = _capped(plan, math.ceil(expected) + plan.warm_users)
        new_tokens = minter.write(
            bench.work / f"b2-{algorithm}.tokens",
            (users[n % len(users)] for n in range(count)),
        )
        b2 = _measure(bench, url, new_tokens, {"server": pid})

    return b1, b2


def _cold_sign_ins(bench: Bench) -> dict[str, Any]:
    """B3: every request a user the service has never seen, AWS answering slowly."""
    plan = bench.plan
    latency = plan.aws_latency_seconds
    fault = f"*:latency=fixed:{latency}"
    # At most `connections` sign-ins wait on AWS at a time, each at least `latency`.
    ceiling = plan.connections / latency
    count = _capped(plan, math.ceil(ceiling * plan.duration_seconds * 1.1))
    loaded_tokens = bench.rs256.write(
        bench.work / "b3.tokens", (f"cold-{n}" for n in range(count))
    )
    unloaded_tokens = bench.rs256.write(
        bench.work / "b3-unloaded.tokens",
        (f"cold-alone-{n}" for n in range(math.ceil(plan.duration_seconds / latency))),
    )

    with (
        running_standin(bench.logs / "b3-standin.log", faults=[fault]) as (
            slow_url,
            slow_standin,
        ),
        running_bench_service(bench, "RS256", slow_url, "b3") as (url, pid),
    ):
        # A process's first AWS calls load botocore's models (B5 times that);
        # this figure is about the ones after.
        warm_up = (f"cold-warm-up-{n}" for n in range(_COLD_WARM_UP_USERS))
        _check_all_ok(sign_in_all(url, bench.rs256.stream(warm_up)), "warming up")
        pids = {"server": pid, "standin": slow_standin.pid}
        alone = _measure(
            bench, url, unloaded_tokens, pids, load=Load(plan.duration_seconds, 1, 1)
        )
        before = read_counters(url, None)
        loaded = _measure(bench, url, loaded_tokens, pids)
        after = read_counters(url, None)

    aws_calls = _difference(before.service_aws_calls, after.service_aws_calls)
    sign_ins = _difference(before.service_sign_ins, after.service_sign_ins)
    latency_ms = latency * 1000
    return {
        **loaded,
        "added_aws_latency_ms": latency_ms,
        "overhead_p50_ms": round(loaded["latency_ms"]["p50"] - latency_ms, 3),
        "overhead_p99_ms": round(loaded["latency_ms"]["p99"] - latency_ms, 3),
        "aws_calls_per_sign_in": round(aws_calls / sign_ins, 3) if sign_ins else None,
        "unloaded": {
            **alone,
            "overhead_p50_ms": round(alone["latency_ms"]["p50"] - latency_ms, 3),
        },
    }


def _memory(bench: Bench) -> dict[str, Any]:
    """B4: resident size with no user cached, then the two cache sizes of the plan."""
    first, second = bench.plan.cache_users

    with running_bench_service(bench, "HS256", bench.standin_url, "b4") as (url, pid):
        # Run the sign-in path without caching anyone: a refused token.
        statuses = sign_in_all(url, ["not-a-token"] * 20, concurrency=4)
        if set(statuses) != {401}:
            raise RuntimeError(f"expected 401 for a malformed token, got {statuses}")
        resident = {"0": resident_bytes(pid)}

        for start, stop in ((0, first), (first, second)):
            users = (f"cached-{n}" for n in range(start, stop))
            statuses = sign_in_all(
                url, bench.hs256.stream(users), concurrency=_FILL_CONCURRENCY
            )
            _check_all_ok(statuses, f"caching users {start}..{stop}")
            resident[str(stop)] = resident_bytes(pid)

        entries = _cache_entries(url)

    per_user = (resident[str(second)] - resident[str(first)]) / (second - first)
    return {
        "resident_bytes": resident,
        "cache_entries": entries,
        "bytes_per_cached_user": round(per_user),
        "bytes_per_cached_user_from_empty": round(
            (resident[str(second)] - resident["0"]) / second
        ),
    }


@contextlib.contextmanager
def running_bench_service(
    bench: Bench, algorithm: str, standin_url: str, name: str
) -> Iterator[tuple[str, int]]:
    """Run the service with production logging until exit; yield its URL and pid."""
    port = free_port()
    environment = _service_environment(bench, algorithm, standin_url, port)
    log = bench.logs / f"{name}-service.log"

    with running_service(environment, log) as process:
        url = f"http://{LOOPBACK}:{port}"
        wait_until_ready(url, process, log_path=log)
        yield url, process.pid


def _service_environment(
    bench: Bench, algorithm: str, standin_url: str, port: int
) -> dict[str, str]:
    """Aim the local settings, in production form, at a stand-in, for one algorithm."""
    production = {"LOG_FORMAT": "json", "LOG_LEVEL": "info"}
    keys = (
        {"JWT_JWKS_URL": "", "JWT_SECRET": bench.secret, "JWT_ALGORITHMS": "HS256"}
        if algorithm == "HS256"
        else {"JWT_ALGORITHMS": "RS256"}
    )
    return local_service_environment(
        standin_url=standin_url, port=port, overrides={**production, **keys}
    )


def _warm_up(bench: Bench, url: str, tokens: Path) -> None:
    """Load the server briefly before measuring, when the plan asks for it."""
    if bench.plan.warmup_seconds > 0:
        run_wrk(bench.wrk, url, tokens, _load(bench, bench.plan.warmup_seconds))


def _measure(
    bench: Bench,
    url: str,
    tokens: Path,
    pids: Mapping[str, int],
    *,
    load: Load | None = None,
) -> dict[str, Any]:
    """Run wrk once; add the CPU time each process spent per answered request."""
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    result: WrkResult = run_wrk(
        bench.wrk, url, tokens, load or _load(bench, bench.plan.duration_seconds)
    )
    cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}

    answered = max(result.ok_requests, 1)
    return {
        **result.to_json(),
        "ok_per_second": round(result.ok_requests / result.duration_seconds, 1),
        "cpu_ms_per_request": {
            name: round((cpu_after[name] - cpu_before[name]) * 1000 / answered, 4)
            for name in pids
        },
    }


def _load(bench: Bench, duration_seconds: float) -> Load:
    """Shape a load of the plan's connections and threads, this long."""
    return Load(duration_seconds, bench.plan.connections, bench.plan.threads)


def _add_ratios(figures: dict[str, Any]) -> None:
    """Give each throughput figure its ratio to B0's."""
    ceiling = figures["B0"]["ok_per_second"]

    for figure in figures.values():
        if "ok_per_second" in figure and ceiling:
            figure["ratio_to_b0"] = round(figure["ok_per_second"] / ceiling, 4)


def _cache_entries(url: str) -> dict[str, float]:
    """Read the cache sizes the service reports in its metrics."""
    text = fetch_text(f"{url}/metrics") or ""
    wanted = {
        "chime_sign_in_credentials_cache_entries",
        "chime_sign_in_users_cache_entries",
    }
    return {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(text)
        if family.name in wanted and family.samples
    }


def _check_all_ok(statuses: Mapping[int, int], doing: str) -> None:
    """Fail the run if any sign-in did not answer 200."""
    if set(statuses) != {200}:
        raise RuntimeError(f"{doing}: the service answered {dict(statuses)}")


def _capped(plan: Plan, count: int) -> int:
    """Apply the plan's cap on minted tokens, if it has one."""
    return min(count, plan.max_tokens) if plan.max_tokens else count


def _lines(path: Path) -> list[str]:
    """Read a tokens file."""
    return path.read_text().split()


def _difference(before: float | None, after: float | None) -> float:
    """Return after - before, counting an unknown as 0."""
    return (after or 0.0) - (before or 0.0)


def _step(title: str) -> None:
    """Say what is being measured, for the person waiting."""
    sys.stderr.write(f"bench {time.strftime('%H:%M:%S')}: {title}\n")
    sys.stderr.flush()
