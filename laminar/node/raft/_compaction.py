"""When to compact the Raft journal into a snapshot, so that the total work of snapshots stays linear in the
data written.

A snapshot archives the whole store (see _snapshot.py), so one costs as much as the store is large. Compacting
every N entries (pysyncobj's rule, and ours until December 2026) therefore costs, over a run that writes W
bytes, about W / (bytes per N entries) snapshots of a store that grows with W: quadratic in W. Measured
(bench/results/curves.md, "Snapshots"): per node, snapshot bytes written grew as W^2 up to 512 MiB.

The rule here is the one Redis uses to rewrite its append-only file (rewrite once it has grown by a
percentage of its size after the last rewrite, and past a minimum size): compact once the part of the
journal a snapshot would drop (applied entries) weighs at least `bytes_per_snapshot_byte` times the last
snapshot, and at least `bytes_min`. Between two snapshots, then, at least m = bytes_per_snapshot_byte times
the previous snapshot S_prev was written, and the new one is at most S_prev plus what was written (the store
grows by at most what is written to it, up to its own constant factor), so each snapshot costs at most
(1 + 1/m) times the bytes written since the previous one: total snapshot work <= (1 + 1/m) W + bytes_min.

Bounds. The journal lives in memory as well as on disk (`DurableJournal` keeps every entry), so its weight
is capped by `bytes_max` whatever the snapshot's size: past a snapshot of bytes_max / m the rule is a
fixed interval again and snapshot work grows as S / bytes_max per byte written (the remaining quadratic
term, far later). An entry weighs its file record plus `entry_overhead_bytes` (Python's memory for the
entry), so a journal of many small entries is bounded as well. The knob `raft_log_entries_max` (pysyncobj's
own entry count) still compacts past that many entries: tests and the simulator set it low so that
snapshots, and installs of them, are frequent.

Pure: no I/O; the engine asks it once per tick.
"""

from __future__ import annotations

from dataclasses import dataclass

from laminar import limits


@dataclass(frozen=True)
class CompactionPolicy:
    bytes_min: int = limits.RAFT_LOG_BYTES_MIN
    bytes_max: int = limits.RAFT_LOG_BYTES_MAX
    bytes_per_snapshot_byte: float = limits.RAFT_LOG_BYTES_PER_SNAPSHOT_BYTE
    entry_overhead_bytes: int = limits.RAFT_LOG_ENTRY_OVERHEAD_BYTES

    def __post_init__(self) -> None:
        assert 0 < self.bytes_min <= self.bytes_max, (self.bytes_min, self.bytes_max)
        assert self.bytes_per_snapshot_byte > 0, self.bytes_per_snapshot_byte
        assert self.entry_overhead_bytes >= 0, self.entry_overhead_bytes

    def threshold_bytes(self, snapshot_bytes: int) -> int:
        """The journal weight at which a node whose last snapshot has `snapshot_bytes` compacts."""
        return min(self.bytes_max, max(self.bytes_min, int(self.bytes_per_snapshot_byte * snapshot_bytes)))

    def weight_bytes(self, journal_bytes: int, journal_entries: int) -> int:
        return journal_bytes + journal_entries * self.entry_overhead_bytes

    def due(self, droppable_bytes: int, droppable_entries: int, snapshot_bytes: int) -> bool:
        """Compact now? `droppable_*`: the journal's applied entries (what a snapshot now would drop)."""
        return self.weight_bytes(droppable_bytes, droppable_entries) >= self.threshold_bytes(snapshot_bytes)
