"""The Prometheus metrics: what sign-ins, caches and AWS calls did, without user ids."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from service.metrics import Metrics
from tests.support import Client, bearer, hs256_token


async def _samples(
    client: Client,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_sign_ins_cache_and_aws_calls(
    client: Client, hs256_secret: str
) -> None:
    """Two sign-ins of one user: one success each, one miss, one hit, one STS call."""
    token = hs256_token(hs256_secret, "judy")
    for _ in range(2):
        await client.post("/v1/sign-in", headers=bearer(token))
    await client.post("/v1/sign-in", headers=bearer("not-a-token"))

    samples = await _samples(client)

    assert samples[("chime_sign_in_sign_ins_total", (("outcome", "success"),))] == 2
    assert (
        samples[("chime_sign_in_sign_ins_total", (("outcome", "invalid_token"),))] == 1
    )
    assert samples[("chime_sign_in_credentials_cache_misses_total", ())] == 1
    assert samples[("chime_sign_in_credentials_cache_hits_total", ())] == 1
    assert samples[("chime_sign_in_credentials_cache_entries", ())] == 1
    assert samples[("chime_sign_in_users_cache_entries", ())] == 1
    sts_calls = (
        "chime_sign_in_aws_calls_total",
        (("api", "AssumeRole"), ("outcome", "success")),
    )
    assert samples[sts_calls] == 1
    assert samples[("chime_sign_in_aws_calls_in_flight", ())] == 0


async def test_metrics_count_requests_by_route_not_path(client: Client) -> None:
    """Unknown paths share one label, so scanning cannot blow up cardinality."""
    for path in ("/a", "/b", "/c"):
        await client.get(path)

    samples = await _samples(client)

    unmatched = [
        value
        for (name, labels), value in samples.items()
        if name == "chime_sign_in_http_requests_total"
        and ("route", "unmatched") in labels
    ]
    assert sum(unmatched) == 3
    assert not any("/a" in str(labels) for _, labels in samples)


async def test_metrics_never_carry_a_user_id(client: Client, hs256_secret: str) -> None:
    """The user id appears in no metric name or label."""
    await client.post(
        "/v1/sign-in", headers=bearer(hs256_token(hs256_secret, "kim-42"))
    )

    text = await (await client.get("/metrics")).text()

    assert "kim-42" not in text


def test_metrics_fold_unknown_methods_into_one_label() -> None:
    """Made-up HTTP methods are counted as "other", not as new label values.

    aiohttp's parser refuses most of them before the app sees them; this holds
    even where it would not.
    """
    metrics = Metrics()
    for method in ("FOOBAR", "BAZ1", "QUUX", "GET"):
        metrics.observe_request("/healthz", method, 200, 0.001)

    families = text_string_to_metric_families(metrics.exposition().decode())

    methods = {
        sample.labels["method"]
        for family in families
        for sample in family.samples
        if sample.name == "chime_sign_in_http_requests_total"
    }
    assert methods == {"other", "GET"}
