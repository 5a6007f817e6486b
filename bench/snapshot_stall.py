"""Does building a snapshot stall commits? A 3-node cluster written at a steady rate (so that every node
compacts its journal several times), a good client putting every 50 ms, and timings from inside the nodes.

    python -m bench.snapshot_stall                     # 40 s at 8 MiB/s, report on stdout
    python -m bench.snapshot_stall --seconds 20 --rate-mib 6

The nodes run with bench/_stall_hook.py (through bench/trace_site): every journal fsync, Raft tick and
apply slower than 20 ms, every snapshot step, and every time a sleeping thread woke more than 10 ms late
(waiting for the GIL or the CPU), with CLOCK_MONOTONIC timestamps that line up with the good client's.
The report gives the good client's commit latency inside and outside the leader's snapshot builds, and
for the slowest puts what the leader was doing meanwhile. Raw timings under var/snapshot-stall/.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE_SITE = os.path.join(REPO_ROOT, "bench", "trace_site")
SECONDS_MAX = 300.0
BULK_PENDING_MAX = 16  # bulk puts sent and not yet committed
BULK_TOPIC = "bulk"
SLOW_PUT_S = 0.25  # good puts slower than this get a breakdown of the leader's events
SLOW_PUTS_SHOWN_MAX = 8


@dataclass
class Event:
    pid: int
    start_ns: int
    duration_ns: int
    thread: str
    name: str

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns


def _bulk_writer(addresses: list[str], rate_bytes_s: float, value_bytes: int, stop: threading.Event) -> list[int]:
    import laminar

    written = [0]
    value = os.urandom(value_bytes)
    with laminar.Client(addresses) as client:
        client.create_topic(BULK_TOPIC).committed(timeout=10)
        pending: collections.deque[laminar.Pending] = collections.deque()
        started = time.monotonic()
        n = 0
        while not stop.is_set():
            due = started + written[0] / rate_bytes_s
            stop.wait(max(0.0, due - time.monotonic()))
            pending.append(client.put(BULK_TOPIC, b"bulk-%d" % n, value))
            written[0] += value_bytes
            n += 1
            while len(pending) > BULK_PENDING_MAX:
                pending.popleft().committed(timeout=30)
        while pending:
            pending.popleft().committed(timeout=30)
    return written


def _read_events(stall_dir: str) -> tuple[dict[int, str], list[Event]]:
    argv: dict[int, str] = {}
    events = []
    for name in os.listdir(stall_dir):
        pid = int(name.split(".")[0])
        with open(os.path.join(stall_dir, name), encoding="utf-8") as f:
            argv[pid] = f.readline().strip()
            for line in f:
                parts = line.split()
                if len(parts) == 4:
                    events.append(Event(pid, int(parts[0]), int(parts[1]), parts[2], parts[3]))
    return argv, events


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(samples: list[tuple[float, float | None]], events: list[Event], leader_pid: int) -> str:
    builds = [(e.start_ns / 1e9, e.end_ns / 1e9) for e in events if e.pid == leader_pid and e.name == "snap.build"]
    inside, outside, failed = [], [], 0
    for sent_at, latency in samples:
        if latency is None:
            failed += 1
            continue
        end = sent_at + latency
        (inside if any(a < end and sent_at < b for a, b in builds) else outside).append(latency * 1000)
    lines = [
        f"good puts: {len(samples)} ({failed} failed); leader pid {leader_pid}, its snapshot builds: "
        + ", ".join(f"{b - a:.2f} s" for a, b in builds),
        f"commit ms overlapping a leader build: n={len(inside)} p50={_pct(inside, 0.5):.0f} "
        f"p99={_pct(inside, 0.99):.0f} max={max(inside, default=float('nan')):.0f}",
        f"commit ms otherwise:                  n={len(outside)} p50={_pct(outside, 0.5):.0f} "
        f"p99={_pct(outside, 0.99):.0f} max={max(outside, default=float('nan')):.0f}",
        "",
        "per node, per event: count, total s, max ms (slow calls only, snapshot steps always)",
    ]
    table: dict[tuple[int, str], list[int]] = collections.defaultdict(list)
    for e in events:
        table[(e.pid, e.name)].append(e.duration_ns)
    for (pid, name), durations in sorted(table.items()):
        mark = " (leader)" if pid == leader_pid else ""
        lines.append(
            f"  {pid}{mark} {name:18s} {len(durations):5d} {sum(durations) / 1e9:7.2f} {max(durations) / 1e6:8.0f}"
        )
    slow = sorted(((lat, at) for at, lat in samples if lat is not None and lat >= SLOW_PUT_S), reverse=True)
    lines.append("")
    lines.append(f"slowest good puts (>= {SLOW_PUT_S * 1000:.0f} ms) and the leader's events overlapping them:")
    for latency, sent_at in slow[:SLOW_PUTS_SHOWN_MAX]:
        a, b = int(sent_at * 1e9), int((sent_at + latency) * 1e9)
        overlap = sorted(
            (e for e in events if e.pid == leader_pid and e.start_ns < b and a < e.end_ns),
            key=lambda e: -e.duration_ns,
        )
        shown = "; ".join(f"{e.name}[{e.thread}] {e.duration_ns / 1e6:.0f}" for e in overlap[:8])
        lines.append(f"  {latency * 1000:6.0f} ms at t={sent_at:.2f}: {shown}")
    return "\n".join(lines) + "\n"


def run(seconds: float, rate_mib: float, value_kib: int, out_dir: str) -> str:
    stall_dir = os.path.join(out_dir, time.strftime("%Y%m%d-%H%M%S"))
    os.environ["LAMINAR_STALL_DIR"] = stall_dir
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TRACE_SITE, REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    from bench.cluster import BenchCluster
    from bench.hostile import GoodClient

    with BenchCluster(3, "fsync") as cluster:
        leader_id = int(cluster.wait_for_leader()["node_id"])  # type: ignore[call-overload]
        leader_pid = cluster.pids[leader_id]
        good = GoodClient(cluster.addresses)
        stop = threading.Event()
        bulk_result: list[list[int]] = []
        bulk = threading.Thread(
            target=lambda: bulk_result.append(
                _bulk_writer(cluster.addresses, rate_mib * 2**20, value_kib * 1024, stop)
            ),
            name="bulk",
            daemon=True,
        )
        started = time.monotonic()
        bulk.start()
        time.sleep(seconds)
        stop.set()
        bulk.join(60)
        good.stop()
        samples = [(s.sent_at, s.latency_s) for s in good.window(started, time.monotonic())]
        written = bulk_result[0][0] if bulk_result else 0
        still_leader = int(cluster.wait_for_leader()["node_id"]) == leader_id  # type: ignore[call-overload]
    _argv, events = _read_events(stall_dir)
    head = (
        f"{seconds:.0f} s, bulk {written / 2**20:.0f} MiB in {value_kib} KiB puts (offered {rate_mib} MiB/s); "
        f"leader unchanged: {still_leader}; raw: {stall_dir}\n"
    )
    return head + report(samples, events, leader_pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshot_stall", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rate-mib", type=float, default=8.0)
    parser.add_argument("--value-kib", type=int, default=256)
    parser.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "var", "snapshot-stall"))
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= SECONDS_MAX:
        parser.error(f"--seconds must be 1..{SECONDS_MAX:.0f}")
    sys.stdout.write(run(args.seconds, args.rate_mib, args.value_kib, args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
