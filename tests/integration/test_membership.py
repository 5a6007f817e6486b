"""Membership changes at runtime, under load: add a node, remove a node, replace the leader."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

import laminar
from laminar.client import change_membership
from laminar.local_cluster import LocalCluster

LOAD_SECONDS_MAX = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_extra_node(c, node_id: int) -> tuple[LocalCluster, str, str]:  # type: ignore[no-untyped-def]
    """Start node `node_id` with a config naming the running cluster plus itself."""
    client, raft = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    with open(c.cluster.config_path) as f:
        text = f.read()
    text += f'\n[[nodes]]\nid = {node_id}\nclient = "{client}"\nraft = "{raft}"\n'
    config = os.path.join(os.path.dirname(c.cluster.config_path), f"with-{node_id}.toml")
    with open(config, "w") as f:
        f.write(text)
    extra = LocalCluster(config, [node_id], log_dir=c.log_dir)
    extra.start(node_id)
    return extra, client, raft


class Load:
    """A client pipelining puts in the background until stopped; bounded in count and time."""

    def __init__(self, addresses: list[str], topic: str, count_max: int = 20000) -> None:
        self.client = laminar.Client(addresses)
        self.client.create_topic(topic).committed(timeout=10)
        self.topic, self.count_max = topic, count_max
        self.pendings: list[laminar.Pending] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_SECONDS_MAX
        while not self._stop.is_set() and len(self.pendings) < self.count_max and time.monotonic() < deadline:
            self.pendings.append(self.client.put(self.topic, "k", str(len(self.pendings))))
            if len(self.pendings) % 100 == 0:
                time.sleep(0.01)

    def stop_and_check(self) -> int:
        self._stop.set()
        self._thread.join(LOAD_SECONDS_MAX)
        self.client.flush(timeout=60)
        self.client.close()
        assert all(p.committed(0).ok for p in self.pendings)
        return len(self.pendings)


def _wait_members(c, count: int) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for status in laminar.cluster_status(c.addresses, 1.0):
            if "error" not in status and status["role"] == "leader" and len(status.get("peers", [])) == count:
                return status["peers"]
        time.sleep(0.2)
    raise AssertionError(f"membership did not reach {count}: {laminar.cluster_status(c.addresses, 1.0)}")


def test_add_a_node_under_load(make_cluster) -> None:
    """A fourth node joins while a client writes; it catches up and matches the others."""
    c = make_cluster(3)
    load = Load(c.addresses, "grow")
    extra, client, raft = _start_extra_node(c, 4)
    try:
        time.sleep(0.5)
        peers = change_membership(c.addresses, "add", "4", raft, client)
        assert sorted(p["node_id"] for p in peers) == ["1", "2", "3", "4"]
        time.sleep(0.5)
        count = load.stop_and_check()
        c.addresses.append(client)
        c.cluster.node_ids = [1, 2, 3]
        assert len(_wait_members(c, 4)) == 4
        c.wait_applied(count + 1, [1, 2, 3])
        c.assert_replicas_identical()
        with laminar.Listener([client], "grow") as listener:
            assert [e.consequence_offset for e in listener.take(count + 1, timeout=30)] == list(range(1, count + 2))
    finally:
        extra.stop_all()


def test_remove_a_node_under_load(make_cluster) -> None:
    """A follower leaves while a client writes; the remaining two keep committing."""
    c = make_cluster(3)
    leader = c.leader_id()
    leaving = next(n for n in (1, 2, 3) if n != leader)
    load = Load(c.addresses, "shrink")
    time.sleep(0.5)
    peers = change_membership(c.addresses, "remove", str(leaving))
    assert sorted(p["node_id"] for p in peers) == sorted(str(n) for n in (1, 2, 3) if n != leaving)
    c.cluster.stop(leaving)
    time.sleep(0.5)
    count = load.stop_and_check()
    with laminar.Client(c.addresses) as client:
        assert client.put("shrink", "k", "after").committed(timeout=10).ok
    remaining = [c.address_of(n) for n in (1, 2, 3) if n != leaving]
    with laminar.Listener(remaining, "shrink") as listener:
        assert len(listener.take(count + 2, timeout=30)) == count + 2


def test_replace_the_leader(make_cluster) -> None:
    """Add a node, then remove the leader: leadership moves, the cluster carries on with the new node."""
    c = make_cluster(3)
    old_leader = c.leader_id()
    load = Load(c.addresses, "swap")
    extra, client, raft = _start_extra_node(c, 4)
    try:
        change_membership(c.addresses, "add", "4", raft, client)
        peers = change_membership(c.addresses, "remove", str(old_leader))
        assert sorted(p["node_id"] for p in peers) == sorted(["4"] + [str(n) for n in (1, 2, 3) if n != old_leader])
        c.cluster.stop(old_leader)
        count = load.stop_and_check()
        survivors = [c.address_of(n) for n in (1, 2, 3) if n != old_leader] + [client]
        with laminar.Client(survivors) as writer:
            assert writer.put("swap", "k", "after").committed(timeout=20).ok
        with laminar.Listener([client], "swap") as listener:
            assert len(listener.take(count + 2, timeout=30)) == count + 2
    finally:
        extra.stop_all()


def test_refused_changes_say_why(make_cluster) -> None:
    """Changes that would lose quorum, or name unknown or duplicate nodes, are refused clearly."""
    c = make_cluster(3)
    leader = c.leader_id()
    followers = [n for n in (1, 2, 3) if n != leader]
    with pytest.raises(laminar.InvalidRequest, match="not a member"):
        change_membership(c.addresses, "remove", "9")
    with pytest.raises(laminar.InvalidRequest, match="already a member"):
        change_membership(c.addresses, "add", "2", "127.0.0.1:1", "127.0.0.1:2")
    c.cluster.kill(followers[0])
    with pytest.raises(laminar.InvalidRequest, match="no quorum"):
        change_membership(c.addresses, "remove", str(followers[1]))
    with pytest.raises(laminar.InvalidRequest, match="no quorum"):
        change_membership(c.addresses, "add", "7", "127.0.0.1:9", "127.0.0.1:10")
