"""The load-test runner, end to end: a tiny headless run against the local setup."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

REPOSITORY: Final = Path(__file__).resolve().parent.parent
# Locust's start-up, a few seconds of load and the reports fit well within this.
_TIMEOUT_SECONDS: Final = 90


def _run_loadtest(output_dir: Path, *arguments: str) -> tuple[str, dict[str, Any]]:
    """Run `python -m loadtest` and return its output and its summary file."""
    completed = subprocess.run(  # noqa: S603 -- our interpreter and our module
        [
            sys.executable,
            "-m",
            "loadtest",
            "--output-dir",
            str(output_dir),
            *arguments,
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    scenario = arguments[arguments.index("--scenario") + 1]
    summary_file = output_dir / f"{scenario}-summary.json"
    summary: dict[str, Any] = json.loads(summary_file.read_text())
    return completed.stdout, summary


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """One short mixed run with a handful of users, shared by the tests below."""
    output_dir = tmp_path_factory.mktemp("loadtest")
    return _run_loadtest(
        output_dir,
        "--scenario",
        "mixed",
        "--run-time",
        "3s",
        "--users",
        "5",
        "--population",
        "50",
    )


def test_loadtest_summary_has_every_field(
    mixed_run: tuple[str, dict[str, Any]],
) -> None:
    """The summary names requests, failures, percentiles, rate and AWS cost."""
    stdout, summary = mixed_run

    assert summary["scenario"] == "mixed"
    assert summary["users"] == 5
    assert summary["requests"] > 0
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
    assert summary["throughput_per_second"] > 0
    assert summary["aws_calls"]["source"] == "service /metrics"
    assert summary["aws_calls"]["per_sign_in"] is not None
    for label in ("requests", "failed", "latency", "throughput", "AWS calls"):
        assert label in stdout


def test_loadtest_summary_counts_add_up(
    mixed_run: tuple[str, dict[str, Any]],
) -> None:
    """Successes and failures by status add up to the requests sent."""
    _stdout, summary = mixed_run
    by_status = summary["failures_by_status"]

    assert summary["failures"] == sum(by_status.values())
    assert summary["successes"] + summary["failures"] == summary["requests"]
    assert summary["aws_calls"]["successful_sign_ins"] == summary["successes"]
    latency = summary["latency_ms"]
    assert 0 <= latency["p50"] <= latency["p95"] <= latency["p99"]


def test_loadtest_writes_the_html_report_beside_the_summary(
    mixed_run: tuple[str, dict[str, Any]],
) -> None:
    """Locust's HTML report is written where the summary says."""
    _stdout, summary = mixed_run
    report = Path(summary["html_report"])

    assert report.name == "mixed.html"
    assert "<html" in report.read_text()[:2000].lower()
    assert (report.parent / "mixed-summary.txt").exists()


def test_loadtest_storm_distributed_signs_every_user_in_once(tmp_path: Path) -> None:
    """A storm on a master and two workers signs each cold user in once."""
    _stdout, summary = _run_loadtest(
        tmp_path,
        "--scenario",
        "storm",
        "--run-time",
        "20s",
        "--users",
        "6",
        "--workers",
        "2",
    )

    assert summary["requests"] == 6
    assert summary["successes"] == 6
    assert summary["aws_calls"]["aws_calls"] == 12
    assert summary["aws_calls"]["per_sign_in"] == 2
