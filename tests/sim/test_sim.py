"""The deterministic simulator: a short batch for `make test`; `make sim SEEDS=N` runs many more."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from tests.sim._sim import Result, SimConfig, run_seed
from tests.sim._wiring import REVERTIBLE_FIXES

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# The batch of `make test`: a few seeds of each cluster size, short fault phases, a bounded load.
BATCH_SEEDS = (1, 2, 3, 4, 5, 6)
BATCH_FAULT_S = 20.0
BATCH_PROPOSALS_PER_S = 10.0


def _run(tmp_path: object, seed: int, **config: object) -> Result:
    return run_seed(seed, SimConfig(**config), str(tmp_path))  # type: ignore[arg-type]


@pytest.mark.parametrize("nodes", [3, 5])
def test_engines_elect_a_leader_and_commit_under_the_simulated_clock(tmp_path: object, nodes: int) -> None:
    """With no faults, real engines in one thread elect one leader, then commit and apply every proposal."""
    result = _run(tmp_path, 1, nodes=nodes, faults=False, fault_seconds=10.0)
    assert result.ok, result.report()
    assert result.acknowledged > 50
    assert result.refused == 0


def test_a_seed_replays_exactly(tmp_path: object) -> None:
    """The same seed gives the same run, event for event (the hash of its whole trace), in this process
    and in another one whose string hashes differ; another seed gives another run."""
    first = _run(tmp_path, 7, fault_seconds=8.0, membership=True)
    second = _run(tmp_path, 7, fault_seconds=8.0, membership=True)
    assert first.faults > 0 and first.events > 1000
    assert (first.history, first.events, first.acknowledged) == (second.history, second.events, second.acknowledged)
    script = (
        "import sys, tempfile; from tests.sim._sim import SimConfig, run_seed; "
        "r = run_seed(7, SimConfig(fault_seconds=8.0, membership=True), tempfile.mkdtemp()); print(r.history)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    elsewhere = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    assert elsewhere.stdout.strip() == first.history
    other = _run(tmp_path, 8, fault_seconds=8.0)
    assert other.history != first.history


def test_no_invariant_breaks_under_faults(tmp_path: object) -> None:
    """Crashes, power loss, pauses, partitions (one-way too), slow links, connection resets,
    membership changes and frequent compaction break no invariant, and the healed cluster commits
    again and converges."""
    results = [
        _run(
            tmp_path,
            seed,
            nodes=5 if seed % 3 == 0 else 3,
            fault_seconds=BATCH_FAULT_S,
            proposals_per_s=BATCH_PROPOSALS_PER_S,
            membership=seed % 2 == 0,
        )
        for seed in BATCH_SEEDS
    ]
    failed = [r for r in results if not r.ok]
    assert not failed, "\n\n".join(r.report() for r in failed)


def test_a_member_added_by_a_lost_request_is_not_retired(tmp_path: object) -> None:
    """An add whose leader died before answering still took effect; the retried add is refused (already a
    member), and the simulator keeps that node as a member instead of wiping its disks (seed 3000071:
    n1 wiped while a voter, then "did not converge" as the leader still counted it)."""
    result = _run(
        tmp_path, 3000071, nodes=5, network="datagram", fault_seconds=30.0, membership=True, trace_lines=50_000
    )
    assert result.ok, result.report()
    assert any("n1:7001 is already in" in line for line in result.trace), "the seed no longer hits the lost answer"


@pytest.mark.sim
@pytest.mark.parametrize("seed", range(100, 120))
def test_no_invariant_breaks_under_faults_long(tmp_path: object, seed: int) -> None:
    """As the batch, over more seeds and longer fault phases (`pytest -m sim`)."""
    result = _run(tmp_path, seed, nodes=5 if seed % 2 else 3, fault_seconds=60.0, membership=seed % 3 == 0)
    assert result.ok, result.report()


# Each fix the simulator can take back and has been seen to catch: the network it was hunted on, the
# first seed, how many seeds it may take (three times what it took when measured from seed 1, see
# README.md) and whether membership changes were on.
REVERT_HUNTS = {
    "chunk-commit": ("tcp", 1, 3, False),
    "compact-at-start": ("tcp", 1, 12, False),
    "append-keeps-matches": ("datagram", 1, 9, False),
    # Found by a membership batch from seed 2000080, not in seeds 1-25 without membership: its seed.
    "vote-per-voter": ("datagram", 2000107, 1, True),
}
# Fixes the simulator has not caught yet when taken back, and what was tried (README.md).
NOT_CAUGHT_YET = {
    "install-keeps-log": "seeds 1-25 on tcp, 1-80 on datagram",
    "reply-term": "seeds 1-60 on tcp, 1-25 on datagram",
}


@pytest.mark.sim
@pytest.mark.parametrize("fix", sorted(REVERT_HUNTS))
def test_the_simulator_finds_the_loss_each_fix_prevents(tmp_path: object, fix: str) -> None:
    """With one correction taken back (as the code was before it), some seed breaks an invariant:
    the simulator can find each bug we fixed (`make sim-proof`)."""
    network, first_seed, seeds_max, membership = REVERT_HUNTS[fix]
    for seed in range(first_seed, first_seed + seeds_max):
        result = _run(
            tmp_path,
            seed,
            nodes=5 if seed % 2 else 3,
            network=network,
            revert=frozenset({fix}),
            membership=membership,
        )
        if not result.ok:
            return
    pytest.fail(f"{seeds_max} seeds from {first_seed} on a {network} network with {fix} taken back broke no invariant")


def test_every_fix_the_simulator_can_take_back_is_accounted_for() -> None:
    """A fix added to _wiring.REVERTIBLE_FIXES needs a seed bound here (so its proof runs), or a
    record of what was tried."""
    assert set(REVERT_HUNTS) | set(NOT_CAUGHT_YET) == set(REVERTIBLE_FIXES)
    assert not set(REVERT_HUNTS) & set(NOT_CAUGHT_YET)
