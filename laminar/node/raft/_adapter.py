"""RaftAdapter: the Raft port implemented over pysyncobj.

It owns the engine (RaftEngine, the corrected SyncObj subclass in _engine.py) and translates:
pysyncobj's state numbers, Node objects, status dict and private attributes stay behind it; what
comes out are `Role`, Raft addresses as strings and `RaftStatus`. The rest of the node holds a
RaftAdapter (typed as RaftPort) and never a SyncObj.

The hot path does not go through an extra layer: `propose` and `after_tick` are the engine's own
bound methods, set on the adapter at construction, so a proposal costs the same call as before.
"""

from __future__ import annotations

from collections.abc import Callable

from laminar.node.raft._engine import RaftEngine, RaftSettings
from laminar.node.raft._port import (
    ApplyFn,
    MembershipDoneFn,
    RaftStatus,
    ResultFn,
    Role,
    RoleFn,
    SnapshotHooks,
)


class RaftAdapter:
    """The one RaftPort over pysyncobj. Starts the engine (and its tick thread) when built."""

    propose: Callable[[bytes, ResultFn], None]
    after_tick: Callable[[Callable[[], None]], None]

    def __init__(
        self, settings: RaftSettings, on_apply: ApplyFn, on_role: RoleFn, snapshot_hooks: SnapshotHooks
    ) -> None:
        self._on_role = on_role
        # The tick thread starts inside the engine's constructor and may report a role at once:
        # queries made from that callback see no engine yet and answer as a node that knows nothing.
        self._engine: RaftEngine | None = None
        engine = RaftEngine(settings, on_apply=on_apply, on_role=self._role_changed, snapshot_hooks=snapshot_hooks)
        self._engine = engine
        self.propose = engine.propose
        self.after_tick = engine.after_tick

    def _role_changed(self, role: str) -> None:
        self._on_role(Role(role))

    # ---- queries (any thread) ---------------------------------------------------------------

    def is_leader(self) -> bool:
        engine = self._engine
        return engine is not None and bool(engine._isLeader())

    def role(self) -> Role:
        engine = self._engine
        return Role.CANDIDATE if engine is None else Role(engine.role())

    def term(self) -> int:
        engine = self._engine
        return 0 if engine is None else int(engine.raftCurrentTerm)

    def leader(self) -> str | None:
        engine = self._engine
        return None if engine is None else engine.leader_address()

    def leader_silence_s(self) -> float:
        engine = self._engine
        return float("inf") if engine is None else engine.leader_silence_s()

    def status(self) -> RaftStatus:
        engine = self._engine
        if engine is None:
            return RaftStatus(Role.CANDIDATE, 0, None, 0, 0, 0)
        raw = engine.status()
        leader = raw.get("leader")
        return RaftStatus(
            role=Role(engine.role()),
            term=int(raw.get("raft_term", 0)),
            leader=None if leader is None else str(leader.address),
            commit_index=int(raw.get("commit_idx", 0)),
            applied_index=int(raw.get("last_applied", 0)),
            journal_syncs=int(engine.journal_syncs),
        )

    def members(self) -> list[str]:
        engine = self._engine
        return [] if engine is None else engine.members()

    def is_connected(self, raft_address: str) -> bool:
        engine = self._engine
        return engine is not None and engine.is_connected(raft_address)

    # ---- changes ----------------------------------------------------------------------------

    def change_membership(self, add: bool, raft_address: str, on_done: MembershipDoneFn) -> None:
        assert self._engine is not None
        self._engine.change_membership(add, raft_address, on_done)

    def transfer_leadership(self) -> None:
        assert self._engine is not None
        self._engine.transfer_leadership()

    def partition(self, raft_addresses: frozenset[str]) -> None:
        assert self._engine is not None
        self._engine.partitioned_from = frozenset(raft_addresses)  # replaced whole: the tick thread reads it

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.destroy_synchronous()
