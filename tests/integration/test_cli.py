"""The `laminar` command against a real 3-node cluster, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from laminar.local_cluster import free_port_block

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
    assert again.returncode == 3 and again.stdout == ""
    assert (
        again.stderr == "laminar: topic create rejected: INVALID at intention offset 5: topic 'chat' already exists\n"
    )

    listened = laminar_cli(c, "listen", "chat", "--from", "0", "--count", "4").stdout.splitlines()
    assert [line.split("\t")[:3] for line in listened] == [
        ["1", "CREATE_TOPIC", ""],
        ["2", "PUT", "alice"],
        ["3", "PUT", "bob"],
        ["4", "DELETE", "bob"],
    ]
    as_json = json.loads(laminar_cli(c, "listen", "chat", "--from", "1", "--count", "1", "--json").stdout)
    time_ms = as_json.pop("time_ms")
    assert as_json == {"offset": 2, "intention_offset": 2, "kind": "PUT", "key": "alice", "value": "hello"}
    assert abs(time_ms - time.time() * 1000) < 600_000  # log time: the leader's clock when it wrote the event

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
    """--addresses picks the nodes; a cluster that is down gives exit 69 and the address's error on stderr."""
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
    assert down.returncode == 69 and down.stdout == ""
    assert f"  {c.addresses[0]}: failed to connect" in down.stderr


@pytest.mark.parametrize("nodes", [1, 3, 5])
def test_make_cluster_configs_are_valid(nodes: int) -> None:
    """cluster/local-N.toml: node N has client port 7100+N and Raft port 7200+N, data under the repository's var/."""
    from laminar.node.config import load_config

    config = load_config(os.path.join(ROOT, f"cluster/local-{nodes}.toml"), 1)
    assert [(n.id, n.client, n.raft) for n in config.nodes] == [
        (i, f"127.0.0.1:{7100 + i}", f"127.0.0.1:{7200 + i}") for i in range(1, nodes + 1)
    ]
    assert config.data_dir == os.path.join(ROOT, "var", f"local-{nodes}", "node-1")


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
    """`laminar get` prints the current value (exit 1 when unset or the topic is missing, saying which);
    `listen --snapshot` starts from the state."""
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
        "topic_exists": True,
    }
    missing = laminar_cli(c, "get", "kv", "zz", check=False)
    assert missing.returncode == 1 and missing.stderr == "laminar: 'zz' is not set in 'kv' (as of offset 4)\n"
    no_topic = laminar_cli(c, "get", "nothing", "zz", check=False)
    assert no_topic.returncode == 1
    assert no_topic.stderr == "laminar: topic 'nothing' does not exist (as of intention offset 4)\n"
    lines = laminar_cli(c, "listen", "kv", "--snapshot", "--count", "2").stdout.splitlines()
    assert lines == ["3\tSNAPSHOT\ta\t2", "4\tSNAPSHOT\tb\t3"]


def test_topic_list_describe_values_from_stdin_and_files_and_output_formats(make_cluster, tmp_path) -> None:
    """topic list/describe, a 200 KiB binary value from stdin and from @file, -o json, and a rejected put on stderr."""
    c = make_cluster(1)
    program = tmp_path / "p.py"
    program.write_text(
        "def on_put(ctx, key, value):\n    if value == b'no':\n        ctx.reject('said no')\n    ctx.put(key, value)\n"
    )
    laminar_cli(c, "topic", "create", "plain")
    laminar_cli(c, "topic", "create", "prog", "--program", str(program), "--args", "{}")
    assert laminar_cli(c, "topic", "list").stdout == "plain\nprog\n"
    assert json.loads(laminar_cli(c, "topic", "list", "-o", "json").stdout) == {"topics": ["plain", "prog"]}

    big = bytes(range(256)) * 800  # 200 KiB of binary: too big and too binary for a shell argument
    env = dict(os.environ, LAMINAR_ADDRESSES=",".join(c.addresses))
    piped = subprocess.run(
        [sys.executable, "-m", "laminar", "put", "plain", "piped", "-"],
        input=big,
        capture_output=True,
        env=env,
        timeout=CLI_TIMEOUT_S,
    )
    assert piped.returncode == 0, piped.stderr
    (tmp_path / "v.bin").write_bytes(big[::-1])
    laminar_cli(c, "put", "plain", "filed", f"@{tmp_path / 'v.bin'}")
    got = subprocess.run(
        [sys.executable, "-m", "laminar", "get", "plain", "piped"], capture_output=True, env=env, timeout=CLI_TIMEOUT_S
    )
    assert got.returncode == 0 and got.stdout == big + b"\n"

    described = json.loads(laminar_cli(c, "topic", "describe", "prog", "-o", "json").stdout)
    assert described["exists"] and described["program"] == program.read_text() and described["args"] == "{}"
    assert described["last_offset"] == 1 and described["keys"] == 0
    plain = json.loads(laminar_cli(c, "topic", "describe", "plain", "--json").stdout)
    assert plain["program"] == "" and plain["last_offset"] == 3 and plain["keys"] == 2
    assert plain["value_bytes"] == 2 * len(big) and plain["created_at"] == 1
    table = laminar_cli(c, "topic", "describe", "plain").stdout
    assert "program:     none (a plain topic)" in table and f"2 live keys, {2 * len(big)} bytes of values" in table
    missing = laminar_cli(c, "topic", "describe", "nope", check=False)
    assert missing.returncode == 1 and missing.stdout == "" and "topic 'nope' does not exist" in missing.stderr

    rejected = laminar_cli(c, "put", "prog", "k", "no", check=False)
    assert rejected.returncode == 3 and rejected.stdout == ""
    assert (
        rejected.stderr.startswith("laminar: put rejected: ERROR at intention offset ") and "said no" in rejected.stderr
    )
    to_missing = laminar_cli(c, "put", "nope", "k", "v", check=False)
    assert to_missing.returncode == 3 and "topic 'nope' does not exist" in to_missing.stderr
    ok = json.loads(laminar_cli(c, "put", "prog", "k", "yes", "-o", "json").stdout)
    assert ok["effect"] == "VALID" and ok["reason"] == ""


def test_status_discovers_members_prints_a_summary_and_exits_non_zero_when_degraded(make_cluster) -> None:
    """Given one address, status shows all members and the leader, no phantom address; a dead node: exit 4."""
    c = make_cluster(3)
    phantom = f"127.0.0.1:{free_port_block(1) + 1}"
    result = laminar_cli(c, "status", "--addresses", f"{c.addresses[1]},{phantom}")
    rows = result.stdout.splitlines()
    assert [row.split()[1] for row in rows[1:4]] == c.addresses and phantom not in result.stdout
    leader = c.leader_id()
    assert rows[4].startswith(f"leader: node {leader} at {c.address_of(leader)} (term ")
    assert "; quorum: 3 of 3 members up, 2 needed; lag: " in rows[4] and rows[4].endswith(" max; healthy")

    down = next(n for n in (1, 2, 3) if n != leader)
    c.cluster.kill(down)
    degraded = laminar_cli(c, "status", "--addresses", c.address_of(leader), check=False)
    assert degraded.returncode == 4
    assert f"{down}        {c.address_of(down)}  unreachable" in degraded.stdout
    assert "quorum: 2 of 3 members up, 2 needed" in degraded.stdout
    assert "DEGRADED: 1 of 3 members unreachable" in degraded.stdout
    assert f"laminar: node {down} at {c.address_of(down)}: failed to connect" in degraded.stderr
    report = json.loads(laminar_cli(c, "status", "--json", check=False).stdout)
    assert [n["address"] for n in report["nodes"]] == c.addresses
    assert report["nodes"][down - 1]["health"] == "unreachable"
    assert report["summary"]["degraded"] and report["summary"]["leader_id"] == str(leader)


def test_status_of_a_one_node_cluster_shows_no_phantoms(make_cluster) -> None:
    """NODES=1 with the three default-style addresses: one member, a leader, exit 0."""
    c = make_cluster(1)
    phantoms = [f"127.0.0.1:{free_port_block(1) + 1}" for _ in range(2)]
    result = laminar_cli(c, "status", "--addresses", ",".join([c.addresses[0], *phantoms]))
    rows = result.stdout.splitlines()
    assert len(rows) == 3 and rows[1].split()[:3] == ["1", c.addresses[0], "leader"]
    assert "quorum: 1 of 1 members up, 1 needed" in rows[2] and rows[2].endswith("healthy")


def test_the_readme_command_block_runs_as_written(make_cluster) -> None:
    """Every line of README.md's `laminar` block succeeds, in order, against a 3-node cluster."""
    import re

    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    block = re.search(r"## Use it\n.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert block, "README.md has no sh block under 'Use it'"
    c = make_cluster(3)
    env = dict(
        os.environ,
        LAMINAR_ADDRESSES=",".join(c.addresses),
        PATH=os.path.dirname(sys.executable) + ":" + os.environ["PATH"],
    )
    outputs = []
    for line in block.group(1).splitlines():
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S)
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        outputs.append(result.stdout)
    assert outputs[3] == "hello\n"
    assert outputs[4].splitlines()[2].split("\t") == ["3", "PUT", "bob", "a longer value"]
