"""A short run of the cost model's calibration fuzzer (bench/sandbox_fuzz.py; `make fuzz-sandbox` runs it all)."""

from __future__ import annotations

from bench.sandbox_fuzz import CALL_MS_MAX, OPERATIONS, STEP_US_MAX, run

# Operations whose charge depends most on the cost model's formulas (searches, quadratic conversions, merges, nested
# data), each at its fixed adversarial sizes. The bounds are asserted with a margin: the machine is shared, and a
# hang guard is what this must be; the long run prints the real figures.
SHORT = [
    "str.rfind",
    "str in (search)",
    "str.strip(chars)",
    "str.join",
    "% format parens",
    "str(int)",
    "int(str)",
    "json.loads deep",
    "dict |",
    "dict(dict)",
    "nested ==",
    "repr(list)",
]
MARGIN = 3


def test_no_operation_costs_more_than_its_charge() -> None:
    """Each operation's CPU time per charged step, and each call's CPU time, stay within the fuzzer's bounds."""
    assert set(SHORT) <= set(OPERATIONS)
    worst = run(SHORT, extra=0, seed=1, memory=False, out=False)
    over = [
        (name, round(s.step_us, 3), round(s.call_ms, 1), s.n, s.m)
        for name, s in worst.items()
        if s.step_us > MARGIN * STEP_US_MAX or s.call_ms > MARGIN * CALL_MS_MAX
    ]
    assert not over, over
