"""The benchmark harness, end to end, in its smoke mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from bench.harness import FIGURES
from bench.report import BEGIN_MARKER, END_MARKER
from bench.wrk import WrkError, ensure_wrk

REPOSITORY: Final = Path(__file__).resolve().parent.parent
# A smoke run takes a quarter of this on a small machine.
_TIMEOUT_SECONDS: Final = 120
_THROUGHPUT_FIGURES: Final = tuple(name for name in FIGURES if name not in {"B4", "B5"})


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The results file of one `python -m bench --smoke` run."""
    try:
        ensure_wrk()
    except WrkError as error:
        pytest.skip(f"wrk is missing and cannot be installed here: {error}")

    output_dir = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(  # noqa: S603 -- our interpreter and our module
        [sys.executable, "-m", "bench", "--smoke", "--output-dir", str(output_dir)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert BEGIN_MARKER in completed.stdout
    assert END_MARKER in completed.stdout

    results: dict[str, Any] = json.loads((output_dir / "results.json").read_text())
    return results


def test_bench_smoke_measures_every_figure(smoke_results: dict[str, Any]) -> None:
    """The results name every figure, the machine and the plan."""
    assert set(smoke_results["figures"]) == set(FIGURES)
    assert smoke_results["plan"]["smoke"] is True
    assert {"cores", "cpu_model", "python", "wrk"} <= set(smoke_results["machine"])


def test_bench_smoke_throughput_figures_answered(
    smoke_results: dict[str, Any],
) -> None:
    """Every throughput figure got 2xx answers and has a ratio to B0."""
    figures = smoke_results["figures"]

    for name in _THROUGHPUT_FIGURES:
        figure = figures[name]
        assert figure["ok_per_second"] > 0, name
        assert figure["non_2xx"] == 0, name
        assert figure["ratio_to_b0"] > 0, name
        assert set(figure["latency_ms"]) >= {"p50", "p95", "p99"}, name
    assert figures["B0"]["ratio_to_b0"] == 1


def test_bench_smoke_cold_sign_ins_call_aws(smoke_results: dict[str, Any]) -> None:
    """B3's users are cold: each sign-in costs AWS calls and service CPU."""
    b3 = smoke_results["figures"]["B3"]

    assert b3["aws_calls_per_sign_in"] >= 2
    assert b3["cpu_ms_per_request"]["server"] > 0
    assert "overhead_p50_ms" in b3["unloaded"]


def test_bench_smoke_memory_and_startup_are_measured(
    smoke_results: dict[str, Any],
) -> None:
    """B4 fills the caches to both sizes, and B5 times each start."""
    figures = smoke_results["figures"]
    b4 = figures["B4"]
    smallest, largest = smoke_results["plan"]["cache_users"]

    assert set(b4["resident_bytes"]) == {"0", str(smallest), str(largest)}
    assert b4["cache_entries"]["chime_sign_in_credentials_cache_entries"] == largest
    assert b4["cache_entries"]["chime_sign_in_users_cache_entries"] == largest
    assert len(figures["B5"]["runs"]) == smoke_results["plan"]["startup_runs"]
    assert isinstance(figures["B5"]["seconds"], float)


def test_bench_smoke_reports_a_verdict_per_target(
    smoke_results: dict[str, Any],
) -> None:
    """Each target comes back as met or missed, never as an assertion."""
    targets = smoke_results["targets"]

    assert len(targets) == 8
    assert all(isinstance(target["met"], bool) for target in targets)
