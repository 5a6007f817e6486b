"""What consumers cost: microseconds per consumed event, plain listen vs durable consumer vs group.

    python -m bench.consumers --events 20000 --rounds 3

A fresh 3-node cluster; one topic filled with N events of 100 bytes. Then, each round, in this
process, on the same topic:
- plain: a Listener from offset 0 takes all N events (the baseline: what a read costs);
- durable: a Listener(consumer=...) takes all N and acks each one, then flushes (acks are batched:
  one CONSUMER_ACK intention per CONSUMER_ACK_FLUSH_EVENTS events or CONSUMER_ACK_FLUSH_MS);
- group: one member of a fresh group takes all N and acks each one, then flushes (each event is
  leased at apply, streamed to the member, acknowledged in GROUP_ACK batches; at most unacked_max
  leased at once, so the member waits for its acks to commit before it gets more);
- group x2: two members in threads of this process share the N events.
Two figures per mode: start (ms from the listener's creation to its first event: a member joins the
group first, through the log) and us/event (from the first event to the last one, and for acking
modes to the commit of the last acks, divided by N). Bounded: every wait has a deadline. Results go to
bench/results/consumers.md with the command that made them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable

import laminar
from bench.cluster import BenchCluster
from laminar import limits

WAIT_S_MAX = 300.0
VALUE = b"v" * 100
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "consumers.md")


def fill(addresses: list[str], topic: str, events: int) -> None:
    with laminar.Client(addresses) as client:
        client.create_topic(topic).committed(timeout=30)
        for n in range(events - 1):  # the create is the first event
            client.put(topic, f"k{n % 1000}", VALUE)
        client.flush(timeout=WAIT_S_MAX)


class Clock:
    """When a mode started, and when its first event arrived (from any thread)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self._lock = threading.Lock()

    def event(self) -> None:
        if self.first is None:
            with self._lock:
                if self.first is None:
                    self.first = time.perf_counter()

    def split(self) -> tuple[float, float]:
        """(start s, steady s) now."""
        assert self.first is not None
        return self.first - self.started, time.perf_counter() - self.first


Mode = Callable[[list[str], str, int, str], tuple[float, float]]


def plain(addresses: list[str], topic: str, events: int, name: str) -> tuple[float, float]:
    clock = Clock()
    with laminar.Listener(addresses, topic) as listener:
        listener.next_event(timeout=WAIT_S_MAX)
        clock.event()
        listener.take(events - 1, timeout=WAIT_S_MAX)
        return clock.split()


def durable(addresses: list[str], topic: str, events: int, name: str) -> tuple[float, float]:
    clock = Clock()
    with laminar.Listener(addresses, topic, consumer=name) as listener:
        for _ in range(events):
            event = listener.next_event(timeout=WAIT_S_MAX)
            clock.event()
            listener.ack(event)
        listener.flush(timeout=WAIT_S_MAX)
        return clock.split()


def _member(
    addresses: list[str], topic: str, name: str, member: str, clock: Clock, share: list[int], total: int
) -> None:
    unacked = limits.GROUP_MEMBER_UNACKED_MAX
    settings = laminar.GroupSettings(lease_ms=60_000, unacked_max=unacked)
    with laminar.Listener(
        addresses, topic, group=name, member=member, group_settings=settings, unacked_max=unacked
    ) as listener:
        deadline = time.monotonic() + WAIT_S_MAX
        while len(share) < total and time.monotonic() < deadline:
            try:
                event = listener.next_event(timeout=0.2)
            except laminar.Timeout:
                continue
            clock.event()
            listener.ack(event)
            share.append(1)
        listener.flush(timeout=WAIT_S_MAX)


def group(members: int) -> Mode:
    def run(addresses: list[str], topic: str, events: int, name: str) -> tuple[float, float]:
        share: list[int] = []
        clock = Clock()
        threads = [
            threading.Thread(target=_member, args=(addresses, topic, name, f"m{i}", clock, share, events))
            for i in range(members)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S_MAX)
        if len(share) < events:
            raise RuntimeError(f"group of {members} consumed {len(share)} of {events} events")
        return clock.split()

    return run


MODES: dict[str, Mode] = {
    "plain listen": plain,
    "durable consumer, ack each": durable,
    "group, 1 member, ack each": group(1),
    "group, 2 members, ack each": group(2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write bench/results/consumers.md")
    args = parser.parse_args()
    us: dict[str, list[float]] = {mode: [] for mode in MODES}
    start_ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    with BenchCluster(3) as cluster:
        fill(cluster.addresses, "bench", args.events)
        for round_number in range(args.rounds):
            for mode, run in MODES.items():  # interleaved, so load drifts hit every mode alike
                name = f"c{round_number}-{list(MODES).index(mode)}"
                start_s, steady_s = run(cluster.addresses, "bench", args.events, name)
                us[mode].append(steady_s / args.events * 1e6)
                start_ms[mode].append(start_s * 1000)
                print(f"round {round_number + 1}: {mode}: start {start_s * 1000:.0f} ms, {us[mode][-1]:.1f} us/event")
    report = render(args, us, start_ms)
    print(report)
    if args.write:
        with open(RESULTS, "w") as f:
            f.write(report)


def render(args: argparse.Namespace, us: dict[str, list[float]], start_ms: dict[str, list[float]]) -> str:
    load = os.getloadavg()[0]
    base = statistics.median(us["plain listen"])
    lines = [
        "# Consumers: cost per consumed event",
        "",
        f"Command: `python -m bench.consumers --events {args.events} --rounds {args.rounds} --write`",
        "",
        f"3 nodes on one machine ({platform.machine()}, {os.cpu_count()} cores, load {load:.1f} at the end),",
        f"one topic of {args.events:,} events of 100-byte values, every mode in this process (see bench/consumers.py).",
        "",
        "| mode | us/event (median) | each round | vs plain | start, ms (median) |",
        "|---|---|---|---|---|",
    ]
    for mode, values in us.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{v:.1f}" for v in values)
        start = statistics.median(start_ms[mode])
        lines.append(f"| {mode} | {median:.1f} | {rounds} | {median / base:.1f}x | {start:.0f} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
