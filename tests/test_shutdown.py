"""Graceful shutdown of a real `python -m service` process under load."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.test_utils import unused_port

from tests.support import (
    APP_INSTANCE_ARN,
    AUDIENCE,
    ISSUER,
    ROLE_ARN,
    bearer,
    eventually,
    hs256_token,
)

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import Standin

_CONCURRENT_CLIENTS = 16


def _service_environment(standin: Standin, secret: str, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "USER_ROLE_ARN": ROLE_ARN,
        "CHIME_APP_INSTANCE_ARN": APP_INSTANCE_ARN,
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_SECRET": secret,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SHUTDOWN_DRAIN_SECONDS": "1",
        "LOG_FORMAT": "json",
        "AWS_ENDPOINT_URL": standin.url,
        "AWS_ACCESS_KEY_ID": "tests-standin",
        "AWS_SECRET_ACCESS_KEY": "tests-standin-not-a-secret",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


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
        env=_service_environment(standin, hs256_secret, port),
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
