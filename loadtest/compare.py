"""`python -m loadtest --compare-replicas N`: what sharing one Redis saves AWS.

Runs the `storm` scenario four times, each against a fresh local setup: one
replica, then N, each without and with a Redis shared by the replicas. Storm
users take turns over a small population of cold user ids, so each user arrives
several times at once, on whichever replicas its Locust users picked. Each run
ends when every storm user has signed in once, or at `--run-time`. The table of
AWS calls per successful sign-in (summed over every replica's `/metrics`) is
printed and written to `replicas-comparison.txt` and `.json` in `--output-dir`,
each run's own summary and logs beside it in `replicas/<deployment>/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from loadtest.summary import Summary

__all__ = ["ComparisonRow", "compare_replicas", "deployments", "render_comparison"]

SCENARIO: Final = "storm"
# A brief storm: 150 Locust users over 15 cold user ids, 10 arrivals each.
_DEFAULT_USERS: Final = 150
_ARRIVALS_PER_USER: Final = 10
_STEM: Final = "replicas-comparison"


@dataclasses.dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One deployment's run: its shape and what it cost AWS."""

    replicas: int
    redis: bool
    requests: int
    successes: int
    aws_calls: float | None
    per_sign_in: float | None
    summary_file: str

    @property
    def label(self) -> str:
        """Name the deployment: `3 replicas, Redis`."""
        replicas = "1 replica" if self.replicas == 1 else f"{self.replicas} replicas"
        return f"{replicas}, {'Redis' if self.redis else 'no Redis'}"


def deployments(replicas: int) -> list[tuple[int, bool]]:
    """Return the four deployments compared: 1 and N replicas, without and with."""
    return [(count, redis) for count in (1, replicas) for redis in (False, True)]


def compare_replicas(
    arguments: argparse.Namespace,
    run: Callable[[argparse.Namespace], Summary],
) -> list[ComparisonRow]:
    """Run the storm on every deployment; write and return the comparison."""
    users = arguments.users or _DEFAULT_USERS
    population = arguments.population or max(users // _ARRIVALS_PER_USER, 1)
    rows = []

    for replicas, redis in deployments(arguments.compare_replicas):
        directory = arguments.output_dir / "replicas" / _slug(replicas, redis)
        one = argparse.Namespace(
            **{
                **vars(arguments),
                "scenario": SCENARIO,
                "users": users,
                "population": population,
                "replicas": replicas,
                "redis": redis,
                "compare_replicas": 0,
                "output_dir": directory,
            }
        )
        summary = run(one)
        rows.append(
            ComparisonRow(
                replicas=replicas,
                redis=redis,
                requests=summary.requests,
                successes=summary.successes,
                aws_calls=summary.aws_calls["aws_calls"],
                per_sign_in=summary.aws_calls["per_sign_in"],
                summary_file=str(directory / f"{SCENARIO}-summary.json"),
            )
        )

    output_dir = arguments.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "scenario": SCENARIO,
        "users": users,
        "population": population,
        "run_time": arguments.run_time,
        "rows": [dataclasses.asdict(row) | {"label": row.label} for row in rows],
    }
    (output_dir / f"{_STEM}.json").write_text(json.dumps(document, indent=2) + "\n")
    (output_dir / f"{_STEM}.txt").write_text(render_comparison(rows))
    return rows


def render_comparison(rows: Sequence[ComparisonRow]) -> str:
    """Lay the comparison out as a Markdown table."""
    lines = [
        "| deployment | sign-ins | AWS calls | AWS calls per sign-in |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines.extend(
        f"| {row.label} | {row.successes}/{row.requests} | "
        f"{_number(row.aws_calls, '.0f')} | {_number(row.per_sign_in, '.3f')} |"
        for row in rows
    )
    return "\n".join(lines) + "\n"


def _slug(replicas: int, redis: bool) -> str:
    """Name a deployment's directory: `3-redis`, `1-no-redis`."""
    return f"{replicas}-{'redis' if redis else 'no-redis'}"


def _number(value: float | None, layout: str) -> str:
    """Show a figure, a dash when unknown."""
    return "-" if value is None else format(value, layout)
