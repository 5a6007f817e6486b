"""`python -m bench run | quick | soak`: see `python -m bench --help` and docs/benchmarks.md."""

from __future__ import annotations

import sys

from bench.cli import main

if __name__ == "__main__":  # spawned client processes import this module too: they must not run it
    sys.exit(main())
