"""The soak: many messages through one cluster, watching throughput and every node's memory over time.

A few pipelined clients (separate processes, each with a bounded window) share the messages. Every
few seconds the parent samples how many commits the clients have counted and each node's RSS.
The run ends when every message is committed, every client has stopped, or --seconds is up,
whichever comes first; then everything it started is stopped by pid. Memory must stay flat: the
report gives each node's RSS at the start and the end, and its peak in each half of the run: memory that
is bounded (a sawtooth as the Raft log is compacted is fine) has about the same peak in both halves.
"""

from __future__ import annotations

import csv
import datetime
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

import laminar
from bench import machine
from bench.client_proc import SoakJob, soak_client_main
from bench.cluster import BenchCluster, RssSampler
from bench.processes import stop_processes
from bench.workloads import REPO_ROOT, TOPIC_KINDS

TOPIC = "soak"
CREATE_TIMEOUT_S = 30.0
CLIENT_SECONDS_GRACE = 5.0  # clients stop by themselves this long after the parent's own deadline


@dataclass(frozen=True)
class SoakPlan:
    out_dir: str
    command: str
    messages: int = 1_000_000
    seconds: float = 1800.0
    nodes: int = 3
    clients: int = 3
    sample_s: float = 5.0
    topic_kind: str = "plain"
    durability: str = "default"
    name: str = "soak"


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    committed: int
    messages_per_s: float  # over the interval since the previous sample
    rss_mib: tuple[float, ...]  # per node, in node id order


@dataclass(frozen=True)
class SoakResult:
    samples: list[Sample]
    committed: int
    elapsed_s: float
    ended_because: str
    errors: list[str]


def run_soak(plan: SoakPlan) -> SoakResult:
    missing = TOPIC_KINDS[plan.topic_kind].missing()
    if missing or plan.topic_kind == "balance":
        raise SystemExit(f"cannot soak a {plan.topic_kind} topic: {missing or 'only put workloads soak'}")
    started = datetime.datetime.now().astimezone()
    description = machine.describe(REPO_ROOT)
    with BenchCluster(plan.nodes, plan.durability) as cluster:
        _create_topic(cluster, plan)
        result = _drive(plan, cluster)
    write_soak(plan, result, started.isoformat(timespec="seconds"), description)
    return result


def _create_topic(cluster: BenchCluster, plan: SoakPlan) -> None:
    program = TOPIC_KINDS[plan.topic_kind].program_source()
    with laminar.Client(cluster.addresses) as client:
        commit = client.create_topic(TOPIC, program=program).committed(timeout=CREATE_TIMEOUT_S)
    if not commit.ok:
        raise RuntimeError(f"creating the soak topic was {commit.effect}: {commit.reason}")


def _drive(plan: SoakPlan, cluster: BenchCluster) -> SoakResult:
    context = multiprocessing.get_context("spawn")
    stop, committed, results = context.Event(), context.Value("q", 0), context.Queue()
    jobs = [
        SoakJob(tuple(cluster.addresses), TOPIC, plan.topic_kind, i, share, plan.seconds + CLIENT_SECONDS_GRACE)
        for i, share in enumerate(_shares(plan.messages, plan.clients))
    ]
    processes = [context.Process(target=soak_client_main, args=(job, stop, committed, results)) for job in jobs]
    sampler = RssSampler(cluster.pids)
    try:
        for process in processes:
            process.start()
        samples, ended_because = _watch(plan, processes, committed, sampler)
    finally:
        stop.set()
        stop_processes(processes)
    errors = _drain_errors(results)
    elapsed_s = samples[-1].elapsed_s if samples else 0.0
    return SoakResult(samples, committed.value, elapsed_s, ended_because, errors)


def _shares(messages: int, clients: int) -> list[int]:
    """Split `messages` between the clients exactly: the first ones take one more if it does not divide."""
    return [messages // clients + (1 if i < messages % clients else 0) for i in range(clients)]


def _watch(
    plan: SoakPlan, processes: Sequence[multiprocessing.process.BaseProcess], committed: Any, sampler: RssSampler
) -> tuple[list[Sample], str]:
    """Sample until done, every client gone, or the time cap; returns the samples and why it ended."""
    start = time.monotonic()
    samples = [Sample(0.0, 0, 0.0, _rss_mib(sampler))]
    with tqdm(total=plan.messages, unit="msg", unit_scale=True, dynamic_ncols=True) as bar:
        while True:
            time.sleep(plan.sample_s)
            now = time.monotonic() - start
            count = int(committed.value)
            rate = (count - samples[-1].committed) / (now - samples[-1].elapsed_s)
            samples.append(Sample(round(now, 1), count, round(rate), _rss_mib(sampler)))
            bar.update(count - bar.n)
            bar.set_postfix(rss_mib="/".join(f"{v:.0f}" for v in samples[-1].rss_mib), rate=f"{rate:,.0f}/s")
            if count >= plan.messages:
                return samples, "every message committed"
            if not any(p.is_alive() for p in processes):
                return samples, "every client stopped"
            if now >= plan.seconds:
                return samples, f"--seconds {plan.seconds:g} reached"


def _rss_mib(sampler: RssSampler) -> tuple[float, ...]:
    return tuple(round(v / 2**20, 1) for _, v in sorted(sampler.sample().items()))


def _drain_errors(results: Any) -> list[str]:
    errors: list[str] = []
    while True:
        try:
            report = results.get(timeout=0.5)
        except Exception:  # noqa: BLE001 - queue.Empty, or a queue broken by a killed client
            return errors
        if report.error:
            errors.append(report.error)


def write_soak(plan: SoakPlan, result: SoakResult, started: str, description: dict[str, str]) -> None:
    os.makedirs(plan.out_dir, exist_ok=True)
    stem = os.path.join(plan.out_dir, plan.name)
    with open(stem + ".csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["elapsed_s", "committed", "messages_per_s", *[f"rss_mib_node{n + 1}" for n in range(plan.nodes)]]
        )
        for s in result.samples:
            writer.writerow([s.elapsed_s, s.committed, s.messages_per_s, *s.rss_mib])
    from bench.chart import write_soak_chart  # matplotlib is slow to import: only when writing

    write_soak_chart(stem + ".png", result.samples)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(soak_markdown(plan, result, started, description, os.path.basename(stem) + ".png"))
    print(f"wrote {stem}.csv, {stem}.md, {stem}.png")


def soak_markdown(plan: SoakPlan, result: SoakResult, started: str, description: dict[str, str], chart: str) -> str:
    rate = result.committed / result.elapsed_s if result.elapsed_s else 0.0
    lines = [
        f"# Laminar soak: {plan.name}",
        "",
        f"Run {started}. Command: `{plan.command}`",
        "",
        f"{result.committed:,} of {plan.messages:,} messages committed in {result.elapsed_s:,.0f} s "
        f"({rate:,.0f} msgs/s on average) through {plan.nodes} nodes by {plan.clients} pipelined clients "
        f"({plan.topic_kind} topic, durability {plan.durability}); ended: {result.ended_because}.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in description.items()],
        "",
        f"![throughput and memory]({chart})",
        "",
        "## Resident memory per node (MiB)",
        "",
        "| node | start | end | peak, first half | peak, second half | second - first half peak |",
        "|---|---|---|---|---|---|",
        *_rss_lines(result.samples),
        "",
    ]
    if result.errors:
        lines += ["## Client errors", "", *[f"- `{e.splitlines()[0]}`" for e in result.errors], ""]
    return "\n".join(lines)


def _rss_lines(samples: Sequence[Sample]) -> list[str]:
    if not samples:
        return []
    middle = samples[-1].elapsed_s / 2
    lines = []
    for n in range(len(samples[0].rss_mib)):
        first = max(s.rss_mib[n] for s in samples if s.elapsed_s <= middle)
        second = max((s.rss_mib[n] for s in samples if s.elapsed_s > middle), default=first)
        cells = [f"{v:.0f}" for v in (samples[0].rss_mib[n], samples[-1].rss_mib[n], first, second)]
        lines.append(f"| {n + 1} | {' | '.join(cells)} | {second - first:+.0f} |")
    return lines
