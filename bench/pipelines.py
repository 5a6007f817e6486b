"""Pipelines (issue 17): completed calls per second beside the plain-topic write rate of the same cluster.

    python -m bench.pipelines --calls 20000 --slow-calls 5000 --rounds 3 --write     (make bench-pipelines)

One fresh 3-node cluster; each round, in turn (so load drifts hit every mode alike):
- plain: this process pipelines N puts of 100 bytes to a plain topic through one Client; puts/s from the
  first send to the last commit. The store's line rate for this client.
- fast: a topic whose program makes one ctx.call per put and, in on_result, one put (programs below); one
  worker process (`--serve`) completes every call at once, with concurrency WORKER_CALLS_MAX. This process
  puts N orders, keeping at most WINDOW_CALLS without a result (the topic's in-flight bound is 1,024), and
  counts result events on a Listener; calls/s from the first put to the last result. Each call is two
  transactions (the put, the result), so the seed's bound is half the plain rate; the target is 45 %.
- slow: the same with a worker that takes SLOW_CALL_MS per call with SLOW_CONCURRENCY calls in flight (a
  thread pool): its bound is SLOW_CONCURRENCY / SLOW_CALL_MS = 1,000 calls/s. The run also shows the slow
  worker's figure against that bound and against the fast rate: when the fast rate is well above it, the
  store is not what limits the slow worker.
Every wait has a deadline; the worker processes are stopped however the run ends. Results go to
bench/results/pipelines.md with the command that made them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import laminar
from bench.cluster import BenchCluster
from laminar import limits

WAIT_S_MAX = 600.0
VALUE = b"v" * 100
WINDOW_CALLS = 1000  # calls without a result a producer allows itself: under CALLS_IN_FLIGHT_PER_TOPIC_MAX
SLOW_CALL_MS = 100
SLOW_CONCURRENCY = 100
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "pipelines.md")
PROGRAM = """
import json

def on_create(ctx):
    ctx.state["service"] = ctx.args_json()["service"]

def on_put(ctx, key, value):
    ctx.call(ctx.state["service"], "work", value)

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


def plain(addresses: list[str], topic: str, count: int) -> float:
    """Puts per second: first send to last commit."""
    with laminar.Client(addresses) as client:
        client.create_topic(topic).committed(timeout=30)
        started = time.perf_counter()
        for n in range(count):
            client.put(topic, f"k{n % 1000}", VALUE)
        client.flush(timeout=WAIT_S_MAX)
        return count / (time.perf_counter() - started)


class Results:
    """Counts a topic's result events from a Listener; a producer waits on it to keep its window."""

    def __init__(self, addresses: list[str], topic: str) -> None:
        self.count = 0
        self._cond = threading.Condition()
        self._listener = laminar.Listener(addresses, topic)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            for event in self._listener:
                if event.key == b"done":
                    with self._cond:
                        self.count += 1
                        self._cond.notify_all()
        except laminar.LaminarError:
            return

    def wait_for(self, count: int, timeout_s: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.count >= count, timeout_s):
                raise RuntimeError(f"{self.count} results of {count} within {timeout_s} s")

    def close(self) -> None:
        self._listener.close()


def calls(addresses: list[str], topic: str, service: str, count: int) -> float:
    """Completed calls per second: first put to last result event, at most WINDOW_CALLS without a result."""
    with laminar.Client(addresses) as client:
        created = client.create_topic(topic, program=PROGRAM, args=json.dumps({"service": service}))
        assert created.committed(timeout=30).ok, created.committed(0)
        results = Results(addresses, topic)
        try:
            started = time.perf_counter()
            sent = []
            for n in range(count):
                if n >= WINDOW_CALLS:
                    results.wait_for(n - WINDOW_CALLS + 1, WAIT_S_MAX)
                sent.append(client.put(topic, f"k{n % 1000}", VALUE))
            client.flush(timeout=WAIT_S_MAX)
            refused = [c.reason for c in (p.committed(0) for p in sent) if not c.ok]
            if refused:
                raise RuntimeError(f"{len(refused)} calls refused, the first: {refused[0]}")
            results.wait_for(count, WAIT_S_MAX)
            elapsed = time.perf_counter() - started
        finally:
            results.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="plain puts and fast calls per round")
    parser.add_argument("--slow-calls", type=int, default=5_000, help="slow calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write bench/results/pipelines.md")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # run as a worker of this service
    parser.add_argument("--addresses", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=limits.WORKER_CALLS_MAX, help=argparse.SUPPRESS)
    parser.add_argument("--call-ms", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.addresses, args.serve, args.concurrency, args.call_ms)
        return
    rates: dict[str, list[float]] = {"plain": [], "fast": [], "slow": []}
    with BenchCluster(3) as cluster:
        addresses = cluster.addresses
        fast = WorkerProcess(addresses, "fast", limits.WORKER_CALLS_MAX, 0)
        slow = WorkerProcess(addresses, "slow", SLOW_CONCURRENCY, SLOW_CALL_MS)
        try:
            for r in range(args.rounds):
                rates["plain"].append(plain(addresses, f"plain-{r}", args.calls))
                rates["fast"].append(calls(addresses, f"fast-{r}", "fast", args.calls))
                rates["slow"].append(calls(addresses, f"slow-{r}", "slow", args.slow_calls))
                print(
                    f"round {r + 1}: plain {rates['plain'][-1]:,.0f} puts/s, fast {rates['fast'][-1]:,.0f} calls/s, "
                    f"slow {rates['slow'][-1]:,.0f} calls/s",
                    flush=True,
                )
        finally:
            fast.stop()
            slow.stop()
    report = render(args, rates)
    print(report)
    if args.write:
        with open(RESULTS, "w") as f:
            f.write(report)


def render(args: argparse.Namespace, rates: dict[str, list[float]]) -> str:
    load = os.getloadavg()[0]
    plain_rate = statistics.median(rates["plain"])
    fast_rate = statistics.median(rates["fast"])
    slow_rate = statistics.median(rates["slow"])
    bound = SLOW_CONCURRENCY * 1000 / SLOW_CALL_MS
    each = {mode: ", ".join(f"{v:,.0f}" for v in values) for mode, values in rates.items()}
    lines = [
        "# Pipelines: completed calls per second beside the plain write rate",
        "",
        f"Command: `python -m bench.pipelines --calls {args.calls} --slow-calls {args.slow_calls} "
        f"--rounds {args.rounds} --write` (`make bench-pipelines`)",
        "",
        f"3 nodes on one machine ({platform.machine()}, {os.cpu_count()} cores, load {load:.1f} at the end), "
        "the bench and its worker processes on the same machine (see bench/pipelines.py).",
        "",
        "| mode | per second (median) | each round | vs plain |",
        "|---|---|---|---|",
        f"| plain topic: puts, one pipelined client | {plain_rate:,.0f} | {each['plain']} | 1.00 |",
        f"| fast worker: completed calls | {fast_rate:,.0f} | {each['fast']} | {fast_rate / plain_rate:.2f} |",
        f"| slow worker ({SLOW_CALL_MS} ms a call, {SLOW_CONCURRENCY} in flight): completed calls | "
        f"{slow_rate:,.0f} | {each['slow']} | {slow_rate / plain_rate:.2f} |",
        "",
        f"- fast: {fast_rate / plain_rate:.0%} of the plain rate (target >= 45 %; two transactions per call: "
        "the seed's bound is 50 %).",
        f"- slow: {slow_rate:,.0f} calls/s is {slow_rate / bound:.0%} of the worker's own bound "
        f"({SLOW_CONCURRENCY} / {SLOW_CALL_MS} ms = {bound:,.0f} calls/s) and {slow_rate / fast_rate:.0%} of what "
        "the same store completes with a fast worker: the worker limits it, not the store.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
