"""The liveness and readiness probes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support import Client


async def test_healthz_answers_ok(client: Client) -> None:
    """Liveness needs nothing but the process."""
    response = await client.get("/healthz")

    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_ready_with_a_static_key(client: Client) -> None:
    """With a shared secret and AWS clients open, the service is ready at once."""
    response = await client.get("/readyz")

    assert response.status == 200
    assert await response.json() == {"status": "ready"}
