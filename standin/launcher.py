"""`make run`: the service on loopback with everything it needs, and no AWS account.

One process serves the AWS stand-in and the local identity provider's JWKS on one
loopback port; the service itself runs as it would in production, `python -m
service` in a child process, with the settings of `config/local.env`. A `PORT` set
in the environment overrides the service's port; nothing else from the caller's
environment reaches the service's AWS configuration, so real AWS credentials in a
shell are never sent to the stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Final

from aiohttp import web

from standin.app import create_standin_app
from standin.identity_provider import LocalIdentityProvider
from standin.local_config import KEY_DIRECTORY, LOCAL_ENV_FILE, read_env_file
from standin.state import StandinState

JWKS_PATH: Final = "/local-idp/jwks.json"
_CHILD_STOP_SECONDS: Final = 15.0

# The caller's AWS variables never reach the child: it talks to the stand-in only.
_DROPPED_PREFIXES: Final = ("AWS_",)


def service_environment(settings: dict[str, str]) -> dict[str, str]:
    """Build the child's environment: the caller's, minus AWS, plus local settings."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_DROPPED_PREFIXES)
    }
    overrides = {"PORT": os.environ["PORT"]} if os.environ.get("PORT") else {}
    return {
        **kept,
        **settings,
        **overrides,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


async def run() -> int:
    """Serve the stand-in, run the service until it stops or we are told to stop."""
    settings = read_env_file(LOCAL_ENV_FILE)
    provider = LocalIdentityProvider.from_key_directory(
        KEY_DIRECTORY, issuer=settings["JWT_ISSUER"]
    )
    state = StandinState(
        app_instance_arns=frozenset({settings["CHIME_APP_INSTANCE_ARN"]})
    )
    app = create_standin_app(state)
    app.router.add_get(JWKS_PATH, lambda _request: _jwks(provider))

    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(
        runner, settings["STANDIN_HOST"], int(settings["STANDIN_PORT"])
    ).start()

    environment = service_environment(settings)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", env=environment
    )
    _print_instructions(environment)

    try:
        return await _wait_for(child)
    finally:
        await runner.cleanup()


async def _jwks(provider: LocalIdentityProvider) -> web.Response:
    return web.json_response(
        provider.jwks(), headers={"Cache-Control": "public, max-age=300"}
    )


async def _wait_for(child: asyncio.subprocess.Process) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    stopping = asyncio.create_task(stop.wait())
    exiting = asyncio.create_task(child.wait())
    await asyncio.wait({stopping, exiting}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()

    if child.returncode is None:
        child.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(_CHILD_STOP_SECONDS):
                await child.wait()
        except TimeoutError:
            child.kill()
            await child.wait()

    with contextlib.suppress(asyncio.CancelledError):
        await exiting
    return 0 if stop.is_set() else child.returncode or 0


def _print_instructions(environment: dict[str, str]) -> None:
    base = f"http://{environment['HOST']}:{environment['PORT']}"
    sys.stdout.write(
        "\nThe sign-in service is starting on "
        f"{base} (local AWS stand-in and identity provider).\n"
        "In another terminal:\n"
        '  TOKEN=$(make -s token SUB=alice NAME="Alice Example" | tail -n 1)\n'
        f'  curl -s -X POST -H "Authorization: Bearer $TOKEN" {base}/v1/sign-in\n'
        "Stop with Ctrl-C.\n\n"
    )
    sys.stdout.flush()


def main() -> int:
    """Run until interrupted; return the exit status."""
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
