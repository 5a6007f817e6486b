"""Retention's disk and memory under load: one topic capped at --cap events takes --writes puts.

Starts a fresh one-node cluster (trimming is the same on every node: tests/integration/
test_retention_cluster.py checks equal digests), writes from one pipelining client in this process,
and every --every writes records the node's store size on disk (RocksDB files), its whole data
directory (with the Raft journal), its RSS, and the topic's kept offsets and bytes. Bounded by
--writes and --seconds, whichever comes first. Prints a Markdown table; the figures go in
bench/results/retention.md.

    nice .venv/bin/python -m bench.retention --writes 5000000 --cap 100000 --seconds 1800
"""

from __future__ import annotations

import argparse
import os
import time

import psutil

import laminar
from bench.cluster import BenchCluster
from laminar.client import describe_topic

TOPIC = "capped"
VALUE_BYTES = 100
KEYS = 1000


def dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue  # RocksDB removed it meanwhile (a compaction)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=5_000_000)
    parser.add_argument("--cap", type=int, default=100_000, help="the topic's max_events")
    parser.add_argument("--every", type=int, default=250_000, help="writes between samples")
    parser.add_argument("--seconds", type=float, default=1800.0, help="stop writing after this long")
    args = parser.parse_args(argv)
    with BenchCluster(1) as cluster:
        node_dir = os.path.join(os.path.dirname(cluster.log_dir), "data", "node-1")
        process = psutil.Process(cluster.pids[1])
        value = b"x" * VALUE_BYTES
        started = time.monotonic()
        print("| writes | seconds | store MiB | data dir MiB | RSS MiB | first kept | last | kept MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        with laminar.Client(cluster.addresses) as client:
            retention = laminar.Retention(max_events=args.cap)
            client.create_topic(TOPIC, retention=retention).committed(timeout=30)
            written = 0
            while written < args.writes and time.monotonic() - started < args.seconds:
                batch = min(args.every, args.writes - written)
                last = None
                for i in range(batch):
                    last = client.put(TOPIC, b"k%d" % ((written + i) % KEYS), value)
                assert last is not None
                last.committed(timeout=120)
                written += batch
                info = describe_topic(cluster.addresses, TOPIC)
                print(
                    f"| {written:,} | {time.monotonic() - started:.0f} | "
                    f"{dir_bytes(os.path.join(node_dir, 'store')) / 2**20:.1f} | {dir_bytes(node_dir) / 2**20:.1f} | "
                    f"{process.memory_info().rss / 2**20:.0f} | {info.first_offset:,} | {info.last_offset:,} | "
                    f"{info.retained_bytes / 2**20:.1f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
