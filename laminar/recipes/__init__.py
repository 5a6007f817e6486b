"""Client-side patterns for the example topic programs in programs/ (read them, copy them)."""
