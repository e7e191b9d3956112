"""Misbehave at the connection level: answer late, never, or hang up.

These are the failures an HTTP client meets below the API: a call that never
gets an answer (the client's read timeout must fire) and a connection closed
without any response (the client sees a connection error). Neither can be
expressed as an HTTP response, so they act on the request's transport.
Every wait here ends when the app stops, so shutdown never waits on a fault.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from aiohttp import web

_POLL_SECONDS: Final = 0.05
"""How often a hung call checks whether its client has given up.

aiohttp does not cancel a handler when its client disconnects, so the hang
polls the transport; 50 ms frees the slot promptly at negligible cost.
"""


async def hang_until_abandoned(request: web.Request, stopping: asyncio.Event) -> None:
    """Wait without answering until the client disconnects or the app stops."""
    while not _is_disconnected(request) and not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=_POLL_SECONDS)


async def pause(seconds: float, stopping: asyncio.Event) -> None:
    """Wait out an injected latency, cut short if the app stops meanwhile."""
    if seconds <= 0:
        return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)


def drop_connection(request: web.Request) -> web.Response:
    """Close the connection with nothing sent; the returned response is never written.

    aiohttp needs a response object from the handler, but with the transport
    closed it has nowhere to write it, and the client reads end-of-stream.
    """
    transport = request.transport

    if transport is not None:
        transport.close()

    return web.Response(status=499, reason="Connection Dropped By Stand-in")


def _is_disconnected(request: web.Request) -> bool:
    """Tell whether the client has closed the connection."""
    transport = request.transport

    return transport is None or transport.is_closing()
