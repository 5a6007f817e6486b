"""The wire contract across fail-over, checked on every frame a raw client (tests/wire_stub.py) receives."""

from __future__ import annotations

import time

import grpc
import pytest
from wire_stub import WireClient

from laminar.v1 import laminar_pb2 as pb
from laminar.v1 import laminar_pb2_grpc

LOAD_MESSAGES_MAX = 3_000_000  # the load stops earlier, when the kills are done; this bounds it anyway
PROGRESS_BEFORE_KILL = 20_000  # commits between two kills, so each kill lands under pipelined load
ROUND_TIMEOUT_S = 30.0


def _topic_offset(addresses: list[str], topic: str) -> int:
    """The topic's last consequence offset, read linearizably from the leader (following redirects)."""
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while time.monotonic() < deadline:
        for address in addresses:
            with grpc.insecure_channel(address) as channel:
                try:
                    got = laminar_pb2_grpc.LaminarStub(channel).Get(pb.GetRequest(topic=topic, key=b"k1"), timeout=5)
                except grpc.RpcError:
                    continue
                return got.topic_offset
        time.sleep(0.1)
    raise AssertionError(f"no leader answered a Get within {ROUND_TIMEOUT_S} s")


def _kill_leader_rounds(make_cluster, kills: int) -> None:  # type: ignore[no-untyped-def]
    c = make_cluster(3)
    client = WireClient(c.addresses, "wire")
    try:
        client.create_topic_then_produce(LOAD_MESSAGES_MAX)
        for _ in range(kills):
            target = client.committed_through + PROGRESS_BEFORE_KILL
            assert client.wait_committed(target, ROUND_TIMEOUT_S), f"no progress to {target}: {client.errors[-5:]}"
            leader = c.leader_id()
            c.cluster.kill(leader)  # kill -9, with frames of up to 4096 puts in flight
            target = client.committed_through + PROGRESS_BEFORE_KILL
            assert client.wait_committed(target, ROUND_TIMEOUT_S), f"no progress after the kill: {client.errors[-5:]}"
            c.cluster.start(leader)
            c.leader_id()  # the three agree on a leader again before the next kill
        last = client.finish(ROUND_TIMEOUT_S)
    finally:
        client.close()
    assert client.violations == [], client.violations[:20]
    assert client.sessions > kills, "every kill broke the session and the client resumed elsewhere"
    # Each nonce committed once, in order (checked per frame), and applied once: the topic holds the
    # create and one event per put.
    assert _topic_offset(c.addresses, "wire") == last
    c.assert_replicas_identical()


def test_commits_stay_in_nonce_order_and_never_overlap_when_the_leader_is_killed(make_cluster) -> None:
    """Six kill -9 of the leader under pipelined load: every Commit the client receives starts at its
    oldest uncommitted nonce (in order, no overlap, each nonce once) and follows its `received`."""
    _kill_leader_rounds(make_cluster, kills=6)


@pytest.mark.slow
def test_commits_stay_in_order_through_many_leader_kills(make_cluster) -> None:
    """The same contract through twelve kill -9 of the leader (`pytest -m slow`)."""
    _kill_leader_rounds(make_cluster, kills=12)
