"""The summary of a load-test run: counts, failures by status, latency, AWS cost.

Built from the record the locustfile writes when Locust quits (`--record-file`)
and the AWS call counts read around the run. Percentiles come from Locust's
response-time histogram, whose buckets are 1 ms wide below 100 ms and coarser
above, as in Locust's own report.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

    from loadtest.aws_calls import AwsCallsPerSignIn

__all__ = ["NO_ANSWER", "Summary", "percentile", "render", "status_of", "summarize"]

NO_ANSWER: Final = "no answer"
"""The status of a request that got no HTTP answer (refused, reset, timed out)."""

_PERCENTILES: Final = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
_HTTP_STATUS = re.compile(r"HTTP (\d{3})")


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """What one run did and cost."""

    scenario: str
    target: str
    users: int
    run_time: str
    elapsed_seconds: float
    requests: int
    successes: int
    failures: int
    failures_by_status: dict[str, int]
    latency_ms: dict[str, float | None]
    throughput_per_second: float
    aws_calls: dict[str, Any]
    html_report: str
    replicas: int = 1
    redis: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict."""
        return dataclasses.asdict(self)


def summarize(
    record: Mapping[str, Any],
    aws: AwsCallsPerSignIn,
    *,
    target: str,
    run_time: str,
    html_report: str,
) -> Summary:
    """Combine the locustfile's record with the AWS counts of the same run."""
    requests = int(record["requests"])
    failures = int(record["failures"])
    by_status: Counter[str] = Counter()
    for error in record["errors"]:
        by_status[status_of(str(error["error"]))] += int(error["occurrences"])

    histogram = {
        int(ms): int(count) for ms, count in record["response_times_ms"].items()
    }
    started = record.get("started_at")
    last = record.get("last_request_at")
    elapsed = max(float(last) - float(started), 0.0) if started and last else 0.0

    return Summary(
        scenario=str(record["scenario"]),
        target=target,
        users=int(record["users"] or 0),
        run_time=run_time,
        elapsed_seconds=round(elapsed, 3),
        requests=requests,
        successes=requests - failures,
        failures=failures,
        failures_by_status=dict(sorted(by_status.items())),
        latency_ms={
            name: percentile(histogram, fraction)
            for name, fraction in _PERCENTILES.items()
        },
        throughput_per_second=round(requests / elapsed, 1) if elapsed else 0.0,
        aws_calls=dataclasses.asdict(aws),
        html_report=html_report,
    )


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """Return the smallest response time at or under which `fraction` of all fall."""
    total = sum(histogram.values())
    if not total:
        return None

    rank = max(math.ceil(fraction * total), 1)
    seen = 0
    for milliseconds in sorted(histogram):
        seen += histogram[milliseconds]
        if seen >= rank:
            return float(milliseconds)

    return float(max(histogram))


def status_of(error: str) -> str:
    """Name the status a failure was recorded with: `503`, or `no answer`."""
    found = _HTTP_STATUS.search(error)

    return found.group(1) if found else NO_ANSWER


def render(summary: Summary) -> str:
    """Lay the summary out for a terminal."""
    failures = ", ".join(
        f"{status}: {count}" for status, count in summary.failures_by_status.items()
    )
    latency = ", ".join(
        f"{name} {_number(value)} ms" for name, value in summary.latency_ms.items()
    )
    deployment = ""
    if summary.replicas > 1 or summary.redis:
        deployment = f" ({summary.replicas} replicas, {_redis(summary.redis)})"
    lines = [
        (
            f"scenario      {summary.scenario}, {summary.users} users, "
            f"{summary.run_time} against {summary.target}{deployment}"
        ),
        f"requests      {summary.requests}",
        f"succeeded     {summary.successes}",
        f"failed        {summary.failures}" + (f" ({failures})" if failures else ""),
        f"latency       {latency}",
        (
            f"throughput    {summary.throughput_per_second} sign-ins/s over "
            f"{summary.elapsed_seconds} s"
        ),
        f"AWS calls     {_aws_line(summary.aws_calls)}",
        *_replica_lines(summary.aws_calls),
        f"report        {summary.html_report}",
    ]
    return "\n".join(lines) + "\n"


def _redis(on: bool) -> str:
    """Say whether the replicas shared a Redis."""
    return "sharing one Redis" if on else "no Redis"


def _replica_lines(aws: Mapping[str, Any]) -> list[str]:
    """Show each replica's share of the AWS calls, when there are several."""
    replicas = aws.get("replicas") or []
    if len(replicas) < 2:
        return []

    return [
        (
            f"  replica     {replica['url']}: {_number(replica['aws_calls'])} calls, "
            f"{_number(replica['successful_sign_ins'])} sign-ins"
        )
        for replica in replicas
    ]


def _aws_line(aws: Mapping[str, Any]) -> str:
    """Describe the AWS calls per sign-in and their source."""
    if aws["source"] is None:
        return "unknown: neither the service's metrics nor a stand-in answered"

    line = (
        f"{_number(aws['per_sign_in'])} per successful sign-in "
        f"({_number(aws['aws_calls'])} calls / "
        f"{_number(aws['successful_sign_ins'])} sign-ins; from {aws['source']})"
    )
    if aws["standin_requests"] is not None:
        line += f"; the stand-in received {aws['standin_requests']} requests"

    return line


def _number(value: float | None) -> str:
    """Show a figure compactly; a dash when unknown."""
    if value is None:
        return "-"

    return f"{value:.3g}" if value < 100 else f"{value:.0f}"
