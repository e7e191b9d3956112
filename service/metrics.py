"""Prometheus metrics, served at `GET /metrics`.

Counters that change on every request (HTTP requests, sign-in outcomes, AWS calls)
are updated as things happen; figures the caches already keep (hits, misses, stale
serves, sizes, AWS calls in flight) are read only when Prometheus scrapes, so the
sign-in path pays nothing for them. No label carries a user id: cardinality stays
bounded by routes, APIs and outcomes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.errors import (
    AuthenticationRequiredError,
    AwsConfigurationError,
    AwsUnavailableError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    KeysUnavailableError,
    SignInError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from aiohttp.typedefs import Handler, Middleware

__all__ = ["Metrics", "metrics_middleware"]

PREFIX: Final = "chime_sign_in"

_LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# HTTP allows any token as a method; others are counted as "other" so a client
# cannot mint label values.
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
)
_OUTCOMES: Final[Mapping[type[SignInError], str]] = {
    AuthenticationRequiredError: "missing_token",
    InvalidRequestError: "invalid_request",
    InvalidTokenError: "invalid_token",
    InsufficientScopeError: "insufficient_scope",
    KeysUnavailableError: "keys_unavailable",
    AwsUnavailableError: "aws_unavailable",
    AwsConfigurationError: "aws_misconfigured",
}


class Metrics:
    """The service's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._sign_ins = Counter(
            f"{PREFIX}_sign_ins",
            "Sign-ins by outcome: success, or why they were refused.",
            ["outcome"],
            registry=self.registry,
        )
        self._aws_calls = Counter(
            f"{PREFIX}_aws_calls",
            "AWS calls by API and outcome (success or the AWS error code).",
            ["api", "outcome"],
            registry=self.registry,
        )
        self._aws_seconds = Histogram(
            f"{PREFIX}_aws_call_duration_seconds",
            "Time of one AWS call, retries by botocore included, by API.",
            ["api"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # labels() validates and locks on every call; the few label sets of the
        # request metrics are looked up once and kept.
        self._request_children: dict[
            tuple[str, str, int], tuple[Counter, Histogram]
        ] = {}
        self._jwks_refreshes = Counter(
            f"{PREFIX}_jwks_refreshes",
            "Fetches of the identity provider's JWKS, by outcome.",
            ["outcome"],
            registry=self.registry,
        )

    def observe_request(
        self, route: str, method: str, status: int, seconds: float
    ) -> None:
        """Count one answered HTTP request."""
        if method not in _KNOWN_METHODS:
            method = "other"
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self._requests.labels(route, method, str(status)),
                self._request_seconds.labels(route),
            )
            self._request_children[key] = children

        children[0].inc()
        children[1].observe(seconds)

    def observe_sign_in(self, error: SignInError | None) -> None:
        """Count one sign-in, successful when `error` is None."""
        outcome = "success" if error is None else _OUTCOMES.get(type(error), "error")
        self._sign_ins.labels(outcome).inc()

    def observe_aws_call(self, api: str, outcome: str, seconds: float) -> None:
        """Count one AWS call; the `AwsGate` observer."""
        self._aws_calls.labels(api, outcome).inc()
        self._aws_seconds.labels(api).observe(seconds)

    def observe_jwks_refresh(self, outcome: str) -> None:
        """Count one JWKS fetch."""
        self._jwks_refreshes.labels(outcome).inc()

    def read_at_scrape(self, collector: Collector) -> Callable[[], None]:
        """Register a collector read at each scrape; return what unregisters it."""
        self.registry.register(collector)
        return lambda: self.registry.unregister(collector)

    def exposition(self) -> bytes:
        """Render every metric in Prometheus' text format."""
        return generate_latest(self.registry)


class CacheCollector(Collector):
    """Reads the caches' own counts when Prometheus scrapes."""

    def __init__(
        self,
        *,
        credentials_stats: Callable[[], tuple[int, int, int, int]],
        users_cached: Callable[[], int],
        aws_in_flight: Callable[[], int],
    ) -> None:
        self._credentials_stats = credentials_stats
        self._users_cached = users_cached
        self._aws_in_flight = aws_in_flight

    def collect(self) -> Iterator[Metric]:
        """Yield the cache and gate figures as they are now."""
        hits, misses, stale, size = self._credentials_stats()
        yield CounterMetricFamily(
            f"{PREFIX}_credentials_cache_hits",
            "Sign-ins answered with cached credentials.",
            value=hits,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_credentials_cache_misses",
            "Sign-ins that needed STS (cold, or inside the refresh margin).",
            value=misses,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_credentials_stale_served",
            "Cached credentials served because a refresh failed.",
            value=stale,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_credentials_cache_entries",
            "Users with credentials in the cache.",
            value=size,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_users_cache_entries",
            "Users whose AppInstanceUser ARN is cached.",
            value=self._users_cached(),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_aws_calls_in_flight",
            "AWS calls holding a slot of AWS_MAX_CONCURRENCY right now.",
            value=self._aws_in_flight(),
        )


def metrics_middleware(metrics: Metrics) -> Middleware:
    """Count and time every request by its route, never by its raw path."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        metrics.observe_request(
            route, request.method, response.status, time.perf_counter() - started
        )
        return response

    return middleware
