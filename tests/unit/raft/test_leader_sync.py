"""The leader syncs its journal beside replication and counts itself toward a commit only through
what it has synced (RaftEngine._leader_commit). Real engines over loopback, ticked by the test; the
leader's sync thread is replaced by one the test runs by hand, so "synced" happens when the test says."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from raft_harness import Cluster, Node

import laminar.node.raft._engine as engine_module
from laminar.node.raft._journal import DurableJournal


class ManualSync:
    """Stands in for SyncThread: records requests; syncs only when the test calls run()."""

    made: ClassVar[dict[int, ManualSync]] = {}  # id(journal) -> its syncer

    def __init__(self, journal: DurableJournal, on_synced: Callable[[], None]) -> None:
        self.journal = journal
        self.on_synced = on_synced
        self.requests = 0
        ManualSync.made[id(journal)] = self

    def request(self) -> None:
        self.requests += 1

    def request_hint_save(self) -> None:
        self.journal.onOneSecondTimer()

    def run(self) -> None:
        self.journal.sync()
        self.on_synced()

    def stop(self) -> None:
        pass


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setattr(engine_module, "SyncThread", ManualSync)
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.close()


def _syncer(node: Node) -> ManualSync:
    return ManualSync.made[id(node.journal)]


def _lead_with_everything_committed(cluster: Cluster) -> Node:
    leader = cluster[0]
    cluster.elect(0)

    def settled() -> bool:
        _syncer(leader).run()
        return bool(leader.engine.raftCommitIndex == leader.log_end())

    cluster.until(settled, "the leader's first entry to commit")
    return leader


def _propose(leader: Node, payload: bytes) -> tuple[int, list[bool]]:
    results: list[bool] = []
    leader.engine.propose(payload, results.append)
    return leader.log_end() + 1, results


def test_the_leader_does_not_count_its_own_unsynced_entry(cluster: Cluster) -> None:
    """With one follower down, an entry the other follower has acknowledged is not committed until
    the leader's own journal has synced it; then it is."""
    cluster.stop(2)
    leader = _lead_with_everything_committed(cluster)
    follower = cluster[1]
    index, results = _propose(leader, b"one")
    peer = leader.peer(follower.address)
    cluster.until(lambda: leader.engine._SyncObj__raftMatchIndex[peer] >= index, "the follower's acknowledgement")
    cluster.tick(5)
    assert leader.journal.synced_index < index
    assert leader.engine.raftCommitIndex < index and results == []
    assert _syncer(leader).requests > 0  # it asked for the sync once the entry was sent
    _syncer(leader).run()
    cluster.until(lambda: results == [True], "the entry to commit once the leader has synced it")
    assert leader.engine.raftCommitIndex >= index


def test_two_followers_commit_an_entry_the_leader_has_not_synced(cluster: Cluster) -> None:
    """The leader's fsync is not on the commit path when both followers have the entry durably:
    a majority without the leader commits it (each follower synced before acknowledging)."""
    leader = _lead_with_everything_committed(cluster)
    index, results = _propose(leader, b"two")
    cluster.until(lambda: results == [True], "the entry to commit on the followers' copies")
    assert leader.journal.synced_index < index
    for follower in (cluster[1], cluster[2]):
        assert follower.journal.synced_index >= index


def test_the_leader_asks_its_sync_thread_once_per_entry_however_many_ticks_wait_for_it(cluster: Cluster) -> None:
    """Each request wakes the sync thread (and each wake-up that syncs nothing woke the tick for nothing):
    an entry waiting for its fsync through many ticks is asked for once, and the next entry once more."""
    cluster.stop(2)
    leader = _lead_with_everything_committed(cluster)
    syncer = _syncer(leader)
    for n, payload in enumerate((b"one", b"two"), start=1):
        before = syncer.requests
        index, results = _propose(leader, payload)
        cluster.until(lambda index=index: leader.log_end() >= index, "the entry in the leader's log")
        cluster.tick(10)
        assert leader.journal.synced_index < index and results == []
        assert syncer.requests == before + 1, n
        syncer.run()
        cluster.until(lambda results=results: results == [True], "the entry to commit")
