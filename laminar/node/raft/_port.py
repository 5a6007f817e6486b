"""The Raft port: what the rest of the node may ask of the replicated log, in our own types.

The node talks to Raft only through `RaftPort` (propose, role, leader, term, membership, status)
and is called back through `ApplyFn`, `RoleFn` and `SnapshotHooks`. `RaftAdapter` (_adapter.py)
is the implementation over pysyncobj; a simulator can be another. Nothing here names pysyncobj:
no SyncObj, no getStatus() keys, no mangled attributes cross this line.

Threads: `propose` and every query may be called from any thread. The callbacks run in the
adapter's own thread (for pysyncobj, its tick thread): `ApplyFn` once per committed entry, in log
order; `RoleFn` on every role change; the snapshot hooks when the log is compacted or a snapshot
from the leader is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    LEADER = "leader"
    FOLLOWER = "follower"  # a leader is known and it is not this node
    CANDIDATE = "candidate"  # no leader is known (an election is under way, or this node is cut off)


ResultFn = Callable[[bool], None]  # True once the entry is applied here; False if it never will be
ApplyFn = Callable[[int, bytes], None]  # (raft index, payload) of a committed entry, in log order
RoleFn = Callable[[Role], None]
MembershipDoneFn = Callable[[bool, str], None]  # (ok, reason when not ok)


@dataclass(frozen=True)
class SnapshotHooks:
    """What log compaction needs from the node, which owns the store."""

    checkpoint: Callable[[str, int], None]  # checkpoint the store, as applied through index, into a dir
    applied_index: Callable[[], int]  # the Raft index the store has applied
    install: Callable[[str], None]  # replace the store with the checkpoint in this directory
    # Start writing what the store holds in memory to disk in the background, and tell whether that is still
    # under way: a snapshot that is due waits for it (up to limits.SNAPSHOT_FLUSH_AHEAD_S_MAX), so that
    # `checkpoint`, in the tick thread, has little left to flush. None: snapshots start at once.
    flush_start: Callable[[], None] | None = None
    flushing: Callable[[], bool] | None = None


@dataclass(frozen=True)
class RaftStatus:
    """One consistent-enough look at this node's Raft state (fields are read one after another)."""

    role: Role
    term: int
    leader: str | None  # Raft address of the leader this node knows, or None
    commit_index: int
    applied_index: int  # the last entry handed to ApplyFn (it may still be queued for the store)
    journal_syncs: int  # fsyncs of the journal since start


class RaftPort(Protocol):
    """The replicated log as the rest of the node sees it."""

    def propose(self, payload: bytes, on_result: ResultFn) -> None:
        """Append one entry (leader only); on_result reports whether it was applied here."""

    def after_tick(self, task: Callable[[], None]) -> None:
        """Run task in the Raft thread once what was proposed before this call is in the log and sent."""

    def is_leader(self) -> bool: ...

    def role(self) -> Role: ...

    def term(self) -> int: ...

    def leader(self) -> str | None:
        """Raft address of the leader this node knows, or None."""

    def leader_silence_s(self) -> float:
        """Seconds since this node last heard from the leader it names (0 on the leader)."""

    def status(self) -> RaftStatus: ...

    def members(self) -> list[str]:
        """Raft addresses of every voting member, this node first."""

    def is_connected(self, raft_address: str) -> bool: ...

    def change_membership(self, add: bool, raft_address: str, on_done: MembershipDoneFn) -> None:
        """Add or remove one voting member; on_done(ok, reason) once committed or refused."""

    def transfer_leadership(self) -> None:
        """Hand leadership to the most caught-up follower."""

    def partition(self, raft_addresses: frozenset[str]) -> None:
        """Fault injection (tests only): drop all traffic to and from these peers; empty heals."""

    def stop(self) -> None:
        """Stop the Raft thread and close the journal; no callback runs after this returns."""
