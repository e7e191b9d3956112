"""The OpenAPI document, and the live service held to it by schemathesis."""

from __future__ import annotations

import asyncio
import re
import sys
from typing import TYPE_CHECKING

from service.app import create_app
from service.openapi import openapi_document
from tests.support import bearer, hs256_token, settings_for

if TYPE_CHECKING:
    from tests.conftest import AiohttpServer, Standin


def test_openapi_document_covers_every_route(hs256_secret: str) -> None:
    """Each route the app serves is described, and nothing else is."""
    app = create_app(settings_for(jwt_secret=hs256_secret))
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method not in {"HEAD", "OPTIONS"}
    }

    documented = {
        (path, method)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }

    assert served == documented


async def test_openapi_live_service_conforms_under_schemathesis(
    aiohttp_server: AiohttpServer, standin: Standin, hs256_secret: str
) -> None:
    """Schemathesis finds no 500 and no answer that contradicts the document."""
    del standin
    app = create_app(settings_for(jwt_secret=hs256_secret))
    server = await aiohttp_server(app)
    token = hs256_token(hs256_secret, "schemathesis", exp=2**31 - 1)
    authorization = bearer(token)["Authorization"]

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(server.make_url("/openapi.json")),
        "--checks",
        "all",
        "--header",
        f"Authorization: {authorization}",
        "--max-time",
        "15",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    report = output.decode(errors="replace")

    assert process.returncode == 0, report
    tested = re.search(r"Tested: (\d+)", report)
    assert tested is not None, report
    assert int(tested[1]) >= 4
    assert "No issues found" in report
