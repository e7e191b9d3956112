"""The AWS stand-in and the local identity provider's JWKS, served by one process.

`python -m loadtest.standin_server --port 0` takes the stand-in's own options
(`--fault`, `--seed`, `--app-instance-arn`, ...) and also serves the public key of
the local identity provider, so the service under load fetches its keys the way
it would from a real provider. The first line on stdout names the bound address.
Like the stand-in itself, it listens on loopback unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiohttp import web

from standin.app import create_standin_app
from standin.cli import build_parser, serve_until_signalled, state_from_arguments
from standin.faults import FaultError
from standin.identity_provider import LocalIdentityProvider
from standin.local_config import KEY_DIRECTORY

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from standin.state import StandinState

JWKS_PATH: Final = "/local-idp/jwks.json"
"""Where the JWKS is served; the launcher of `make run` serves it there too."""

_SHUTDOWN_TIMEOUT_SECONDS: Final = 5.0


def build_server_parser() -> argparse.ArgumentParser:
    """Describe the stand-in's command line plus where the signing key lives."""
    parser = build_parser()
    parser.prog = "python -m loadtest.standin_server"
    parser.add_argument(
        "--key-directory",
        type=Path,
        default=KEY_DIRECTORY,
        help="where the local identity provider keeps its key (default: .local/)",
    )
    return parser


async def serve(
    state: StandinState, provider: LocalIdentityProvider, host: str, port: int
) -> None:
    """Serve until SIGINT or SIGTERM, announcing the bound address first."""
    app = create_standin_app(state)
    jwks = provider.jwks()

    async def publish_keys(_request: web.Request) -> web.Response:
        return web.json_response(jwks)

    app.router.add_get(JWKS_PATH, publish_keys)
    await serve_until_signalled(app, host, port)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve; return the exit status."""
    parser = build_server_parser()
    arguments = parser.parse_args(argv)

    try:
        state = state_from_arguments(arguments)
    except FaultError as error:
        parser.error(str(error))

    # The issuer is the service's concern; the JWKS does not name it.
    provider = LocalIdentityProvider.from_key_directory(
        arguments.key_directory, issuer=""
    )
    logging.basicConfig(level=arguments.log_level.upper())

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(state, provider, arguments.host, arguments.port))

    return 0


if __name__ == "__main__":
    sys.exit(main())
