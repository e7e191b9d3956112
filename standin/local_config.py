"""The local setup's settings file and where it keeps generated keys.

`config/local.env` holds the settings `make run` starts the service with; the
signing key of the local identity provider is generated into `.local/` on first use
and never committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["KEY_DIRECTORY", "LOCAL_ENV_FILE", "read_env_file"]

REPOSITORY: Final = Path(__file__).resolve().parent.parent
LOCAL_ENV_FILE: Final = REPOSITORY / "config" / "local.env"
KEY_DIRECTORY: Final = REPOSITORY / ".local"


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
