"""Raft §7 on a follower that installs a snapshot from the leader: real engines, real journals and snapshot
files over loopback, driven by doTick(). The loss these reproduce is the one docs/durability.md described as
open (seed 7 of the fault run: a follower installed a snapshot at 37450 while it knew 37548 committed)."""

from __future__ import annotations

from raft_harness import Cluster, append, compact, deliver, snapshot_messages

PAYLOADS = [b"p%02d" % i for i in range(1, 21)]


def _isolate(cluster: Cluster, i: int) -> None:
    cut = cluster[i].address
    for n, node in enumerate(cluster.nodes):
        others = {p.address for p in cluster.nodes if p is not node}
        node.engine.partitioned_from = frozenset(others if n == i else {cut})


def _heal(cluster: Cluster) -> None:
    for node in cluster.nodes:
        node.engine.partitioned_from = frozenset()


def test_a_follower_keeps_acknowledged_entries_past_an_older_snapshot_and_they_survive_the_leader(
    cluster: Cluster,
) -> None:
    """A follower that helped commit entries past the leader's snapshot, and then receives that snapshot
    (a delayed reply had sent the leader back), keeps those entries; its reply counts it no further than
    its log goes; and when the leader dies, the entries reach the third node through it. Without the fix
    pysyncobj cleared the follower's journal and the new leader overwrote the committed entries."""
    a, b, c = cluster[0], cluster[1], cluster[2]
    _isolate(cluster, 2)
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:10]))
    snapshot_index = compact(cluster, 0)
    assert all(cluster.propose(0, PAYLOADS[10:]))
    committed = a.log_end()
    cluster.until(lambda: b.ledger.mark == committed, "the follower to apply everything")
    assert snapshot_index < committed

    for message in snapshot_messages(a):  # the snapshot reaches b; then the link breaks
        deliver(b, a, message)
    b.engine.partitioned_from = frozenset({a.address, c.address})
    assert b.log_end() == committed, "the follower dropped entries it had acknowledged"
    cluster.tick(20)  # a takes in b's reply
    assert a.engine._SyncObj__raftMatchIndex[a.peer(b.address)] <= b.log_end()

    cluster.stop(0)
    _heal(cluster)
    b.engine._SyncObj__raftElectionDeadline = 0  # b stands for election now
    cluster.until(lambda: b.engine._isLeader() or c.engine._isLeader(), "a new leader")
    want = {p for p in PAYLOADS}
    cluster.until(lambda: set(c.ledger.applied.values()) >= want, "every committed entry on the third node", 10.0)


def test_a_follower_behind_the_snapshot_installs_it_and_keeps_its_log_after_it(cluster: Cluster) -> None:
    """A follower holding entries past the snapshot's last entry, but not yet knowing them committed,
    installs the snapshot (its store jumps to the snapshot's index) and keeps every entry after it;
    the next heartbeat commits them. Without the fix the entries after the snapshot were discarded."""
    a, b = cluster[0], cluster[1]
    _isolate(cluster, 1)
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:10]))
    entries = list(a.journal[1:])
    snapshot_index = compact(cluster, 0)
    assert all(cluster.propose(0, PAYLOADS[10:]))
    entries += [e for e in a.journal[:] if e[1] > entries[-1][1]]
    committed = a.log_end()
    assert [e[1] for e in entries] == list(range(2, committed + 1))
    term = a.engine.raftCurrentTerm
    b.engine.partitioned_from = frozenset()  # b hears only what this test hands it

    deliver(b, a, append(term, 1, 0, entries, commit_index=1))
    assert b.log_end() == committed and b.engine.raftLastApplied == 1
    for message in snapshot_messages(a):
        deliver(b, a, message)
    assert b.engine.raftLastApplied == snapshot_index
    assert b.ledger.mark == snapshot_index, "the snapshot's store was not installed"
    assert b.log_end() == committed, "the entries after the snapshot were discarded"
    assert b.journal[1][1] == snapshot_index

    deliver(b, a, append(term, committed, entries[-1][2], [], commit_index=committed))
    cluster.tick()
    assert set(b.ledger.applied.values()) == set(PAYLOADS)


def test_an_append_carrying_fewer_entries_than_the_follower_holds_deletes_none(cluster: Cluster) -> None:
    """An append whose entries all match the follower's log deletes nothing after them (Raft deletes only
    from the first conflicting entry): pysyncobj cut every entry after the append's last one, so a follower
    could lose entries it had acknowledged to a later, shorter (or reordered) append."""
    a, b = cluster[0], cluster[1]
    _isolate(cluster, 1)
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS))
    entries = list(a.journal[1:])
    term = a.engine.raftCurrentTerm
    b.engine.partitioned_from = frozenset()
    deliver(b, a, append(term, 1, 0, entries, commit_index=1))
    end = b.log_end()
    deliver(b, a, append(term, 1, 0, entries[:3], commit_index=1))
    assert b.log_end() == end
    deliver(b, a, append(term, 5, entries[3][2], [], commit_index=1))
    assert b.log_end() == end
