"""Log compaction by store checkpoint: restarts, catch-up by snapshot, interrupted snapshots."""

from __future__ import annotations

import os

import laminar

SMALL_LOG = "raft_log_entries_max = 20"


def _write_in_many_entries(client: laminar.Client, topic: str, start: int, count: int, group: int = 10) -> None:
    """Commit in small groups so the log gets many entries (each entry is one batch)."""
    for base in range(start, start + count, group):
        for n in range(base, min(base + group, start + count)):
            client.put(topic, "k", str(n))
        client.flush(timeout=30)


def _history(address: str, topic: str, count: int) -> list[laminar.Event]:
    with laminar.Listener([address], topic) as listener:
        return listener.take(count, timeout=60)


def test_restart_after_compaction_serves_full_history(make_cluster) -> None:
    """After several compactions, a full cluster restart comes back with every event."""
    c = make_cluster(3, extra_config=SMALL_LOG)
    with laminar.Client(c.addresses) as client:
        client.create_topic("s").committed(timeout=10)
        _write_in_many_entries(client, "s", 0, 600)
    for node in (1, 2, 3):
        node_dir = os.path.join(c.data_dir, f"node-{node}")
        assert os.path.getsize(os.path.join(node_dir, "raft.snapshot")) > 0, "a snapshot was written"
    expected = _history(c.addresses[0], "s", 601)
    c.cluster.stop_all()
    c.cluster.start_all()
    c.leader_id()
    for address in c.addresses:
        assert _history(address, "s", 601) == expected
    with laminar.Client(c.addresses) as client:
        assert client.put("s", "k", "after").committed(timeout=10).intention_offset == 602
    c.assert_replicas_identical()


def test_node_down_through_compactions_catches_up_by_snapshot(make_cluster) -> None:
    """A follower that missed entries the others compacted away is sent a snapshot and converges."""
    c = make_cluster(3, extra_config=SMALL_LOG)
    leader = c.leader_id()
    lagging = next(n for n in (1, 2, 3) if n != leader)
    with laminar.Client(c.addresses) as client:
        client.create_topic("s").committed(timeout=10)
        _write_in_many_entries(client, "s", 0, 100)
        c.cluster.kill(lagging)
        _write_in_many_entries(client, "s", 100, 500)
        last = client.put("s", "k", "last").committed(timeout=10)
    c.cluster.start(lagging)
    c.wait_applied(last.intention_offset, [lagging], timeout_s=60)
    expected = _history(c.address_of(leader), "s", 602)
    assert _history(c.address_of(lagging), "s", 602) == expected
    with open(os.path.join(c.log_dir, f"node-{lagging}.log")) as f:
        assert "installed a snapshot" in f.read(), "it caught up from a snapshot, not by replay"
    c.assert_replicas_identical()


def test_node_starts_after_a_crash_in_the_middle_of_a_snapshot(make_cluster) -> None:
    """Leftovers of an interrupted snapshot build, receive or install do not stop a node starting."""
    c = make_cluster(1, extra_config=SMALL_LOG)
    with laminar.Client(c.addresses) as client:
        client.create_topic("s").committed(timeout=10)
        _write_in_many_entries(client, "s", 0, 300)
    expected = _history(c.addresses[0], "s", 301)
    c.cluster.kill(1)
    node_dir = os.path.join(c.data_dir, "node-1")
    os.makedirs(os.path.join(node_dir, "store.new"))  # an install interrupted before the swap
    with open(os.path.join(node_dir, "store.new", "CURRENT"), "w") as f:
        f.write("garbage")
    for leftover in ("raft.snapshot.building", "raft.snapshot.1.tmp", "raft.snapshot.tmp"):
        with open(os.path.join(node_dir, leftover), "wb") as f:
            f.write(b"half a snapshot")
    c.cluster.start(1)
    c.leader_id()
    assert _history(c.addresses[0], "s", 301) == expected
    with laminar.Client(c.addresses) as client:
        assert client.put("s", "k", "after").committed(timeout=10).ok
