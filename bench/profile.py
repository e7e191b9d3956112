"""`python -m bench.profile FIGURE`: where the service spends a figure's CPU time.

Sets the service up as the benchmark does for B1, B2 or B3, loads it with wrk,
and samples it meanwhile with py-spy (not a dependency of the project: install
it into the virtualenv with `pip install py-spy`). Writes the collapsed stacks
(`<figure>.stacks`, readable by speedscope and flamegraph tools) and prints the
hottest functions of the event-loop thread, by inclusive and by own time.
Idle threads (the executor's) are left out: py-spy counts some of them as busy.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bench.client import sign_in_all
from bench.harness import FULL, prepare_bench, running_bench_service
from bench.wrk import Load, ensure_wrk, run_wrk
from loadtest.local_stack import running_standin

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from bench.harness import Bench
    from bench.tokens import TokenMinter

__all__ = ["hot_frames", "main"]

PROFILED: Final = ("B1_HS256", "B1_RS256", "B2_HS256", "B2_RS256", "B3")
_MAIN_THREAD_ROOT: Final = "_run_module_as_main"
_LINE_NUMBER = re.compile(r":\d+\)$")
# Upper bounds of the rates each figure can reach here, for minting new tokens.
_NEW_TOKENS_PER_SECOND: Final = 5000
_COLD_USERS_PER_SECOND: Final = 2200
_WARM_USERS: Final = 1000


def hot_frames(stacks: Iterable[str]) -> tuple[Counter[str], Counter[str], int]:
    """Sum py-spy's collapsed stacks of the main thread by function.

    Returns each function's inclusive samples, its own samples, and the total.
    Line numbers are dropped, so a function counts once however many lines ran.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0

    for line in stacks:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack.startswith(_MAIN_THREAD_ROOT) or not count.isdigit():
            continue
        frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples

    return inclusive, own, total


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("figure", choices=PROFILED)
    parser.add_argument("--seconds", type=int, default=12, help="sampling time")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=30, help="functions to print")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("bench-results") / "profiles"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Profile one figure and print its hottest functions."""
    arguments = build_parser().parse_args(argv)
    py_spy = _find_py_spy()
    if py_spy is None:
        sys.stderr.write("py-spy is not installed: pip install py-spy\n")
        return 2

    output_dir: Path = arguments.output_dir
    bench = prepare_bench(FULL, ensure_wrk(), output_dir)
    stacks = output_dir / f"{arguments.figure}.stacks"

    with _loaded_service(bench, arguments.figure, arguments.seconds) as (pid, load):
        sampler = subprocess.Popen(  # noqa: S603 -- py-spy on our own child process
            [
                py_spy,
                "record",
                f"--pid={pid}",
                f"--duration={arguments.seconds}",
                f"--rate={arguments.rate}",
                "--format=raw",
                f"--output={stacks}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        load()
        _, errors = sampler.communicate(timeout=arguments.seconds + 30)
        if sampler.returncode != 0:
            sys.stderr.write(errors.decode())
            return 1

    inclusive, own, total = hot_frames(stacks.read_text().splitlines())
    sys.stdout.write(_table(arguments.figure, inclusive, own, total, arguments.top))
    return 0


@contextlib.contextmanager
def _loaded_service(
    bench: Bench, figure: str, seconds: int
) -> Iterator[tuple[int, Callable[[], None]]]:
    """Start the figure's service; yield its pid and what loads it for `seconds`."""
    cold = figure == "B3"
    faults = [f"*:latency=fixed:{bench.plan.aws_latency_seconds}"] if cold else []
    algorithm = "RS256" if cold else figure.rpartition("_")[2]
    minter = bench.rs256 if algorithm == "RS256" else bench.hs256
    tokens = _tokens(bench, figure, minter, seconds)

    with (
        running_standin(bench.logs / "profile-standin.log", faults=faults) as (
            standin_url,
            _standin,
        ),
        running_bench_service(bench, algorithm, standin_url, "profile") as (url, pid),
    ):
        if not cold:
            warm = minter.stream(f"warm-{n}" for n in range(_WARM_USERS))
            sign_in_all(url, warm)

        # wrk runs a second longer than the sampler, so every sample is under load.
        load = Load(seconds + 1, bench.plan.connections, bench.plan.threads)
        yield pid, lambda: _run_quietly(bench, url, tokens, load)


def _tokens(bench: Bench, figure: str, minter: TokenMinter, seconds: int) -> Path:
    """Write the figure's tokens: the same ones (B1), new ones (B2), cold users (B3)."""
    path = bench.work / f"profile-{figure}.tokens"
    if figure == "B3":
        tag = time.monotonic_ns()
        users = (f"cold-{tag}-{n}" for n in range(seconds * _COLD_USERS_PER_SECOND))
    elif figure.startswith("B2"):
        count = (seconds + 1) * _NEW_TOKENS_PER_SECOND
        users = (f"warm-{n % _WARM_USERS}" for n in range(count))
    else:
        users = (f"warm-{n}" for n in range(_WARM_USERS))

    return minter.write(path, users)


def _run_quietly(bench: Bench, url: str, tokens: Path, load: Load) -> None:
    """Run wrk; the profile, not wrk's figures, is the point here."""
    run_wrk(bench.wrk, url, tokens, load)


def _table(
    figure: str, inclusive: Counter[str], own: Counter[str], total: int, top: int
) -> str:
    """Lay out the hottest functions as shares of the event-loop thread's samples."""
    lines = [f"{figure}: {total} samples of the event-loop thread", "", "inclusive:"]
    lines += [
        f"  {100 * count / total:5.1f}%  {frame}"
        for frame, count in inclusive.most_common(top)
    ]
    lines += ["", "own time:"]
    lines += [
        f"  {100 * count / total:5.1f}%  {frame}"
        for frame, count in own.most_common(top)
    ]
    return "\n".join(lines) + "\n"


def _find_py_spy() -> str | None:
    """Find py-spy beside this interpreter, else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"

    return str(beside) if beside.exists() else shutil.which("py-spy")


if __name__ == "__main__":
    sys.exit(main())
