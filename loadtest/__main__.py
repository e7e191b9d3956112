"""Let `python -m loadtest` run one scenario against the local setup."""

from __future__ import annotations

import sys

from loadtest.runner import main

sys.exit(main())
