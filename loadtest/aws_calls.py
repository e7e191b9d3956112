"""How many AWS calls a sign-in costs, from the service's metrics or the stand-in.

The service counts its AWS calls and its successful sign-ins at `GET /metrics`
(`chime_sign_in_aws_calls_total` and `chime_sign_in_sign_ins_total`); a call
there is one the service made, however many times botocore retried it. The
stand-in counts every request that reached it, retries included, at
`GET /_standin/stats`. Both are read before and after a run, and the difference
is the run's. With several replicas, the service's counts are the sum of every
replica's `/metrics`, each replica's share kept beside the total.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Final

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "METRICS_SOURCE",
    "STANDIN_SOURCE",
    "AwsCallsPerSignIn",
    "Counters",
    "ReplicaCalls",
    "fetch_text",
    "per_sign_in",
    "read_counters",
]

METRICS_SOURCE: Final = "service /metrics"
STANDIN_SOURCE: Final = "stand-in /_standin/stats"

# Counter families, named without the `_total` of their samples.
_AWS_CALLS: Final = "chime_sign_in_aws_calls"
_SIGN_INS: Final = "chime_sign_in_sign_ins"
_TIMEOUT_SECONDS: Final = 5.0
# Our reads go straight to the servers named, whatever proxy the shell names.
_DIRECT: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass(frozen=True, slots=True)
class Counters:
    """The running totals at one moment; None where a source did not answer.

    The service's totals are summed over `by_replica`, and None if any replica
    did not answer.
    """

    service_aws_calls: float | None
    service_sign_ins: float | None
    standin_requests: int | None
    by_replica: tuple[tuple[str, float | None, float | None], ...] = ()
    """Each replica's URL, AWS calls and successful sign-ins."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaCalls:
    """One replica's share of a run: its AWS calls and successful sign-ins."""

    url: str
    aws_calls: float | None
    successful_sign_ins: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class AwsCallsPerSignIn:
    """A run's AWS calls per successful sign-in, and where the counts came from."""

    source: str | None
    aws_calls: float | None
    successful_sign_ins: float | None
    per_sign_in: float | None
    standin_requests: int | None
    """Requests the stand-in received in the run, botocore's retries included."""
    replicas: list[ReplicaCalls] = dataclasses.field(default_factory=list)
    """Each replica's share of the service's counts, in the order named."""


def read_counters(
    service_urls: str | Sequence[str], standin_url: str | None
) -> Counters:
    """Read every replica's counters and, if there is a stand-in, its total."""
    urls = [service_urls] if isinstance(service_urls, str) else list(service_urls)
    by_replica = tuple((url, *_service_counters(url)) for url in urls)
    requests = _standin_requests(standin_url) if standin_url else None

    return Counters(
        _total(calls for _url, calls, _sign_ins in by_replica),
        _total(sign_ins for _url, _calls, sign_ins in by_replica),
        requests,
        by_replica,
    )


def per_sign_in(
    before: Counters, after: Counters, *, load_successes: int
) -> AwsCallsPerSignIn:
    """Divide the run's AWS calls by its successful sign-ins.

    The service's own counts come first; without them, the stand-in's requests
    are divided by the successes the load generator saw.
    """
    standin = _difference(before.standin_requests, after.standin_requests)
    calls = _difference(before.service_aws_calls, after.service_aws_calls)
    sign_ins = _difference(before.service_sign_ins, after.service_sign_ins)

    if calls is not None and sign_ins is not None:
        source: str | None = METRICS_SOURCE
    elif standin is not None:
        source, calls, sign_ins = STANDIN_SOURCE, standin, load_successes
    else:
        source = None

    ratio = calls / sign_ins if calls is not None and sign_ins else None
    earlier = {url: (calls, sign_ins) for url, calls, sign_ins in before.by_replica}
    replicas = [
        ReplicaCalls(
            url=url,
            aws_calls=_difference(earlier.get(url, (None, None))[0], replica_calls),
            successful_sign_ins=_difference(
                earlier.get(url, (None, None))[1], replica_sign_ins
            ),
        )
        for url, replica_calls, replica_sign_ins in after.by_replica
    ]
    return AwsCallsPerSignIn(
        source=source,
        aws_calls=calls,
        successful_sign_ins=sign_ins,
        per_sign_in=ratio,
        standin_requests=int(standin) if standin is not None else None,
        replicas=replicas,
    )


def _total(values: Iterable[float | None]) -> float | None:
    """Add the replicas' counts up; None if any replica did not answer."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value

    return total


def _service_counters(service_url: str) -> tuple[float | None, float | None]:
    """Sum the service's AWS calls and successful sign-ins; None if not exposed."""
    text = fetch_text(f"{service_url.rstrip('/')}/metrics")
    if text is None:
        return None, None

    calls: float | None = None
    sign_ins: float | None = None
    for family in text_string_to_metric_families(text):
        totals = [sample for sample in family.samples if sample.name.endswith("_total")]
        if family.name == _AWS_CALLS:
            calls = sum(sample.value for sample in totals)
        elif family.name == _SIGN_INS:
            sign_ins = sum(
                sample.value
                for sample in totals
                if sample.labels.get("outcome") == "success"
            )

    return calls, sign_ins


def _standin_requests(standin_url: str) -> int | None:
    """Sum the stand-in's recorded calls over every API and outcome."""
    text = fetch_text(f"{standin_url.rstrip('/')}/_standin/stats")
    if text is None:
        return None

    calls = json.loads(text).get("calls", {})
    return sum(sum(outcomes.values()) for outcomes in calls.values())


def _difference(before: float | None, after: float | None) -> float | None:
    """Return after - before, or None if either is unknown."""
    if before is None or after is None:
        return None

    return after - before


def fetch_text(url: str) -> str | None:
    """Return the body of a 200 answer to GET `url`, or None, bypassing proxies."""
    try:
        with _DIRECT.open(url, timeout=_TIMEOUT_SECONDS) as response:
            body: bytes = response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None

    return body.decode()
