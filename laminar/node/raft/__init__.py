"""The Raft log, as a port of our own. The only package that imports pysyncobj.

- `RaftPort` (_port.py): what the node may ask of the log (propose, role, leader, term, membership,
  status), in our own types (`Role`, `RaftStatus`), and the callbacks it gets (`ApplyFn`,
  `SnapshotHooks`).
- `RaftAdapter` (_adapter.py): the port over pysyncobj; it owns `RaftEngine` (_engine.py), the
  SyncObj subclass that carries our corrections, with the durable journal (_journal.py) and log
  compaction by store checkpoint (_snapshot.py).
- `Proposer` (_proposer.py): packs client frames into entries and proposes them through the port.
"""

from laminar.node.raft._adapter import RaftAdapter
from laminar.node.raft._engine import RaftSettings
from laminar.node.raft._port import (
    ApplyFn,
    MembershipDoneFn,
    RaftPort,
    RaftStatus,
    ResultFn,
    Role,
    RoleFn,
    SnapshotHooks,
)
from laminar.node.raft._proposer import ClockMs, Proposal, Proposer, wall_clock_ms

__all__ = [
    "ApplyFn",
    "ClockMs",
    "MembershipDoneFn",
    "Proposal",
    "Proposer",
    "RaftAdapter",
    "RaftPort",
    "RaftSettings",
    "RaftStatus",
    "ResultFn",
    "Role",
    "RoleFn",
    "SnapshotHooks",
    "wall_clock_ms",
]
