"""Loaded by every Python process whose PYTHONPATH starts with this directory (see bench/commit_trace.py):
with LAMINAR_TRACE_DIR set, it installs the commit-path tracer before the process runs anything else."""

import os

if os.environ.get("LAMINAR_TRACE_DIR"):
    from bench import _trace_hook

    _trace_hook.install(os.environ["LAMINAR_TRACE_DIR"])
