"""`python -m service`: run the sign-in service from the environment."""

from __future__ import annotations

import asyncio
import os
import sys

from service.logs import configure_logging
from service.server import serve
from service.settings import Settings, SettingsError


def main() -> int:
    """Start the server; return the process's exit status."""
    try:
        settings = Settings.from_environ(os.environ)
    except SettingsError as error:
        print(error, file=sys.stderr)  # noqa: T201 -- before logging exists
        return 2

    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except SettingsError as error:
        # Found at startup, by asking AWS: still the operator's to fix.
        print(error, file=sys.stderr)  # noqa: T201 -- the same message as above
        return 2
    except OSError as error:
        # Most often the port is taken; a traceback would bury that.
        print(  # noqa: T201 -- logging may not reach a person here
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
