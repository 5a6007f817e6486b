"""The floor of a sequential write in Laminar's design: its parts alone, beside etcd, in one invocation.

A write that waits for its commit crosses, in order: the client's gRPC leg to the leader, one Raft round
(the leader sends the entry, a follower appends it, fsyncs, replies), and the gRPC leg back. Each part is
measured here with no Laminar code in it, one operation at a time, in alternating rounds beside etcd and
Laminar themselves (both 3 members on loopback, fsync before ack):

- `python gRPC round trip`: a synchronous Python client and a grpc.aio Python server echoing a frame on a
  bidi stream (bench/grpc_echo.py): the two gRPC legs, Python on both ends, as in Laminar.
- `etcd local get`: the same Python client's unary call answered by etcd's Go server without a Raft round
  (a serializable get): the two gRPC legs with etcd's server.
- `pysyncobj commit`: pysyncobj alone with Laminar's settings (bench/raft_node.py), one small command at a
  time: a Raft round in Python, without fsync (pysyncobj's journal does not sync).
- `fdatasync`: a 300-byte append and fdatasync in a temporary directory: the follower's sync.
- `etcd put` and `Laminar put`: a sequential write on each system, waiting for its commit.

The floor is the sum of the first Python part, pysyncobj's commit and fdatasync: what a write costs in this
design before any of Laminar's own work (checking the frame, proposing, applying, the ack). It is an
estimate from parts measured separately, not a bound proved: the parts share the machine differently in a
real write.

`python -m bench.floor [--rounds 3] [--ops 1000] [--out bench/results/floor.md]`
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import laminar
from bench.cluster import BenchCluster
from bench.etcd_client import EtcdClient
from bench.etcd_cluster import EtcdCluster
from bench.grpc_echo import EchoClient
from bench.machine import git_revision, load_average
from bench.processes import stop_popens
from bench.raft_ceiling import run_sequential
from bench.stats import percentile

WARMUP_OPS = 100  # operations before each timed block: connections made, caches warm
FRAME_BYTES = 64  # about a client frame holding one put of 32 bytes
SYNC_APPEND_BYTES = 300  # about a Raft append of one small entry
VALUE = b"v" * 32
CALL_TIMEOUT_S = 10.0
ECHO_SERVER_SECONDS_MAX = 3600.0  # the echo server exits by itself after this, whatever happens to us
ECHO_START_S_MAX = 10.0

PYTHON_GRPC = "python gRPC round trip"
ETCD_GET = "etcd local get"
PYSYNCOBJ = "pysyncobj commit"
FDATASYNC = "fdatasync"
ETCD_PUT = "etcd put"
LAMINAR_PUT = "Laminar put"
PARTS = (PYTHON_GRPC, ETCD_GET, PYSYNCOBJ, FDATASYNC, ETCD_PUT, LAMINAR_PUT)
FLOOR_PARTS = (PYTHON_GRPC, PYSYNCOBJ, FDATASYNC)


def _timed(operation: Callable[[], object], ops: int) -> list[float]:
    for _ in range(WARMUP_OPS):
        operation()
    latencies_s = []
    for _ in range(ops):
        started = time.perf_counter()
        operation()
        latencies_s.append(time.perf_counter() - started)
    return latencies_s


def _fdatasync_latencies(root: str, ops: int) -> list[float]:
    path = os.path.join(root, "sync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    record = b"x" * SYNC_APPEND_BYTES
    try:

        def append_and_sync() -> None:
            os.write(fd, record)
            os.fdatasync(fd)

        return _timed(append_and_sync, ops)
    finally:
        os.close(fd)
        os.unlink(path)


def _pysyncobj_latencies(ops: int) -> list[float]:
    result = run_sequential(ops)
    if result is None or result["failures"]:
        raise RuntimeError(f"pysyncobj alone did not commit every command: {result}")
    return [float(s) for s in result["latencies_s"]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_echo_server() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    command = [sys.executable, "-m", "bench.grpc_echo", "--port", str(port), "--seconds", str(ECHO_SERVER_SECONDS_MAX)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen(command, cwd=root)
    deadline = time.monotonic() + ECHO_START_S_MAX
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    stop_popens([process])
    raise RuntimeError("the echo server did not start")


def _measure(rounds: int, ops: int) -> dict[str, list[list[float]]]:
    """Per part, one list of latencies (s) per round; the parts run one after the other in each round."""
    samples: dict[str, list[list[float]]] = {part: [] for part in PARTS}
    echo_server, echo_address = _start_echo_server()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="laminar-floor-") as root,
            EtcdCluster(3) as etcd,
            BenchCluster(3, durability="fsync") as cluster,
            EchoClient(echo_address) as echo,
            EtcdClient(etcd.leader_address, CALL_TIMEOUT_S) as etcd_client,
            laminar.Client(cluster.addresses) as client,
        ):
            frame = b"f" * FRAME_BYTES
            measures: dict[str, Callable[[], list[float]]] = {
                PYTHON_GRPC: lambda: _timed(lambda: echo.round_trip(frame), ops),
                ETCD_GET: lambda: _timed(lambda: etcd_client.get_local(b"floor"), ops),
                PYSYNCOBJ: lambda: _pysyncobj_latencies(ops),
                FDATASYNC: lambda: _fdatasync_latencies(root, ops),
                ETCD_PUT: lambda: _timed(lambda: etcd_client.put(b"floor", VALUE), ops),
                LAMINAR_PUT: lambda: _timed(lambda: client.put("floor", b"k", VALUE).committed(CALL_TIMEOUT_S), ops),
            }
            for index in range(rounds):
                order = PARTS if index % 2 == 0 else PARTS[::-1]  # alternate, so drift falls on both ends
                for part in order:
                    samples[part].append(measures[part]())
                    print(
                        f"round {index + 1}: {part} p50 {percentile(samples[part][-1], 0.5) * 1e3:.3f} ms", flush=True
                    )
    finally:
        stop_popens([echo_server])
    return samples


def _median_ms(rounds: list[list[float]], fraction: float) -> float:
    return statistics.median(percentile(r, fraction) for r in rounds) * 1e3


def report(samples: dict[str, list[list[float]]], command: str, load_at_start: str) -> str:
    rounds = len(samples[PARTS[0]])
    lines = [
        "# The floor of a sequential write in this design, beside etcd",
        "",
        f"Command: `{command}`. {rounds} rounds, parts alternating in order; figures are medians over the rounds.",
        f"Laminar revision {git_revision('.')}; load average at start {load_at_start}, at end {load_average()}.",
        "",
        "| part | p50 ms | p99 ms |",
        "|---|--:|--:|",
    ]
    p50 = {part: _median_ms(samples[part], 0.5) for part in PARTS}
    for part in PARTS:
        lines.append(f"| {part} | {p50[part]:.3f} | {_median_ms(samples[part], 0.99):.3f} |")
    floor_ms = sum(p50[part] for part in FLOOR_PARTS)
    etcd_ms = p50[ETCD_PUT]
    lines += [
        "",
        f"- Floor of this design (p50s of {', '.join(FLOOR_PARTS)}): **{floor_ms:.3f} ms = {floor_ms / etcd_ms:.2f}x** "
        f"etcd's put ({etcd_ms:.3f} ms).",
        f"- Left for all of Laminar's own work at 1.0x etcd: {round(etcd_ms - floor_ms, 3) + 0.0:.3f} ms; "
        f"Laminar's put spends {p50[LAMINAR_PUT] - floor_ms:.3f} ms above the floor "
        f"({p50[LAMINAR_PUT] / etcd_ms:.2f}x etcd).",
        f"- The gRPC legs with a Python server against etcd's Go server, same Python client: "
        f"{p50[PYTHON_GRPC]:.3f} against {p50[ETCD_GET]:.3f} ms.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ops", type=int, default=1000, help="sequential operations per part and round")
    parser.add_argument("--out", help="also write the report here (markdown)")
    args = parser.parse_args()
    load_at_start = load_average()
    samples = _measure(args.rounds, args.ops)
    text = report(samples, "python -m bench.floor " + " ".join(sys.argv[1:]), load_at_start)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
