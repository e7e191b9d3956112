"""Typed keys for what the stand-in keeps on its `web.Application`."""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from standin.state import StandinState

STATE_KEY: Final = web.AppKey("standin_state", StandinState)
"""The state every handler reads and records into."""

STOPPING_KEY: Final = web.AppKey("standin_stopping", asyncio.Event)
"""Set when the app shuts down, so hung calls let go and shutdown is prompt."""
