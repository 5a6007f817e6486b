"""What one idle stream costs a node: event-loop CPU to open it, to hold it, to tear it down, and memory.

    python -m bench.stream_cost                   # 2,000 listeners, then 2,000 sessions, on a 1-node cluster
    python -m bench.stream_cost --streams 500 --kinds listen --idle-s 10

Listeners are `Listen` streams on a quiet topic that never read (caught up at once: they wait for
news); sessions send a Hello and nothing else (the hostile suite's silent_listeners and
idle_sessions, without the bulk writes). For each phase, the node's CPU (all threads) and its
event-loop thread's (`grpc-loop`) alone, per stream in us (idle: per stream per second); memory is
the node's RSS while the streams are open less before, per stream. The streams come from this
process (grpc.aio, loopback); the figures are the node's, read from /proc by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import grpc.aio
import psutil

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config
from laminar.v1 import laminar_pb2 as pb

SERVICE = "/laminar.v1.Laminar/"
TOPIC = "quiet"
STREAMS_PER_CHANNEL = 100
COUNT_WAIT_S_MAX = 60.0  # opening or closing every stream must show in the node's count within this
COUNT_POLL_S = 0.1
SETTLE_S = 1.0  # after the count is reached: streams still starting or ending finish their work
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def loop_thread_id(pid: int) -> int | None:
    """The native id of the node's event-loop thread (`grpc-loop`), as py-spy names it (None: no py-spy here)."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    try:
        dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'^Thread (\d+) \([a-z]+\): "grpc-loop"', dump, re.MULTILINE)
    return int(found.group(1)) if found else None


def _thread_cpu_s(pid: int, tid: int | None) -> float:
    """CPU seconds of one thread of the process (Linux /proc); 0 when it is not known."""
    if tid is None:
        return 0.0
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime (fields 14 and 15 of stat)


@dataclass
class Mark:
    at: float
    process_s: float
    loop_s: float
    rss: int


def _mark(pid: int, loop_tid: int | None) -> Mark:
    process = psutil.Process(pid)
    cpu = process.cpu_times()
    return Mark(time.monotonic(), cpu.user + cpu.system, _thread_cpu_s(pid, loop_tid), process.memory_info().rss)


def _count(metrics: str, kind: str) -> int:
    """The node's open listeners or sessions, from its metrics endpoint."""
    name = "laminar_listeners" if kind == "listen" else "laminar_sessions"
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=2.0) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return int(float(line.rsplit(" ", 1)[1]))
    raise ValueError(f"{name} is not among the node's metrics")


async def _settled_count(metrics: str, kind: str, done: Callable[[int], bool]) -> int:
    """The node's count once `done` holds and it stopped moving (a few of many calls opened at once end early)."""
    deadline = time.monotonic() + COUNT_WAIT_S_MAX
    last = -1
    while time.monotonic() < deadline:
        now = await asyncio.to_thread(_count, metrics, kind)
        if now == last and done(now):
            await asyncio.sleep(SETTLE_S)
            return now
        last = now
        await asyncio.sleep(COUNT_POLL_S * 5)
    raise TimeoutError(f"the node's {kind} count did not settle within {COUNT_WAIT_S_MAX} s (last {last})")


def _identity(data: bytes) -> bytes:
    return data


async def _open(chans: list[grpc.aio.Channel], kind: str, count: int) -> list[grpc.aio.Call]:
    calls: list[grpc.aio.Call] = []
    listen = pb.ListenRequest(topic=TOPIC, from_offset=1).SerializeToString()  # after the create: caught up
    for n in range(count):
        channel = chans[n % len(chans)]
        if kind == "listen":
            method = channel.unary_stream(SERVICE + "Listen", request_serializer=_identity)
            calls.append(method(listen))
            if n % 50 == 49:
                await asyncio.sleep(0.01)
        else:
            session = channel.stream_stream(SERVICE + "Session", request_serializer=_identity)
            call = session()
            hello = pb.ClientFrame(hello=pb.Hello(client_id=uuid.uuid4().bytes, next_nonce=1))
            calls.append(call)
            with contextlib.suppress(grpc.RpcError):  # a call that ended is not counted by the node
                await call.write(hello.SerializeToString())
    return calls


async def measure(
    address: str, metrics: str, pid: int, loop_tid: int | None, kind: str, count: int, idle_s: float
) -> dict[str, float]:
    """us of node CPU per stream (all threads, and the event loop's) to open, hold 1 s, tear down; bytes each."""
    chans = [grpc.aio.insecure_channel(address, options=[("grpc.channel_id", n)]) for n in range(count // 100 + 1)]
    for channel in chans:
        await channel.channel_ready()
    try:
        before = _mark(pid, loop_tid)
        calls = await _open(chans, kind, count)
        count = await _settled_count(metrics, kind, lambda n: n >= 0.9 * len(calls))
        opened = _mark(pid, loop_tid)
        await asyncio.sleep(idle_s)
        held = _mark(pid, loop_tid)
        for call in calls:
            call.cancel()
        await _settled_count(metrics, kind, lambda n: n == 0)
        closed = _mark(pid, loop_tid)
    finally:
        for channel in chans:
            with contextlib.suppress(Exception):
                await channel.close(grace=None)
    per_us = 1e6 / count
    return {
        "open_us": (opened.process_s - before.process_s) * per_us,
        "open_loop_us": (opened.loop_s - before.loop_s) * per_us,
        "idle_us_per_s": (held.process_s - opened.process_s) / (held.at - opened.at) * per_us,
        "idle_loop_us_per_s": (held.loop_s - opened.loop_s) / (held.at - opened.at) * per_us,
        "close_us": (closed.process_s - held.process_s) * per_us,
        "close_loop_us": (closed.loop_s - held.loop_s) * per_us,
        "rss_bytes": (held.rss - before.rss) / count,
        "streams": count,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--kinds", default="listen,session")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1, help="each kind this many times (a median is printed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="laminar-stream-cost-") as root:
        base = free_port_block(2)  # client base+1, Raft base+2, metrics base+3
        config = os.path.join(root, "cluster.toml")
        write_config(config, 1, base, os.path.join(root, "data"), metrics_base_port=base + 2)
        node = LocalCluster(config, [1], log_dir=root)
        node.start_all()
        try:
            _measure_all(node.pid(1), f"127.0.0.1:{base + 1}", f"127.0.0.1:{base + 3}", args)
        finally:
            node.stop_all()
    return 0


def _measure_all(pid: int, address: str, metrics: str, args: argparse.Namespace) -> None:
    with laminar.Client([address]) as client:
        client.create_topic(TOPIC).committed(timeout=30)
    loop_tid = loop_thread_id(pid)
    print(f"event-loop thread: {loop_tid if loop_tid is not None else 'unknown (no py-spy): its figures are 0'}")
    for kind in [k for k in args.kinds.split(",") if k]:
        rounds = [
            asyncio.run(measure(address, metrics, pid, loop_tid, kind, args.streams, args.idle_s))
            for _ in range(args.rounds)
        ]
        for key in rounds[0]:
            values = sorted(r[key] for r in rounds)
            print(f"{kind:7} {key:20} {values[len(values) // 2]:10.1f}   (rounds: {[round(v) for v in values]})")


if __name__ == "__main__":
    sys.exit(main())
