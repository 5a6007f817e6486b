"""The open-loop generator's pure parts: what a message carries, and lost messages counted as infinitely late."""

from __future__ import annotations

import math

from bench.etcd_compare import Run, fill_open_loop
from bench.open_loop import OpenLoopReport, _finish, decode_value, encode_value
from bench.workloads import VALUE_BYTES


def test_value_carries_due_time_sender_and_index_in_32_bytes() -> None:
    """A message's value round-trips its due time, sender and index, at the plain workload's value size."""
    value = encode_value(12345.678901, 3, 99_999)
    assert len(value) == VALUE_BYTES
    assert decode_value(value) == (12345.678901, 3, 99_999)


def test_lost_messages_stay_in_the_percentiles_as_infinitely_late() -> None:
    """2 of 100 messages never answered: p99 is unreachable (None), p50 is the answered median, lost says 2."""
    sender = OpenLoopReport(0, latencies_s=[0.001 * (i + 1) for i in range(98)])
    _finish(sender, 100)
    assert sender.lost == 2 and math.isinf(sender.latencies_s[-1])
    run = Run(0, "laminar", "open_loop", 1, 100, offered_per_s=100.0)
    fill_open_loop(run, [sender], {1: 0.01})
    assert run.lost == 2
    assert run.latency_ms_p50 == 50.0
    assert run.latency_ms_p99 is None and run.latency_ms_max is None
    assert run.delivery_ms_p50 is None  # no listener report
