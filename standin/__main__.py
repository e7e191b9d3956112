"""Let `python -m standin` run the stand-in."""

from __future__ import annotations

import sys

from standin.cli import main

sys.exit(main())
