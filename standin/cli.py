"""Run the stand-in as a process: `python -m standin --port 4566`.

It listens on loopback unless told otherwise: the stand-in accepts any
signature and hands out credentials freely, so it must never face a network.
With `--port 0` the system picks a free port; the first line on stdout
always names the address actually bound, for scripts to read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import TYPE_CHECKING, Final

from aiohttp import web

from standin.app import create_standin_app
from standin.faults import FAULTABLE_APIS, FaultError, FaultInjector, merge_options
from standin.state import DEFAULT_ACCOUNT_ID, StandinState

if TYPE_CHECKING:
    from collections.abc import Sequence

_LOOPBACK: Final = "127.0.0.1"
_SHUTDOWN_TIMEOUT_SECONDS: Final = 5.0
ANNOUNCEMENT: Final = "standin listening on "

_FAULT_HELP: Final = (
    "API:key=value[,key=value...] with API one of "
    f"{', '.join(FAULTABLE_APIS)} or * for all; keys: "
    "latency=fixed:S|uniform:LOW:HIGH|exponential:MEAN (seconds), and the shares "
    "throttle, server_error, hang, drop (0..1, summing to at most 1). Repeatable; "
    "a later option for the same API wins. "
    "Example: AssumeRole:latency=uniform:0.01:0.05,throttle=0.1"
)


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m standin",
        description="Local stand-in for AWS STS and Chime SDK Identity. "
        "For local runs and tests only, never production.",
    )
    parser.add_argument(
        "--host", default=_LOOPBACK, help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to bind; 0 picks a free one"
    )
    parser.add_argument(
        "--app-instance-arn",
        action="append",
        default=None,
        metavar="ARN",
        help="an app instance that exists (repeatable); default: any well-formed ARN",
    )
    parser.add_argument(
        "--role-arn",
        action="append",
        default=None,
        metavar="ARN",
        help="a role AssumeRole may assume (repeatable); default: any role ARN",
    )
    parser.add_argument(
        "--account-id",
        default=DEFAULT_ACCOUNT_ID,
        help="account of the caller GetCallerIdentity reports (default: %(default)s)",
    )
    parser.add_argument(
        "--fault", action="append", default=[], metavar="SPEC", help=_FAULT_HELP
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the fault draws"
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="logging level (default: %(default)s)"
    )
    return parser


def state_from_arguments(arguments: argparse.Namespace) -> StandinState:
    """Build the initial state the command line describes."""
    faults = FaultInjector(seed=arguments.seed)
    faults.replace(merge_options(arguments.fault))

    return StandinState(
        account_id=arguments.account_id,
        app_instance_arns=_optional_set(arguments.app_instance_arn),
        role_arns=_optional_set(arguments.role_arn),
        faults=faults,
    )


async def serve(state: StandinState, host: str, port: int) -> None:
    """Serve the stand-in until SIGINT or SIGTERM."""
    await serve_until_signalled(create_standin_app(state), host, port)


async def serve_until_signalled(
    app: web.Application, host: str, port: int, *, announce: str = ANNOUNCEMENT
) -> None:
    """Serve `app` until SIGINT or SIGTERM, first printing the bound address.

    The line on stdout (`announce` and the URL) is what scripts wait for; the
    local load test and the benchmark's peers serve their apps this way too.
    """
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS
    )
    await runner.setup()

    site = web.TCPSite(runner, host, port)
    await site.start()

    bound_host, bound_port = runner.addresses[0][:2]
    display_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    sys.stdout.write(f"{announce}http://{display_host}:{bound_port}\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and serve; return the process exit status."""
    parser = build_parser()
    arguments = parser.parse_args(argv)

    try:
        state = state_from_arguments(arguments)
    except FaultError as error:
        parser.error(str(error))

    logging.basicConfig(level=arguments.log_level.upper())

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(state, arguments.host, arguments.port))

    return 0


def _optional_set(values: list[str] | None) -> frozenset[str] | None:
    """Turn a repeatable option into a set, or None when it was never given."""
    return frozenset(values) if values else None
