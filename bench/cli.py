"""The benchmark's command line: measure, write the results, print the verdicts.

    python -m bench                  # every figure, ~10 s each; updates BENCHMARKS.md
    python -m bench --smoke          # every figure for ~1 s, for CI; no BENCHMARKS.md

Results go to `bench-results/results.json` (or `--output-dir`). wrk is installed
with apt-get if it is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness import FULL, SMOKE, run_bench
from bench.report import (
    describe_machine,
    evaluate_targets,
    render_markdown,
    update_markdown,
)
from bench.wrk import ensure_wrk

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny durations and counts, for CI"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per figure"
    )
    parser.add_argument("--connections", type=int, default=None, help="wrk connections")
    parser.add_argument("--threads", type=int, default=None, help="wrk threads")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("bench-results"),
        help="where results and logs go (default: %(default)s)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="the file whose generated table is replaced "
        "(default: BENCHMARKS.md, none with --smoke)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when every figure was measured, met or missed."""
    arguments = build_parser().parse_args(argv)
    plan = SMOKE if arguments.smoke else FULL
    overrides = {
        name: value
        for name, value in (
            ("duration_seconds", arguments.duration),
            ("connections", arguments.connections),
            ("threads", arguments.threads),
        )
        if value is not None
    }
    plan = dataclasses.replace(plan, **overrides)

    wrk = ensure_wrk()
    output_dir: Path = arguments.output_dir
    load_before = os.getloadavg()[0]
    measured = run_bench(plan, wrk, output_dir)
    results = {
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "revision": _revision(),
        "machine": describe_machine(_wrk_version(wrk)),
        # Other work on the machine skews every figure; this says how much there was.
        "load_average_before": load_before,
        **measured,
    }
    results["targets"] = evaluate_targets(results["figures"])

    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    given = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "bench", *given])
    block = render_markdown(results, command)
    (output_dir / "table.md").write_text(block)

    markdown = arguments.markdown or (
        None if arguments.smoke else Path("BENCHMARKS.md")
    )
    if markdown is not None:
        update_markdown(markdown, block)

    sys.stdout.write(block)
    return 0


def _revision() -> str:
    """Name the commit measured, and say if the working tree differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 -- git on the PATH
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"

    return f"{commit} with uncommitted changes" if changes else commit


def _wrk_version(wrk: str) -> str:
    """Return wrk's version line (wrk prints it with its usage, and exits 1)."""
    completed = subprocess.run(  # noqa: S603 -- the wrk we found or installed
        [wrk, "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    first = (completed.stdout or completed.stderr).splitlines()[:1]

    return first[0].split(" Copyright")[0] if first else "wrk"
