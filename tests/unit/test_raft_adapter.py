"""The Raft port over pysyncobj: a one-node RaftAdapter (real engine, journal and tick thread, in this
process, on loopback) elects itself, applies what it proposes, and reports only our own types."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from laminar.node.raft import RaftAdapter, RaftSettings, RaftStatus, Role, SnapshotHooks

WAIT_S = 10.0


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _hooks() -> SnapshotHooks:
    def never(*_args: object) -> None:
        raise AssertionError("no snapshot in this test")

    return SnapshotHooks(checkpoint=never, applied_index=lambda: 0, install=never)


def test_a_one_node_adapter_leads_applies_and_reports_our_types(tmp_path: Path) -> None:
    """It becomes leader, calls on_role with a Role, applies a proposed entry once with its index, calls
    the result callback with True, and status() is a RaftStatus of plain values (no pysyncobj objects)."""
    address = _free_address()
    applied: list[tuple[int, bytes]] = []
    roles: list[Role] = []
    settings = RaftSettings(
        self_address=address,
        peer_addresses=(),
        journal_path=str(tmp_path / "raft.journal"),
        snapshot_path=str(tmp_path / "raft.snapshot"),
    )
    raft = RaftAdapter(
        settings, on_apply=lambda i, p: applied.append((i, p)), on_role=roles.append, snapshot_hooks=_hooks()
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while not raft.is_leader():
            assert time.monotonic() < deadline, "a lone node elects itself"
            time.sleep(0.01)
        done = threading.Event()
        results: list[bool] = []
        raft.propose(b"payload", lambda ok: (results.append(ok), done.set()))
        assert done.wait(WAIT_S) and results == [True]
        assert [p for _, p in applied] == [b"payload"]
        status = raft.status()
        assert isinstance(status, RaftStatus)
        assert status.role is Role.LEADER and raft.role() is Role.LEADER and Role.LEADER in roles
        assert status.leader == raft.leader() == address
        assert status.term == raft.term() >= 1
        assert status.applied_index >= applied[-1][0] and status.commit_index >= applied[-1][0]
        assert raft.members() == [address]
        for value in vars(status).values():
            assert value is None or isinstance(value, (int, str)), f"{value!r} is one of our plain types"
    finally:
        raft.stop()
