"""Laminar's benchmark harness: `python -m bench run | quick | soak`.

Every figure comes from real node processes started on loopback, on a fresh cluster per cell, with
each benchmark client in its own process. See docs/benchmarks.md for what is measured and how.
"""
