"""Pipelines (issue 17): completed calls per second beside the plain-topic write rate of the same cluster.

    python -m bench.pipelines --calls 20000 --slow-calls 5000 --rounds 3 --write     (make bench-pipelines)

One fresh 3-node cluster; each round, in turn (so load drifts hit every mode alike):
- plain: this process pipelines N puts of 100 bytes to a plain topic through one Client; puts/s from the
  first send to the last commit. The store's line rate for this client. Then the same through a topic whose
  program emits one put (one program run per transaction, for scale: a call is two program runs).
- fast: a topic whose program makes one ctx.call per put and, in on_result, one put (programs below); one
  worker process (`--serve`) completes every call at once, with concurrency WORKER_CALLS_MAX. This process
  puts N orders, keeping at most WINDOW_CALLS without a result (the topic's in-flight bound is 1,024), and
  counts result events on a Listener; calls/s from the first put to the last result. Each call is two
  transactions (the put, the result), so the seed's bound is half the plain rate; the target is 45 %.
- slow: the same with a worker that takes SLOW_CALL_MS per call with SLOW_CONCURRENCY calls in flight (a
  thread pool): its bound is SLOW_CONCURRENCY / SLOW_CALL_MS = 1,000 calls/s; and again with half the threads
  (bound 500/s). A worker-bound figure follows the worker's bound (half the threads, half the rate) and stays
  under the fast rate of the same store.
Every wait has a deadline; the worker processes are stopped however the run ends. Results go to
bench/results/pipelines.md with the command that made them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

import laminar
from bench.cluster import BenchCluster, CpuMeter
from laminar import limits
from laminar.client._connect import Nodes
from laminar.v1 import laminar_pb2 as pb

WAIT_S_MAX = 600.0
VALUE = b"v" * 100
WINDOW_CALLS = 1000  # calls without a result a producer allows itself: under CALLS_IN_FLIGHT_PER_TOPIC_MAX
POLL_S = 0.05  # how often the producer learns how many calls finished
SLOW_CALL_MS = 100
SLOW_CONCURRENCY = 100
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "pipelines.md")
# The service's name is written into the source: reading it from ctx.state would cost each call a state load.
PROGRAM = """
def on_put(ctx, key, value):
    ctx.call(SERVICE, "work", value)

def on_result(ctx, call, response, failure):
    ctx.put("done", response if failure is None else failure)
"""


# ---- the worker process --------------------------------------------------------------------------------------


def serve(addresses: str, service: str, concurrency: int, call_ms: int) -> None:
    """Complete every call of `service`: at once (call_ms 0) or after call_ms, `concurrency` at a time."""
    worker = laminar.Worker(addresses, service=service, method="work", concurrency=concurrency)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=worker.close).start())
    print("ready", flush=True)
    if call_ms == 0:
        for call in worker:
            call.complete(b"ok")
        return

    def run(call: laminar.Call) -> None:
        time.sleep(call_ms / 1000)
        try:
            call.complete(b"ok")
        except laminar.ClientClosed:
            pass

    with ThreadPoolExecutor(concurrency) as pool:
        for call in worker:
            pool.submit(run, call)


class WorkerProcess:
    def __init__(self, addresses: list[str], service: str, concurrency: int, call_ms: int) -> None:
        command = [sys.executable, "-m", "bench.pipelines", "--serve", service, "--addresses", ",".join(addresses)]
        command += ["--concurrency", str(concurrency), "--call-ms", str(call_ms)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if "ready" not in self.process.stdout.readline():
            raise RuntimeError(f"worker for {service} did not start (exit {self.process.wait()})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---- the modes ---------------------------------------------------------------------------------------------


ONE_PUT_PROGRAM = "def on_put(ctx, key, value):\n    ctx.put(key, value)\n"


def plain(addresses: list[str], topic: str, count: int, program: str | None = None) -> float:
    """Puts per second: first send to last commit."""
    with laminar.Client(addresses) as client:
        assert client.create_topic(topic, program=program).committed(timeout=30).ok
        started = time.perf_counter()
        for n in range(count):
            client.put(topic, f"k{n % 1000}", VALUE)
        client.flush(timeout=WAIT_S_MAX)
        return count / (time.perf_counter() - started)


class Finished:
    """How many calls of each topic have finished, from DescribeCalls polled every POLL_S on one node (round robin
    over the nodes: the describe rate limit is per node). A follower may be a little behind: the producer then
    keeps fewer calls in flight than it may, never more. Cheaper than a Listener, which would cost this process
    an event's decoding per call."""

    def __init__(self, addresses: list[str], topics: list[str]) -> None:
        self.done = dict.fromkeys(topics, 0)
        self._nodes = Nodes(addresses)
        self._cond = threading.Condition()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        turn = 0
        while not self._stopped.wait(POLL_S):
            address = self._nodes.addresses[turn % len(self._nodes.addresses)]
            turn += 1
            method = self._nodes.channel(address).unary_unary(
                "/laminar.v1.Laminar/DescribeCalls",
                request_serializer=pb.DescribeCallsRequest.SerializeToString,
                response_deserializer=pb.DescribeCallsResponse.FromString,
            )
            for topic in self.done:
                try:
                    stats = method(pb.DescribeCallsRequest(topic=topic, limit=1), timeout=5).stats
                except grpc.RpcError:
                    continue
                finished = stats.completed + stats.failed + stats.timed_out + stats.gave_up
                with self._cond:
                    self.done[topic] = max(self.done[topic], finished)
                    self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout_s):
                raise RuntimeError(f"calls finished {self.done} within {timeout_s} s: not enough")

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
        self._nodes.close()


def calls(addresses: list[str], name: str, service: str, count: int, topics: int) -> float:
    """Completed calls per second: first put to the last call finished, over `topics` topics (count each), each
    with at most WINDOW_CALLS calls sent and not finished."""
    names = [f"{name}-{t}" for t in range(topics)]
    with laminar.Client(addresses) as client:
        for topic in names:
            created = client.create_topic(topic, program=PROGRAM.replace("SERVICE", repr(service)))
            assert created.committed(timeout=30).ok, created.committed(0)
        finished = Finished(addresses, names)
        try:
            started = time.perf_counter()
            sent_count = dict.fromkeys(names, 0)
            sent = []
            while any(n < count for n in sent_count.values()):
                finished.wait_for(lambda: any(_room(finished, sent_count, t, count) for t in names), WAIT_S_MAX)
                for topic in names:
                    for _ in range(_room(finished, sent_count, topic, count)):
                        sent.append(client.put(topic, f"k{sent_count[topic] % 1000}", VALUE))
                        sent_count[topic] += 1
            client.flush(timeout=WAIT_S_MAX)
            refused = [c.reason for c in (p.committed(0) for p in sent) if not c.ok]
            if refused:
                raise RuntimeError(f"{len(refused)} calls refused, the first: {refused[0]}")
            finished.wait_for(lambda: all(finished.done[t] >= count for t in names), WAIT_S_MAX)
            elapsed = time.perf_counter() - started
        finally:
            finished.close()
    return count * topics / elapsed


def _room(finished: Finished, sent: dict[str, int], topic: str, count: int) -> int:
    """Puts the producer may send to `topic` now (called under Finished's lock or with its value read once)."""
    return max(0, min(count - sent[topic], WINDOW_CALLS - (sent[topic] - finished.done[topic])))


SLOW_MODES = {"slow": SLOW_CONCURRENCY, "slow, half the threads": SLOW_CONCURRENCY // 2}


@dataclass
class Cpu:
    """Process CPU microseconds per item (a put, or a completed call) of one mode's round."""

    nodes_us: float  # the 3 nodes together
    all_us: float  # nodes, worker processes and this process (the producer)


@contextlib.contextmanager
def measured(pids: dict[int, int], into: list[Cpu], items: int) -> Iterator[None]:
    """CPU of the nodes (keys >= 1), workers (keys < 0) and this process (0) while the block runs, per item. Wall
    rates on a machine shared with other work drift with its load; CPU per item does much less, and on 2 cores
    shared by 3 nodes it says what a mode would reach if it were CPU-bound."""
    meter = CpuMeter(pids)
    meter.start()
    yield
    meter.stop()
    nodes = sum(s for key, s in meter.spent_s.items() if key >= 1)
    into.append(Cpu(nodes * 1e6 / items, sum(meter.spent_s.values()) * 1e6 / items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="plain puts and fast calls per round")
    parser.add_argument("--slow-calls", type=int, default=5_000, help="slow calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--topics", type=int, default=4, help="fast mode: topics calling at once (1,000 calls each)")
    parser.add_argument("--fast-workers", type=int, default=2, help="fast mode: worker processes")
    parser.add_argument("--write", action="store_true", help="write bench/results/pipelines.md")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # run as a worker of this service
    parser.add_argument("--addresses", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=limits.WORKER_CALLS_MAX, help=argparse.SUPPRESS)
    parser.add_argument("--call-ms", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.addresses, args.serve, args.concurrency, args.call_ms)
        return
    rates: dict[str, list[float]] = {"plain": [], "program": [], "fast": [], **{mode: [] for mode in SLOW_MODES}}
    cpu: dict[str, list[Cpu]] = {"plain": [], "program": [], "fast": []}
    with BenchCluster(3) as cluster:
        addresses = cluster.addresses
        workers = [WorkerProcess(addresses, "fast", limits.WORKER_CALLS_MAX, 0) for _ in range(args.fast_workers)]
        for n, concurrency in enumerate(SLOW_MODES.values()):
            workers.append(WorkerProcess(addresses, f"slow{n}", concurrency, SLOW_CALL_MS))
        pids = {**cluster.pids, **{-1 - n: w.process.pid for n, w in enumerate(workers)}, 0: os.getpid()}
        try:
            for r in range(args.rounds):
                items = args.calls // args.topics * args.topics
                with measured(pids, cpu["plain"], args.calls):
                    rates["plain"].append(plain(addresses, f"plain-{r}", args.calls))
                with measured(pids, cpu["program"], args.calls):
                    rates["program"].append(plain(addresses, f"program-{r}", args.calls, ONE_PUT_PROGRAM))
                with measured(pids, cpu["fast"], items):
                    rates["fast"].append(calls(addresses, f"fast-{r}", "fast", args.calls // args.topics, args.topics))
                for n, mode in enumerate(SLOW_MODES):
                    rates[mode].append(calls(addresses, f"slow{n}-{r}", f"slow{n}", args.slow_calls, 1))
                print(f"round {r + 1}: " + ", ".join(f"{m} {v[-1]:,.0f}/s" for m, v in rates.items()), flush=True)
        finally:
            for worker in workers:
                worker.stop()
    report = render(args, rates, cpu)
    print(report)
    if args.write:
        with open(RESULTS, "w") as f:
            f.write(report)


def render(args: argparse.Namespace, rates: dict[str, list[float]], cpu: dict[str, list[Cpu]]) -> str:
    load = os.getloadavg()[0]
    median = {mode: statistics.median(values) for mode, values in rates.items()}
    plain_rate, fast_rate = median["plain"], median["fast"]
    rows = {
        "plain": "plain topic: puts, one pipelined client",
        "program": "a program's topic (on_put: one ctx.put): puts, the same client",
        "fast": f"fast worker ({args.fast_workers} processes, {args.topics} topics): completed calls",
    }
    for mode, concurrency in SLOW_MODES.items():
        rows[mode] = f"slow worker ({SLOW_CALL_MS} ms a call, {concurrency} in flight): completed calls"
    lines = [
        "# Pipelines: completed calls per second beside the plain write rate",
        "",
        f"Command: `python -m bench.pipelines --calls {args.calls} --slow-calls {args.slow_calls} "
        f"--rounds {args.rounds} --topics {args.topics} --fast-workers {args.fast_workers} --write` "
        "(`make bench-pipelines`)",
        "",
        f"3 nodes on one machine ({platform.machine()}, {os.cpu_count()} cores, load {load:.1f} at the end), "
        "the bench and its worker processes on the same machine (see bench/pipelines.py).",
        "",
        "| mode | per second (median) | each round | vs plain | worker's own bound |",
        "|---|---|---|---|---|",
    ]
    for mode, label in rows.items():
        each = ", ".join(f"{v:,.0f}" for v in rates[mode])
        bound = f"{SLOW_MODES[mode] * 1000 / SLOW_CALL_MS:,.0f}" if mode in SLOW_MODES else "-"
        lines.append(f"| {label} | {median[mode]:,.0f} | {each} | {median[mode] / plain_rate:.2f} | {bound} |")
    slow, half = median["slow"], median["slow, half the threads"]
    lines += [
        "",
        f"- fast: {fast_rate / plain_rate:.0%} of the plain rate (target >= 45 %; two transactions per call: the "
        f"seed's bound is 50 %), {fast_rate / median['program']:.0%} of the one-put program's rate.",
        f"- slow: {slow:,.0f} calls/s against the worker's bound of {SLOW_CONCURRENCY * 1000 / SLOW_CALL_MS:,.0f}; "
        f"with half the threads {half:,.0f} ({half / slow:.0%} of it). The store completes {fast_rate:,.0f} calls/s "
        "with a fast worker in the same run.",
        "",
        "Process CPU per item (a put; a completed call), medians: the nodes, and all (nodes, workers, producer):",
        "",
        "| mode | nodes, us per item | all, us per item |",
        "|---|---|---|",
    ]
    cpu_median = {
        mode: (statistics.median(c.nodes_us for c in rounds), statistics.median(c.all_us for c in rounds))
        for mode, rounds in cpu.items()
        if rounds
    }
    for mode, (nodes_us, all_us) in cpu_median.items():
        lines.append(f"| {rows[mode]} | {nodes_us:,.0f} | {all_us:,.0f} |")
    if len(cpu_median) == 3:
        plain_all, program_all, fast_all = (cpu_median[m][1] for m in ("plain", "program", "fast"))
        lines += [
            "",
            f"- CPU-bound, a call would run at {plain_all / fast_all:.0%} of the plain rate (plain CPU / call CPU).",
            f"- A call is two program transactions, so even with free call bookkeeping it costs at least two one-put "
            f"program puts: {plain_all / (2 * program_all):.0%} of the plain rate is the most this machine allows "
            "while every node runs every program (3 nodes sharing 2 cores).",
        ]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
