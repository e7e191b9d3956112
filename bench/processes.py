"""What a server process has used, read from /proc: CPU time and resident memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

__all__ = ["cpu_seconds", "resident_bytes"]

_TICKS_PER_SECOND: Final = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; the fields after its ")" do not.
    fields = stat.rpartition(")")[2].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])

    return (user_ticks + system_ticks) / _TICKS_PER_SECOND


def resident_bytes(pid: int) -> int:
    """Return the process's resident set size now."""
    resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])

    return resident_pages * _PAGE_BYTES
