"""The hostile-client suite (issue 15): each attack against a 3-node cluster on loopback while a
well-behaved client puts every 50 ms and listens; one table row per attack.

    python -m bench.hostile                      # every attack, full scale (make hostile)
    python -m bench.hostile --scale short --attacks garbage,listen_max_offset

Per attack: a fresh cluster; the good client runs BASELINE_S alone (the "before" window), then the
attack runs in a child process (bench/hostile_attacks.py) and the good client is measured from its
START to its END (the "during" window). A put counts as failed if it raised, was not VALID, or did
not commit within GOOD_COMMIT_TIMEOUT_S. Verdict targets (issue 15): every node up, node RSS under
NODE_RSS_MIB_MAX, the good client's commit p99 during within P99_FACTOR_MAX x its p99 before (a
before-p99 under P99_FLOOR_MS counts as P99_FLOOR_MS: below it, a shared 2-core machine's scheduling
noise is the whole figure), no failed write, and a new client can connect and write mid-attack.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import laminar
from bench.cluster import BenchCluster, RssSampler
from bench.hostile_attacks import ATTACKS

GOOD_PUT_PERIOD_S = 0.05
GOOD_COMMIT_TIMEOUT_S = 10.0
GOOD_TOPIC = "good"
# Seconds of the good client alone before an attack, of the attack proper, and of quiet after it; by scale.
BASELINE_S = {"full": 5.0, "short": 2.0}
ATTACK_S = {"full": 15.0, "short": 1.0}
RECOVERY_S = {"full": 2.0, "short": 0.5}
SHARED_GAP_S = 1.0  # with one cluster for every attack: the good client alone between two attacks (their "before")
# The node's resident memory may not pass this during any attack. A node idles at ~60-80 MiB; the
# bound leaves room for the store's memtables and block cache (48 MiB) and bounded per-stream buffers.
NODE_RSS_MIB_MAX = 512
P99_FACTOR_MAX = 5.0
P99_FLOOR_MS = 20.0
CHILD_GRACE_S = 30.0  # past its deadline, the attack process is ended by its pid
NEW_CLIENT_PROBE_DELAY_S = 1.0


@dataclass
class Sample:
    sent_at: float
    latency_s: float | None  # None: failed
    delivered_s: float | None = None  # put -> the listener saw it


class GoodClient:
    """Puts every GOOD_PUT_PERIOD_S and waits for each commit in order; a Listener follows the topic."""

    def __init__(self, addresses: list[str]) -> None:
        self._addresses = addresses
        self.samples: list[Sample] = []
        self._sent: dict[bytes, Sample] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client = laminar.Client(addresses)
        self._client.create_topic(GOOD_TOPIC).committed(timeout=GOOD_COMMIT_TIMEOUT_S)
        self._pending: list[tuple[Sample, laminar.Pending]] = []
        self._threads = [
            threading.Thread(target=self._put_loop, name="good-put", daemon=True),
            threading.Thread(target=self._ack_loop, name="good-ack", daemon=True),
            threading.Thread(target=self._listen_loop, name="good-listen", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _put_loop(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            key = b"good-%d" % n
            sample = Sample(time.monotonic(), None)
            try:
                pending = self._client.put(GOOD_TOPIC, key, b"x" * 100)
            except laminar.LaminarError:
                with self._lock:
                    self.samples.append(sample)
            else:
                with self._lock:
                    self._sent[key] = sample
                    self._pending.append((sample, pending))
            n += 1
            next_at += GOOD_PUT_PERIOD_S
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _ack_loop(self) -> None:
        while not (self._stop.is_set() and not self._pending):
            with self._lock:
                item = self._pending.pop(0) if self._pending else None
            if item is None:
                time.sleep(0.005)
                continue
            sample, pending = item
            try:
                left = sample.sent_at + GOOD_COMMIT_TIMEOUT_S - time.monotonic()
                commit = pending.committed(timeout=max(0.001, left))
                if commit.ok:
                    sample.latency_s = time.monotonic() - sample.sent_at
            except laminar.LaminarError:
                pass
            with self._lock:
                self.samples.append(sample)

    def _listen_loop(self) -> None:
        with contextlib.suppress(laminar.LaminarError), laminar.Listener(self._addresses, GOOD_TOPIC) as listener:
            while not self._stop.is_set():
                try:
                    event = listener.next_event(timeout=0.5)
                except laminar.Timeout:
                    continue
                with self._lock:
                    sample = self._sent.pop(event.key, None)
                if sample is not None:
                    sample.delivered_s = time.monotonic() - sample.sent_at

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(GOOD_COMMIT_TIMEOUT_S + 5)
        with contextlib.suppress(laminar.LaminarError):
            self._client.close()

    def window(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.sent_at < end]


def percentile_ms(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Row:
    attack: str
    before_p50_ms: float | None = None
    before_p99_ms: float | None = None
    during_p50_ms: float | None = None
    during_p99_ms: float | None = None
    listen_p99_ms: float | None = None
    writes: int = 0
    failed_writes: int = 0
    new_client: str = "-"
    rss_mib_max: float = 0.0
    rss_mib_after: float = 0.0
    nodes_up: int = 0
    nodes: int = 3
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # targets of the attack's own it missed
    # The good client's puts during the attack: (s since the attack's START, commit latency in s; None: failed).
    during: list[tuple[float, float | None]] = field(default_factory=list)
    started_s: float = 0.0  # the attack's START, time.monotonic() (shared by every process: traces line up with it)

    def verdicts(self) -> list[str]:
        """The targets this row misses (empty: it holds)."""
        missed = []
        if self.nodes_up < self.nodes:
            missed.append("node down")
        if self.rss_mib_max > NODE_RSS_MIB_MAX:
            missed.append("RSS")
        if self.failed_writes:
            missed.append("writes failed")
        before = max(self.before_p99_ms or 0.0, P99_FLOOR_MS)
        if self.during_p99_ms is None or self.during_p99_ms > P99_FACTOR_MAX * before:
            missed.append("p99")
        if self.new_client != "ok":
            missed.append("new client")
        if self.failures:
            missed.append("attack's own check")
        return missed


def run_attack(name: str, cluster: BenchCluster, good: GoodClient, scale: str, seconds: float, before_s: float) -> Row:
    """One attack against a running cluster; its "before" is the good client's last `before_s` seconds."""
    row = Row(name, nodes=len(cluster.addresses))
    leader, follower = _leader_and_follower(cluster)
    before_end = time.monotonic()
    before = good.window(before_end - before_s, before_end)
    command = [
        sys.executable, "-m", "bench.hostile_attacks", name,
        "--addresses", ",".join(cluster.addresses), "--leader", leader, "--follower", follower,
        "--scale", scale, "--seconds", str(seconds),
    ]  # fmt: skip
    with RssSampler(cluster.pids) as rss:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=_repo_root())
        try:
            start, end = _follow(child, row, cluster, seconds)
        finally:
            _end(child)
        time.sleep(RECOVERY_S[scale])
    during = good.window(start, end) if start else []
    _fill_latencies(row, before, during)
    row.during = [(s.sent_at - start, s.latency_s) for s in during]
    row.started_s = start
    row.rss_mib_max = max(rss.peak_bytes.values()) / 2**20
    row.rss_mib_after = max(rss.last_bytes.values()) / 2**20
    row.nodes_up = sum(1 for n in cluster.local.node_ids if cluster.local.alive(n))
    return row


def _follow(child: subprocess.Popen[str], row: Row, cluster: BenchCluster, seconds: float) -> tuple[float, float]:
    """Read the attack's lines until END; probe with a new client once it started."""
    assert child.stdout is not None
    start = 0.0
    probe: threading.Thread | None = None
    deadline = time.monotonic() + seconds + CHILD_GRACE_S + 300.0  # the preparation may fill a store
    for line in child.stdout:
        line = line.strip()
        if line == "START":
            start = time.monotonic()
            deadline = start + seconds + CHILD_GRACE_S
            probe = threading.Thread(target=_probe_new_client, args=(cluster.addresses, row), daemon=True)
            probe.start()
        elif line.startswith("NOTE "):
            row.notes.append(line[5:])
        elif line.startswith("FAIL "):
            row.failures.append(line[5:])
            row.notes.append("FAILED: " + line[5:])
        elif line == "END":
            break
        if time.monotonic() > deadline:
            row.notes.append("attack overran its deadline: ended")
            break
    end = time.monotonic()
    if probe is not None:
        probe.join(GOOD_COMMIT_TIMEOUT_S + 5)
    return start, end


def _probe_new_client(addresses: list[str], row: Row) -> None:
    """Mid-attack, a client that was not connected before creates a topic and writes to it."""
    time.sleep(NEW_CLIENT_PROBE_DELAY_S)
    topic = f"probe-{row.attack}"
    try:
        with laminar.Client(addresses, close_timeout=GOOD_COMMIT_TIMEOUT_S) as client:
            created = client.create_topic(topic).committed(timeout=GOOD_COMMIT_TIMEOUT_S)
            put = client.put(topic, b"k", b"v").committed(timeout=GOOD_COMMIT_TIMEOUT_S)
        row.new_client = "ok" if created.ok and put.ok else f"{created.effect}/{put.effect}"
    except laminar.LaminarError as e:
        row.new_client = type(e).__name__


def _end(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


def _fill_latencies(row: Row, before: list[Sample], during: list[Sample]) -> None:
    ok_before = [s.latency_s for s in before if s.latency_s is not None]
    ok_during = [s.latency_s for s in during if s.latency_s is not None]
    row.before_p50_ms, row.before_p99_ms = percentile_ms(ok_before, 0.5), percentile_ms(ok_before, 0.99)
    row.during_p50_ms, row.during_p99_ms = percentile_ms(ok_during, 0.5), percentile_ms(ok_during, 0.99)
    delivered = [s.delivered_s for s in during if s.delivered_s is not None]
    row.listen_p99_ms = percentile_ms(delivered, 0.99)
    row.writes = len(during)
    row.failed_writes = sum(1 for s in during if s.latency_s is None)


def _leader_and_follower(cluster: BenchCluster) -> tuple[str, str]:
    status = cluster.wait_for_leader()
    leader = str(status["address"])
    return leader, next(a for a in cluster.addresses if a != leader)


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_suite(
    attacks: Sequence[str],
    scale: str,
    shared_cluster: bool = False,
    seconds: float | None = None,
    cluster: BenchCluster | None = None,
) -> list[Row]:
    """Every attack in `attacks`, each on a fresh cluster, or all on one: `cluster` if given (the caller's), else
    one started here when `shared_cluster`."""
    seconds = ATTACK_S[scale] if seconds is None else seconds
    if cluster is not None:
        return _run_on(cluster, attacks, scale, seconds)
    if shared_cluster:
        with BenchCluster(3) as one:
            return _run_on(one, attacks, scale, seconds)
    rows: list[Row] = []
    for name in attacks:
        with BenchCluster(3) as fresh:
            rows += _run_on(fresh, [name], scale, seconds)
        print(table([rows[-1]], header=len(rows) == 1), flush=True)
    return rows


def _run_on(cluster: BenchCluster, attacks: Sequence[str], scale: str, seconds: float) -> list[Row]:
    """The attacks one after the other on one cluster, beside one good client."""
    rows: list[Row] = []
    good = GoodClient(cluster.addresses)
    try:
        for name in attacks:
            before_s = BASELINE_S[scale] if not rows else SHARED_GAP_S
            time.sleep(before_s)
            rows.append(_attack_guarded(name, cluster, good, scale, seconds, before_s))
    finally:
        good.stop()
    return rows


def _attack_guarded(
    name: str, cluster: BenchCluster, good: GoodClient, scale: str, seconds: float, before_s: float
) -> Row:
    try:
        return run_attack(name, cluster, good, scale, seconds, before_s)
    except Exception as e:  # noqa: BLE001 - a broken attack is a row that says so, not a lost suite
        row = Row(name, nodes=len(cluster.addresses))
        row.nodes_up = sum(1 for n in cluster.local.node_ids if cluster.local.alive(n))
        row.notes.append(f"the suite failed to run it: {type(e).__name__}: {e}")
        return row


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(rows: Sequence[Row], header: bool = True) -> str:
    lines = []
    if header:
        lines += [
            "| attack | p50 before ms | p99 before ms | p50 during ms | p99 during ms | listen p99 during ms "
            "| failed writes | new client | RSS max MiB | RSS after MiB | nodes up | verdict | what the attack saw |",
            "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|---|---|",
        ]
    for r in rows:
        missed = r.verdicts()
        lines.append(
            f"| {r.attack} | {_ms(r.before_p50_ms)} | {_ms(r.before_p99_ms)} | {_ms(r.during_p50_ms)} "
            f"| {_ms(r.during_p99_ms)} | {_ms(r.listen_p99_ms)} | {r.failed_writes}/{r.writes} | {r.new_client} "
            f"| {r.rss_mib_max:,.0f} | {r.rss_mib_after:,.0f} | {r.nodes_up}/{r.nodes} "
            f"| {'held' if not missed else 'MISSED: ' + ', '.join(missed)} | {'; '.join(r.notes)} |"
        )
    return "\n".join(lines)


def _write_samples(path: str, rows: Sequence[Row]) -> None:
    """One line per good put during an attack: the attack, when it was sent (s after the attack's START), its commit
    latency in ms (`failed` if it failed), and the START's monotonic clock in ns: where in the attack the tail falls,
    and (with bench/_trace_hook.py or _stall_hook.py) what the nodes did then."""
    with open(path, "w") as f:
        for r in rows:
            for at_s, latency_s in r.during:
                latency = "failed" if latency_s is None else f"{1000 * latency_s:.1f}"
                f.write(f"{r.attack} {at_s:.3f} {latency} {round(r.started_s * 1e9)}\n")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated, from: {', '.join(ATTACKS)}")
    parser.add_argument("--scale", choices=sorted(ATTACK_S), default="full")
    parser.add_argument("--seconds", type=float, default=None, help="attack duration after its preparation")
    parser.add_argument("--shared-cluster", action="store_true", help="run every attack on one cluster")
    parser.add_argument("--out", default="", help="also write the table to this file")
    parser.add_argument(
        "--samples", default="", help="write the good client's puts during each attack to this file (attack, s, ms)"
    )
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so every cluster and attack process this run started is ended by its pid.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    names = [n for n in args.attacks.split(",") if n]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        parser.error(f"unknown attacks {unknown}")
    rows = run_suite(names, args.scale, args.shared_cluster, args.seconds)
    text = table(rows)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.samples:
        _write_samples(args.samples, rows)
    return 0 if all(not r.verdicts() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
