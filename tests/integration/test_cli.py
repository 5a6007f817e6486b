"""The `laminar` command against a real 3-node cluster, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CLI_TIMEOUT_S = 60
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def laminar_cli(cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ, LAMINAR_ADDRESSES=",".join(cluster.addresses))
    result = subprocess.run(
        [sys.executable, "-m", "laminar", *args], capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_topic_put_listen_status_commands(make_cluster, tmp_path) -> None:
    """topic create, put, delete, listen --from 0, status and status --json work against the cluster."""
    c = make_cluster(3)
    assert "VALID" in laminar_cli(c, "topic", "create", "chat").stdout
    assert "VALID" in laminar_cli(c, "put", "chat", "alice", "hello").stdout
    assert "VALID" in laminar_cli(c, "put", "chat", "bob", "hi").stdout
    assert "VALID" in laminar_cli(c, "delete", "chat", "bob").stdout
    again = laminar_cli(c, "topic", "create", "chat", check=False)
    assert again.returncode == 1 and "INVALID" in again.stdout and "already exists" in again.stdout

    listened = laminar_cli(c, "listen", "chat", "--from", "0", "--count", "4").stdout.splitlines()
    assert [line.split("\t")[:3] for line in listened] == [
        ["1", "CREATE_TOPIC", ""],
        ["2", "PUT", "alice"],
        ["3", "PUT", "bob"],
        ["4", "DELETE", "bob"],
    ]
    as_json = laminar_cli(c, "listen", "chat", "--from", "1", "--count", "1", "--json").stdout
    assert json.loads(as_json) == {"offset": 2, "intention_offset": 2, "kind": "PUT", "key": "alice", "value": "hello"}

    table = laminar_cli(c, "status").stdout
    assert table.splitlines()[0].split()[:3] == ["node_id", "address", "role"]
    assert table.count("leader") >= 1 and "chat" in table
    status = json.loads(laminar_cli(c, "status", "--json").stdout)
    nodes = status["nodes"]
    assert len(nodes) == 3 and sorted(n["role"] for n in nodes) == ["follower", "follower", "leader"]
    for node in nodes:
        for field in ("node_id", "role", "term", "commit_index", "applied_index", "intention_offset", "topics"):
            assert field in node
        assert node["topics"] == ["chat"]


def test_addresses_flag_overrides_and_unreachable_cluster_fails_clearly(make_cluster) -> None:
    """--addresses picks the nodes; a cluster that is down gives a non-zero exit and a message."""
    c = make_cluster(1)
    env_free = {k: v for k, v in os.environ.items() if k != "LAMINAR_ADDRESSES"}
    result = subprocess.run(
        [sys.executable, "-m", "laminar", "status", "--addresses", c.addresses[0]],
        capture_output=True,
        text=True,
        env=env_free,
        timeout=CLI_TIMEOUT_S,
    )
    assert result.returncode == 0 and "leader" in result.stdout
    c.cluster.stop_all()
    down = subprocess.run(
        [sys.executable, "-m", "laminar", "status", "--addresses", c.addresses[0]],
        capture_output=True,
        text=True,
        env=env_free,
        timeout=CLI_TIMEOUT_S,
    )
    assert down.returncode == 1 and "unreachable" in down.stdout


@pytest.mark.parametrize("nodes", [1, 3, 5])
def test_make_cluster_configs_are_valid(nodes: int) -> None:
    """cluster/local-N.toml: node N has client port 7100+N and Raft port 7200+N, data under var/."""
    from laminar.node.config import load_config

    config = load_config(os.path.join(ROOT, f"cluster/local-{nodes}.toml"), 1)
    assert [(n.id, n.client, n.raft) for n in config.nodes] == [
        (i, f"127.0.0.1:{7100 + i}", f"127.0.0.1:{7200 + i}") for i in range(1, nodes + 1)
    ]
    assert config.data_dir.startswith("var/")


def test_cluster_run_starts_every_node_and_ctrl_c_stops_them(tmp_path) -> None:
    """`laminar cluster run` (what `make cluster` runs) serves a cluster; Ctrl-C stops all nodes."""
    import signal
    import time

    import laminar
    from laminar.local_cluster import free_port_block, write_config

    base = free_port_block(3)
    config = tmp_path / "c.toml"
    write_config(str(config), 3, base, str(tmp_path / "data"))
    addresses = [f"127.0.0.1:{base + n}" for n in (1, 2, 3)]
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "laminar", "cluster", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        with laminar.Client(addresses) as client:
            assert client.create_topic("t").committed(timeout=30).ok
        os.killpg(supervisor.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        output, _ = supervisor.communicate(timeout=30)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()
    assert supervisor.returncode == 0
    assert "leader" in output, "role changes are logged"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any("error" not in s for s in laminar.cluster_status(addresses, 0.5)):
        time.sleep(0.2)
    assert all("error" in s for s in laminar.cluster_status(addresses, 0.5)), "every node stopped"


def test_get_and_snapshot_listen_commands(make_cluster) -> None:
    """`laminar get` prints the current value (exit 1 when unset); `listen --snapshot` starts from the state."""
    c = make_cluster(1)
    laminar_cli(c, "topic", "create", "kv")
    laminar_cli(c, "put", "kv", "a", "1")
    laminar_cli(c, "put", "kv", "a", "2")
    laminar_cli(c, "put", "kv", "b", "3")
    assert laminar_cli(c, "get", "kv", "a").stdout == "2\n"
    assert json.loads(laminar_cli(c, "get", "kv", "b", "--stale", "--json").stdout) == {
        "found": True,
        "value": "3",
        "value_offset": 4,
        "topic_offset": 4,
        "intention_offset": 4,
    }
    missing = laminar_cli(c, "get", "kv", "zz", check=False)
    assert missing.returncode == 1 and "not set" in missing.stderr
    lines = laminar_cli(c, "listen", "kv", "--snapshot", "--count", "2").stdout.splitlines()
    assert lines == ["3\tSNAPSHOT\ta\t2", "4\tSNAPSHOT\tb\t3"]
