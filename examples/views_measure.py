"""How long a new listener takes to know a topic's current state: replay from 0 vs snapshot.

    python examples/views_measure.py                       # 1,000,000 events, 1,000 keys, 1 node
    python examples/views_measure.py --events 100000 --nodes 3

Starts a fresh local cluster in a temporary directory, writes `--events` puts spread over `--keys`
keys into one topic, then measures on a follower (or the only node), three times each:

* replay: Listener(from_offset=0), folding every event into a dict until the last offset;
* snapshot: Listener(snapshot=True), until the snapshot is complete (the first non-snapshot
  event, or every live key when nothing follows);

and checks that both give the same state. Prints a Markdown table (recorded in docs/views.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config

TOPIC = "views"
WRITE_WINDOW = 8192  # puts in flight before we wait for commits (the client pipelines them)


def start_cluster(root: str, nodes: int) -> tuple[LocalCluster, list[str]]:
    base = free_port_block(nodes)
    config = f"{root}/cluster.toml"
    write_config(config, nodes, base, f"{root}/data")
    cluster = LocalCluster(config, list(range(1, nodes + 1)), log_dir=root)
    cluster.start_all()
    addresses = [f"127.0.0.1:{base + n}" for n in range(1, nodes + 1)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = laminar.cluster_status(addresses, timeout_s=1.0)
        if any(s.get("role") == "leader" for s in statuses) and all(s.get("leader_id") for s in statuses):
            return cluster, addresses
        time.sleep(0.2)
    cluster.stop_all()
    raise SystemExit("no leader within 30 s")


def write(addresses: list[str], events: int, keys: int) -> int:
    started = time.monotonic()
    with laminar.Client(addresses) as client:
        client.create_topic(TOPIC).committed(timeout=30)
        for n in range(events - 1):  # the create is event 1
            client.put(TOPIC, f"key-{n % keys:05d}", f"value-{n}")
            if n % WRITE_WINDOW == WRITE_WINDOW - 1:
                client.flush(timeout=120)
        client.flush(timeout=120)
        last = client.get(TOPIC, "key-00000")
    print(f"wrote {events} events in {time.monotonic() - started:.1f} s", flush=True)
    return last.topic_offset


def replay(address: str, last: int) -> tuple[float, dict[bytes, bytes]]:
    started = time.monotonic()
    state: dict[bytes, bytes] = {}
    with laminar.Listener([address], TOPIC, from_offset=0) as listener:
        for event in listener:
            if event.kind == laminar.Kind.PUT:
                state[event.key] = event.value
            elif event.kind == laminar.Kind.DELETE:
                state.pop(event.key, None)
            if event.consequence_offset >= last:
                break
    return time.monotonic() - started, state


def snapshot(address: str, keys: int) -> tuple[float, dict[bytes, bytes]]:
    started = time.monotonic()
    state: dict[bytes, bytes] = {}
    with laminar.Listener([address], TOPIC, snapshot=True) as listener:
        while len(state) < keys:
            event = listener.next_event(timeout=60)
            assert event.snapshot
            state[event.key] = event.value
    return time.monotonic() - started, state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="laminar-views-") as root:
        cluster, addresses = start_cluster(root, args.nodes)
        try:
            last = write(addresses, args.events, args.keys)
            statuses = laminar.cluster_status(addresses)
            reader = next((s["address"] for s in statuses if s.get("role") == "follower"), addresses[0])
            replays, snapshots = [], []
            for _ in range(args.repeat):
                seconds, replayed = replay(reader, last)
                replays.append(seconds)
                seconds, snapped = snapshot(reader, args.keys)
                snapshots.append(seconds)
                assert replayed == snapped, "replay and snapshot disagree"
        finally:
            cluster.stop_all()
    print()
    print(f"| way | median of {args.repeat} (s) | min (s) | max (s) |")
    print("|---|---|---|---|")
    for name, times in (("replay from 0", replays), ("snapshot", snapshots)):
        print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")
    print(f"\n{args.events} events, {args.keys} keys, {args.nodes} node(s), read on {reader}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
