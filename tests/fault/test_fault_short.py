"""The short, seeded fault run that `make test` includes (`make torture` runs it for longer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from jepsen import Run

FAULT_SEED = int(os.environ.get("LAMINAR_FAULT_SEED", "20261121"))
FAULT_SECONDS = float(os.environ.get("LAMINAR_FAULT_SECONDS", "45"))
# auto: each node in its own network namespace where that works (root), else the in-process hook.
FAULT_NETWORK = os.environ.get("LAMINAR_FAULT_NETWORK", "auto")


def test_no_anomalies_under_crashes_pauses_and_partitions(tmp_path: Path) -> None:
    """Append, bank and register workloads through seeded kills, pauses, partitions and delays: the
    checker finds no lost, duplicated or diverging data (replay with LAMINAR_FAULT_SEED; choose how
    the network is faulted with LAMINAR_FAULT_NETWORK=auto|netns|hook)."""
    print(f"fault run: seed {FAULT_SEED}, {FAULT_SECONDS:.0f} s, {FAULT_NETWORK} network, files in {tmp_path}")
    summary = Run(seed=FAULT_SEED, seconds=FAULT_SECONDS, root=str(tmp_path), network=FAULT_NETWORK).execute()
    print(summary.as_text())
    assert FAULT_NETWORK in ("auto", summary.network), f"asked for {FAULT_NETWORK}, ran {summary.network}"
    assert sum(summary.faults.values()) > 0, "the nemesis injected faults"
    assert summary.operations["append:ok"] > 0 and summary.operations["transfer:ok"] > 0
    assert summary.anomalies == [], summary.as_text()
