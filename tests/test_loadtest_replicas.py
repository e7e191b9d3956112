"""The load-test runner on two replicas, without and with a Redis they share."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

REPOSITORY: Final = Path(__file__).resolve().parent.parent
# Two replicas, a Redis, Locust's start-up and a few sign-ins fit well within this.
_TIMEOUT_SECONDS: Final = 120
_USERS: Final = 12
# Four cold users, each arriving three times at once over the two replicas.
_POPULATION: Final = 4


def _storm_on_two_replicas(output_dir: Path, *extra: str) -> dict[str, Any]:
    """Run a small storm on two local replicas; return its summary file."""
    completed = subprocess.run(  # noqa: S603 -- our interpreter and our module
        [
            sys.executable,
            "-m",
            "loadtest",
            "--output-dir",
            str(output_dir),
            "--scenario",
            "storm",
            "--run-time",
            "20s",
            "--users",
            str(_USERS),
            "--population",
            str(_POPULATION),
            "--replicas",
            "2",
            *extra,
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    summary: dict[str, Any] = json.loads(
        (output_dir / "storm-summary.json").read_text()
    )
    return summary


@pytest.fixture(scope="module")
def storms(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, Any]]:
    """The same storm on two replicas without Redis, then with one shared Redis."""
    return {
        "no redis": _storm_on_two_replicas(tmp_path_factory.mktemp("no-redis")),
        "redis": _storm_on_two_replicas(tmp_path_factory.mktemp("redis"), "--redis"),
    }


def test_loadtest_replicas_with_redis_cost_no_more_aws_calls(
    storms: dict[str, dict[str, Any]],
) -> None:
    """Sharing a Redis costs at most as many AWS calls per sign-in as not sharing."""
    without, with_redis = storms["no redis"], storms["redis"]

    assert without["replicas"] == with_redis["replicas"] == 2
    assert (without["redis"], with_redis["redis"]) == (False, True)
    assert without["successes"] == with_redis["successes"] == _USERS
    assert with_redis["aws_calls"]["per_sign_in"] is not None
    assert without["aws_calls"]["per_sign_in"] is not None
    assert with_redis["aws_calls"]["per_sign_in"] <= without["aws_calls"]["per_sign_in"]
    # A cold user costs one AssumeRole and one CreateAppInstanceUser at least.
    assert with_redis["aws_calls"]["aws_calls"] >= 2 * _POPULATION


def test_loadtest_replicas_counts_add_up_over_every_replica(
    storms: dict[str, dict[str, Any]],
) -> None:
    """Each run's AWS calls and sign-ins are the sums of both replicas' metrics."""
    for summary in storms.values():
        aws = summary["aws_calls"]
        replicas = aws["replicas"]

        assert aws["source"] == "service /metrics"
        assert len(replicas) == 2
        assert len({replica["url"] for replica in replicas}) == 2
        assert sum(replica["aws_calls"] for replica in replicas) == aws["aws_calls"]
        sign_ins = sum(replica["successful_sign_ins"] for replica in replicas)
        assert sign_ins == aws["successful_sign_ins"] == summary["successes"]
        assert summary["successes"] + summary["failures"] == summary["requests"]
        # No faults, so every call the replicas made reached the stand-in once.
        assert aws["standin_requests"] == aws["aws_calls"]
        assert aws["per_sign_in"] == aws["aws_calls"] / aws["successful_sign_ins"]
