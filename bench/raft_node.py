"""One node of the raw-Raft ceiling: pysyncobj alone, no Laminar. The only bench module importing it.

`python -m bench.raft_node --self A --peers B,C --settings laminar --commands N --result FILE`

Every node runs this; the one that wins the election drives: it proposes N small commands (one
per log entry) through a pipelined loop bounded by a window, counts successful callbacks, and
writes commits/s as JSON to FILE. The others only replicate. Every node exits by itself after
--seconds, so none can outlive a lost parent.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import threading
import time
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

COMMAND_BYTES = 16
READY_TIMEOUT_S = 30.0
LEADER_STABLE_S = 0.5  # let the election settle (and the leader's no-op commit) before timing
WINDOW_DEFAULTS = 1000  # commands in flight with pysyncobj's defaults (its queue holds 100,000)
LAMINAR_COMMANDS_QUEUE = 64  # limits.RAFT_COMMANDS_QUEUE_MAX: Laminar's pysyncobj command queue
FAIL_REASON_NAMES = {code: name for name, code in vars(FAIL_REASON).items() if name.isupper()}


def laminar_conf(journal_path: str) -> SyncObjConf:
    """The settings laminar/node/raft/_engine.py gives pysyncobj, where they matter for throughput."""
    return SyncObjConf(
        appendEntriesUseBatch=False,  # send each proposal at once, not on the next 50 ms tick
        commandsQueueSize=LAMINAR_COMMANDS_QUEUE,
        commandsWaitLeader=False,
        raftMinTimeout=0.4,
        raftMaxTimeout=1.4,
        appendEntriesPeriod=0.1,
        journalFile=journal_path,  # pysyncobj's own file journal (Laminar adds fsync on top of one)
        logCompactionMinEntries=2**62,
        logCompactionMinTime=2**62,
        useFork=False,
        dynamicMembershipChange=False,
        connectionRetryTime=0.5,
    )


SETTINGS = {
    "laminar": (laminar_conf, LAMINAR_COMMANDS_QUEUE),
    "defaults": (lambda _path: SyncObjConf(), WINDOW_DEFAULTS),
}


class Counter(SyncObj):  # type: ignore[misc]
    """The smallest useful replicated object: one method taking a few bytes."""

    def __init__(self, self_address: str, peers: list[str], conf: SyncObjConf) -> None:
        super().__init__(self_address, peers, conf)
        self.applied = 0

    @replicated  # type: ignore[misc]
    def record(self, command: bytes) -> None:
        self.applied += 1


def drive(node: Counter, commands: int, window: int, deadline: float) -> dict[str, Any]:
    """Propose `commands` commands with at most `window` waiting for their callback."""
    slots = threading.Semaphore(window)
    lock = threading.Lock()  # callbacks run on the tick thread, or on ours when the queue is full
    outcome: collections.Counter[str] = collections.Counter()
    finished = threading.Event()

    def on_result(_result: Any, error: int) -> None:
        with lock:
            outcome["ok" if error == FAIL_REASON.SUCCESS else FAIL_REASON_NAMES.get(error, str(error))] += 1
            if outcome.total() == commands:
                finished.set()
        slots.release()

    payload = b"x" * COMMAND_BYTES
    start = time.perf_counter()
    for _ in range(commands):
        if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
        node.record(payload, callback=on_result)
    finished.wait(max(0.0, deadline - time.monotonic()))
    elapsed_s = time.perf_counter() - start
    failures = {reason: count for reason, count in outcome.items() if reason != "ok"}
    return {"commits": outcome["ok"], "failures": failures, "elapsed_s": elapsed_s, "window": window}


def drive_sequential(node: Counter, commands: int, deadline: float) -> dict[str, Any]:
    """Propose `commands` commands one at a time, each after the previous one's callback: a commit's latency."""
    latencies_s: list[float] = []
    done = threading.Event()
    errors: collections.Counter[str] = collections.Counter()

    def on_result(_result: Any, error: int) -> None:
        if error != FAIL_REASON.SUCCESS:
            errors[FAIL_REASON_NAMES.get(error, str(error))] += 1
        done.set()

    payload = b"x" * COMMAND_BYTES
    start = time.perf_counter()
    for _ in range(commands):
        if time.monotonic() >= deadline:
            break
        done.clear()
        sent = time.perf_counter()
        node.record(payload, callback=on_result)
        if not done.wait(max(0.0, deadline - time.monotonic())):
            break
        latencies_s.append(time.perf_counter() - sent)
    return {
        "commits": len(latencies_s) - sum(errors.values()),
        "failures": dict(errors),
        "elapsed_s": time.perf_counter() - start,
        "window": 1,
        "latencies_s": latencies_s,
    }


def _wait_for_leader(node: Counter, deadline: float) -> None:
    while time.monotonic() < deadline and (not node.isReady() or node._getLeader() is None):
        time.sleep(0.05)
    time.sleep(LEADER_STABLE_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--self", dest="self_address", required=True)
    parser.add_argument("--peers", required=True, help="comma-separated host:port of the other nodes")
    parser.add_argument("--settings", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--commands", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True, help="this process exits after this long")
    parser.add_argument("--journal", required=True, help="journal file path (used by the laminar settings)")
    parser.add_argument("--result", required=True, help="where the leader writes its JSON result")
    parser.add_argument("--sequential", action="store_true", help="one command at a time; report each latency")
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    make_conf, window = SETTINGS[args.settings]
    node = Counter(args.self_address, args.peers.split(","), make_conf(args.journal))
    try:
        _wait_for_leader(node, min(deadline, time.monotonic() + READY_TIMEOUT_S))
        if node._isLeader():
            if args.sequential:
                result = drive_sequential(node, args.commands, deadline)
            else:
                result = drive(node, args.commands, window, deadline)
            with open(args.result + ".tmp", "w") as f:
                json.dump(result, f)
            os.replace(args.result + ".tmp", args.result)  # the parent never sees half a file
        while time.monotonic() < deadline:
            time.sleep(0.1)  # followers keep replicating until the parent stops us, or time is up
    finally:
        node.destroy()


if __name__ == "__main__":
    main()
