"""Graceful shutdown of a real `python -m service` process under load."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.test_utils import unused_port

from tests.support import bearer, eventually, hs256_token, service_environment

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Standin

_CONCURRENT_CLIENTS = 16


async def test_sigterm_under_load_fails_no_request(
    standin: Standin, hs256_secret: str, tmp_path: Path
) -> None:
    """Readiness fails first, sign-ins keep succeeding, and the process exits 0.

    While draining, answers carry `Connection: close` so keep-alive clients move.
    """
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "service.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        env=service_environment(
            standin.url, hs256_secret, port, SHUTDOWN_DRAIN_SECONDS="1"
        ),
        stdout=log,
        stderr=log,
    )
    statuses: list[int] = []
    told_to_reconnect = 0
    sending = True

    async with aiohttp.ClientSession() as session:

        async def readiness() -> int:
            try:
                async with session.get(f"{base}/readyz") as response:
                    return response.status
            except aiohttp.ClientConnectionError:
                return 0

        async def ready() -> bool:
            return await readiness() == 200

        async def not_ready() -> bool:
            return await readiness() == 503

        async def client(number: int) -> None:
            nonlocal told_to_reconnect
            token = hs256_token(hs256_secret, f"user-{number}")
            while sending:
                async with session.post(
                    f"{base}/v1/sign-in", headers=bearer(token)
                ) as response:
                    statuses.append(response.status)
                    if response.headers.get("Connection") == "close":
                        told_to_reconnect += 1

        async def enough_load() -> bool:
            return len(statuses) >= 200

        await eventually(ready, attempts=500)
        clients = [asyncio.create_task(client(n)) for n in range(_CONCURRENT_CLIENTS)]
        await eventually(enough_load, attempts=500)

        process.send_signal(signal.SIGTERM)
        # The load balancer stops sending once readiness fails.
        await eventually(not_ready, attempts=500)
        sending = False
        await asyncio.gather(*clients)

    exit_status = await asyncio.wait_for(process.wait(), timeout=60)
    log.close()

    assert exit_status == 0
    assert len(statuses) >= 200
    assert set(statuses) == {200}
    assert told_to_reconnect > 0
    events = [
        json.loads(line)["event"]
        for line in (tmp_path / "service.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert events.index("draining") < events.index("stopping") < events.index("stopped")
