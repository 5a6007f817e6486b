"""The engine's tick reads pysyncobj's clock, the one every pysyncobj deadline is kept in. Real engines
over loopback, ticked by the test, with pysyncobj's clock set far from time.monotonic (on a real machine
CLOCK_MONOTONIC_RAW and CLOCK_MONOTONIC drift apart: 0.31 s after 9 hours on the shared test machine)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pysyncobj.syncobj
import pysyncobj.transport
import pytest
from raft_harness import Cluster

TICKS = 30  # idle ticks of the leader, all well within one heartbeat period


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster whose pysyncobj clock is `request.param` seconds behind time.monotonic."""
    offset_s = float(request.param)
    behind = lambda: time.monotonic() - offset_s  # noqa: E731
    monkeypatch.setattr(pysyncobj.syncobj, "monotonicTime", behind)
    monkeypatch.setattr(pysyncobj.transport, "monotonicTime", behind)
    cluster = Cluster(tmp_path)
    yield cluster
    cluster.close()


# More than the heartbeat period (0.03 s here), less than the followers' election timeout (10-20 s):
# the drift of the shared machine (0.31 s against a 0.1 s heartbeat).
@pytest.mark.parametrize("cluster", [0.5], indirect=True)
def test_an_idle_leader_sends_heartbeats_once_per_period_not_every_tick(cluster: Cluster) -> None:
    """An idle leader sends appends once per heartbeat period. With the tick reading time.monotonic
    against pysyncobj's deadline (before the fix), the next heartbeat was always due: it sent on
    every tick, and each reply woke it to send again (930 round trips a second per follower)."""
    leader = cluster[0]
    cluster.elect(0)
    cluster.until(lambda: leader.engine.raftCommitIndex == leader.log_end(), "the leader's no-op to commit")
    sends = []
    send_appends = leader.engine._SyncObj__sendAppendEntries

    def counted() -> None:
        sends.append(time.monotonic())
        send_appends()

    leader.engine._SyncObj__sendAppendEntries = counted
    started = time.monotonic()
    for _ in range(TICKS):
        leader.engine.doTick(0.0)
    elapsed_s = time.monotonic() - started
    allowed = elapsed_s / leader.engine._SyncObj__conf.appendEntriesPeriod + 1
    assert allowed < TICKS / 2, f"the ticks took {elapsed_s:.3f} s: too slow to tell"
    assert len(sends) <= allowed, (len(sends), elapsed_s)


# More than the followers' election timeout (10-20 s here).
@pytest.mark.parametrize("cluster", [1000.0], indirect=True)
def test_a_follower_that_hears_its_leader_does_not_stand(cluster: Cluster) -> None:
    """A follower that hears from its leader keeps following. With the tick comparing pysyncobj's
    election deadline against time.monotonic (before the fix), a follower whose clocks had drifted
    apart by more than its election timeout (here 10-20 s) stood for election at once."""
    cluster.elect(0)
    term = cluster[0].engine.raftCurrentTerm
    cluster.tick(50)
    assert cluster[0].engine._isLeader()
    assert cluster[1].engine.raftCurrentTerm == term
