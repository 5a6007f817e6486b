"""A cluster as close to three machines as one machine allows: each node in its own network namespace
with its own IP address, joined by veth pairs to a bridge; the clients in a fourth namespace.

Needs root (`ip netns add`); skipped with the reason otherwise. Layout and cleanup: tests/netns.py.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import netns

NODE_IDS = (1, 2, 3)
CLIENT_HOST = 4  # the fourth namespace: clients and listeners
TOPIC = "across-hosts"
KEY = "k"
MESSAGES_BEFORE_KILL = 300
MESSAGES_AFTER_KILL = 300
LEADER_TIMEOUT_S = 30.0
COMMIT_TIMEOUT_S = 60.0
LISTEN_TIMEOUT_S = 30.0
CONVERGE_TIMEOUT_S = 30.0
STATUS_TIMEOUT_S = 1.0
STREAM_IDLE_S = 2.0
POLL_S = 0.2
LOG_FINDINGS = ("CRITICAL", "Traceback")


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> netns.Topology:
    """Four namespaces on one bridge (no address in the root namespace: only the hosts talk)."""
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(f"needs network namespaces: {reason}")
    try:
        net = netns.Topology(hosts=len(NODE_IDS) + 1, root_access=False)
    except netns.NetnsUnavailable as e:
        pytest.skip(f"needs network namespaces: {e}")
    request.addfinalizer(net.destroy)  # registered first, so it runs after the nodes are stopped
    net.create()
    return net


@pytest.fixture
def cluster(topology: netns.Topology, tmp_path: Any, request: pytest.FixtureRequest) -> netns.NamespacedCluster:
    """Node N runs in namespace N, with client port 7101 and Raft port 7201 on its own address."""
    config, logs = tmp_path / "cluster.toml", tmp_path / "logs"
    logs.mkdir()
    netns.write_cluster_config(str(config), str(tmp_path / "data"), netns.node_addresses(topology, NODE_IDS))
    nodes = netns.NamespacedCluster(str(config), list(NODE_IDS), log_dir=str(logs), topology=topology)

    def stop() -> None:
        nodes.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(_logs(str(logs)))  # shown by pytest under "Captured stdout teardown"

    request.addfinalizer(stop)
    nodes.start_all()
    return nodes


@pytest.fixture
def clients(
    topology: netns.Topology, cluster: netns.NamespacedCluster, tmp_path: Any, request: pytest.FixtureRequest
) -> netns.ClientAgent:
    agent = netns.ClientAgent(topology, CLIENT_HOST, _client_addresses(topology), str(tmp_path / "logs" / "agent.log"))
    request.addfinalizer(agent.close)
    return agent


def test_put_listen_kill_the_leader_and_carry_on_across_namespaces(
    topology: netns.Topology, cluster: netns.NamespacedCluster, clients: netns.ClientAgent
) -> None:
    """Across four namespaces: a follower's listener sees pipelined puts; after kill -9 of the leader
    every acknowledged put is in each surviving node's stream exactly once and the digests agree."""
    addresses = dict(zip(NODE_IDS, _client_addresses(topology), strict=True))
    for node_id in NODE_IDS:  # the pid we hold is the node itself, inside its own namespace
        _assert_runs_in(cluster.pid(node_id), topology.host(node_id).namespace, "laminar")
    _assert_runs_in(clients.process.pid, topology.host(CLIENT_HOST).namespace, "client-agent")

    leader = _leader(clients, list(addresses.values()))
    created = clients.call("create_topic", timeout_s=COMMIT_TIMEOUT_S, topic=TOPIC)
    assert created["ok"], created
    follower = next(n for n in NODE_IDS if n != leader)
    clients.call("listen", timeout_s=STATUS_TIMEOUT_S, addresses=[addresses[follower]], topic=TOPIC)

    before = [f"before-{i}" for i in range(MESSAGES_BEFORE_KILL)]
    _assert_all_committed(clients.call("put", timeout_s=COMMIT_TIMEOUT_S, topic=TOPIC, key=KEY, values=before))
    heard = _heard(clients, MESSAGES_BEFORE_KILL)
    assert _put_values(heard) == before, "the follower's listener saw every put, once, in order"

    killed_pid = cluster.pid(leader)
    cluster.kill(leader)  # SIGKILL to that pid only, then wait for it
    assert not os.path.exists(f"/proc/{killed_pid}"), f"node {leader} (pid {killed_pid}) is gone"
    assert all(cluster.alive(n) for n in NODE_IDS if n != leader)

    after = [f"after-{i}" for i in range(MESSAGES_AFTER_KILL)]
    _assert_all_committed(clients.call("put", timeout_s=COMMIT_TIMEOUT_S, topic=TOPIC, key=KEY, values=after))
    heard = _heard(clients, MESSAGES_BEFORE_KILL + MESSAGES_AFTER_KILL)
    _assert_exactly_once(heard, before + after, f"listener on node {follower}")

    survivors = [addresses[n] for n in NODE_IDS if n != leader]
    streams = {
        a: clients.call("read", timeout_s=COMMIT_TIMEOUT_S, addresses=[a], topic=TOPIC, idle_s=STREAM_IDLE_S)
        for a in survivors
    }
    for address, events in streams.items():
        _assert_exactly_once(events, before + after, f"stream on {address}")
        assert events == streams[survivors[0]], f"{address} and {survivors[0]} hold different streams"
    _assert_digests_agree(clients, survivors)

    cluster.start(leader)  # carry on: the killed node comes back in its namespace and catches up
    _assert_runs_in(cluster.pid(leader), topology.host(leader).namespace, "laminar")
    _assert_digests_agree(clients, list(addresses.values()))
    assert _log_findings(cluster.log_dir or "") == [], "CRITICAL lines or tracebacks in the nodes' logs"


# ---- helpers -----------------------------------------------------------------------------------


def _client_addresses(topology: netns.Topology) -> list[str]:
    return [client for client, _ in netns.node_addresses(topology, NODE_IDS).values()]


def _assert_runs_in(pid: int, namespace: str, command_part: str) -> None:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        command_line = f.read().replace(b"\0", b" ").decode()
    assert command_part in command_line, f"pid {pid} is {command_line!r}"
    expected = os.stat(os.path.join(netns.NETNS_DIR, namespace)).st_ino
    assert os.readlink(f"/proc/{pid}/ns/net") == f"net:[{expected}]", f"pid {pid} is not in {namespace}"


def _leader(clients: netns.ClientAgent, addresses: list[str]) -> int:
    """The node every live node names as leader, seen from the clients' namespace."""
    deadline = time.monotonic() + LEADER_TIMEOUT_S
    statuses: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        statuses = clients.call("status", timeout_s=STATUS_TIMEOUT_S, addresses=addresses)
        live = [s for s in statuses if "error" not in s]
        leaders = {s["node_id"] for s in live if s["role"] == "leader"}
        if len(live) == len(addresses) and len(leaders) == 1 and {s.get("leader_id") for s in live} == leaders:
            return int(next(iter(leaders)))
        time.sleep(POLL_S)
    raise AssertionError(f"no agreed leader within {LEADER_TIMEOUT_S} s: {statuses}")


def _assert_all_committed(results: list[dict[str, Any]]) -> None:
    outcomes = Counter(r["outcome"] for r in results)
    assert outcomes == Counter(ok=len(results)), f"{outcomes}: {[r for r in results if r['outcome'] != 'ok'][:5]}"


def _heard(clients: netns.ClientAgent, puts: int) -> list[dict[str, Any]]:
    """The listener's events once it has delivered `puts` PUT events (plus the topic's creation)."""
    events: list[dict[str, Any]] = clients.call("heard", timeout_s=LISTEN_TIMEOUT_S, count=puts + 1)
    assert not [e for e in events if "error" in e], events[-3:]
    return events


def _put_values(events: list[dict[str, Any]]) -> list[str]:
    return [e["value"] for e in events if e["kind"] == "PUT"]


def _assert_exactly_once(events: list[dict[str, Any]], sent: list[str], where: str) -> None:
    offsets = [e["consequence_offset"] for e in events]
    assert offsets == list(range(1, len(events) + 1)), f"{where}: offsets not 1, 2, 3 ...: {offsets[:20]}"
    present = Counter(_put_values(events))
    assert [v for v, count in present.items() if count > 1] == [], f"{where}: present twice"
    assert set(present) == set(sent), f"{where}: missing {set(sent) - set(present)}, unsent {set(present) - set(sent)}"


def _assert_digests_agree(clients: netns.ClientAgent, addresses: list[str]) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    digests: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        digests = clients.call("digests", timeout_s=STATUS_TIMEOUT_S * 5, addresses=addresses)
        offsets = {d.get("intention_offset") for d in digests}
        if all("error" not in d for d in digests) and len(offsets) == 1:
            assert len({d["sha256"] for d in digests}) == 1, f"replicas differ at the same offset: {digests}"
            return
        time.sleep(POLL_S)
    raise AssertionError(f"nodes did not converge within {CONVERGE_TIMEOUT_S} s: {digests}")


def _log_findings(log_dir: str) -> list[str]:
    findings = []
    for name in sorted(os.listdir(log_dir)):
        with open(os.path.join(log_dir, name), errors="replace") as f:
            findings += [f"{name}: {line.strip()}" for line in f if any(word in line for word in LOG_FINDINGS)]
    return findings


def _logs(log_dir: str) -> str:
    parts = []
    for name in sorted(os.listdir(log_dir)):
        with open(os.path.join(log_dir, name), errors="replace") as f:
            parts.append(f"==== {name}\n{f.read()[-20000:]}")
    return "\n".join(parts)
