"""Laminar beside etcd on the same machine, the same workloads in alternating rounds.

    python -m bench.etcd_compare [--rounds 3] [--clients 5] [--messages 10000] [--sequential 2000]

Both clusters run for the whole comparison: 3 Laminar nodes (`bench.cluster.BenchCluster`, fsync
before ack) and 3 etcd members (`bench.etcd_cluster.EtcdCluster`, etcd's defaults, which fsync its
WAL before ack), all on loopback. Each round measures, on each system in turn (etcd first in odd
rounds, Laminar first in even ones, so drift in the machine's load falls on both):

- pipelined: `--clients` processes each send `--messages` writes without waiting, then collect the
  commits; µs per message is the slowest client's wall time over all messages (the matrix cell);
  etcd also once more with `--txn-batch` puts per Txn request (its own way to batch);
- read back: one process reads everything the pipelined run wrote, from the start (a Laminar
  listener from offset 0; etcd range gets of 1,000 keys a page);
- sequential: one process sends a write, waits for its commit, and repeats `--sequential` times.

Server CPU per message comes from each server process's CPU time (/proc/<pid>/stat through psutil)
before and after each run; client CPU from the client processes' own CPU time over the timed part.
Results: bench/results/etcd.{md,csv} (`--out-dir`, `--name`).

Only the open loop, only Laminar, at rates of your choosing (no rounds, nothing written to bench/results):

    python -m bench.etcd_compare --systems laminar --open-loop-max-per-s 60000 --open-loop-fractions 0.1,0.5
 Every run is bounded in count and time;
every process started is stopped by pid; both clusters' temporary directories are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import laminar
from bench import machine
from bench.client_proc import ClientJob, ClientReport
from bench.cluster import BenchCluster, CpuMeter
from bench.compare_proc import ETCD, LAMINAR, PIPELINED, READ_BACK, SEQUENTIAL, CompareJob, compare_client_main
from bench.etcd_cluster import EtcdCluster
from bench.open_loop import DRAIN_S, LISTENER, SENDER, OpenLoopJob, OpenLoopReport, open_loop_main
from bench.processes import run_clients
from bench.stats import percentile, rounded
from bench.workloads import REPO_ROOT

RESULTS_DIR = os.path.join(REPO_ROOT, "bench", "results")
OPEN_LOOP_ONLY_DIR = os.path.join(REPO_ROOT, "var", "open-loop")  # --open-loop-max-per-s: not the recorded results
LAMINAR_DURABILITY = "fsync"  # as etcd: the log is on disk before the ack
CREATE_TIMEOUT_S = 30.0
RUN_TIMEOUT_S_BASE = 60.0
RUN_TIMEOUT_S_PER_MESSAGE = 0.005  # 5 ms a message: a bound against hangs, far above any normal figure
ROUNDS_MAX = 50
TXN_OPS_MAX = 128  # etcd's default --max-txn-ops


@dataclass(frozen=True)
class ComparePlan:
    out_dir: str = RESULTS_DIR
    name: str = "etcd"
    command: str = ""
    rounds: int = 3
    clients: int = 5
    messages: int = 10_000  # per client, pipelined
    sequential: int = 2_000  # commits, one client; 0 skips
    txn_batch: int = 100  # etcd's extra pipelined run: puts per Txn; 0 skips it
    open_loop_fractions: tuple[float, ...] = (0.1, 0.5, 0.8)  # of Laminar's measured pipelined maximum
    open_loop_seconds: float = 5.0  # of schedule per rate; 0 skips the open-loop part
    open_loop_senders: int = 2  # processes sharing the offered rate
    # The maximum the open loop offers fractions of, given instead of measured: the rounds are skipped.
    open_loop_max_per_s: float | None = None
    systems: tuple[str, ...] = ("etcd", "laminar")  # which clusters to start and measure


@dataclass
class Run:
    """One workload on one system in one round: a CSV line."""

    round: int
    system: str
    workload: str  # PIPELINED, "pipelined_txn", SEQUENTIAL or READ_BACK
    clients: int
    messages_per_client: int
    status: str = "ok"
    wall_s: float | None = None
    us_per_message: float | None = None
    messages_per_s: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_max: float | None = None
    server_cpu_us_per_message_per_node: list[float] = field(default_factory=list)
    client_cpu_us_per_message: float | None = None
    # open loop only (workload "open_loop"): the offered rate, and what the schedule-based latencies show
    offered_fraction: float | None = None  # of the measured maximum (Laminar's pipelined messages/s)
    offered_per_s: float | None = None
    latency_ms_p999: float | None = None
    delivery_ms_p50: float | None = None  # put (its due time) to a listener's receipt
    delivery_ms_p99: float | None = None
    delivery_ms_p999: float | None = None
    lost: int | None = None  # not committed (or not delivered) by the end of the drain period
    send_lag_ms_max: float | None = None  # the generator's worst lateness against its own schedule

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def total_messages(self) -> int:
        return self.clients * self.messages_per_client


def timeout_s(messages: int) -> float:
    return RUN_TIMEOUT_S_BASE + RUN_TIMEOUT_S_PER_MESSAGE * messages


class Systems:
    """Both clusters, and one method per (system, workload) that measures it and returns a Run."""

    def __init__(self, plan: ComparePlan, lam: BenchCluster, etcd: EtcdCluster | None) -> None:
        self.plan = plan
        self.lam = lam
        self.etcd = etcd

    def measure(self, run: Run, jobs: list[object], server_pids: dict[int, int], **kwargs: object) -> Run:
        cpu = CpuMeter(server_pids)
        try:
            reports = run_clients(jobs, started=cpu.start, **kwargs)  # type: ignore[arg-type]
            cpu.stop()
            fill(run, reports, cpu.spent_s)
        except Exception as error:  # noqa: BLE001 - one failed run must not lose the others
            run.status = f"failed: {str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)}"
            print(f"{run.system} {run.workload} round {run.round} failed:\n{error}", file=sys.stderr)
        return run

    def _topic(self, name: str) -> str:
        with laminar.Client(self.lam.addresses) as client:
            commit = client.create_topic(name).committed(timeout=CREATE_TIMEOUT_S)
        if not commit.ok:
            raise RuntimeError(f"creating topic {name} was {commit.effect}: {commit.reason}")
        return name

    def _leader_first(self) -> tuple[str, ...]:
        leader = int(str(self.lam.wait_for_leader()["node_id"]))
        address = self.lam.addresses[leader - 1]
        return (address, *[a for a in self.lam.addresses if a != address])

    def laminar_writes(self, round_: int, workload: str) -> Run:
        sequential = workload == SEQUENTIAL
        clients, messages = (1, self.plan.sequential) if sequential else (self.plan.clients, self.plan.messages)
        run = Run(round_, LAMINAR, workload, clients, messages)
        topic = self._topic(f"r{round_}-{workload}")
        jobs: list[object] = [
            ClientJob(
                tuple(self.lam.addresses),
                topic,
                "plain",
                i,
                clients,
                messages,
                timeout_s(clients * messages),
                sequential,
            )
            for i in range(clients)
        ]
        return self.measure(run, jobs, self.lam.pids)

    def etcd_writes(self, round_: int, workload: str) -> Run:
        sequential = workload == SEQUENTIAL
        clients, messages = (1, self.plan.sequential) if sequential else (self.plan.clients, self.plan.messages)
        batch = self.plan.txn_batch if workload == "pipelined_txn" else 1
        run = Run(round_, ETCD, workload, clients, messages)
        assert self.etcd is not None, "etcd is not among --systems"
        addresses = (self.etcd.leader_address,)
        mode = SEQUENTIAL if sequential else PIPELINED
        jobs: list[object] = [
            CompareJob(
                ETCD, mode, addresses, f"r{round_}-{workload}", i, messages, timeout_s(clients * messages), batch
            )
            for i in range(clients)
        ]
        return self.measure(run, jobs, self.etcd.pids, target=compare_client_main)

    def read_back(self, round_: int, system: str) -> Run:
        """Everything the round's pipelined run wrote (with each client's warm-up write), from the start."""
        total = self.plan.clients * (self.plan.messages + 1)
        run = Run(round_, system, READ_BACK, 1, total)
        if system == LAMINAR:
            addresses, pids = self._leader_first(), self.lam.pids
        else:
            assert self.etcd is not None, "etcd is not among --systems"
            addresses, pids = (self.etcd.leader_address,), self.etcd.pids
        job = CompareJob(system, READ_BACK, addresses, f"r{round_}-{PIPELINED}", 0, total, timeout_s(total))
        return self.measure(run, [job], pids, target=compare_client_main)


OPEN_LOOP = "open_loop"
OPEN_LOOP_FRACTIONS_MAX = 10


def open_loop(systems: Systems, system: str, fraction: float, max_per_s: float) -> Run:
    """`fraction` of `max_per_s` offered for `open_loop_seconds` by the senders, with a listener (Laminar) or a
    watcher (etcd) in its own process."""
    plan = systems.plan
    rate = fraction * max_per_s
    per_sender = max(1, round(rate / plan.open_loop_senders * plan.open_loop_seconds))
    run = Run(0, system, OPEN_LOOP, plan.open_loop_senders, per_sender, offered_fraction=fraction)
    run.offered_per_s = rounded(rate, 0)
    bound_s = plan.open_loop_seconds + DRAIN_S + 30.0
    name = f"open-{round(fraction * 100)}"
    if system == LAMINAR:
        addresses, pids, topic = tuple(systems.lam.addresses), systems.lam.pids, systems._topic(name)
    else:
        assert systems.etcd is not None
        addresses, pids, topic = (systems.etcd.leader_address,), systems.etcd.pids, name
    jobs: list[object] = [
        OpenLoopJob(
            system,
            SENDER,
            addresses,
            topic,
            i,
            rate / plan.open_loop_senders,
            per_sender,
            plan.open_loop_seconds,
            bound_s,
        )
        for i in range(plan.open_loop_senders)
    ]
    total = per_sender * plan.open_loop_senders
    listen_at = systems._leader_first() if system == LAMINAR else addresses  # etcd's: the leader, as its senders
    jobs.append(OpenLoopJob(system, LISTENER, tuple(listen_at), topic, len(jobs), rate, total,
                            plan.open_loop_seconds, bound_s))  # fmt: skip
    cpu = CpuMeter(pids)
    try:
        reports = run_clients(jobs, started=cpu.start, target=open_loop_main)  # type: ignore[arg-type]
        cpu.stop()
        fill_open_loop(run, reports, cpu.spent_s)  # type: ignore[arg-type]
    except Exception as error:  # noqa: BLE001 - one failed run must not lose the others
        run.status = f"failed: {str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)}"
        print(f"{system} open loop at {fraction:.0%} failed:\n{error}", file=sys.stderr)
    return run


def _ms(values: list[float], fraction: float) -> float | None:
    value = percentile(values, fraction)
    return None if math.isinf(value) else rounded(value * 1000, 2)


def fill_open_loop(run: Run, reports: list[OpenLoopReport], server_cpu_s: dict[int, float]) -> None:
    """Percentiles over every scheduled message; a lost one is infinitely late (shown as empty)."""
    commits = [s for r in reports if r.client_index < run.clients for s in r.latencies_s]
    deliveries = [s for r in reports if r.client_index >= run.clients for s in r.latencies_s]
    run.latency_ms_p50, run.latency_ms_p99, run.latency_ms_p999 = (_ms(commits, f) for f in (0.5, 0.99, 0.999))
    run.latency_ms_max = _ms(commits, 1.0)
    if deliveries:
        run.delivery_ms_p50, run.delivery_ms_p99, run.delivery_ms_p999 = (
            _ms(deliveries, f) for f in (0.5, 0.99, 0.999)
        )
    run.lost = sum(r.lost for r in reports)
    run.send_lag_ms_max = rounded(max(r.send_lag_s_max for r in reports) * 1000, 2)
    total = run.total_messages
    run.server_cpu_us_per_message_per_node = [round(server_cpu_s[k] / total * 1e6, 1) for k in sorted(server_cpu_s)]
    run.client_cpu_us_per_message = rounded(sum(r.cpu_s for r in reports) / total * 1e6)


def measured_max_per_s(runs: list[Run]) -> float | None:
    """Laminar's pipelined messages/s, the median over the rounds: the rate the open loop takes fractions of."""
    rates = [r.messages_per_s for r in runs if r.system == LAMINAR and r.workload == PIPELINED and r.ok]
    return statistics.median([x for x in rates if x]) if rates else None


def open_loop_steps(systems: Systems, max_per_s: float) -> list[Callable[[], Run]]:
    steps: list[Callable[[], Run]] = []
    for index, fraction in enumerate(systems.plan.open_loop_fractions):
        order = (ETCD, LAMINAR) if index % 2 else (LAMINAR, ETCD)
        for system in [s for s in order if s in systems.plan.systems]:
            steps.append(lambda s=system, f=fraction: open_loop(systems, s, f, max_per_s))  # type: ignore[misc]
    return steps


def fill(run: Run, reports: list[ClientReport], server_cpu_s: dict[int, float]) -> None:
    wall_s = max(r.wall_s for r in reports)
    total = run.total_messages
    run.wall_s = rounded(wall_s, 3)
    run.us_per_message = rounded(wall_s / total * 1e6)
    run.messages_per_s = rounded(total / wall_s, 0)
    if run.workload != READ_BACK:
        latencies_ms = [s * 1000 for r in reports for s in r.latencies_s]
        assert len(latencies_ms) == total, f"{len(latencies_ms)} latencies for {total} messages"
        run.latency_ms_p50 = rounded(percentile(latencies_ms, 0.50), 2)
        run.latency_ms_p99 = rounded(percentile(latencies_ms, 0.99), 2)
        run.latency_ms_max = rounded(max(latencies_ms), 2)
    run.server_cpu_us_per_message_per_node = [round(server_cpu_s[k] / total * 1e6, 1) for k in sorted(server_cpu_s)]
    run.client_cpu_us_per_message = rounded(sum(r.cpu_s for r in reports) / total * 1e6)


def round_steps(systems: Systems, round_: int) -> list[Callable[[], Run]]:
    """One round: each workload on both systems, back to back, the first system alternating by round."""
    plan = systems.plan
    order = tuple(s for s in ((ETCD, LAMINAR) if round_ % 2 else (LAMINAR, ETCD)) if s in plan.systems)

    def writes(system: str, workload: str) -> Callable[[], Run]:
        if system == LAMINAR:
            return lambda: systems.laminar_writes(round_, workload)
        return lambda: systems.etcd_writes(round_, workload)

    steps: list[Callable[[], Run]] = []
    for system in order:
        steps.append(writes(system, PIPELINED))
    for system in order:
        steps.append(lambda system=system: systems.read_back(round_, system))  # type: ignore[misc]
    if plan.txn_batch and ETCD in plan.systems:
        steps.append(writes(ETCD, "pipelined_txn"))
    if plan.sequential:
        for system in order:
            steps.append(writes(system, SEQUENTIAL))
    return steps


def summary(run: Run) -> str:
    if not run.ok:
        return run.status
    parts = [f"{run.us_per_message} µs/msg"]
    if run.latency_ms_p50 is not None:
        parts.append(f"p50 {run.latency_ms_p50} ms, p99 {run.latency_ms_p99} ms, max {run.latency_ms_max} ms")
    cpu = " + ".join(f"{v:g}" for v in run.server_cpu_us_per_message_per_node)
    parts.append(f"CPU µs/msg: servers {cpu}, clients {run.client_cpu_us_per_message}")
    return ", ".join(parts)


def open_loop_summary(run: Run) -> str:
    if not run.ok:
        return run.status
    text = (
        f"{run.offered_per_s:,.0f}/s offered, commit p50 {run.latency_ms_p50} p99 {run.latency_ms_p99} "
        f"p99.9 {run.latency_ms_p999} ms"
    )
    if run.delivery_ms_p50 is not None or run.system == LAMINAR:
        text += f", delivery p50 {run.delivery_ms_p50} p99 {run.delivery_ms_p99} ms"
    return text + f", lost {run.lost}, generator lag max {run.send_lag_ms_max} ms"


def run_comparison(plan: ComparePlan) -> list[Run]:
    from bench.etcd_report import CompareInfo, write_results

    assert 1 <= plan.rounds <= ROUNDS_MAX or plan.open_loop_max_per_s, f"rounds must be 1..{ROUNDS_MAX}"
    assert plan.systems and set(plan.systems) <= {ETCD, LAMINAR}, plan.systems
    assert len(plan.open_loop_fractions) <= OPEN_LOOP_FRACTIONS_MAX
    assert all(0 < f <= 1 for f in plan.open_loop_fractions), "offer a fraction of the maximum, not more"
    assert plan.txn_batch <= TXN_OPS_MAX, f"etcd refuses a Txn of more than {TXN_OPS_MAX} operations"
    started = datetime.datetime.now().astimezone()
    description = machine.describe(REPO_ROOT)
    clock = time.monotonic()
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        etcd = stack.enter_context(EtcdCluster(3)) if ETCD in plan.systems else None
        lam = stack.enter_context(BenchCluster(3, LAMINAR_DURABILITY))
        if etcd is not None:
            description["etcd"] = f"{etcd.version} ({etcd.binary})"
        description["Laminar durability"] = lam.node_durability
        systems = Systems(plan, lam, etcd)
        for round_ in range(1, 0 if plan.open_loop_max_per_s else plan.rounds + 1):
            for step in round_steps(systems, round_):
                run = step()
                runs.append(run)
                print(f"round {round_}, {run.system} {run.workload}: {summary(run)}", flush=True)
        max_per_s = plan.open_loop_max_per_s or measured_max_per_s(runs)
        if plan.open_loop_seconds and max_per_s:
            for step in open_loop_steps(systems, max_per_s):
                run = step()
                runs.append(run)
                print(f"open loop {run.offered_fraction:.0%}, {run.system}: {open_loop_summary(run)}", flush=True)
    description["load average at end"] = machine.load_average()
    info = CompareInfo(plan, started.isoformat(timespec="seconds"), time.monotonic() - clock, description)
    paths = write_results(info, runs)
    print("wrote " + ", ".join(paths))
    return runs


def csv_columns() -> list[str]:
    return [f.name for f in dataclasses.fields(Run)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.etcd_compare", description=__doc__.splitlines()[0])
    defaults = ComparePlan()
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--clients", type=int, default=defaults.clients, help="pipelined client processes")
    parser.add_argument("--messages", type=int, default=defaults.messages, help="pipelined writes per client")
    parser.add_argument("--sequential", type=int, default=defaults.sequential, help="sequential writes; 0 skips")
    parser.add_argument("--txn-batch", type=int, default=defaults.txn_batch, help="etcd puts per Txn; 0 skips")
    parser.add_argument("--open-loop-seconds", type=float, default=defaults.open_loop_seconds, help="0 skips")
    parser.add_argument("--open-loop-senders", type=int, default=defaults.open_loop_senders)
    parser.add_argument(
        "--open-loop-fractions",
        type=lambda text: tuple(float(x) for x in text.split(",") if x),
        default=defaults.open_loop_fractions,
        help="of Laminar's measured pipelined maximum, e.g. 0.1,0.5,0.8",
    )
    parser.add_argument(
        "--open-loop-max-per-s",
        type=float,
        help="offer the fractions of this many writes/s instead of the measured maximum: skips the rounds "
        "(only the open loop runs) and writes to var/open-loop unless --out-dir says otherwise",
    )
    parser.add_argument(
        "--systems",
        type=lambda text: tuple(x for x in text.split(",") if x),
        default=defaults.systems,
        help="which to start and measure: etcd,laminar (Laminar's cluster always starts)",
    )
    parser.add_argument("--out-dir")
    parser.add_argument("--name", default=defaults.name)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bench.cli import _raise_on_sigterm

    args = _parser().parse_args(argv)
    command = shlex.join(["python", "-m", "bench.etcd_compare", *(sys.argv[1:] if argv is None else argv)])
    if args.systems and not set(args.systems) <= {ETCD, LAMINAR}:
        _parser().error(f"--systems takes {ETCD} and {LAMINAR}, not {','.join(args.systems)}")
    out_dir = args.out_dir or (OPEN_LOOP_ONLY_DIR if args.open_loop_max_per_s else RESULTS_DIR)
    plan = ComparePlan(
        out_dir=out_dir,
        name=args.name,
        command=command,
        rounds=args.rounds,
        clients=args.clients,
        messages=args.messages,
        sequential=args.sequential,
        txn_batch=args.txn_batch,
        open_loop_fractions=args.open_loop_fractions,
        open_loop_seconds=args.open_loop_seconds,
        open_loop_senders=args.open_loop_senders,
        open_loop_max_per_s=args.open_loop_max_per_s,
        systems=args.systems,
    )
    _raise_on_sigterm()
    try:
        runs = run_comparison(plan)
    except KeyboardInterrupt:
        print("interrupted: every process this run started has been stopped", file=sys.stderr)
        return 130
    # etcd is the reference: a run of it that fails (etcd times requests out on an overloaded machine) is
    # reported in the table, not a failure of the benchmark. Laminar's runs must all succeed.
    failed_etcd = [r for r in runs if r.system == ETCD and not r.ok]
    if failed_etcd:
        print(f"{len(failed_etcd)} etcd run(s) failed; the report says why", file=sys.stderr)
    return 0 if all(r.ok for r in runs if r.system == LAMINAR) else 1


if __name__ == "__main__":
    sys.exit(main())
