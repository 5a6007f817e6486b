"""Loaded by every Python process whose PYTHONPATH starts with this directory (see bench/commit_trace.py
and bench/snapshot_stall.py): with LAMINAR_TRACE_DIR set, it installs the commit-path tracer, with
LAMINAR_STALL_DIR the stall timings, before the process runs anything else."""

import os

if os.environ.get("LAMINAR_TRACE_DIR"):
    from bench import _trace_hook

    _trace_hook.install(os.environ["LAMINAR_TRACE_DIR"])

if os.environ.get("LAMINAR_STALL_DIR"):
    from bench import _stall_hook

    _stall_hook.install(os.environ["LAMINAR_STALL_DIR"])
