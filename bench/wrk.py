"""wrk, the load generator of every throughput figure: installing it, running it.

Every figure sends the same request, `POST /v1/sign-in` with a bearer token from
a file (`sign_in.lua`), so the bare ceiling, the reference peer and the service
differ only in what they do with it. wrk runs on loopback only, for a fixed
duration, and reports through the script's `done` as one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

__all__ = ["WRK_SCRIPT", "Load", "WrkError", "WrkResult", "ensure_wrk", "run_wrk"]

WRK_SCRIPT: Final = Path(__file__).resolve().parent / "sign_in.lua"

_RESULT_PREFIX: Final = "bench-result "
_APT_TIMEOUT_SECONDS: Final = 600
# wrk stops itself after the duration; this only catches a wrk that hangs.
_GRACE_SECONDS: Final = 30
_REQUEST_TIMEOUT: Final = "10s"


class WrkError(RuntimeError):
    """wrk is missing and cannot be installed, or failed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Load:
    """How hard and how long wrk pushes."""

    duration_seconds: float
    connections: int = 64
    threads: int = 2


@dataclasses.dataclass(frozen=True, slots=True)
class WrkResult:
    """What wrk measured in one run."""

    requests: int
    duration_seconds: float
    non_2xx: int
    socket_errors: int
    token_restarts: int
    latency_ms: dict[str, float]

    @property
    def throughput(self) -> float:
        """Requests per second, all answers counted."""
        return self.requests / self.duration_seconds if self.duration_seconds else 0.0

    @property
    def ok_requests(self) -> int:
        """Requests that got a 2xx answer."""
        return max(self.requests - self.non_2xx - self.socket_errors, 0)

    def to_json(self) -> dict[str, Any]:
        """Describe the run for the results file."""
        return {
            "requests": self.requests,
            "duration_seconds": round(self.duration_seconds, 3),
            "throughput_per_second": round(self.throughput, 1),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "token_restarts": self.token_restarts,
            "latency_ms": self.latency_ms,
        }


def ensure_wrk() -> str:
    """Return wrk's path, installing Debian's package with apt-get if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found

    apt = shutil.which("apt-get")
    if apt is None:
        raise WrkError("wrk is not installed and there is no apt-get to install it")

    # Package lists may be missing (as in slim images): update once, then retry.
    if not _apt(apt, "install", "-y", "wrk"):
        _apt(apt, "update")
        _apt(apt, "install", "-y", "wrk")

    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk could not be installed with apt-get (are you root?)")
    return found


def run_wrk(wrk: str, url: str, tokens_file: Path, load: Load) -> WrkResult:
    """Load `url` as `load` says; return what wrk's script reported."""
    threads = max(1, min(load.threads, load.connections))
    command = [
        wrk,
        f"--threads={threads}",
        f"--connections={load.connections}",
        f"--duration={max(round(load.duration_seconds), 1)}s",
        f"--timeout={_REQUEST_TIMEOUT}",
        f"--script={WRK_SCRIPT}",
        url,
        "--",
        str(tokens_file),
        str(threads),
    ]
    completed = subprocess.run(  # noqa: S603 -- wrk at loopback URLs we started
        command,
        capture_output=True,
        text=True,
        timeout=load.duration_seconds + _GRACE_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise WrkError(f"wrk failed: {completed.stderr.strip() or completed.stdout}")

    return _parse(completed.stdout)


def _apt(apt: str, *arguments: str) -> bool:
    """Run apt-get without questions; tell whether it succeeded."""
    completed = subprocess.run(  # noqa: S603 -- Debian's package manager, fixed arguments
        [apt, *arguments],
        capture_output=True,
        timeout=_APT_TIMEOUT_SECONDS,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return completed.returncode == 0


def _parse(output: str) -> WrkResult:
    """Read the script's JSON line out of wrk's output."""
    for line in output.splitlines():
        if line.startswith(_RESULT_PREFIX):
            report = json.loads(line.removeprefix(_RESULT_PREFIX))
            break
    else:
        raise WrkError(f"wrk printed no result line: {output[-500:]}")

    latency = report["latency_us"]
    return WrkResult(
        requests=int(report["requests"]),
        duration_seconds=report["duration_us"] / 1e6,
        non_2xx=int(report["non_2xx"]),
        socket_errors=sum(
            int(report[name])
            for name in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        token_restarts=int(report["token_restarts"]),
        latency_ms={name: round(latency[name] / 1000, 3) for name in latency},
    )
