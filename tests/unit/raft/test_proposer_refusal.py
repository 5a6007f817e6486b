"""A write the log did not take is never acknowledged `received`: a real engine and the real proposer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from raft_harness import Cluster

from laminar import limits
from laminar.node.raft._proposer import Proposal, Proposer


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, size=1)
    yield cluster
    cluster.close()


def test_a_batch_refused_by_a_full_command_queue_is_not_acknowledged_received(cluster: Cluster) -> None:
    """With pysyncobj's command queue full (a flood of read barriers fills it), the proposer's entry is
    refused: its runs are told they were dropped, and get no `received` ack. Before, the ack went out
    anyway, so the client skipped the lost writes and never resent them."""
    cluster.elect(0)
    engine = cluster[0].engine
    for _ in range(limits.RAFT_COMMANDS_QUEUE_MAX):
        engine.propose(b"read barrier", lambda _ok: None)
    proposer = Proposer(engine)
    received: list[int] = []
    dropped: list[int] = []
    try:
        assert proposer.offer(
            Proposal(
                run=b"\x0a\x00",
                intentions=1,
                is_current=lambda: True,
                on_received=lambda: received.append(1),
                on_dropped=lambda: dropped.append(1),
            ),
            1.0,
        )
        cluster.until(lambda: bool(received or dropped), "the proposal's fate")
        cluster.tick(5)
    finally:
        proposer.stop()
    assert received == [] and dropped == [1]


def test_a_batch_the_log_takes_is_acknowledged_received(cluster: Cluster) -> None:
    """The ordinary case is unchanged: an entry the leader's log takes gets its `received` ack."""
    cluster.elect(0)
    proposer = Proposer(cluster[0].engine)
    received: list[int] = []
    dropped: list[int] = []
    try:
        assert proposer.offer(
            Proposal(b"\x0a\x00", 1, lambda: True, lambda: received.append(1), lambda: dropped.append(1)), 1.0
        )
        cluster.until(lambda: bool(received or dropped), "the proposal's fate")
    finally:
        proposer.stop()
    assert received == [1] and dropped == []
