"""What one sandboxed handler call costs, per example program: `python -m bench.sandbox_calls`.

Every node of a cluster runs a topic's program on every mutation of the topic, so the per-call cost of the
sandbox bounds a programmable topic's throughput. This script calls TopicRuntime directly (no Raft, no store,
no gRPC) and prints the median over several repetitions of the CPU time per call, in microseconds.

Each column asks for the state's bytes every `batch` calls, as the state machine does at the end of a log entry of
that many intentions of the topic: batch=1 is the worst case (the sandbox may defer encoding the state to then).
Each call's arguments are built before the timing starts. CPU time (time.process_time) is used because the
machine may be shared: wall time would measure the others.

Workloads (all calls succeed, so they measure the accepted path, which is what a benchmark commits):
  passthrough            on_put of a 16-byte key and 100-byte value
  balance cache=N        transfers between N already-cached accounts, each from a fresh view (seen = offset-1)
  work_units             the next number on one of 256 keys
  lock                   re-acquiring one of 256 held locks
  unique                 put then delete of a new key, with 256 keys held
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from laminar.node.sandbox import CallContext, CallOutcome, TopicRuntime, start_program_thread

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
CLIENT = str(uuid.UUID(int=1))
TOPIC = "t"
KEYS = 256

Call = tuple[Callable[..., CallOutcome], tuple[object, ...]]  # a runtime's handler method and its arguments
Next = Callable[[], Call]  # the workload's next call, built (untimed) before a repetition runs


def _source(name: str) -> str:
    return (PROGRAMS / f"{name}.py").read_text()


class Offsets:
    """Intention offsets, increasing along the log as the state machine assigns them."""

    def __init__(self) -> None:
        self.last = 1

    def next(self) -> CallContext:
        self.last += 1
        return CallContext(topic=TOPIC, offset=self.last, client_id=CLIENT, nonce=self.last)


def _started(name: str, args: bytes, offsets: Offsets) -> TopicRuntime:
    runtime = TopicRuntime.start(_source(name), None)
    outcome = runtime.on_create(offsets.next(), args)
    assert outcome.ok, outcome.reason
    return runtime


def _cycle(n: int) -> Iterator[int]:
    i = 0
    while True:
        i = (i + 1) % n
        yield i


def passthrough() -> tuple[TopicRuntime, Next]:
    offsets = Offsets()
    runtime = TopicRuntime.start(_source("passthrough"), None)
    key, value = b"k" * 16, b"v" * 100
    return runtime, lambda: (runtime.on_put, (offsets.next(), key, value))


def balance(cache_size: int) -> tuple[TopicRuntime, Next]:
    offsets = Offsets()
    runtime = _started("balance", json.dumps({"cache_size": cache_size}).encode(), offsets)
    accounts = [f"acct{i:05d}" for i in range(cache_size)]
    balances = dict.fromkeys(accounts, 0)

    def transfer(source: str, target: str, amount: int) -> Call:
        """The call, from a client whose view is fresh; the ledger assumes it succeeds (the timing checks)."""
        ctx = offsets.next()
        value = {"to": target, "amount": amount, "from_balance": balances.get(source, 0)}
        value.update(to_balance=balances[target], seen=ctx.offset - 1)
        if source != "mint":
            balances[source] -= amount
        balances[target] += amount
        return runtime.on_put, (ctx, source.encode(), json.dumps(value).encode())

    for account in accounts:  # fill the cache: every later transfer finds its accounts there
        handler, args = transfer("mint", account, 1_000_000)
        assert handler(*args).ok

    indexes = _cycle(cache_size * cache_size)

    def call() -> Call:
        i = next(indexes)
        source, target = i % cache_size, (i // cache_size) % cache_size
        if source == target:
            target = (target + 1) % cache_size
        return transfer(accounts[source], accounts[target], 1)

    return runtime, call


def work_units() -> tuple[TopicRuntime, Next]:
    offsets = Offsets()
    runtime = _started("work_units", b"", offsets)
    counters = [0] * KEYS
    keys = _cycle(KEYS)

    def call() -> Call:
        i = next(keys)
        counters[i] += 1
        return runtime.on_put, (offsets.next(), b"job-%05d" % i, str(counters[i]).encode())

    return runtime, call


def lock() -> tuple[TopicRuntime, Next]:
    offsets = Offsets()
    runtime = _started("lock", b"", offsets)
    for i in range(KEYS):
        assert runtime.on_put(offsets.next(), b"lock-%05d" % i, b"").ok
    keys = _cycle(KEYS)
    return runtime, lambda: (runtime.on_put, (offsets.next(), b"lock-%05d" % next(keys), b""))


def unique() -> tuple[TopicRuntime, Next]:
    offsets = Offsets()
    runtime = _started("unique", b"", offsets)
    for i in range(KEYS):
        assert runtime.on_put(offsets.next(), b"held-%05d" % i, b"").ok
    counter = iter(range(1, 1 << 62))

    def call() -> Call:
        i = next(counter)
        key = b"new-%05d" % ((i + 1) // 2)  # put new-1, delete new-1, put new-2, ...
        return (runtime.on_put, (offsets.next(), key, b"")) if i % 2 else (runtime.on_delete, (offsets.next(), key))

    return runtime, call


WORKLOADS: dict[str, Callable[[], tuple[TopicRuntime, Next]]] = {
    "passthrough": passthrough,
    "balance cache=10": lambda: balance(10),
    "balance cache=512": lambda: balance(512),
    "work_units": work_units,
    "lock": lock,
    "unique": unique,
}


def per_call_us(runtime: TopicRuntime, make: Next, calls: int, batch: int) -> float:
    """CPU microseconds per call over `calls` calls, asking for the state's bytes every `batch` calls."""
    prepared = [make() for _ in range(calls)]
    outcomes = []
    start = time.process_time()
    for i, (handler, args) in enumerate(prepared, 1):
        outcomes.append(handler(*args))
        if i % batch == 0:
            runtime.state_bytes()
    elapsed = time.process_time() - start
    failed = [o.reason for o in outcomes if not o.ok]
    assert not failed, failed[:3]
    return elapsed * 1e6 / calls


def measure(name: str, calls: int, repetitions: int, batch: int) -> float:
    runtime, make = WORKLOADS[name]()
    per_call_us(runtime, make, min(calls, 200), batch)  # warm up
    return statistics.median(per_call_us(runtime, make, calls, batch) for _ in range(repetitions))


def main(argv: list[str] | None = None) -> None:
    """Runs the measurements on a program thread, as the node's apply thread is: a program called from the main thread
    would be handed to one (see laminar/node/sandbox/_threads.py), and the hand-over would be measured too."""
    thread = start_program_thread(lambda: _main(argv), "bench")
    thread.join()


def _main(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per repetition")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[1, 32], help="calls per state_bytes(), a column each"
    )
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), help="run these workloads only")
    args = parser.parse_args(argv)
    print(f"µs per call: CPU time, median of {args.repetitions} x {args.calls} calls")
    print(f"{'program':<20}" + "".join(f"{f'batch={batch}':>10}" for batch in args.batches))
    for name in args.only or list(WORKLOADS):
        cells = [measure(name, args.calls, args.repetitions, batch) for batch in args.batches]
        print(f"{name:<20}" + "".join(f"{cell:>10.1f}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
