"""A candidate counts each member's vote once per term (pysyncobj counts vote messages).

Found by the simulator (seed 2000107, datagram network, 5 nodes): a `response_vote` delivered twice
made a candidate with one vote besides its own leader of five, with a log that lacked entries a
majority had committed; its appends could then never match the followers' applied logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from raft_harness import Cluster, Node, deliver


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, size=5)
    cluster.stop(0)  # the harness's fast node: no one else elects itself within a test (10-20 s timeouts)
    yield cluster
    cluster.close()


def _stand(cluster: Cluster, candidate: Node) -> int:
    """Make `candidate` start an election now (ticked alone, so no real vote reaches it); its term."""
    cluster.until(
        lambda: any(candidate.engine.is_connected(n.address) for n in cluster.nodes if n is not candidate),
        "the candidate to connect to a peer",
    )
    candidate.engine._SyncObj__raftElectionDeadline = 0
    candidate.engine.doTick(0.0)
    assert candidate.engine.role() == "candidate"
    return int(candidate.engine.raftCurrentTerm)


def test_a_vote_delivered_twice_counts_once(cluster: Cluster) -> None:
    """Of five members, a candidate with its own vote and one other's, received twice, does not lead;
    a third member's vote makes it leader."""
    candidate, voter, third = cluster[1], cluster[2], cluster[3]
    term = _stand(cluster, candidate)
    vote = {"type": "response_vote", "term": term}
    deliver(candidate, voter, vote)
    deliver(candidate, voter, vote)
    assert not candidate.engine._isLeader()
    deliver(candidate, third, vote)
    assert candidate.engine._isLeader()


def test_votes_are_counted_afresh_in_each_term(cluster: Cluster) -> None:
    """A voter counted in one term counts again when the candidate stands in a later term."""
    candidate, voter, third = cluster[1], cluster[2], cluster[3]
    first_term = _stand(cluster, candidate)
    deliver(candidate, voter, {"type": "response_vote", "term": first_term})
    second_term = _stand(cluster, candidate)
    assert second_term == first_term + 1
    deliver(candidate, voter, {"type": "response_vote", "term": first_term})  # late: pysyncobj ignores it
    deliver(candidate, voter, {"type": "response_vote", "term": second_term})
    assert not candidate.engine._isLeader()
    deliver(candidate, third, {"type": "response_vote", "term": second_term})
    assert candidate.engine._isLeader()


def test_a_late_vote_of_an_older_term_does_not_reopen_the_count(cluster: Cluster) -> None:
    """A vote of the previous term arriving between a vote and its duplicate (a reordering network)
    leaves this term's count alone: the duplicate still counts nothing."""
    candidate, voter, late, third = cluster[1], cluster[2], cluster[3], cluster[4]
    _stand(cluster, candidate)
    term = _stand(cluster, candidate)
    deliver(candidate, voter, {"type": "response_vote", "term": term})
    deliver(candidate, late, {"type": "response_vote", "term": term - 1})
    deliver(candidate, voter, {"type": "response_vote", "term": term})
    assert not candidate.engine._isLeader()
    deliver(candidate, third, {"type": "response_vote", "term": term})
    assert candidate.engine._isLeader()
