"""A snapshot from the leader is installed only when complete, intact and from one transfer: chunks of
two transfers never mix, a gap or a damaged byte is refused, and the leader then sends it again.
Real engines, journals and snapshot files over loopback, driven by doTick()."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from raft_harness import Cluster, compact, deliver, snapshot_messages

from laminar.node.raft._snapshot import SnapshotCorrupt, SnapshotReceiver, verify

PAYLOADS = [b"p%02d" % i for i in range(1, 21)]
SMALL_CHUNK_BYTES = 512


def _isolate(cluster: Cluster, i: int) -> None:
    cut = cluster[i].address
    for n, node in enumerate(cluster.nodes):
        others = {p.address for p in cluster.nodes if p is not node}
        node.engine.partitioned_from = frozenset(others if n == i else {cut})


def _two_snapshots(cluster: Cluster) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Snapshot messages of the leader (node 0) and of node 2, at different indexes; node 1 is cut off."""
    a, c = cluster[0], cluster[2]
    _isolate(cluster, 1)
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:10]))
    cluster.until(lambda: c.ledger.mark >= 10, "node 2 to apply")
    compact(cluster, 2)
    assert all(cluster.propose(0, PAYLOADS[10:]))
    compact(cluster, 0)
    from_a = snapshot_messages(a, SMALL_CHUNK_BYTES)
    from_c = snapshot_messages(c, SMALL_CHUNK_BYTES)
    assert len(from_a) > 3 and len(from_c) > 3
    return from_a, from_c


def test_chunks_of_two_transfers_never_make_one_snapshot(cluster: Cluster) -> None:
    """A leader of a later term that resumes an old transfer mid-file (pysyncobj keeps a transfer's
    position across terms) interleaves with the transfer in progress: the follower installs nothing,
    and its snapshot file is never a mixed one. pysyncobj wrote both into one file and installed it."""
    a, b, c = cluster[0], cluster[1], cluster[2]
    from_a, from_c = _two_snapshots(cluster)
    b.engine.partitioned_from = frozenset()
    later_term = a.engine.raftCurrentTerm + 1
    deliver(b, a, from_a[0])
    for message in from_c[1:]:
        deliver(b, c, {**message, "term": later_term})
    assert b.engine.raftLastApplied < 2 and b.ledger.mark == 0
    snapshot_file = b.root / "raft.snapshot"
    if snapshot_file.exists():
        verify(str(snapshot_file))  # never a mixed file in place
    # The whole transfer of the leader of the later term then installs.
    for message in from_c:
        deliver(b, c, {**message, "term": later_term})
    assert b.engine.raftLastApplied == c.journal[1][1]
    assert b.ledger.mark == c.journal[1][1]


def test_a_transfer_with_a_lost_chunk_is_refused(cluster: Cluster) -> None:
    """A chunk lost with a dropped connection leaves a gap: nothing is installed (pysyncobj installed the
    file with the gap, failed to read it, and still answered the leader with success)."""
    a, b = cluster[0], cluster[1]
    from_a, _ = _two_snapshots(cluster)
    b.engine.partitioned_from = frozenset()
    for n, message in enumerate(from_a):
        if n != 1:
            deliver(b, a, message)
    assert b.engine.raftLastApplied < 2 and b.ledger.mark == 0
    assert not (b.root / "raft.snapshot").exists()


def test_the_leader_sends_the_snapshot_again_after_a_refused_transfer(cluster: Cluster) -> None:
    """The first snapshot transfer to a lagging follower loses a chunk on the way; the follower refuses
    it, and the leader, finding the follower still behind, sends it again whole."""
    a, b = cluster[0], cluster[1]
    _isolate(cluster, 1)
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS))
    compact(cluster, 0)
    transport = a.engine._SyncObj__transport
    send = transport.send
    dropped: list[Any] = []

    def lose_first_chunk(node: Any, message: dict[str, Any]) -> Any:
        if message.get("serialized") and not dropped:
            dropped.append(message)
            return True  # lost on the way
        return send(node, message)

    transport.send = lose_first_chunk
    for node in cluster.nodes:
        node.engine.partitioned_from = frozenset()
    cluster.until(lambda: set(b.ledger.applied.values()) >= set(PAYLOADS), "the follower to catch up")
    # The chunk after the lost one is refused: by the receiver, or (its sender knowing no start for it,
    # offset -1) already as a malformed message.
    assert dropped and b.engine._receiver.refused + b.engine.bad_messages >= 1


def _receiver_file(tmp_path: Path, data: bytes) -> str:
    path = str(tmp_path / "incoming")
    receiver = SnapshotReceiver(path)
    assert receiver.take("leader", 3, 0, (data, True, False)) is None
    return receiver.take("leader", 3, len(data), (b"", False, True)) or ""


def test_a_damaged_or_truncated_snapshot_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    """One flipped byte (checksum), a missing tail (no trailer) or a tail of another file is refused."""
    a = cluster[0]
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:5]))
    compact(cluster, 0)
    blob = (a.root / "raft.snapshot").read_bytes()
    verify(str(a.root / "raft.snapshot"))
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    for bad in (bytes(flipped), blob[:-7], blob[: len(blob) // 2]):
        assert _receiver_file(tmp_path, bad) == ""
        assert not os.path.exists(tmp_path / "incoming")
    assert _receiver_file(tmp_path, blob) == str(tmp_path / "incoming")
    with pytest.raises(SnapshotCorrupt):
        (tmp_path / "incoming").write_bytes(bytes(flipped))
        verify(str(tmp_path / "incoming"))


def test_the_receiver_refuses_chunks_out_of_order_and_from_other_transfers(tmp_path: Path) -> None:
    """A chunk is taken only at the exact offset of the transfer it continues (same sender and term)."""
    receiver = SnapshotReceiver(str(tmp_path / "incoming"))
    assert receiver.take("a", 1, 0, (b"x" * 10, True, False)) is None
    refused = receiver.refused
    assert receiver.take("a", 1, 5, (b"y", False, False)) is None  # a gap
    assert receiver.refused == refused + 1
    assert receiver.take("a", 1, 0, (b"x" * 10, True, False)) is None
    assert receiver.take("b", 1, 10, (b"y", False, False)) is None  # another sender
    assert receiver.take("a", 1, 0, (b"x" * 10, True, False)) is None
    assert receiver.take("a", 2, 10, (b"y", False, False)) is None  # another term
    assert receiver.take("a", 2, 0, "not a chunk") is None  # malformed
    assert receiver.refused == refused + 4
