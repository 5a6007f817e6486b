"""A/B of sequential-write latency between two revisions, side by side on this machine.

    python -m bench.ab_sequential --a main --b HEAD [--blocks 8] [--writes 300] [--pipelined]

Each revision's tree (`git archive`) is unpacked under var/ab/; one worker process per revision runs
with that tree first on PYTHONPATH, so its client and its 3-node cluster (fsync) run that revision's
code. Both clusters run the whole time; the driver asks them for blocks of sequential writes in turn
(A then B, then B then A, ...), so both see the same load on this shared machine. A write is one put
whose commit the client waits for; each block begins with WARM_UP_WRITES uncounted writes. Prints
each block's p50 and the per-block ratio B / A, then the medians over all writes and over the
per-block ratios (the figure to read: it cancels the drift). With --pipelined, each block is one burst
of --writes puts sent without waiting (the last one waited for), and the figures are µs per write.

Beside the latencies, each block counts, per counted write, the voluntary context switches of the
three nodes and the client (a thread that blocks to wait for another: the thread hand-offs of the
commit path, plus heartbeats and timers) and the CPU time they used. Unlike the milliseconds, these
barely move with the machine's load, so they show a hand-off removed even when the latencies drown it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from typing import IO, Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALUE = b"v" * 32
COMMIT_TIMEOUT_S = 30.0
BLOCKS_MAX = 100
WRITES_PER_BLOCK_MAX = 10_000
TOPIC = "ab.s"
WARM_UP_WRITES = 30  # at the start of each block, not counted: a cluster idle during the other's block starts cold


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _counters(pids: list[int]) -> tuple[int, float]:
    """(voluntary context switches, CPU seconds) of these processes so far, over all their threads
    (/proc/PID/status counts the main thread's switches only)."""
    switches = 0
    cpu_s = 0.0
    for pid in pids:
        for task in glob.glob(f"/proc/{pid}/task/*/status"):
            try:
                with open(task, encoding="ascii") as f:
                    switches += sum(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
            except OSError:
                pass  # the thread ended meanwhile
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu_s += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads
    return switches, cpu_s


def _worker(writes_max: int) -> None:
    """Runs inside a revision's tree: a cluster, a client, and blocks of writes asked for on stdin."""
    import laminar
    from bench.cluster import BenchCluster

    with BenchCluster(3, durability="fsync") as cluster, laminar.Client(cluster.addresses) as client:
        processes = [*cluster.pids.values(), os.getpid()]
        client.create_topic(TOPIC).committed(timeout=COMMIT_TIMEOUT_S)
        client.put(TOPIC, b"warm", VALUE).committed(timeout=COMMIT_TIMEOUT_S)
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            if line.startswith("p"):  # pipelined: µs per write of a burst, the last one waited for
                burst = min(int(line[1:]), writes_max)
                started = time.perf_counter()
                for n in range(burst):
                    last = client.put(TOPIC, b"k%d" % (n % 100), VALUE)
                last.committed(timeout=COMMIT_TIMEOUT_S)
                print(json.dumps([(time.perf_counter() - started) * 1e6 / burst]), flush=True)
                continue
            count = min(int(line), writes_max)
            latencies = []
            before = (0, 0.0)
            for n in range(-WARM_UP_WRITES, count):
                if n == 0:
                    before = _counters(processes)
                started = time.perf_counter()
                commit = client.put(TOPIC, b"k%d" % (n % 100), VALUE).committed(timeout=COMMIT_TIMEOUT_S)
                assert commit.effect == "VALID", commit
                if n >= 0:
                    latencies.append((time.perf_counter() - started) * 1000)
            after = _counters(processes)
            per_write = {"switches": (after[0] - before[0]) / count, "cpu_us": (after[1] - before[1]) * 1e6 / count}
            print(json.dumps({"ms": latencies, **per_write}), flush=True)


def _unpack(revision: str) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    target = os.path.join(REPO_ROOT, "var", "ab", commit)
    if not os.path.isdir(target):
        archive = subprocess.run(["git", "archive", commit], cwd=REPO_ROOT, capture_output=True, check=True).stdout
        os.makedirs(target)
        archive_path = target + ".tar"
        with open(archive_path, "wb") as f:
            f.write(archive)
        with tarfile.open(archive_path) as tar:
            tar.extractall(target, filter="data")
        os.unlink(archive_path)
    return target


def _start(tree: str, writes_max: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": tree}
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--writes", str(writes_max)]
    worker = subprocess.Popen(command, env=env, cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    json.loads(worker.stdout.readline())  # ready
    return worker


def _block(worker: subprocess.Popen[str], writes: int, pipelined: bool) -> dict[str, Any]:
    """{"ms": latencies (or µs per write, pipelined)[, "switches": per write, "cpu_us": per write]}."""
    stdin: IO[str] | None = worker.stdin
    assert stdin is not None and worker.stdout is not None
    stdin.write(f"{'p' if pipelined else ''}{writes}\n")
    stdin.flush()
    result = json.loads(worker.stdout.readline())
    return result if isinstance(result, dict) else {"ms": result}


def _costs_line(blocks: dict[str, dict[str, Any]]) -> str:
    if not all("switches" in block for block in blocks.values()):
        return ""
    a, b = blocks["A"], blocks["B"]
    return (
        f"; per write: switches A {a['switches']:.1f} B {b['switches']:.1f}, "
        f"CPU µs A {a['cpu_us']:.0f} B {b['cpu_us']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", default="main", help="revision A (the baseline)")
    parser.add_argument("--b", default="HEAD", help="revision B")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--writes", type=int, default=300, help="sequential writes per block")
    parser.add_argument("--pipelined", action="store_true", help="bursts of --writes puts: µs per write")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.writes)
        return
    blocks = min(args.blocks, BLOCKS_MAX)
    writes = min(args.writes, WRITES_PER_BLOCK_MAX)
    workers = {name: _start(_unpack(rev), writes) for name, rev in (("A", args.a), ("B", args.b))}
    all_ms: dict[str, list[float]] = {"A": [], "B": []}
    costs: dict[str, dict[str, list[float]]] = {name: {"switches": [], "cpu_us": []} for name in ("A", "B")}
    ratios: dict[str, list[float]] = {"p50": [], "p99": []}
    print(f"A = {args.a}, B = {args.b}; load average {os.getloadavg()[0]:.1f}")
    try:
        for n in range(blocks):
            order = ("A", "B") if n % 2 == 0 else ("B", "A")
            blocks_got = {name: _block(workers[name], writes, args.pipelined) for name in order}
            got: dict[str, list[float]] = {name: block["ms"] for name, block in blocks_got.items()}
            for name in order:
                all_ms[name] += got[name]
                for key in ("switches", "cpu_us"):
                    if key in blocks_got[name]:
                        costs[name][key].append(blocks_got[name][key])
            for q, key in ((0.5, "p50"), (0.99, "p99")):
                ratios[key].append(_percentile(got["B"], q) / _percentile(got["A"], q))
            print(
                f"block {n + 1} ({order[0]} first): A p50 {_percentile(got['A'], 0.5):.2f} ms, "
                f"B p50 {_percentile(got['B'], 0.5):.2f} ms, B/A p50 {ratios['p50'][-1]:.2f}, "
                f"p99 {ratios['p99'][-1]:.2f}{_costs_line(blocks_got)}",
                flush=True,
            )
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers.values():
            worker.wait(timeout=60)
    for name in ("A", "B"):
        ms = all_ms[name]
        print(
            f"{name}: {len(ms)} writes, p50 {_percentile(ms, 0.5):.2f} ms, p90 {_percentile(ms, 0.9):.2f}, "
            f"p99 {_percentile(ms, 0.99):.2f}"
        )
    for name in ("A", "B"):
        if costs[name]["switches"]:
            print(
                f"{name} per write (median of blocks): {statistics.median(costs[name]['switches']):.1f} voluntary "
                f"context switches, {statistics.median(costs[name]['cpu_us']):.0f} µs CPU (3 nodes + client)"
            )
    print(
        f"B/A: p50 {_percentile(all_ms['B'], 0.5) / _percentile(all_ms['A'], 0.5):.2f} over all writes, "
        f"median of per-block ratios p50 {statistics.median(ratios['p50']):.2f}, "
        f"p99 {statistics.median(ratios['p99']):.2f}; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
