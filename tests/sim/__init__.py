"""A deterministic simulator for Laminar's replicated log (see tests/sim/README.md)."""
