"""Recovery benchmarks: restart time and memory after N committed messages, and sync from scratch.

    python -m bench.recovery --messages 10000 1000000

For each N: a fresh 3-node cluster (durability fsync) takes N pipelined puts; then
- restart: one follower is killed (-9) and restarted; we time until it answers Status, until it
  serves the last event to a listener, and until it has applied everything committed; and read its
  RSS after that;
- sync from scratch: a fourth node with an empty data directory is added; we time until it has
  applied everything (it must catch up from a snapshot, not by replaying the history).
Results go to bench/results/recovery.md (and are printed). Bounded: every wait has a deadline.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import tempfile
import time
from dataclasses import dataclass

import laminar
from laminar.client import change_membership
from laminar.local_cluster import LocalCluster, free_port_block, write_config

WRITE_CLIENTS = 4
WAIT_S_MAX = 600.0
VALUE = b"v" * 100


@dataclass
class Result:
    messages: int
    write_s: float
    restart_status_s: float
    restart_serving_s: float
    restart_caught_up_s: float
    restart_rss_mib: float
    journal_bytes: int
    snapshot_bytes: int
    sync_from_scratch_s: float
    installed_snapshot: bool


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _applied(address: str) -> int:
    status = laminar.cluster_status([address], 1.0)[0]
    return -1 if "error" in status else int(status["intention_offset"])


def _wait(predicate, what: str) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > WAIT_S_MAX:
            raise TimeoutError(what)
        time.sleep(0.05)
    return time.monotonic() - start


def _write(addresses: list[str], messages: int) -> float:
    import threading

    start = time.monotonic()
    per_client = messages // WRITE_CLIENTS

    def run(i: int) -> None:
        with laminar.Client(addresses) as client:
            for n in range(per_client):
                client.put("bench", b"k%d" % (n % 1000), VALUE)
            client.flush(timeout=WAIT_S_MAX)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WRITE_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start


def measure(messages: int, root: str) -> Result:
    base = free_port_block(3)
    config = os.path.join(root, "cluster.toml")
    write_config(config, 3, base, os.path.join(root, "data"))
    addresses = [f"127.0.0.1:{base + n}" for n in (1, 2, 3)]
    cluster = LocalCluster(config, [1, 2, 3], log_dir=root)
    extra: LocalCluster | None = None
    try:
        cluster.start_all()
        with laminar.Client(addresses) as client:
            client.create_topic("bench").committed(timeout=30)
        write_s = _write(addresses, messages)
        total = 1 + (messages // WRITE_CLIENTS) * WRITE_CLIENTS
        statuses = laminar.cluster_status(addresses, 2.0)
        follower = next(int(s["node_id"]) for s in statuses if s.get("role") == "follower")
        node_dir = os.path.join(root, "data", f"node-{follower}")
        journal = os.path.getsize(os.path.join(node_dir, "raft.journal"))
        snapshot_path = os.path.join(node_dir, "raft.snapshot")
        snapshot = os.path.getsize(snapshot_path) if os.path.exists(snapshot_path) else 0
        address = addresses[follower - 1]

        cluster.kill(follower)
        start = time.monotonic()
        cluster.start(follower)
        _wait(lambda: _applied(address) >= 0, "restarted node answers")
        status_s = time.monotonic() - start
        with laminar.Listener([address], "bench", from_offset=total - 1) as listener:
            listener.next_event(timeout=WAIT_S_MAX)
        serving_s = time.monotonic() - start
        _wait(lambda: _applied(address) >= total, "restarted node caught up")
        caught_up_s = time.monotonic() - start
        rss = _rss_mib(cluster.pid(follower))

        client_address, raft_address = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
        with open(config) as f:
            text = f.read() + f'\n[[nodes]]\nid = 4\nclient = "{client_address}"\nraft = "{raft_address}"\n'
        config4 = os.path.join(root, "cluster-4.toml")
        with open(config4, "w") as f:
            f.write(text)
        extra = LocalCluster(config4, [4], log_dir=root)
        extra.start(4)
        start = time.monotonic()
        change_membership(addresses, "add", "4", raft_address, client_address)
        _wait(lambda: _applied(client_address) >= total, "new node caught up")
        sync_s = time.monotonic() - start
        with open(os.path.join(root, "node-4.log")) as f:
            installed = "installed a snapshot" in f.read()
        return Result(messages, write_s, status_s, serving_s, caught_up_s, rss, journal, snapshot, sync_s, installed)
    finally:
        if extra is not None:
            extra.stop_all()
        cluster.stop_all()


def _report(results: list[Result], command: str) -> str:
    lines = [
        "# Recovery: restart and sync from scratch",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; 3 nodes and the writers on one machine, durability fsync.",
        "",
        "| messages | write s | restart: answers s | restart: serves tail s | restart: caught up s "
        "| RSS after restart MiB | journal bytes | snapshot bytes | sync from scratch s | via snapshot |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.messages:,} | {r.write_s:.1f} | {r.restart_status_s:.2f} | {r.restart_serving_s:.2f} "
            f"| {r.restart_caught_up_s:.2f} | {r.restart_rss_mib:.0f} | {r.journal_bytes:,} | {r.snapshot_bytes:,} "
            f"| {r.sync_from_scratch_s:.2f} | {'yes' if r.installed_snapshot else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "recovery.md"))
    args = parser.parse_args()
    results = []
    for messages in args.messages:
        with tempfile.TemporaryDirectory(prefix="laminar-recovery-") as root:
            result = measure(messages, root)
            print(result, flush=True)
            results.append(result)
    command = "python -m bench.recovery --messages " + " ".join(str(m) for m in args.messages)
    report = _report(results, command)
    print(report)
    with open(args.output, "w") as f:
        f.write(report)


if __name__ == "__main__":
    main()
