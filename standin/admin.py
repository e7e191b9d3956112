"""JSON endpoints under `/_standin/` for tests and load tests in other processes.

In-process tests read `StandinState` directly; a load generator or a service
started as a subprocess cannot, so the same records and controls are served
here. They need no signature: they are not AWS APIs, and the stand-in only
ever listens where its owner runs it.

    GET    /_standin/stats                  call counts, in-flight and peak
    POST   /_standin/reset                  forget calls, sessions and users
    GET    /_standin/sessions/{AccessKeyId} what an access key was minted for
    GET    /_standin/faults                 the fault plan and its seed
    PUT    /_standin/faults                 replace it: {"faults": {...}, "seed": n}
    PUT    /_standin/faults/{API}           set one API's spec
    DELETE /_standin/faults                 remove every fault
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

from aiohttp import web

from standin.faults import FaultError, FaultSpec, specs_from_json, validate_api
from standin.keys import STATE_KEY

if TYPE_CHECKING:
    from standin.jsontypes import JsonObject, JsonValue

PREFIX: Final = "/_standin"


def add_admin_routes(app: web.Application) -> None:
    """Register the admin endpoints."""
    app.router.add_get(f"{PREFIX}/stats", _stats)
    app.router.add_post(f"{PREFIX}/reset", _reset)
    app.router.add_get(f"{PREFIX}/sessions/{{access_key_id}}", _session)
    app.router.add_get(f"{PREFIX}/faults", _faults)
    app.router.add_put(f"{PREFIX}/faults", _replace_faults)
    app.router.add_delete(f"{PREFIX}/faults", _clear_faults)
    app.router.add_put(f"{PREFIX}/faults/{{api}}", _set_fault)


async def _stats(request: web.Request) -> web.Response:
    """Return call counts per API and outcome, in-flight calls and their peak."""
    return web.json_response(request.app[STATE_KEY].stats_json())


async def _reset(request: web.Request) -> web.Response:
    """Forget recorded calls, sessions and users; return the emptied stats."""
    state = request.app[STATE_KEY]

    state.reset()

    return web.json_response(state.stats_json())


async def _session(request: web.Request) -> web.Response:
    """Return the RoleSessionName, tags and SourceIdentity of an issued key."""
    access_key_id = request.match_info["access_key_id"]
    session = request.app[STATE_KEY].session(access_key_id)

    if session is None:
        return _problem(404, f"no session was issued for access key {access_key_id}")

    return web.json_response(session.to_json())


async def _faults(request: web.Request) -> web.Response:
    """Return the fault plan."""
    return web.json_response(request.app[STATE_KEY].faults.to_json())


async def _replace_faults(request: web.Request) -> web.Response:
    """Replace the whole plan, and reseed the random source if a seed is given."""
    injector = request.app[STATE_KEY].faults

    try:
        document = await _json_object(request)
        specs = specs_from_json(document.get("faults", {}))
        seed = _seed(document)
    except FaultError as error:
        return _problem(400, str(error))

    injector.replace(specs)
    if "seed" in document:
        injector.reseed(seed)

    return web.json_response(injector.to_json())


async def _set_fault(request: web.Request) -> web.Response:
    """Set one API's spec; other APIs keep theirs."""
    injector = request.app[STATE_KEY].faults

    try:
        api = validate_api(request.match_info["api"])
        spec = FaultSpec.from_json(await _json_object(request))
    except FaultError as error:
        return _problem(400, str(error))

    injector.set(api, spec)

    return web.json_response(injector.to_json())


async def _clear_faults(request: web.Request) -> web.Response:
    """Remove every fault."""
    injector = request.app[STATE_KEY].faults

    injector.clear()

    return web.json_response(injector.to_json())


async def _json_object(request: web.Request) -> JsonObject:
    """Read the request body as a JSON object."""
    try:
        document: JsonValue = json.loads(await request.read() or b"{}")
    except ValueError as error:
        raise FaultError(f"the body is not valid JSON: {error}") from None

    if not isinstance(document, dict):
        raise FaultError("the body must be a JSON object")

    return document


def _seed(document: JsonObject) -> int | None:
    """Read the optional integer seed."""
    seed = document.get("seed")

    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise FaultError(f"seed must be an integer or null, got {seed!r}")

    return seed


def _problem(status: int, message: str) -> web.Response:
    """Answer an admin request that cannot be carried out."""
    return web.json_response({"error": message}, status=status)
