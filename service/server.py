"""Serving the app, and shutting down without failing a request.

On SIGTERM (Kubernetes' signal to stop) the service first reports itself not ready,
keeps serving for `SHUTDOWN_DRAIN_SECONDS` while load balancers notice and stop
sending, then closes its listener, lets in-flight sign-ins finish (each is bounded
by its deadline), closes its AWS clients and exits 0. A second signal cuts the
drain short.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web

from service.app import create_app
from service.app_state import LIFECYCLE

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = ["serve"]

logger = structlog.get_logger(__name__)

# Past the sign-in deadline, an in-flight request has had its answer already.
_IN_FLIGHT_MARGIN_SECONDS: Final = 2.0


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=settings.sign_in_deadline_seconds + _IN_FLIGHT_MARGIN_SECONDS,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        logger.info("listening", host=settings.host, port=settings.port)

        signals = _signals()
        await signals.get()

        app[LIFECYCLE].shutting_down = True
        logger.info("draining", seconds=settings.shutdown_drain_seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.shutdown_drain_seconds):
                await signals.get()
    finally:
        logger.info("stopping")
        await runner.cleanup()
        logger.info("stopped")


def _signals() -> asyncio.Queue[int]:
    received: asyncio.Queue[int] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, received.put_nowait, number)
    return received
