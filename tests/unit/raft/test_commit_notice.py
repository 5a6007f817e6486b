"""A follower takes the append that only tells it of a commit (pysyncobj's leader sends one to each follower
per commit) without a reply, and still answers heartbeats and appends that carry entries. Real engines over
loopback, ticked by the test; messages handed to the follower as its transport would."""

from __future__ import annotations

from typing import Any

from raft_harness import Cluster, Node, append, deliver


def _replies_of(node: Node) -> list[dict[str, Any]]:
    """Every message `node` sends from now on, recorded as it leaves (and still sent)."""
    transport = node.engine._SyncObj__transport
    send = transport.send
    sent: list[dict[str, Any]] = []

    def recorded(to: Any, message: dict[str, Any]) -> Any:
        sent.append(message)
        return send(to, message)

    transport.send = recorded
    return sent


def test_a_commit_notice_gets_no_reply_and_a_heartbeat_or_an_entry_does(cluster: Cluster) -> None:
    """An entry is answered; the empty append that then moves the follower's commit index to it is taken
    (the commit index moves) without a reply; a heartbeat with a commit index the follower has is answered."""
    leader, follower = cluster[0], cluster[1]
    cluster.elect(0)
    cluster.until(lambda: follower.engine.raftCommitIndex == leader.log_end(), "the follower to learn the commit")
    term = leader.engine.raftCurrentTerm
    last = follower.log_end()
    entry = (follower.journal[-1][0], last + 1, term)  # any command: nothing applies it before the test ends
    sent = _replies_of(follower)

    deliver(follower, leader, append(term, last, term, [entry], commit_index=last))
    assert [(m["type"], m["next_node_idx"], m["success"]) for m in sent] == [("next_node_idx", last + 2, True)]

    deliver(follower, leader, append(term, last + 1, term, [], commit_index=last + 1))
    assert follower.engine.raftCommitIndex == last + 1
    assert len(sent) == 1, sent

    deliver(follower, leader, append(term, last + 1, term, [], commit_index=last + 1))
    assert len(sent) == 2 and sent[1]["type"] == "next_node_idx" and sent[1]["success"], sent
