"""When the Raft journal is compacted: the snapshot work over a run stays linear in the data written
(laminar/node/raft/_compaction.py), on the pure rule and on a real engine."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest
from raft_harness import Cluster, Ledger

from laminar import limits
from laminar.node.raft._compaction import CompactionPolicy
from laminar.node.raft._port import SnapshotHooks

KIB = 1024


def test_the_threshold_is_a_multiple_of_the_last_snapshot_between_the_minimum_and_the_maximum() -> None:
    """Below bytes_min never, above bytes_max always; in between at bytes_per_snapshot_byte x the snapshot."""
    policy = CompactionPolicy(bytes_min=10 * KIB, bytes_max=1000 * KIB, bytes_per_snapshot_byte=2.0)
    assert policy.threshold_bytes(0) == 10 * KIB
    assert policy.threshold_bytes(100 * KIB) == 200 * KIB
    assert policy.threshold_bytes(10_000 * KIB) == 1000 * KIB
    assert not policy.due(199 * KIB, 0, 100 * KIB)
    assert policy.due(200 * KIB, 0, 100 * KIB)


def test_many_small_entries_weigh_their_memory_as_well() -> None:
    """A journal of many tiny entries is compacted by its entries' memory, not only by its file bytes."""
    policy = CompactionPolicy(bytes_min=100 * KIB, bytes_max=1000 * KIB, entry_overhead_bytes=180)
    assert not policy.due(10 * KIB, 0, 0)
    assert policy.due(10 * KIB, 1000, 0)  # 10 KiB + 1000 x 180 B


def test_the_defaults_are_the_named_limits() -> None:
    """The production rule is the one limits.py names (the docs quote these)."""
    policy = CompactionPolicy()
    assert policy.bytes_min == limits.RAFT_LOG_BYTES_MIN
    assert policy.bytes_max == limits.RAFT_LOG_BYTES_MAX
    assert policy.bytes_per_snapshot_byte == limits.RAFT_LOG_BYTES_PER_SNAPSHOT_BYTE
    assert limits.RAFT_LOG_ENTRIES_MAX * limits.RAFT_LOG_ENTRY_OVERHEAD_BYTES > limits.RAFT_LOG_BYTES_MAX


def _simulated_snapshot_bytes(policy: CompactionPolicy, written_bytes: int, entry_bytes: int) -> list[int]:
    """The snapshots a node builds while `written_bytes` arrive in entries of `entry_bytes`, when its store
    (and so a snapshot) is as large as everything written so far."""
    snapshots: list[int] = []
    journal = store = 0
    while store < written_bytes:
        journal += entry_bytes
        store += entry_bytes
        if policy.due(journal, journal // entry_bytes, snapshots[-1] if snapshots else 0):
            snapshots.append(store)
            journal = 0
    return snapshots


@pytest.mark.parametrize("written_mib", [256, 1024, 4096])
def test_total_snapshot_work_is_linear_in_the_data_written(written_mib: int) -> None:
    """Over a run writing W bytes, the snapshots together write at most (1 + 1/m) W + bytes_min (m: journal
    bytes per snapshot byte), far below the W^2 / interval of compacting at a fixed interval."""
    policy = CompactionPolicy(bytes_max=1 << 40)  # the memory cap out of the way: the rule alone
    written = written_mib << 20
    snapshots = _simulated_snapshot_bytes(policy, written, 1 << 20)
    m = policy.bytes_per_snapshot_byte
    assert sum(snapshots) <= (1 + 1 / m) * written + policy.bytes_min
    fixed_interval = sum(range(limits.RAFT_LOG_BYTES_MIN, written + 1, limits.RAFT_LOG_BYTES_MIN))
    assert written_mib < 1024 or sum(snapshots) * 4 < fixed_interval


def _record_snapshot_sizes(cluster: Cluster) -> list[int]:
    """Sizes of the snapshot files node 0 publishes, in order (wraps its snapshotter's publish step)."""
    snapshots = cluster[0].engine.snapshots
    publish = snapshots._publish
    sizes: list[int] = []

    def recording(building: str, final_file: str, generation: int) -> Any:
        state = publish(building, final_file, generation)
        sizes.append(os.path.getsize(final_file))
        return state

    snapshots._publish = recording  # type: ignore[method-assign]
    return sizes


def test_a_real_engine_compacts_at_geometric_sizes_once_each(tmp_path: Path) -> None:
    """A single real engine writing 600 KiB compacts each time its applied journal has grown as large as
    the last snapshot: each snapshot at least twice the previous one, so they add up to at most twice the
    last. Without the rule (a fixed interval of entries, as before) they were linear in count and
    quadratic in bytes; without the in-flight guard each compaction ran twice (a snapshot the size of
    the one before it)."""
    policy = CompactionPolicy(bytes_min=16 * KIB, bytes_max=1 << 30, entry_overhead_bytes=0)
    cluster = Cluster(tmp_path, size=1, log_entries_max=limits.RAFT_LOG_ENTRIES_MAX, compaction=policy)
    try:
        cluster.elect(0)
        sizes = _record_snapshot_sizes(cluster)
        payloads = [os.urandom(KIB) for _ in range(600)]
        assert all(cluster.propose(0, payloads))
        cluster.until(lambda: not cluster[0].engine.snapshots.busy, "the last snapshot to finish")
    finally:
        cluster.close()
    assert 3 <= len(sizes) <= 8, sizes
    assert all(later >= 2 * earlier for earlier, later in itertools.pairwise(sizes)), sizes
    assert sum(sizes) <= 2 * sizes[-1] + policy.bytes_min, sizes


def test_the_entries_knob_still_compacts_often(tmp_path: Path) -> None:
    """raft_log_entries_max still compacts past that many entries whatever the byte rule says: tests and the
    simulator rely on it for frequent snapshots (and installs of them)."""
    policy = CompactionPolicy(bytes_min=1 << 30, bytes_max=1 << 30)
    cluster = Cluster(tmp_path, size=1, log_entries_max=10, compaction=policy)
    try:
        cluster.elect(0)
        assert all(cluster.propose(0, [b"p%d" % i for i in range(80)]))
        cluster.until(lambda: not cluster[0].engine.snapshots.busy, "the last snapshot to finish")
        built = cluster[0].engine.snapshots.snapshots_built
    finally:
        cluster.close()
    assert built >= 4, built


def test_a_due_snapshot_waits_for_the_stores_background_flush_first_within_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot that is due first starts the store's background flush and waits while it runs, so that the
    checkpoint in the tick thread has little left to flush (RocksDB holds the GIL: a checkpoint that flushed a full
    memtable stopped the node for 40-260 ms); a flush that never ends holds it up SNAPSHOT_FLUSH_AHEAD_S_MAX at most."""
    flush = {"running": False, "starts": 0}

    def start() -> None:
        flush["starts"] += 1
        flush["running"] = True

    def hooks(ledger: Ledger) -> SnapshotHooks:
        return SnapshotHooks(
            checkpoint=ledger.checkpoint,
            applied_index=lambda: ledger.mark,
            install=ledger.install,
            flush_start=start,
            flushing=lambda: bool(flush["running"]),
        )

    monkeypatch.setattr(Ledger, "hooks", hooks)
    monkeypatch.setattr(limits, "SNAPSHOT_FLUSH_AHEAD_S_MAX", 0.3)
    policy = CompactionPolicy(bytes_min=16 * KIB, bytes_max=1 << 30, entry_overhead_bytes=0)
    cluster = Cluster(tmp_path, size=1, log_entries_max=limits.RAFT_LOG_ENTRIES_MAX, compaction=policy)
    engine = cluster[0].engine
    try:
        cluster.elect(0)
        assert all(cluster.propose(0, [os.urandom(KIB) for _ in range(24)]))
        cluster.until(lambda: flush["starts"] == 1, "the flush ahead of the first snapshot")
        cluster.tick(20)
        assert engine.snapshots.snapshots_built == 0  # waits while the store flushes
        flush["running"] = False
        cluster.until(lambda: engine.snapshots.snapshots_built == 1, "the first snapshot, once flushed")
        cluster.until(lambda: not engine.snapshots.busy, "the first snapshot to finish")
        assert all(cluster.propose(0, [os.urandom(KIB) for _ in range(64)]))  # due again; this flush never ends
        cluster.until(lambda: flush["starts"] == 2, "the flush ahead of the second snapshot")
        started = time.monotonic()
        cluster.until(lambda: engine.snapshots.snapshots_built == 2, "the second snapshot, past the bound")
        assert time.monotonic() - started >= 0.2
    finally:
        cluster.close()
