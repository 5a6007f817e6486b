"""Durable consumers and consumer groups on a real 3-node cluster (docs/consumers.md)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import laminar
from laminar.client import describe_topic


@pytest.fixture(scope="module")
def cluster(module_cluster):  # type: ignore[no-untyped-def]
    """One 3-node cluster for this module; each test uses its own topics."""
    return module_cluster


def _leader(addresses: list[str]) -> int:
    statuses = laminar.cluster_status(addresses, timeout_s=2.0)
    return next(int(s["node_id"]) for s in statuses if s.get("role") == "leader")


def _caught_up(addresses: list[str], address: str, wait_s: float = 30.0) -> None:
    """Wait until the node at `address` has applied everything the leader had committed when we asked."""
    statuses = laminar.cluster_status(addresses, timeout_s=2.0)
    target = max(int(s.get("commit_index", 0)) for s in statuses if s.get("role") == "leader")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = laminar.cluster_status([address], timeout_s=2.0)[0]
        if int(status.get("applied_index", 0)) >= target:
            return
        time.sleep(0.1)
    raise AssertionError(f"{address} did not apply through {target} within {wait_s} s")


def _consumer(addresses: list[str], topic: str, name: str) -> laminar.ConsumerInfo:
    info = describe_topic(addresses, topic)
    return next(c for c in info.consumers if c.name == name)


def test_durable_consumer_resumes_after_process_and_leader_restart(cluster) -> None:
    """A consumer's acked position is replicated: a new Listener resumes after it, also after the leader is killed."""
    nodes, addresses = cluster
    with laminar.Client(addresses) as client:
        client.create_topic("orders").committed(timeout=10)
        for n in range(100):
            client.put("orders", f"k{n}", f"v{n}")
        client.flush(timeout=30)
    with laminar.Listener(addresses, "orders", consumer="billing") as listener:
        events = listener.take(41, timeout=30)  # the create event, then 40 puts
        assert [e.consequence_offset for e in events] == list(range(1, 42))
        for event in events:
            listener.ack(event)  # one intention for all of them: acks are batched
    assert _consumer(addresses, "orders", "billing").acked_offset == 41
    leader = _leader(addresses)
    nodes.kill(leader)
    try:
        with laminar.Listener(addresses, "orders", consumer="billing") as listener:
            first = listener.next_event(timeout=30)
            assert first.consequence_offset == 42
            listener.ack(first)
    finally:
        nodes.start(leader)
    _caught_up(addresses, addresses[leader - 1])  # a node still replaying its log resumes from its own (older) view
    with laminar.Listener([addresses[leader - 1]], "orders", consumer="billing") as listener:
        assert listener.next_event(timeout=30).consequence_offset == 43  # the restarted node knows it too


def test_reset_delete_and_bad_input(cluster) -> None:
    """reset moves a position back, delete forgets it; acks past the end and bad names get clear errors."""
    _, addresses = cluster
    with laminar.Client(addresses) as client:
        client.create_topic("audit").committed(timeout=10)
        for n in range(10):
            client.put("audit", "k", str(n))
        assert client.ack("audit", "a", 8).committed(timeout=10).ok
        assert client.reset_consumer("audit", "a", 3).committed(timeout=10).ok
        past = client.ack("audit", "a", 99).committed(timeout=10)
        assert not past.ok and "past the last event" in past.reason
        with pytest.raises(laminar.InvalidRequest, match="consumer name"):
            client.ack("audit", "bad name", 1)
        with pytest.raises(laminar.InvalidRequest, match="offset"):
            client.ack("audit", "a", -1)
    with laminar.Listener(addresses, "audit", consumer="a") as listener:
        assert listener.next_event(timeout=30).consequence_offset == 4
    with laminar.Client(addresses) as client:
        assert client.delete_consumer("audit", "a").committed(timeout=10).ok
        assert client.delete_consumer("audit", "a").committed(timeout=10).effect == "INVALID"
        assert client.destroy_topic("audit").committed(timeout=10).ok
    with pytest.raises(laminar.InvalidRequest):
        laminar.Listener(addresses, "audit", from_offset=3, consumer="a")


def test_cli_listen_as_consumer_then_list_describe_reset(cluster, capsys) -> None:
    """`laminar listen --consumer` acks what it printed; `consumer list|describe|reset|delete` show and move it."""
    from laminar.cli import main

    _, addresses = cluster
    flags = ["--addresses", ",".join(addresses), "--timeout", "20"]
    with laminar.Client(addresses) as client:
        client.create_topic("jobs").committed(timeout=10)
        for n in range(5):
            client.put("jobs", f"k{n}", "v")
        client.flush(timeout=10)
    assert main(["listen", "jobs", "--consumer", "cli", "--count", "3", *flags]) == 0
    assert main(["consumer", "list", "jobs", *flags]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].split() == ["name", "kind", "acked", "lag", "members"]
    assert out[-1].split() == ["cli", "durable", "3", "3", "-"]
    assert main(["consumer", "reset", "jobs", "cli", "--to", "1", *flags]) == 0
    assert main(["consumer", "describe", "jobs", "cli", "--json", *flags]) == 0
    described = capsys.readouterr().out.splitlines()[-1]
    assert '"acked_offset": 1' in described and '"lag": 5' in described
    assert main(["consumer", "delete", "jobs", "cli", *flags]) == 0
    assert main(["consumer", "describe", "jobs", "cli", *flags]) == 1  # not found


MEMBER_SCRIPT = """
import sys, laminar
addresses, topic, group, member, path = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
settings = laminar.GroupSettings(lease_ms=int(sys.argv[6]))
listener = laminar.Listener(addresses, topic, group=group, member=member, unacked_max=20, group_settings=settings)
with open(path, "a") as out:
    for event in listener:  # runs until killed
        out.write(f"{event.consequence_offset}\\n")
        out.flush()
        if event.consequence_offset % 3:  # acks two events in three: the rest wait for redelivery
            listener.ack(event)
"""
LEASE_MS = 1500


def _wait(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def test_group_member_killed_mid_batch_and_leader_killed(cluster, tmp_path) -> None:
    """kill -9 of a member mid-batch and of the leader: every event is acknowledged once by the group, none lost,
    the dead member's events redelivered (and counted), the dead member dropped."""
    nodes, addresses = cluster
    events = 301  # the create event and 300 puts
    with laminar.Client(addresses) as client:
        client.create_topic("work").committed(timeout=10)
        for n in range(events - 1):
            client.put("work", f"job{n}", "x")
        client.flush(timeout=30)
    log = tmp_path / "a.log"
    member_a = subprocess.Popen(
        [sys.executable, "-c", MEMBER_SCRIPT, ",".join(addresses), "work", "crew", "a", str(log), str(LEASE_MS)]
    )
    try:
        _wait(lambda: log.exists() and len(log.read_text().split()) >= 30, 60, "member a received 30 events")
    finally:
        member_a.kill()  # -9, mid-batch: it holds leases it has not acknowledged
        member_a.wait(10)
    seen_by_a = {int(x) for x in log.read_text().split()}
    processed_by_b: list[int] = []
    settings = laminar.GroupSettings(lease_ms=LEASE_MS)
    leader = _leader(addresses)
    try:
        with laminar.Listener(
            addresses, "work", group="crew", member="b", unacked_max=20, group_settings=settings
        ) as b:
            deadline = time.monotonic() + 90
            while True:
                assert time.monotonic() < deadline, f"b got {len(processed_by_b)} events, a saw {len(seen_by_a)}"
                try:
                    event = b.next_event(timeout=1)
                except laminar.Timeout:  # idle: done once every event was seen and none is leased any more
                    b.flush(timeout=30)
                    everything = len(set(processed_by_b) | seen_by_a) == events
                    if everything and not _consumer(addresses, "work", "crew").leases:
                        break
                    continue
                processed_by_b.append(event.consequence_offset)
                b.ack(event)
                if len(processed_by_b) == 100:
                    nodes.kill(leader)  # the group goes on through an election
            b.flush(timeout=30)
            info = _consumer(addresses, "work", "crew")
    finally:
        nodes.start(leader)
    assert set(processed_by_b) | seen_by_a == set(range(1, events + 1)), "no event lost"
    assert (info.acked, info.leases, info.acked_offset, info.delivered_offset) == (events, 0, events, events)
    assert info.members == ("b",), "the killed member was dropped once silent for a lease"
    assert info.redeliveries >= 1 and seen_by_a & set(processed_by_b), "a's unacknowledged events came to b"
