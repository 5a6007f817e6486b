"""Orders paid by a slow payments service, with a worker killed halfway (docs/pipelines.md).

    python examples/pipeline.py                    # against `make cluster` if it runs, else a cluster of its own
    python examples/pipeline.py --orders 2000 --workers 3

A topic runs programs/orders.py: each order is recorded and calls payments.charge; the call's result, in a
second transaction, marks the order paid or failed. The payments service is --workers processes (this file
with --serve), each taking 50-500 ms per call. They charge into a SQLite table whose key is the call id: that
is the service's idempotency table, so a call run twice (after a worker died holding it) charges once. Orders
whose amount is a multiple of 13 are declined (call.fail). When half the orders have an outcome, one worker is
killed with SIGKILL: the calls it held come back to the others once their lease (log time) runs out.

At the end the example checks, from the topic's whole stream, the call counters and the bank's table: every
order ended paid or failed exactly once, the bank charged exactly the paid orders, once each, and the
program's totals agree with both. It exits 0 when all hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import laminar
from laminar import limits
from laminar.client import CallStats, describe_calls, resolve_addresses
from laminar.local_cluster import LocalCluster, free_port_block, write_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SECONDS_MAX = 600  # the whole run, however many orders
ORDERS_PER_ROUND = 256  # orders sent before waiting for their commits
RETRY_S = 0.2  # an order refused at the in-flight bound is sent again after this long
DECLINED_EVERY = 13  # amounts that are a multiple of this are declined by the bank
LEASE_MS = 2000  # a killed worker's calls come back after at most this long (log time)
WORKER_STOP_S = 30.0


# ---- the payments service (a worker process) ---------------------------------------------------------------


class Bank:
    """Charges, once per call id: the service's own idempotency table (SQLite, shared by the worker processes)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS charges (call_id INTEGER PRIMARY KEY, order_id TEXT, amount INTEGER)"
        )
        self._lock = threading.Lock()

    def charge(self, call_id: int, order_id: str, amount: int) -> str:
        """Charge unless this call was charged already; either way, the same receipt."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO charges VALUES (?, ?, ?)", (call_id, order_id, amount))
        return json.dumps({"receipt": f"r-{call_id}", "amount": amount})

    def charges(self) -> list[tuple[int, str, int]]:
        with self._lock:
            return list(self._db.execute("SELECT call_id, order_id, amount FROM charges"))


def handle(bank: Bank, call: laminar.Call, delay_ms: tuple[int, int]) -> None:
    order = json.loads(call.request)
    time.sleep(random.uniform(*delay_ms) / 1000)  # the slow part: a card network, say
    try:
        if order["amount"] % DECLINED_EVERY == 0:
            call.fail("card declined")
        else:
            call.complete(bank.charge(call.id, order["order"], order["amount"]))
    except laminar.ClientClosed:
        pass  # stopping: the call goes to another worker


def serve(args: argparse.Namespace) -> int:
    bank = Bank(args.db)
    delay_ms = tuple(int(v) for v in args.delay_ms.split(","))
    worker = laminar.Worker(
        args.addresses, service=args.service, method="charge", name=args.name, concurrency=args.concurrency,
        lease_ms=LEASE_MS,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=worker.close).start())
    print(f"worker {worker.name} ready", flush=True)
    with ThreadPoolExecutor(args.concurrency) as pool:
        for call in worker:  # at most `concurrency` in hand: the pool's queue stays short
            pool.submit(handle, bank, call, delay_ms)  # type: ignore[arg-type]
    return 0


# ---- the shop (the driver) ---------------------------------------------------------------------------------


def start_worker(args: argparse.Namespace, addresses: list[str], service: str, db: str, n: int) -> subprocess.Popen:
    command = [sys.executable, os.path.abspath(__file__), "--serve", "--addresses", ",".join(addresses)]
    command += ["--service", service, "--db", db, "--name", f"{service}-w{n}", "--delay-ms", args.delay_ms]
    command += ["--concurrency", str(args.concurrency)]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    line = worker.stdout.readline()  # joined: its calls are leased from now on
    if "ready" not in line:
        raise SystemExit(f"worker {n} did not start (exit {worker.wait()})")
    return worker


class Outcomes:
    """Follows the topic to tell how many orders have an outcome so far (the progress lines)."""

    def __init__(self, addresses: list[str], topic: str) -> None:
        self.count = 0
        self._cond = threading.Condition()
        self._listener = laminar.Listener(addresses, topic)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            for event in self._listener:
                if event.key.startswith((b"paid/", b"failed/")):
                    with self._cond:
                        self.count += 1
                        self._cond.notify_all()
        except laminar.LaminarError:
            return  # closed

    def wait_for(self, count: int, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout_s)

    def close(self) -> None:
        self._listener.close()


def place_orders(addresses: list[str], topic: str, orders: dict[str, int], outcomes: Outcomes, deadline: float) -> int:
    """Send every order, keeping at most the topic's in-flight bound of orders without an outcome (more would be
    refused at ctx.call). One refused anyway is sent again after RETRY_S. Returns how many were refused."""
    refused_total = 0
    waiting = list(orders)
    placed = 0
    with laminar.Client(addresses) as client:
        while waiting and time.monotonic() < deadline:
            while not outcomes.wait_for(placed + ORDERS_PER_ROUND - limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX, 1.0):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{placed - outcomes.count} orders without an outcome for too long")
            round_ids, waiting = waiting[:ORDERS_PER_ROUND], waiting[ORDERS_PER_ROUND:]
            sent = [(i, client.put(topic, i, json.dumps({"id": i, "amount": orders[i]}))) for i in round_ids]
            refused = []
            for order_id, pending in sent:
                commit = pending.committed(timeout=60)
                if commit.ok:
                    placed += 1
                elif "in flight" in commit.reason:  # the topic's bound: refused by ctx.call, nothing recorded
                    refused.append(order_id)
                else:
                    raise SystemExit(f"order {order_id} refused: {commit.reason}")
            if refused:
                refused_total += len(refused)
                waiting = refused + waiting
                time.sleep(RETRY_S)
    return refused_total


def settled(addresses: list[str], topic: str, count: int, timeout_s: float) -> CallStats:
    """The topic's call counters once `count` calls were issued and none is in flight (a node that answers
    may be a little behind the one the outcomes were read from)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = describe_calls(addresses, topic, timeout_s=10).stats
        if (stats.in_flight == 0 and stats.issued >= count) or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def check(addresses: list[str], topic: str, orders: dict[str, int], bank: Bank) -> tuple[list[str], dict[str, int]]:
    """Every invariant the example promises: the problems found (none: all hold), and the program's totals."""
    problems = []
    stats = settled(addresses, topic, len(orders), timeout_s=30)
    print(
        f"calls: issued {stats.issued}, completed {stats.completed}, failed {stats.failed}, timed out "
        f"{stats.timed_out}, gave up {stats.gave_up}, redeliveries {stats.redeliveries}",
        flush=True,
    )
    finished = stats.completed + stats.failed + stats.timed_out + stats.gave_up
    if stats.in_flight or stats.issued != len(orders) or finished != stats.issued:
        problems.append(f"call counters do not add up: {stats}")
    with laminar.Client(addresses) as client:
        totals_value = client.get(topic, "totals")  # linearizable: reflects every outcome committed so far
    totals = json.loads(totals_value.value)
    outcomes: dict[str, list[str]] = {}  # order id -> its outcome events, in stream order
    with laminar.Listener(addresses, topic) as listener:  # the whole stream, to the offset that read reflects
        while True:
            event = listener.next_event(timeout=30)
            kind, _, order_id = event.key.decode().partition("/")
            if kind in ("paid", "failed"):
                outcomes.setdefault(order_id, []).append(kind)
            if event.consequence_offset >= totals_value.topic_offset:
                break
    for order_id in orders:
        if len(outcomes.get(order_id, [])) != 1:
            problems.append(f"order {order_id} has outcomes {outcomes.get(order_id, [])}")
    paid = {i for i, kinds in outcomes.items() if kinds == ["paid"]}
    charges = bank.charges()
    charged = Counter(order_id for _, order_id, _ in charges)
    if set(charged) != paid or any(n != 1 for n in charged.values()):
        problems.append(f"the bank charged {len(charges)} times for {len(charged)} orders; {len(paid)} paid")
    paid_cents = sum(orders[i] for i in paid)
    bank_cents = sum(amount for _, _, amount in charges)
    if not bank_cents == paid_cents == totals["paid_cents"]:
        problems.append(f"money: bank {bank_cents}, paid orders {paid_cents}, program totals {totals}")
    if totals["paid"] != len(paid) or totals["paid"] + totals["failed"] != len(orders):
        problems.append(f"program totals {totals} for {len(paid)} paid of {len(orders)} orders")
    return problems, totals


def shop(args: argparse.Namespace, addresses: list[str]) -> int:
    run = uuid.uuid4().hex[:8]
    topic, service = f"orders-{run}", f"payments-{run}"
    rng = random.Random(args.seed)
    orders = {f"o{n}": rng.randint(1, 10_000) for n in range(args.orders)}
    with open(os.path.join(ROOT, "programs", "orders.py")) as f:
        program = f.read()
    with laminar.Client(addresses) as client:
        commit = client.create_topic(topic, program=program, args=json.dumps({"service": service})).committed(30)
        assert commit.ok, commit
    deadline = time.monotonic() + RUN_SECONDS_MAX
    with tempfile.TemporaryDirectory(prefix="laminar-pipeline-") as tmp:
        db = os.path.join(tmp, "bank.sqlite")
        bank = Bank(db)
        workers = [start_worker(args, addresses, service, db, n) for n in range(args.workers)]
        outcomes = Outcomes(addresses, topic)
        print(f"topic {topic}: {args.orders} orders; service {service}: {args.workers} workers", flush=True)
        try:
            producer = Producer(addresses, topic, orders, outcomes, deadline)
            follow(args, outcomes, workers, producer, deadline)
            problems, totals = check(addresses, topic, orders, bank)
        finally:
            outcomes.close()
            stop_workers(workers)
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems[:20]), flush=True)
        return 1
    print(f"every order paid or failed exactly once: {totals['paid']} paid, {totals['failed']} failed")
    print(f"the bank charged exactly the paid orders, once each: {totals['paid_cents']} cents in all")
    return 0


class Producer(threading.Thread):
    """Places the orders in a thread of its own; `error` says why it stopped early, if it did."""

    def __init__(
        self, addresses: list[str], topic: str, orders: dict[str, int], outcomes: Outcomes, deadline: float
    ) -> None:
        super().__init__(daemon=True)
        self.args = (addresses, topic, orders, outcomes, deadline)
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            print(f"orders placed; {place_orders(*self.args)} were refused at the in-flight bound and sent again")
        except Exception as error:  # noqa: BLE001 - reported by follow()
            self.error = error


def follow(args: argparse.Namespace, outcomes: Outcomes, workers: list, producer: Producer, deadline: float) -> None:
    """Progress every 10 %; kill worker 0 at 50 %."""
    started = time.monotonic()
    for percent in range(10, 101, 10):
        while not outcomes.wait_for(args.orders * percent // 100, 1.0):
            if producer.error is not None:
                raise SystemExit(f"placing orders failed: {producer.error}")
            if time.monotonic() > deadline:
                raise SystemExit(f"only {outcomes.count} of {args.orders} outcomes in {RUN_SECONDS_MAX} s")
        print(f"outcomes: {percent}% ({time.monotonic() - started:.1f} s)", flush=True)
        if percent == 50 and len(workers) > 1:
            workers[0].send_signal(signal.SIGKILL)
            print(f"killed worker 0 (pid {workers[0].pid}) with calls in hand", flush=True)
    producer.join()


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()  # SIGTERM: the worker leaves its service
    for worker in workers:
        try:
            worker.wait(timeout=WORKER_STOP_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def reachable(addresses: list[str]) -> bool:
    return any("error" not in s for s in laminar.cluster_status(addresses, 1.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addresses", help="node addresses (default: $LAMINAR_ADDRESSES or the local cluster)")
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64, help="calls each worker runs at once")
    parser.add_argument("--delay-ms", default="50,500", help="each call takes a random time in this range")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # run as a payments worker
    parser.add_argument("--service", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args)
    addresses = resolve_addresses(args.addresses)
    if reachable(addresses):
        return shop(args, addresses)
    print("no cluster answers at", ",".join(addresses), "- starting a 3-node cluster of our own", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="laminar-pipeline-cluster-") as root:
        base = free_port_block(3)
        config = os.path.join(root, "cluster.toml")
        write_config(config, 3, base, os.path.join(root, "data"))
        cluster = LocalCluster(config, [1, 2, 3], log_dir=root)
        try:
            cluster.start_all()
            own = [f"127.0.0.1:{base + n}" for n in (1, 2, 3)]
            deadline = time.monotonic() + 30
            while not reachable(own) and time.monotonic() < deadline:
                time.sleep(0.2)
            return shop(args, own)
        finally:
            cluster.stop_all()


if __name__ == "__main__":
    sys.exit(main())
