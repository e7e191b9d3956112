"""Assemble the stand-in: STS, Chime SDK Identity and the admin endpoints on one app.

One app serves both services because their routes do not overlap (STS posts
to `/`, Chime uses `/app-instance-users...`), so a single `AWS_ENDPOINT_URL`
points an unmodified aiobotocore at both.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from aiohttp import web

from standin.admin import PREFIX, add_admin_routes
from standin.chime import add_chime_routes
from standin.keys import STATE_KEY, STOPPING_KEY
from standin.restjson import CONTENT_TYPE, ERROR_TYPE_HEADER
from standin.state import StandinState
from standin.sts import handle_sts

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler


def create_standin_app(state: StandinState | None = None) -> web.Application:
    """Build the stand-in's app around `state` (a fresh one when omitted).

    Keep a reference to the state to read its records and set its faults
    in-process; the app reaches it through `STATE_KEY`.
    """
    app = web.Application(middlewares=[_unknown_operations])
    app[STATE_KEY] = state if state is not None else StandinState()
    app[STOPPING_KEY] = asyncio.Event()

    app.router.add_route("*", "/", handle_sts)
    add_chime_routes(app)
    add_admin_routes(app)
    app.on_shutdown.append(_release_hung_calls)

    return app


@web.middleware
async def _unknown_operations(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Answer paths and methods no route serves in the rest-json error format.

    Without this, aiohttp's plain-text 404/405 would reach botocore as an
    error without a code. A middleware rather than a catch-all route, so
    routes an embedding program adds after the factory still match.
    """
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        if request.path.startswith(PREFIX):
            return web.json_response(
                {"error": f"no admin endpoint {request.method} {request.path}"},
                status=404,
            )

        body = {
            "Code": "UnknownOperation",
            "Message": (
                f"The stand-in serves no operation at {request.method} {request.path}"
            ),
        }
        return web.Response(
            status=404,
            text=json.dumps(body),
            content_type=CONTENT_TYPE,
            headers={ERROR_TYPE_HEADER: "UnknownOperationException"},
        )


async def _release_hung_calls(app: web.Application) -> None:
    """Let hung calls go when the app stops, so shutdown does not wait on them."""
    app[STOPPING_KEY].set()
