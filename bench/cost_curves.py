"""Cost as the work grows (issue 14, item 4): throughput and node RSS along four axes, one curve per axis.

Each curve runs on its own fresh 3-node loopback cluster (bench.cluster.BenchCluster) and walks its points in
increasing order on that cluster, so a point's RSS includes what the earlier points left behind: that is the
cost of having grown to this size. Every point is bounded in messages and in seconds.

- topics: N live topics exist (created pipelined, untimed), then a fixed number of 32 B puts is spread
  round-robin over all N. Flat throughput and RSS linear in N are the healthy shape. The cluster refuses a
  create past limits.TOPICS_LIVE_MAX, so the curve stops there and the report says so.
- value_bytes: puts of one value size; the count shrinks as values grow so each point moves a bounded
  number of bytes. Time per message linear in the size (flat MiB/s) is healthy.
- listeners: L listeners (in a few client processes) follow one topic from offset 0 while the parent puts;
  the point ends when every listener has every put. Delivered events/s flat in L is healthy.
- clients: C client sessions (in a few client processes) share a fixed number of puts. Flat or rising
  throughput is healthy.
- snapshots: puts of SNAPSHOT_VALUE_BYTES values until x MiB of values have been written in all, on one
  cluster; after each point, the snapshots (log compactions) every node has built so far, read from the
  nodes' logs: how many, how many bytes they wrote in all, and the longest build. Snapshot work growing
  linearly with the data written (k ~ 1 for the bytes) is healthy; k ~ 2 is the quadratic cost of
  archiving the whole store at a fixed interval.

For each curve the report fits the exponent k of cost ~ x^k (log-log least squares) for the time per unit
of work and for RSS above the curve's first point; k > WORSE_THAN_LINEAR_EXPONENT is flagged.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import math
import os
import re
import shlex
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import laminar
from bench import machine
from bench.client_proc import BARRIER_TIMEOUT_S
from bench.cluster import BenchCluster, RssSampler
from bench.processes import run_clients
from bench.workloads import REPO_ROOT
from laminar import limits

TOPICS, VALUE_BYTES, LISTENERS, CLIENTS = "topics", "value_bytes", "listeners", "clients"
SNAPSHOTS = "snapshots"
CURVES = (TOPICS, VALUE_BYTES, LISTENERS, CLIENTS, SNAPSHOTS)
DEFAULT_POINTS: dict[str, tuple[int, ...]] = {
    TOPICS: (1, 10, 100, 1_000, 10_000, 100_000),
    VALUE_BYTES: (32, 1024, 32 * 1024, 256 * 1024, 1024 * 1024),
    LISTENERS: (1, 3, 10, 30, 100),
    CLIENTS: (1, 3, 10, 30, 100),
    SNAPSHOTS: (16, 32, 64, 128, 256, 512),
}
X_LABELS = {
    TOPICS: "live topics",
    VALUE_BYTES: "value bytes",
    LISTENERS: "listeners on one topic",
    CLIENTS: "concurrent client sessions",
    SNAPSHOTS: "MiB of values written",
}
SMALL_VALUE_BYTES = 32  # values are random bytes: RocksDB compresses a repeated byte to nothing
POINT_BYTES_MAX = 64 * 2**20  # value bytes one value-size point puts: 64 x 1 MiB, 2,000 x 32 B
WARM_UP_TOPIC, WARM_UP_PUTS = "warm-up", 200
CREATE_CHUNK = 1_000  # topic creates in flight at once
WORKER_PROCESSES_MAX = 4  # client processes a listeners or clients point spreads its sessions over
WORSE_THAN_LINEAR_EXPONENT = 1.2  # noise on this shared machine moves a fitted exponent by ~0.1-0.2
RSS_NOISE_BYTES = 4 * 2**20  # growth below this is not fitted: allocator and page-cache noise
SNAPSHOT_VALUE_BYTES = 4 * 1024  # random, so neither RocksDB nor the snapshot makes them smaller
SNAPSHOT_POINT_MIB_PER_S_MIN = 2.0  # a snapshots point may take its MiB / this (at least point_timeout_s)
# The line a node logs when it has published a snapshot (laminar/node/raft/_snapshot.py, Snapshotter._publish).
SNAPSHOT_LOG_LINE = re.compile(rb"snapshot written: \S+ \((\d+) bytes, built in ([0-9.]+) s\)")


@dataclass(frozen=True)
class CurvePlan:
    out_dir: str
    command: str
    name: str = "curves"
    curves: tuple[str, ...] = CURVES
    points: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(DEFAULT_POINTS))
    messages: int = 10_000  # per point (value sizes: fewer when large, see POINT_BYTES_MAX)
    point_timeout_s: float = 60.0
    nodes: int = 3
    durability: str = "default"
    baseline_csv: str = ""  # a earlier run's CSV whose snapshots curve is drawn beside this one's (before/after)


@dataclass
class Point:
    curve: str
    x: int
    messages: int = 0  # puts committed in the timed part
    wall_s: float = 0.0
    messages_per_s: float = 0.0  # puts committed per second
    work_per_s: float = 0.0  # the curve's unit: puts/s, MiB/s (value_bytes) or delivered events/s (listeners)
    rss_mib_max: float = 0.0  # the largest node's peak RSS during the point
    rss_mib_sum: float = 0.0  # the nodes' peaks added up
    rss_mib_end: float = 0.0  # the largest node's RSS at the point's end: what the point left behind
    # snapshots curve only, all since the curve's cluster started: per node, the mean over the nodes
    snapshots: float = 0.0  # snapshots built
    snapshot_mib: float = 0.0  # bytes those snapshots wrote, MiB
    snapshot_build_s_max: float = 0.0  # the longest build during this point, any node (0: none)
    status: str = "ok"  # "ok", or "stopped: why" / "failed: why"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


CSV_COLUMNS = ["curve", "x", "messages", "wall_s", "messages_per_s", "work_per_s", "rss_mib_max", "rss_mib_sum"]
CSV_COLUMNS += ["rss_mib_end", "snapshots", "snapshot_mib", "snapshot_build_s_max", "status"]
WORK_UNITS = {
    TOPICS: "puts/s",
    VALUE_BYTES: "MiB/s",
    LISTENERS: "delivered events/s",
    CLIENTS: "puts/s",
    SNAPSHOTS: "MiB/s",
}


# ---- load ---------------------------------------------------------------------------------------


def pipelined_puts(
    clients: Sequence[laminar.Client], topics: Sequence[str], value: bytes, count: int, deadline: float
) -> int:
    """`count` puts round-robin over `clients` and `topics`, none waited for until all are sent (each client
    bounds its own in-flight window); the number committed VALID before `deadline`."""
    pending = []
    for i in range(count):
        if time.monotonic() > deadline:
            break
        pending.append(clients[i % len(clients)].put(topics[i % len(topics)], b"k%d" % (i % 64), value))
    ok = 0
    for p in pending:
        ok += p.committed(timeout=max(0.0, deadline - time.monotonic())).ok
    return ok


def create_topics(client: laminar.Client, names: Sequence[str], deadline: float) -> tuple[int, str]:
    """Create `names` pipelined in chunks; how many were created, and the first refusal's reason."""
    created, refusal = 0, ""
    for start in range(0, len(names), CREATE_CHUNK):
        chunk = [client.create_topic(n) for n in names[start : start + CREATE_CHUNK]]
        for p in chunk:
            commit = p.committed(timeout=max(0.0, deadline - time.monotonic()))
            created += commit.ok
            refusal = refusal or ("" if commit.ok else f"{commit.effect}: {commit.reason}")
        if refusal:
            break
    return created, refusal


@dataclass(frozen=True)
class WorkerJob:
    """One client process of a listeners or clients point (run by bench.processes.run_clients)."""

    client_index: int
    role: str  # LISTENERS or CLIENTS
    addresses: tuple[str, ...]
    topic: str
    sessions: int  # listeners or client sessions in this process
    messages: int  # listeners: puts each listener waits for; clients: puts this process sends
    timeout_s: float


@dataclass
class WorkerReport:
    client_index: int
    count: int = 0  # listeners: events delivered, all listeners; clients: puts committed
    last_s: float = 0.0  # time.monotonic() of the last delivery or commit (one clock for every process)
    error: str = ""


def worker_main(job: WorkerJob, barrier: Any, results: Any) -> None:
    """Process entry point: always puts exactly one WorkerReport on `results`."""
    report = WorkerReport(job.client_index)
    try:
        body = _listen if job.role == LISTENERS else _send
        body(job, barrier, report)
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which decides
        report.error = f"worker {job.client_index}: {error!r}\n{traceback.format_exc(limit=4)}"
    results.put(report)


def _send(job: WorkerJob, barrier: Any, report: WorkerReport) -> None:
    clients = [laminar.Client(list(job.addresses)) for _ in range(job.sessions)]
    try:
        value = os.urandom(SMALL_VALUE_BYTES)
        for c in clients:  # opens each session untimed
            if not c.put(job.topic, b"warm-up", value).committed(timeout=BARRIER_TIMEOUT_S).ok:
                raise RuntimeError("warm-up put failed")
        barrier.wait(BARRIER_TIMEOUT_S)
        deadline = time.monotonic() + job.timeout_s
        report.count = pipelined_puts(clients, [job.topic], value, job.messages, deadline)
        report.last_s = time.monotonic()
    finally:
        for c in clients:
            c.close(timeout=1.0)


def _listen(job: WorkerJob, barrier: Any, report: WorkerReport) -> None:
    """`sessions` listeners from offset 0, each on its own thread, each until it has `messages` puts."""
    listeners = [laminar.Listener(list(job.addresses), job.topic) for _ in range(job.sessions)]
    lock = threading.Lock()
    deadline_box: list[float] = []

    def follow(listener: laminar.Listener) -> None:
        seen = 0
        while seen < job.messages:
            event = listener.next_event(timeout=max(0.0, deadline_box[0] - time.monotonic()))
            seen += event.kind is laminar.Kind.PUT
        with lock:
            report.count += seen
            report.last_s = max(report.last_s, time.monotonic())

    try:
        barrier.wait(BARRIER_TIMEOUT_S)
        deadline_box.append(time.monotonic() + job.timeout_s)
        threads = [threading.Thread(target=follow, args=(lst,), daemon=True) for lst in listeners]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline_box[0] - time.monotonic()) + 1.0)
    finally:
        for lst in listeners:
            lst.close()


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# ---- the curves ---------------------------------------------------------------------------------


def run_curves(plan: CurvePlan) -> list[Point]:
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    description = machine.describe(REPO_ROOT)
    points: list[Point] = []
    for curve in plan.curves:
        points += run_curve(plan, curve)
    write_results(plan, points, started, description)
    return points


def run_curve(plan: CurvePlan, curve: str) -> list[Point]:
    points: list[Point] = []
    with BenchCluster(plan.nodes, plan.durability) as cluster, _client(cluster) as client:
        _warm_up(client, plan.point_timeout_s)
        state: dict[str, Any] = {"topics": []}
        for x in plan.points[curve]:
            point = Point(curve, x)
            try:
                with RssSampler(cluster.pids) as sampler:
                    _POINT_RUNNERS[curve](plan, cluster, client, point, state)
                peaks = list(sampler.peak_bytes.values())
                point.rss_mib_max, point.rss_mib_sum = round(max(peaks) / 2**20, 1), round(sum(peaks) / 2**20, 1)
                point.rss_mib_end = round(max(sampler.last_bytes.values()) / 2**20, 1)
            except Exception as error:  # noqa: BLE001 - the point fails; the curve stops, the report says why
                point.status = f"failed: {error!r}"[:300]
            print(f"{curve} {x}: {point.status} {point.work_per_s:,.1f} {WORK_UNITS[curve]}, "
                  f"RSS max {point.rss_mib_max} MiB", flush=True)  # fmt: skip
            points.append(point)
            if not point.ok:
                break
    return points


@contextlib.contextmanager
def _client(cluster: BenchCluster) -> Iterator[laminar.Client]:
    """A client whose close does not raise for puts a timed-out point left uncommitted (the point says so)."""
    client = laminar.Client(cluster.addresses)
    try:
        yield client
    finally:
        try:
            client.close(timeout=1.0)
        except laminar.Unacknowledged:
            pass


def _warm_up(client: laminar.Client, timeout_s: float) -> None:
    """Untimed puts on a topic destroyed afterwards (a destroyed topic costs no memory), so the first point does not
    pay for the cluster's first writes."""
    deadline = time.monotonic() + timeout_s
    client.create_topic(WARM_UP_TOPIC).committed(timeout=timeout_s)
    pipelined_puts([client], [WARM_UP_TOPIC], os.urandom(SMALL_VALUE_BYTES), WARM_UP_PUTS, deadline)
    client.destroy_topic(WARM_UP_TOPIC).committed(timeout=max(0.0, deadline - time.monotonic()))


def _timed(point: Point, body: Callable[[], int]) -> None:
    start = time.monotonic()
    point.messages = body()
    point.wall_s = round(time.monotonic() - start, 3)
    point.messages_per_s = round(point.messages / point.wall_s, 1) if point.wall_s else 0.0
    point.work_per_s = point.messages_per_s


def _topics_point(plan: CurvePlan, cluster: BenchCluster, client: laminar.Client, point: Point, state: Any) -> None:
    topics: list[str] = state["topics"]
    wanted = [f"t{n}" for n in range(len(topics), point.x)]
    created, refusal = create_topics(client, wanted, time.monotonic() + plan.point_timeout_s)
    topics += wanted[:created]
    value = os.urandom(SMALL_VALUE_BYTES)
    _timed(
        point, lambda: pipelined_puts([client], topics, value, plan.messages, time.monotonic() + plan.point_timeout_s)
    )
    if refusal:
        point.status = f"stopped at {len(topics):,} live topics: {refusal}"[:300]


def _value_point(plan: CurvePlan, cluster: BenchCluster, client: laminar.Client, point: Point, state: Any) -> None:
    if not state["topics"]:
        client.create_topic("values").committed(timeout=plan.point_timeout_s)
        state["topics"].append("values")
    count = max(1, min(plan.messages, POINT_BYTES_MAX // point.x))
    value = os.urandom(point.x)
    _timed(point, lambda: pipelined_puts([client], ["values"], value, count, time.monotonic() + plan.point_timeout_s))
    point.work_per_s = round(point.messages_per_s * point.x / 2**20, 2)


def _workers_point(role: str) -> Callable[[CurvePlan, BenchCluster, laminar.Client, Point, Any], None]:
    def run(plan: CurvePlan, cluster: BenchCluster, client: laminar.Client, point: Point, state: Any) -> None:
        topic = f"{role}-{point.x}"  # a fresh topic per point: listeners read from offset 0 only this point's puts
        client.create_topic(topic).committed(timeout=plan.point_timeout_s)
        processes = min(point.x, WORKER_PROCESSES_MAX)
        puts = _spread(plan.messages, processes) if role == CLIENTS else [plan.messages] * processes
        jobs = [
            WorkerJob(i, role, tuple(cluster.addresses), topic, sessions, puts[i], plan.point_timeout_s)
            for i, sessions in enumerate(_spread(point.x, processes))
        ]
        start: list[float] = []
        committed: list[int] = []

        def started() -> None:  # the barrier released: the parent writes a listeners point's puts
            start.append(time.monotonic())
            if role == LISTENERS:
                value = os.urandom(SMALL_VALUE_BYTES)
                committed.append(
                    pipelined_puts([client], [topic], value, plan.messages, start[0] + plan.point_timeout_s)
                )

        reports = cast(list[WorkerReport], run_clients(jobs, started, worker_main))
        wall_s = max(r.last_s for r in reports) - start[0]
        total = sum(r.count for r in reports)
        point.messages = committed[0] if role == LISTENERS else total
        point.wall_s = round(wall_s, 3)
        point.messages_per_s = round(point.messages / wall_s, 1) if wall_s > 0 else 0.0
        point.work_per_s = round(total / wall_s, 1) if wall_s > 0 else 0.0
        expected = plan.messages * point.x if role == LISTENERS else plan.messages
        if total < expected:
            point.status = f"failed: {total:,} of {expected:,} {'deliveries' if role == LISTENERS else 'puts'}"

    return run


def _snapshots_point(plan: CurvePlan, cluster: BenchCluster, client: laminar.Client, point: Point, state: Any) -> None:
    if not state["topics"]:
        client.create_topic("written").committed(timeout=plan.point_timeout_s)
        state["topics"].append("written")
        state["written_bytes"] = 0
    count = max(0, (point.x * 2**20 - state["written_bytes"]) // SNAPSHOT_VALUE_BYTES)
    value = os.urandom(SNAPSHOT_VALUE_BYTES)
    timeout_s = max(plan.point_timeout_s, count * SNAPSHOT_VALUE_BYTES / 2**20 / SNAPSHOT_POINT_MIB_PER_S_MIN)
    _timed(point, lambda: pipelined_puts([client], ["written"], value, count, time.monotonic() + timeout_s))
    state["written_bytes"] += point.messages * SNAPSHOT_VALUE_BYTES
    point.work_per_s = round(point.messages_per_s * SNAPSHOT_VALUE_BYTES / 2**20, 2)
    builds = snapshot_builds(cluster.log_dir)
    seen: dict[str, int] = state.setdefault("builds_seen", {})
    nodes = max(1, len(builds))
    point.snapshots = round(sum(len(b) for b in builds.values()) / nodes, 2)
    point.snapshot_mib = round(sum(size for b in builds.values() for size, _ in b) / nodes / 2**20, 1)
    point.snapshot_build_s_max = max((s for name, b in builds.items() for _, s in b[seen.get(name, 0) :]), default=0.0)
    state["builds_seen"] = {name: len(b) for name, b in builds.items()}
    if point.messages < count:
        point.status = f"failed: {point.messages:,} of {count:,} puts committed within {timeout_s:g} s"


def snapshot_builds(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """Per node log file: (bytes, seconds) of every snapshot it has published, in order."""
    builds: dict[str, list[tuple[int, float]]] = {}
    for name in sorted(os.listdir(log_dir)):
        with open(os.path.join(log_dir, name), "rb") as f:
            found = SNAPSHOT_LOG_LINE.findall(f.read())
        builds[name] = [(int(size), float(seconds)) for size, seconds in found]
    return builds


_POINT_RUNNERS: dict[str, Callable[[CurvePlan, BenchCluster, laminar.Client, Point, Any], None]] = {
    TOPICS: _topics_point,
    VALUE_BYTES: _value_point,
    LISTENERS: _workers_point(LISTENERS),
    CLIENTS: _workers_point(CLIENTS),
    SNAPSHOTS: _snapshots_point,
}


# ---- shape --------------------------------------------------------------------------------------


def exponent(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """k of the least-squares fit log y = k log x + c over the positive pairs; None with fewer than 2."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pairs) < 2 or len({p[0] for p in pairs}) < 2:
        return None
    mx, my = sum(p[0] for p in pairs) / len(pairs), sum(p[1] for p in pairs) / len(pairs)
    sxx = sum((p[0] - mx) ** 2 for p in pairs)
    return sum((p[0] - mx) * (p[1] - my) for p in pairs) / sxx


def shape(k: float | None) -> str:
    if k is None:
        return "-"
    if k < 0.3:
        return "flat"
    if k < 0.8:
        return "sublinear"
    if k <= WORSE_THAN_LINEAR_EXPONENT:
        return "linear"
    return "WORSE than linear"


def time_cost_exponent(points: Sequence[Point]) -> float | None:
    """Exponent of the time per unit of the curve's work (1 / work_per_s) against x."""
    ok = [p for p in points if p.ok and p.work_per_s > 0]
    return exponent([p.x for p in ok], [1.0 / p.work_per_s for p in ok])


def rss_exponent(points: Sequence[Point]) -> float | None:
    """Exponent of RSS growth above the curve's first point against x, for growth above RSS_NOISE_BYTES."""
    measured = [p for p in points if p.ok and p.rss_mib_max > 0]
    if len(measured) < 2:
        return None
    base = measured[0].rss_mib_max
    grown = [(p.x, p.rss_mib_max - base) for p in measured[1:] if (p.rss_mib_max - base) * 2**20 > RSS_NOISE_BYTES]
    return exponent([g[0] for g in grown], [g[1] for g in grown])


# ---- results ------------------------------------------------------------------------------------


NOTES_MARKER = "<!-- notes kept across runs: everything below this line -->"


def write_results(plan: CurvePlan, points: Sequence[Point], started: str, description: dict[str, str]) -> None:
    os.makedirs(plan.out_dir, exist_ok=True)
    stem = os.path.join(plan.out_dir, plan.name)
    with open(stem + ".csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for p in points:
            writer.writerow({c: getattr(p, c) for c in CSV_COLUMNS})
    write_chart(stem + ".png", points)
    baseline = read_points(plan.baseline_csv, SNAPSHOTS) if plan.baseline_csv else []
    snapshot_chart = ""
    if any(p.curve == SNAPSHOTS for p in points):
        snapshot_chart = os.path.basename(stem) + "-snapshots.png"
        write_snapshot_chart(os.path.join(plan.out_dir, snapshot_chart), points, baseline)
    text = markdown(plan, points, started, description, os.path.basename(stem) + ".png")
    text += snapshot_markdown(plan, points, baseline, snapshot_chart)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(text + _kept_notes(stem + ".md"))
    print(f"wrote {stem}.csv, {stem}.md, {stem}.png")


def _kept_notes(path: str) -> str:
    """The hand-written notes below NOTES_MARKER in the previous report, marker included."""
    try:
        with open(path, encoding="utf-8") as f:
            previous = f.read()
    except FileNotFoundError:
        return ""
    at = previous.find(NOTES_MARKER)
    return "" if at < 0 else "\n" + previous[at:]


def read_points(path: str, curve: str) -> list[Point]:
    """One curve's points from a CSV this module wrote (columns it lacks keep their defaults)."""
    floats = {"wall_s", "messages_per_s", "work_per_s", "rss_mib_max", "rss_mib_sum", "rss_mib_end"}
    floats |= {"snapshots", "snapshot_mib", "snapshot_build_s_max"}
    points = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["curve"] != curve:
                continue
            point = Point(curve, int(row["x"]), messages=int(row["messages"]), status=row["status"])
            for name in floats & set(row):
                setattr(point, name, float(row[name] or 0.0))
            points.append(point)
    return points


def snapshot_work_exponent(points: Sequence[Point]) -> float | None:
    """Exponent of the snapshot bytes written so far against the data written so far (1: linear, 2: quadratic)."""
    ok = [p for p in points if p.ok]
    return exponent([p.x for p in ok], [p.snapshot_mib for p in ok])


def write_snapshot_chart(path: str, points: Sequence[Point], baseline: Sequence[Point]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("before (baseline)", [p for p in baseline if p.ok], "o--", "tab:gray")] if baseline else []
    runs.append(("this run", [p for p in points if p.curve == SNAPSHOTS and p.ok], "o-", "tab:blue"))
    figure, (work, build) = plt.subplots(1, 2, figsize=(10, 4.2))
    try:
        for label, mine, style, color in runs:
            work.plot([p.x for p in mine], [p.snapshot_mib for p in mine], style, color=color, label=label)
            build.plot([p.x for p in mine], [p.snapshot_build_s_max for p in mine], style, color=color, label=label)
        xs = sorted({p.x for _, mine, _, _ in runs for p in mine})
        if xs:
            work.plot(xs, xs, ":", color="tab:green", label="snapshot bytes = bytes written")
        work.set_ylabel("snapshot MiB written so far, per node")
        build.set_ylabel("longest snapshot build in the point, s")
        for axis in (work, build):  # linear axes: a quadratic bends, a linear cost stays straight
            axis.set_xlabel(X_LABELS[SNAPSHOTS])
            axis.set_xlim(left=0)
            axis.set_ylim(bottom=0)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize="small")
        figure.suptitle("Log compaction cost as data is written (3 nodes; one run, noisy machine)")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)


def snapshot_markdown(plan: CurvePlan, points: Sequence[Point], baseline: Sequence[Point], chart: str) -> str:
    mine = [p for p in points if p.curve == SNAPSHOTS]
    if not mine:
        return ""
    lines = [
        "## Snapshots (log compaction) as data is written",
        "",
        f"One cluster; puts of {SNAPSHOT_VALUE_BYTES:,} random bytes until x MiB of values were written in all. "
        "Snapshot figures are per node (the mean over the nodes) and count every snapshot built since the "
        "cluster started, read from the nodes' logs; the longest build is the longest one published during "
        "the point (checkpoint plus packing, from the serializer's start to the file in place). "
        "k: fitted exponent of snapshot MiB against MiB written (1: linear, 2: quadratic).",
        "",
        f"![snapshot cost]({chart})",
        "",
    ]
    for title, run in (("this run", mine), (f"baseline ({plan.baseline_csv})", list(baseline))):
        if not run:
            continue
        lines += [f"{title}: k = {_k(snapshot_work_exponent(run))}", ""]
        lines += ["| MiB written | puts | MiB/s | snapshots | snapshot MiB | ÷ MiB written | longest build s "
                  "| status |"]  # fmt: skip
        lines += ["|---|---|---|---|---|---|---|---|"]
        for p in run:
            ratio = p.snapshot_mib / p.x if p.x else 0.0
            lines.append(
                f"| {p.x:,} | {p.messages:,} | {p.work_per_s:,.1f} | {p.snapshots:g} | {p.snapshot_mib:,.1f} | "
                f"{ratio:.2f} | {p.snapshot_build_s_max:.2f} | {p.status} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_chart(path: str, points: Sequence[Point]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    curves = [c for c in CURVES if any(p.curve == c for p in points)]
    figure, axes = plt.subplots(2, max(1, len(curves)), figsize=(4.2 * max(1, len(curves)), 7), squeeze=False)
    try:
        for column, curve in enumerate(curves):
            mine = [p for p in points if p.curve == curve and p.ok and p.work_per_s > 0]
            top, bottom = axes[0][column], axes[1][column]
            top.plot([p.x for p in mine], [p.work_per_s for p in mine], "o-", color="tab:blue")
            top.set_title(f"{X_LABELS[curve]}", fontsize="medium")
            top.set_ylabel(WORK_UNITS[curve])
            bottom.plot([p.x for p in mine], [p.rss_mib_max for p in mine], "o-", color="tab:orange")
            bottom.set_ylabel("largest node's peak RSS, MiB")
            bottom.set_xlabel(X_LABELS[curve])
            for axis in (top, bottom):
                axis.set_xscale("log")
                axis.set_ylim(bottom=0)
                axis.grid(True, which="both", alpha=0.3)
        figure.suptitle("Laminar cost curves: throughput (top) and node memory (bottom); one run, noisy machine")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)


def markdown(plan: CurvePlan, points: Sequence[Point], started: str, description: dict[str, str], chart: str) -> str:
    lines = [
        f"# Laminar cost curves: {plan.name}",
        "",
        f"Run {started}. Command: `{plan.command}`",
        "",
        f"Each curve on a fresh {plan.nodes}-node loopback cluster (durability {plan.durability}), points in "
        f"increasing order on that cluster; {plan.messages:,} puts per point (value-size points move at most "
        f"{POINT_BYTES_MAX // 2**20} MiB), each point capped at {plan.point_timeout_s:g} s. RSS is the largest "
        "node's peak during the point (psutil, sampled every 0.25 s). One run per curve on a shared 2-core machine: "
        "absolute figures are noisy (see the load average); read the shape, not the digits.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in description.items()],
        "",
        f"![cost curves]({chart})",
        "",
        "## Shape",
        "",
        "k: the fitted exponent of cost ~ x^k (log-log least squares). Time per unit of work: 1 / the curve's "
        "throughput (puts, MiB, or delivered events). RSS: growth above the curve's first point "
        f"(growth under {RSS_NOISE_BYTES // 2**20} MiB counts as none). Worse than linear: k > "
        f"{WORSE_THAN_LINEAR_EXPONENT}.",
        "",
        "| curve | points | time per unit, k | shape | RSS growth, k | shape |",
        "|---|---|---|---|---|---|",
    ]
    for curve in CURVES:
        mine = [p for p in points if p.curve == curve]
        if not mine:
            continue
        kt, kr = time_cost_exponent(mine), rss_exponent(mine)
        xs = f"{mine[0].x:,} to {mine[-1].x:,}"
        lines.append(f"| {curve} | {xs} | {_k(kt)} | {shape(kt)} | {_k(kr)} | {_rss_shape(mine, kr)} |")
    lines += ["", "## Points", ""]
    lines += ["| curve | x | puts | wall s | puts/s | work/s (unit) | peak RSS MiB: max node | sum | end | status |"]
    lines += ["|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(
            f"| {p.curve} | {p.x:,} | {p.messages:,} | {p.wall_s:.2f} | {p.messages_per_s:,.0f} | "
            f"{p.work_per_s:,.1f} {WORK_UNITS[p.curve]} | {p.rss_mib_max:.0f} | {p.rss_mib_sum:.0f} | "
            f"{p.rss_mib_end:.0f} | {p.status} |"
        )
    lines += ["", f"Live topics are capped at limits.TOPICS_LIVE_MAX = {limits.TOPICS_LIVE_MAX:,}: a create past it "
              "is an ERROR effect, so the topics curve stops there (its last point says so).", "",
              "What the curves show, and the findings: docs/benchmarks.md, \"Cost curves\".", ""]  # fmt: skip
    return "\n".join(lines)


def _rss_shape(points: Sequence[Point], k: float | None) -> str:
    if k is not None:
        return shape(k)
    measured = [p.rss_mib_max for p in points if p.ok and p.rss_mib_max > 0]
    grown = max(measured, default=0.0) - (measured[0] if measured else 0.0)
    return (
        f"flat (grew {grown:+.0f} MiB at most)" if grown * 2**20 <= RSS_NOISE_BYTES else f"grew once: {grown:+.0f} MiB"
    )


def _k(k: float | None) -> str:
    return "-" if k is None else f"{k:.2f}"


# ---- command line -------------------------------------------------------------------------------


def _points(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cost_curves", description=__doc__.splitlines()[0])
    parser.add_argument("--curves", default=",".join(CURVES), help=f"comma-separated subset of {','.join(CURVES)}")
    for curve in CURVES:
        parser.add_argument(f"--{curve.replace('_', '-')}", type=_points, default=DEFAULT_POINTS[curve],
                            help=f"points (default {','.join(map(str, DEFAULT_POINTS[curve]))})")  # fmt: skip
    parser.add_argument("--messages", type=int, default=CurvePlan.messages, help="puts per point")
    parser.add_argument("--point-timeout", type=float, default=CurvePlan.point_timeout_s, help="seconds per point")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "bench", "results"))
    parser.add_argument("--name", default="curves")
    parser.add_argument("--baseline", default="", help="an earlier run's CSV: its snapshots curve drawn beside")
    args = parser.parse_args(argv)
    curves = tuple(args.curves.split(","))
    unknown = set(curves) - set(CURVES)
    if unknown:
        parser.error(f"unknown curves {sorted(unknown)}")
    plan = CurvePlan(
        out_dir=args.out_dir,
        command=shlex.join(["python", "-m", "bench.cost_curves", *(sys.argv[1:] if argv is None else argv)]),
        name=args.name,
        curves=curves,
        points={c: getattr(args, c) for c in CURVES},
        messages=args.messages,
        point_timeout_s=args.point_timeout,
        nodes=args.nodes,
        baseline_csv=args.baseline,
    )
    run_curves(plan)


if __name__ == "__main__":
    main()
