"""Crashes and restarts of real node processes: nothing committed is lost, nothing applies twice."""

from __future__ import annotations

import threading
import time

import pytest

import laminar
from laminar import Effect

LOAD_MESSAGES = 6000


def _stream(address: str, topic: str, count: int) -> list[laminar.Event]:
    with laminar.Listener([address], topic) as listener:
        return listener.take(count, timeout=60)


def test_kill_leader_during_pipelined_load_every_message_commits_exactly_once(make_cluster) -> None:
    """kill -9 of the leader mid-load: every sent message commits once, in order; the client carries on."""
    c = make_cluster(3)
    with laminar.Client(c.addresses) as client:
        client.create_topic("load").committed(timeout=10)
        old_leader = c.leader_id()
        pendings: list[laminar.Pending] = []

        def send() -> None:
            for n in range(LOAD_MESSAGES):
                pendings.append(client.put("load", "k", str(n)))
                if n % 500 == 0:
                    time.sleep(0.02)  # keep the load going while the kill lands

        sender = threading.Thread(target=send)
        sender.start()
        while len(pendings) < LOAD_MESSAGES // 3:
            time.sleep(0.005)
        c.cluster.kill(old_leader)
        sender.join(60)
        client.flush(timeout=60)
        assert all(p.committed(0).effect is Effect.VALID for p in pendings)
        new_leader = c.leader_id(exclude=old_leader)
        assert new_leader != old_leader
        after = client.put("load", "after", "crash").committed(timeout=10)
        assert after.ok, "the client keeps working after fail-over"

    survivors = [n for n in (1, 2, 3) if n != old_leader]
    total = 1 + LOAD_MESSAGES + 1
    streams = [_stream(c.address_of(n), "load", total) for n in survivors]
    assert streams[0] == streams[1]
    values = [e.value for e in streams[0] if e.key == b"k"]
    assert values == [str(n).encode() for n in range(LOAD_MESSAGES)], "no gap, no duplicate, in order"
    offsets = [p.committed(0).intention_offset for p in pendings]
    assert offsets == sorted(set(offsets)), "each message has its own intention offset"

    c.cluster.start(old_leader)  # the crashed node comes back and catches up
    c.wait_applied(after.intention_offset, [old_leader])
    assert _stream(c.address_of(old_leader), "load", total) == streams[0]
    c.assert_replicas_identical()


def test_node_restarted_on_its_data_directory_serves_full_history(make_cluster) -> None:
    """A follower stopped, written past, and restarted serves every event, identical to the others."""
    c = make_cluster(3)
    leader = c.leader_id()
    follower = next(n for n in (1, 2, 3) if n != leader)
    with laminar.Client(c.addresses) as client:
        client.create_topic("h").committed(timeout=10)
        for n in range(500):
            client.put("h", "k", str(n))
        client.flush(timeout=30)
        c.cluster.kill(follower)
        for n in range(500, 1000):
            client.put("h", "k", str(n))
        client.flush(timeout=30)
        last = client.put("h", "k", "last").committed(timeout=10)
    c.cluster.start(follower)
    c.wait_applied(last.intention_offset, [follower])
    expected = _stream(c.address_of(leader), "h", 1002)
    assert _stream(c.address_of(follower), "h", 1002) == expected

    c.cluster.stop_all()  # the whole cluster restarts on its data
    c.cluster.start_all()
    c.leader_id()
    for node in (1, 2, 3):
        assert _stream(c.address_of(node), "h", 1002) == expected
    with laminar.Client(c.addresses) as client:
        assert client.put("h", "k", "more").committed(timeout=10).intention_offset == last.intention_offset + 1


def test_node_refuses_another_nodes_data_directory(make_cluster, tmp_path) -> None:
    """A node started on the data directory of another id refuses to start, with a clear message."""
    import os
    import subprocess
    import sys

    c = make_cluster(1)
    c.cluster.stop_all()
    os.rename(os.path.join(c.data_dir, "node-1"), os.path.join(c.data_dir, "node-2"))
    config = c.cluster.config_path
    with open(config) as f:
        text = f.read().replace("id = 1", "id = 2")
    other = tmp_path / "other.toml"
    other.write_text(text)
    os.rename(os.path.join(c.data_dir, "node-2", "node-id"), os.path.join(c.data_dir, "node-2", "node-id.keep"))
    with open(os.path.join(c.data_dir, "node-2", "node-id"), "w") as f:
        f.write("1\n")
    result = subprocess.run(
        [sys.executable, "-m", "laminar", "node", "--config", str(other), "--id", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "belongs to node 1, not node 2" in result.stderr


def test_listener_resumes_on_another_node_when_its_node_dies(make_cluster) -> None:
    """A listener whose node is killed carries on from its last offset elsewhere: no gap, no repeat."""
    c = make_cluster(3)
    leader = c.leader_id()
    follower = next(n for n in (1, 2, 3) if n != leader)
    others = [c.address_of(follower)] + [c.address_of(n) for n in (1, 2, 3) if n != follower]
    with laminar.Client(c.addresses) as client, laminar.Listener(others, "r") as listener:
        client.create_topic("r").committed(timeout=10)
        for n in range(300):
            client.put("r", "k", str(n))
        client.flush(timeout=30)
        first = listener.take(301, timeout=30)
        c.cluster.kill(follower)
        for n in range(300, 600):
            client.put("r", "k", str(n))
        client.flush(timeout=30)
        rest = listener.take(300, timeout=30)
    offsets = [e.consequence_offset for e in first + rest]
    assert offsets == list(range(1, 602))
    assert [e.value for e in rest] == [str(n).encode() for n in range(300, 600)]


@pytest.mark.parametrize("victims", ["follower", "leader", "all"])
def test_kill_nodes_during_load_from_several_clients(make_cluster, victims: str) -> None:
    """kill -9 of a follower, the leader, or every node mid-load from 3 clients, then restart:
    committed messages survive exactly once, clients carry on by themselves, replicas end identical."""
    c = make_cluster(3)
    with laminar.Client(c.addresses) as admin:
        admin.create_topic("all").committed(timeout=10)
    clients = [laminar.Client(c.addresses) for _ in range(3)]
    pendings: list[list[laminar.Pending]] = [[] for _ in clients]
    committed_before_crash: list[int] = []
    try:
        for n in range(1500):
            for i, client in enumerate(clients):
                pendings[i].append(client.put("all", f"c{i}", str(n)))
            if n == 700:
                for client in clients:
                    client.flush(timeout=30)
                committed_before_crash = [len(p) for p in pendings]
                leader = c.leader_id()
                targets = {
                    "follower": [next(x for x in (1, 2, 3) if x != leader)],
                    "leader": [leader],
                    "all": [1, 2, 3],
                }[victims]
                for node in targets:
                    c.cluster.kill(node)
                for node in targets:
                    c.cluster.start(node)
        for client in clients:
            client.flush(timeout=90)
    finally:
        for client in clients:
            client.close()
    assert committed_before_crash == [701, 701, 701]
    assert all(p.committed(0).ok for ps in pendings for p in ps)
    total = 1 + 3 * 1500
    stream = _stream(c.addresses[0], "all", total)
    for i in range(3):
        values = [e.value for e in stream if e.key == f"c{i}".encode()]
        assert values == [str(n).encode() for n in range(1500)], f"client {i}: every message once, in order"
    c.assert_replicas_identical()
