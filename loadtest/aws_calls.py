"""How many AWS calls a sign-in costs, from the service's metrics or the stand-in.

The service counts its AWS calls and its successful sign-ins at `GET /metrics`
(`chime_sign_in_aws_calls_total` and `chime_sign_in_sign_ins_total`); a call
there is one the service made, however many times botocore retried it. The
stand-in counts every request that reached it, retries included, at
`GET /_standin/stats`. Both are read before and after a run, and the difference
is the run's.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "METRICS_SOURCE",
    "STANDIN_SOURCE",
    "AwsCallsPerSignIn",
    "Counters",
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
    """The running totals at one moment; None where a source did not answer."""

    service_aws_calls: float | None
    service_sign_ins: float | None
    standin_requests: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class AwsCallsPerSignIn:
    """A run's AWS calls per successful sign-in, and where the counts came from."""

    source: str | None
    aws_calls: float | None
    successful_sign_ins: float | None
    per_sign_in: float | None
    standin_requests: int | None
    """Requests the stand-in received in the run, botocore's retries included."""


def read_counters(service_url: str, standin_url: str | None) -> Counters:
    """Read the service's counters and, if there is a stand-in, its total."""
    calls, sign_ins = _service_counters(service_url)
    requests = _standin_requests(standin_url) if standin_url else None

    return Counters(calls, sign_ins, requests)


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
    return AwsCallsPerSignIn(
        source=source,
        aws_calls=calls,
        successful_sign_ins=sign_ins,
        per_sign_in=ratio,
        standin_requests=int(standin) if standin is not None else None,
    )


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
