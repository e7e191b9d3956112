"""The local setup's settings file, what may override it, and where keys are kept.

`config/local.env` holds the settings `make run` starts the service with. Two values
may be overridden from the environment, so that two local setups can share a
machine: `PORT` (the service's) and `STANDIN_PORT` (the stand-in's, which also moves
the local identity provider's issuer and the AWS endpoint with it). The signing key
of the local identity provider is generated into `.local/` on first use and never
committed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "KEY_DIRECTORY",
    "LOCAL_ENV_FILE",
    "OVERRIDABLE",
    "inherited_environment",
    "local_settings",
    "read_env_file",
]

REPOSITORY: Final = Path(__file__).resolve().parent.parent
LOCAL_ENV_FILE: Final = REPOSITORY / "config" / "local.env"
KEY_DIRECTORY: Final = REPOSITORY / ".local"
OVERRIDABLE: Final = ("PORT", "STANDIN_PORT")

# A local service talks to the stand-in on loopback only: the caller's AWS
# settings (real credentials among them) and proxies never reach it.
_NOT_INHERITED_PREFIXES: Final = ("AWS_",)
_NOT_INHERITED_NAMES: Final = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
)


def read_env_file(path: Path) -> dict[str, str]:
    """Read `NAME=value` lines; blank lines and `#` comments are skipped."""
    settings: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue

        name, separator, value = stripped.partition("=")
        if not separator:
            raise ValueError(f"{path}:{number}: expected NAME=value")
        settings[name.strip()] = value.strip()
    return settings


def local_settings(
    path: Path = LOCAL_ENV_FILE, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """Read the local settings with `PORT` and `STANDIN_PORT` overrides applied."""
    settings = read_env_file(path)
    if environ.get("PORT"):
        settings["PORT"] = environ["PORT"]

    new_port = environ.get("STANDIN_PORT")
    if new_port and new_port != settings["STANDIN_PORT"]:
        host = settings["STANDIN_HOST"]
        old = f"http://{host}:{settings['STANDIN_PORT']}"
        new = f"http://{host}:{new_port}"
        settings = {name: value.replace(old, new) for name, value in settings.items()}
        settings["STANDIN_PORT"] = new_port
    return settings


def inherited_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Return what a local service process keeps of the caller's environment."""
    return {
        name: value
        for name, value in environ.items()
        if not name.startswith(_NOT_INHERITED_PREFIXES)
        and name not in _NOT_INHERITED_NAMES
    }
