"""`make run`: the service on loopback with everything it needs, and no AWS account.

One process serves the AWS stand-in and the local identity provider's JWKS on one
loopback port; the service itself runs as it would in production, `python -m
service` in a child process, with the settings of `config/local.env`. `PORT` and
`STANDIN_PORT` set in the environment override the ports there; nothing else from
the caller's environment reaches the service's AWS configuration, so real AWS
credentials in a shell are never sent to the stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from typing import Final

import aiohttp
from aiohttp import web

from standin.app import create_standin_app
from standin.identity_provider import LocalIdentityProvider
from standin.local_config import KEY_DIRECTORY, inherited_environment, local_settings
from standin.state import StandinState

JWKS_PATH: Final = "/local-idp/jwks.json"
_CHILD_STOP_SECONDS: Final = 15.0
_READY_ATTEMPTS: Final = 300
_READY_PAUSE_SECONDS: Final = 0.1
_PR_SET_PDEATHSIG: Final = 1


def service_environment(settings: dict[str, str]) -> dict[str, str]:
    """Build the child's environment: what it inherits, plus the local settings."""
    return {
        **inherited_environment(),
        **settings,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


async def run() -> int:
    """Serve the stand-in, run the service until it stops or we are told to stop."""
    settings = local_settings()
    provider = LocalIdentityProvider.from_key_directory(
        KEY_DIRECTORY, issuer=settings["JWT_ISSUER"]
    )
    state = StandinState(
        app_instance_arns=frozenset({settings["CHIME_APP_INSTANCE_ARN"]})
    )
    app = create_standin_app(state)
    app.router.add_get(JWKS_PATH, lambda _request: _jwks(provider))

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(
            runner, settings["STANDIN_HOST"], int(settings["STANDIN_PORT"])
        ).start()
    except OSError as error:
        await runner.cleanup()
        sys.stderr.write(
            f"The AWS stand-in cannot listen on port {settings['STANDIN_PORT']}: "
            f"{error.strerror}. Is another `make run` running? Choose other ports "
            "with STANDIN_PORT=... PORT=... make run.\n"
        )
        return 1

    try:
        return await _run_service(service_environment(settings))
    finally:
        await runner.cleanup()


async def _run_service(environment: dict[str, str]) -> int:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        env=environment,
        preexec_fn=_die_with_parent,
    )
    base = f"http://{environment['HOST']}:{environment['PORT']}"
    if await _ready(base, child):
        _print_instructions(base)
    return await _wait_for(child)


async def _ready(base: str, child: asyncio.subprocess.Process) -> bool:
    """Wait until the service answers /readyz, or has exited."""
    async with aiohttp.ClientSession() as session:
        for _ in range(_READY_ATTEMPTS):
            if child.returncode is not None:
                return False
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return True
            await asyncio.sleep(_READY_PAUSE_SECONDS)
    return False


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


def _die_with_parent() -> None:
    """In the child, before exec: have Linux send SIGTERM if the launcher dies."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _print_instructions(base: str) -> None:
    # A token must name the issuer this setup uses, which moves with the stand-in.
    moved = os.environ.get("STANDIN_PORT")
    prefix = f"STANDIN_PORT={moved} " if moved else ""
    sys.stdout.write(
        f"\nThe sign-in service is ready on {base} "
        "(local AWS stand-in and identity provider).\n"
        "In another terminal:\n"
        f'  TOKEN=$({prefix}make -s token SUB=alice NAME="Alice Example" '
        "| tail -n 1)\n"
        f'  curl -s -X POST -H "Authorization: Bearer $TOKEN" {base}/v1/sign-in\n'
        "Stop with Ctrl-C.\n\n"
    )
    sys.stdout.flush()


def main() -> int:
    """Run until interrupted; return the exit status."""
    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
