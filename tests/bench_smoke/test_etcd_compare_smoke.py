"""The etcd comparison end to end, tiny: real etcd members beside real Laminar nodes, real result files.

Marked `bench`: it needs etcd (installed by the harness with apt-get when missing), so `make test`
leaves it out. Run it with `pytest -m bench tests/bench_smoke/test_etcd_compare_smoke.py`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bench.etcd_compare import ComparePlan, run_comparison


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_one_tiny_round_measures_both_systems_and_writes_the_report(tmp_path: Path) -> None:
    """One round (2 clients x 100 writes, 20 sequential) and a 1 s open loop: every run ok on both systems, ratios."""
    plan = ComparePlan(out_dir=str(tmp_path), name="smoke", command="pytest", rounds=1, clients=2, messages=100,
                       sequential=20, txn_batch=10,
                       open_loop_fractions=(0.05,), open_loop_seconds=1.0)  # fmt: skip
    runs = run_comparison(plan)
    assert [r.status for r in runs if not r.ok] == []
    done = {(r.system, r.workload) for r in runs}
    for system in ("laminar", "etcd"):
        assert {(system, "pipelined"), (system, "read_back"), (system, "sequential")} <= done
    assert ("etcd", "pipelined_txn") in done
    open_loop = {r.system: r for r in runs if r.workload == "open_loop"}
    assert set(open_loop) == {"laminar", "etcd"}
    assert open_loop["laminar"].delivery_ms_p50 is not None  # the listener saw the offered writes
    with open(tmp_path / "smoke.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(runs)
    assert all(float(r["us_per_message"]) > 0 for r in rows if r["workload"] != "open_loop")
    report = (tmp_path / "smoke.md").read_text(encoding="utf-8")
    assert "sequential: p50 ms" in report and "What differs" in report and "open loop" in report
