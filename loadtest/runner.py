"""`python -m loadtest`: one headless scenario, then a summary of what it cost.

Without `--host`, it starts the stand-in and the service (`config/local.env`) on
free loopback ports (`PORT` in the environment picks the service's), runs the
scenario against them and stops them. `--replicas N` starts N services on the
one stand-in, each Locust user loading one of them, and `--redis` has them share
a Redis started for the run; AWS calls are then summed over every replica.
`--compare-replicas N` runs a short storm on 1 and N replicas, with and without
Redis, and tabulates the AWS calls per sign-in (see `loadtest.compare`).

With `--host`, it loads that service and no other: name only one you run
yourself. Locust runs as its own process, or as a master with `--workers`
worker processes, all on this machine.

Everything lands in `--output-dir`: `<scenario>.html` (Locust's report),
`<scenario>-summary.json` and `.txt`, and the logs of every process.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from loadtest.aws_calls import per_sign_in, read_counters
from loadtest.compare import compare_replicas, render_comparison
from loadtest.local_stack import LOOPBACK, Replicas, free_port, running_local_stack
from loadtest.summary import Summary, render, summarize

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["build_parser", "main", "run"]

LOCUSTFILE: Final = Path(__file__).resolve().parent / "locustfile.py"
REPOSITORY: Final = LOCUSTFILE.parent.parent

_DEFAULT_USERS: Final = {"warm": 20, "storm": 500, "mixed": 50, "fault": 50}
# Beyond the run time: Locust's start-up, the workers joining, the reports.
_GRACE_SECONDS: Final = 60.0
_WORKERS_WAIT_SECONDS: Final = 30
_STOP_TIMEOUT_SECONDS: Final = 10


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="Run one Locust scenario headless and summarize it.",
    )
    parser.add_argument(
        "--scenario",
        choices=tuple(_DEFAULT_USERS),
        default="mixed",
        help="default: %(default)s",
    )
    parser.add_argument(
        "--run-time", default="20s", help="Locust's --run-time (default: %(default)s)"
    )
    parser.add_argument(
        "--users", type=int, default=0, help="Locust users (default: by scenario)"
    )
    parser.add_argument(
        "--spawn-rate", type=float, default=0.0, help="users/s (default: all at once)"
    )
    parser.add_argument(
        "--population", type=int, default=0, help="distinct user ids (see locustfile)"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="run distributed with this many workers"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="service replicas on the one stand-in (default: %(default)s)",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="start a Redis and let every replica share it",
    )
    parser.add_argument(
        "--compare-replicas",
        type=int,
        default=0,
        metavar="N",
        help="run a short storm on 1 and N replicas, with and without Redis, "
        "and tabulate AWS calls per sign-in",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="a running service to load instead of a local one; only your own",
    )
    parser.add_argument(
        "--standin-url",
        default=None,
        help="with --host: its stand-in, for faults and AWS counts",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("loadtest-results"),
        help="where reports and logs go (default: %(default)s)",
    )
    parser.add_argument(
        "locust_arguments",
        nargs=argparse.REMAINDER,
        help="after --: more options for Locust and the locustfile",
    )
    return parser


def run(arguments: argparse.Namespace) -> Summary:
    """Run the scenario as asked and return its summary, also written to disk."""
    output_dir: Path = arguments.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)

    with _target(arguments) as (service_urls, standin_url):
        before = read_counters(service_urls, standin_url)
        record = _run_locust(arguments, service_urls, standin_url)
        after = read_counters(service_urls, standin_url)

    successes = int(record["requests"]) - int(record["failures"])
    summary = summarize(
        record,
        per_sign_in(before, after, load_successes=successes),
        target=service_urls[0],
        run_time=arguments.run_time,
        html_report=str(output_dir / f"{arguments.scenario}.html"),
    )
    summary = dataclasses.replace(
        summary, replicas=len(service_urls), redis=bool(arguments.redis)
    )

    stem = output_dir / f"{arguments.scenario}-summary"
    stem.with_suffix(".json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    stem.with_suffix(".txt").write_text(render(summary))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Run and print the summary; 0 when the run completed, whatever it found."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.host and arguments.scenario == "fault" and not arguments.standin_url:
        parser.error("the fault scenario against --host needs its --standin-url")
    if arguments.host and (arguments.replicas != 1 or arguments.redis):
        parser.error("--replicas and --redis start a local setup: not with --host")
    if arguments.host and arguments.compare_replicas:
        parser.error("--compare-replicas starts local setups: not with --host")
    if arguments.replicas < 1 or arguments.compare_replicas < 0:
        parser.error("--replicas must be 1 or more, --compare-replicas 2 or more")
    if arguments.compare_replicas == 1:
        parser.error("--compare-replicas compares 1 replica with 2 or more")
    if arguments.locust_arguments[:1] == ["--"]:
        arguments.locust_arguments = arguments.locust_arguments[1:]

    if arguments.compare_replicas:
        comparison = compare_replicas(arguments, run)
        sys.stdout.write(render_comparison(comparison))
        return 0

    summary = run(arguments)
    sys.stdout.write(render(summary))
    return 0


@contextlib.contextmanager
def _target(
    arguments: argparse.Namespace,
) -> Iterator[tuple[tuple[str, ...], str | None]]:
    """Yield the services' and stand-in's URLs: the ones named, or a local stack's."""
    if arguments.host is not None:
        yield (arguments.host.rstrip("/"),), arguments.standin_url
        return

    deployment = Replicas(count=arguments.replicas, redis=arguments.redis)
    with running_local_stack(
        arguments.output_dir / "logs", replicas=deployment
    ) as stack:
        yield stack.service_urls, stack.standin_url


def _run_locust(
    arguments: argparse.Namespace,
    service_urls: Sequence[str],
    standin_url: str | None,
) -> dict[str, Any]:
    """Run Locust (and its workers) to the end; return the locustfile's record."""
    output_dir: Path = arguments.output_dir
    record_file = output_dir / f"{arguments.scenario}-record.json"
    record_file.unlink(missing_ok=True)
    users = arguments.users or _DEFAULT_USERS[arguments.scenario]
    command = [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        # Sign-ins in flight at the end finish and are counted, as the service
        # counts them.
        "--stop-timeout",
        str(_STOP_TIMEOUT_SECONDS),
        "--users",
        str(users),
        "--spawn-rate",
        str(arguments.spawn_rate or users),
        "--run-time",
        arguments.run_time,
        "--host",
        service_urls[0],
        "--html",
        str(output_dir / f"{arguments.scenario}.html"),
        "--scenario",
        arguments.scenario,
        "--record-file",
        str(record_file),
        *(["--population", str(arguments.population)] if arguments.population else []),
        *(["--standin-url", standin_url] if standin_url else []),
        *(["--replica-hosts", ",".join(service_urls)] if len(service_urls) > 1 else []),
        *arguments.locust_arguments,
    ]
    deadline = _seconds(arguments.run_time) + _GRACE_SECONDS

    if arguments.workers > 0:
        status = _run_distributed(command, arguments.workers, output_dir, deadline)
    else:
        status = _run_process(command, output_dir / "locust.log", deadline)

    # Locust exits 1 when some requests failed, which a summary reports; any
    # other failure means the run itself went wrong.
    if status not in {0, 1} or not record_file.exists():
        raise RuntimeError(
            f"Locust exited with status {status}; see {output_dir / 'locust.log'}"
        )

    record: dict[str, Any] = json.loads(record_file.read_text())
    return record


def _run_process(command: Sequence[str], log_path: Path, deadline: float) -> int:
    """Run one Locust process to its end, within the deadline; return its status."""
    with log_path.open("wb") as log:
        return subprocess.run(  # noqa: S603 -- our interpreter, Locust and our locustfile
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(),
            timeout=deadline,
            check=False,
        ).returncode


def _run_distributed(
    command: Sequence[str], workers: int, output_dir: Path, deadline: float
) -> int:
    """Run a master and `workers` workers on loopback; return the master's status."""
    port = str(free_port())
    master = [
        *command,
        "--master",
        "--master-bind-host",
        LOOPBACK,
        "--master-bind-port",
        port,
        "--expect-workers",
        str(workers),
        "--expect-workers-max-wait",
        str(_WORKERS_WAIT_SECONDS),
    ]
    worker = [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(LOCUSTFILE),
        "--worker",
        "--master-host",
        LOOPBACK,
        "--master-port",
        port,
    ]

    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                _background(worker, output_dir / f"locust-worker-{n}.log")
            )
            for n in range(workers)
        ]
        status = _run_process(
            master, output_dir / "locust.log", deadline + _WORKERS_WAIT_SECONDS
        )
        for process in started:
            process.wait(timeout=_GRACE_SECONDS)

    return status


@contextlib.contextmanager
def _background(
    command: Sequence[str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process; kill it on exit if it is still running."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 -- our interpreter and Locust
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(),
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def _environment() -> dict[str, str]:
    """Let Locust's processes import the repository's packages."""
    path = os.environ.get("PYTHONPATH")
    joined = f"{REPOSITORY}{os.pathsep}{path}" if path else str(REPOSITORY)

    return {**os.environ, "PYTHONPATH": joined}


def _seconds(run_time: str) -> float:
    """Read Locust's run time (`90`, `30s`, `2m`, `1h30m`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    total = 0.0
    number = ""

    for character in run_time.strip():
        if character.isdigit() or character == ".":
            number += character
        elif character in units and number:
            total += float(number) * units[character]
            number = ""
        else:
            raise ValueError(f"not a run time: {run_time!r}")

    return total + (float(number) if number else 0.0)
