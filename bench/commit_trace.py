"""Where the time of one sequential write goes: a time budget of the commit path, step by step.

`python -m bench.commit_trace --writes 1000` starts a 3-node cluster (fsync) with every process traced
(bench/_trace_hook.py, loaded through bench/trace_site/sitecustomize.py), sends that many writes one at a
time from this process, each waiting for its commit, stops the cluster and merges the four processes'
timestamps into one timeline. For each write it finds, in order, the first event of each step after the
previous step (client put, frame built, leader's session reader, proposer, the leader's tick, its append
and sends, a follower's receipt, append, fsync and reply, the leader's receipt and apply, the session
writer, the client's receipt) and prints the median and 90th percentile of each step's share, and which
steps the slowest writes spent their time in. Raw records stay under var/commit-trace/.

`python -m bench.commit_trace --open-loop-rate 6000` traces the open loop instead (bench/open_loop.py: two
sender processes offering 6,000 writes/s between them for --seconds, and a listener) and follows each message
through its commit and its delivery (bench/_open_loop_budget.py).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE_SITE = os.path.join(REPO_ROOT, "bench", "trace_site")
WARM_UP_WRITES = 50
WRITE_TIMEOUT_S = 10.0
WRITES_MAX = 100_000
SLOWEST_SHARE = 0.05  # the tail: this fraction of the writes, slowest first

Event = tuple[int, str, str, str]  # (monotonic ns, process tag: "c" or "n<id>", thread, event)


@dataclass(frozen=True)
class Step:
    name: str
    where: str  # "c": the client; "leader"; "follower"
    event: str


STEPS = (
    Step("client: put() -> frame built (client's gRPC sender thread)", "c", "c.frame"),
    Step("gRPC: client -> leader's session reader", "leader", "s.accept"),
    Step("leader: frame checked -> proposer proposes", "leader", "p.propose"),
    Step("leader: proposal -> tick thread begins a tick", "leader", "r.tick"),
    Step("leader: tick -> entry appended to the journal", "leader", "j.add"),
    Step("leader: append -> sent to a first follower", "leader", "n.send-append_entries"),
    Step("leader: -> sent to a second follower", "leader", "n.send-append_entries"),
    Step("network + follower's tick thread wakes with the append", "follower", "r.msg-append_entries"),
    Step("follower: -> appended", "follower", "j.add"),
    Step("follower: -> fsync begins", "follower", "j.sync"),
    Step("follower: fsync", "follower", "j.synced"),
    Step("follower: -> reply sent", "follower", "n.send-next_node_idx"),
    Step("network + leader's tick thread wakes with the reply", "leader", "r.msg-next_node_idx"),
    Step("leader: reply -> commit known, apply begins", "leader", "a.commit"),
    Step("leader: apply (state machine + RocksDB) -> outcome to the session", "leader", "s.deliver"),
    Step("leader: outcome -> session writer thread takes the ack", "leader", "s.writer"),
    Step("gRPC: leader -> client's session thread", "c", "c.ack-commit"),
    Step("client: session thread -> committed() returns", "c", "c.committed"),
)


def load(trace_dir: str) -> list[Event]:
    events: list[Event] = []
    for path in glob.glob(os.path.join(trace_dir, "*.txt")):
        with open(path, encoding="utf-8") as f:
            argv = f.readline().split()
            tag = f"n{argv[argv.index('--id') + 1]}" if "node" in argv and "--id" in argv else "c"
            for line in f:
                ns, thread, event = line.split()
                events.append((int(ns), tag, thread, event.split(":", 1)[0]))  # the step's name, not its detail
    events.sort()
    return events


def _matcher(step: Step, leader: str) -> Callable[[str], bool]:
    if step.where == "c":
        return lambda tag: tag == "c"
    if step.where == "leader":
        return lambda tag: tag == leader
    return lambda tag: tag not in ("c", leader)


def budgets(events: list[Event]) -> list[tuple[int, list[int]]]:
    """(total ns, ns per step) of each write whose every step was found, in write order."""
    leaders = [tag for _, tag, _, event in events if event == "s.accept"]
    if not leaders:
        raise SystemExit("no session events: was the cluster traced?")
    leader = Counter(leaders).most_common(1)[0][0]
    matchers = [(_matcher(step, leader), step.event) for step in STEPS]
    starts = [i for i, e in enumerate(events) if e[1] == "c" and e[3] == "c.put"]
    out = []
    for first, end in zip(starts, [*starts[1:], len(events)], strict=True):
        previous, at, row = events[first][0], first, []
        for matches, wanted in matchers:
            while at < end and not (events[at][3] == wanted and matches(events[at][1])):
                at += 1
            if at >= end:
                break
            row.append(events[at][0] - previous)
            previous = events[at][0]
            at += 1
        if len(row) == len(STEPS):
            out.append((previous - events[first][0], row))
    return out


def _percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000


def report(rows: list[tuple[int, list[int]]]) -> str:
    lines = [
        f"{len(rows)} writes traced. Per step: median and 90th percentile in µs; the steps' medians add up "
        "to less than the median total (each step's median comes from a different write).",
        "",
        "| step | p50 µs | p90 µs | slowest 5 %: ms spent here |",
        "|---|---|---|---|",
    ]
    slowest = sorted(rows, reverse=True)[: max(1, int(len(rows) * SLOWEST_SHARE))]
    for i, step in enumerate(STEPS):
        values = [row[i] for _, row in rows]
        tail_ms = sum(row[i] for _, row in slowest) / 1e6
        lines.append(
            f"| {step.name} | {_percentile(values, 0.5):,.0f} | {_percentile(values, 0.9):,.0f} | {tail_ms:,.1f} |"
        )
    totals = [total for total, _ in rows]
    lines.append(f"| **total** | {_percentile(totals, 0.5):,.0f} | {_percentile(totals, 0.9):,.0f} | |")
    return "\n".join(lines) + "\n"


def run(writes: int, out_dir: str) -> str:
    """Trace `writes` sequential writes on a fresh 3-node cluster; the raw records' directory."""
    from bench import _trace_hook

    trace_dir = _traced(out_dir)
    import laminar
    from bench.cluster import BenchCluster

    with BenchCluster(3, "fsync") as cluster, laminar.Client(cluster.addresses) as client:
        client.create_topic("trace").committed(timeout=WRITE_TIMEOUT_S)
        for n in range(WARM_UP_WRITES + writes):
            if n == WARM_UP_WRITES:
                _trace_hook._events.clear()
            client.put("trace", b"k", b"v" * 32).committed(timeout=WRITE_TIMEOUT_S)
    _trace_hook._dump(trace_dir)
    return trace_dir


def run_open_loop(rate_per_s: float, seconds: float, senders: int, out_dir: str) -> str:
    """The open loop of bench/etcd_compare.py (bench/open_loop.py: `senders` processes offering `rate_per_s`
    between them for `seconds`, and a listener) on a fresh traced 3-node cluster; the raw records' directory."""
    trace_dir = _traced(out_dir)
    from bench.cluster import BenchCluster
    from bench.etcd_compare import LAMINAR, ComparePlan, Systems, open_loop, open_loop_summary

    plan = ComparePlan(open_loop_seconds=seconds, open_loop_senders=senders, systems=(LAMINAR,))
    with BenchCluster(3, "fsync") as cluster:
        run = open_loop(Systems(plan, cluster, None), LAMINAR, 1.0, rate_per_s)
    print(f"open loop at {rate_per_s:,.0f}/s: {open_loop_summary(run)}")
    return trace_dir


def _traced(out_dir: str) -> str:
    """Trace this process and every process it starts from now on; the records' directory."""
    from bench import _trace_hook

    trace_dir = os.path.join(out_dir, time.strftime("%Y%m%d-%H%M%S"))
    os.environ["LAMINAR_TRACE_DIR"] = trace_dir
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TRACE_SITE, REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    _trace_hook.install(trace_dir)
    return trace_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_trace", description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "var", "commit-trace"))
    parser.add_argument("--analyze", metavar="TRACE_DIR", help="only analyze the records of an earlier run")
    parser.add_argument(
        "--open-loop-rate",
        type=float,
        metavar="WRITES_PER_S",
        help="trace the open loop (bench/open_loop.py) at this rate instead of sequential writes",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="of the open loop's schedule")
    parser.add_argument("--senders", type=int, default=2, help="open-loop sender processes")
    args = parser.parse_args(argv)
    if not 1 <= args.writes <= WRITES_MAX:
        parser.error(f"--writes must be 1..{WRITES_MAX}")
    if args.open_loop_rate is not None:
        from bench import _open_loop_budget

        trace_dir = args.analyze or run_open_loop(args.open_loop_rate, args.seconds, args.senders, args.out_dir)
        text = _open_loop_budget.report(trace_dir)
        with open(os.path.join(trace_dir, "open-loop-budget.md"), "w", encoding="utf-8") as f:
            f.write(text)
        print(text + f"\nrecords and open-loop-budget.md in {trace_dir}")
        return 0
    trace_dir = args.analyze or run(args.writes, args.out_dir)
    text = report(budgets(load(trace_dir)))
    with open(os.path.join(trace_dir, "budget.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text + f"records and budget.md in {trace_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
