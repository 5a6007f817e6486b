"""What a run measures (a Plan), and running it: the Raft ceiling, sequential commits, then the matrix."""

from __future__ import annotations

import datetime
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tqdm import tqdm

from bench import machine
from bench.balance import DEFAULT_PAIRS
from bench.cells import Cell, run_cell
from bench.raft_ceiling import run_raft_ceiling
from bench.report import RunInfo, write_all
from bench.rows import MATRIX, RAFT_CEILING, Row
from bench.stats import rounded
from bench.workloads import REPO_ROOT

Step = tuple[str, Callable[[], Row]]


@dataclass(frozen=True)
class Plan:
    name: str  # output file stem in out_dir
    out_dir: str
    command: str  # how the run was started, for the report
    topic_kinds: tuple[str, ...] = ("plain", "passthrough", "balance")
    nodes: tuple[int, ...] = (1, 3, 5)
    clients: tuple[int, ...] = (1, 3, 5)
    messages: int = 10_000  # per client
    durabilities: tuple[str, ...] = ("default",)
    sequential_nodes: tuple[int, ...] = (1, 3)
    sequential_commits: int = 2_000  # 0: skip
    raft_commands: int = 20_000  # 0: skip the ceiling
    raft_settings: tuple[str, ...] = field(default=("laminar", "defaults"))
    balance_pairs: int = DEFAULT_PAIRS  # account pairs per balance client


def steps(plan: Plan) -> list[Step]:
    """Every measurement, in order: the engine alone first, on a quiet machine."""
    out: list[Step] = []
    if plan.raft_commands:
        for settings in plan.raft_settings:
            out.append((f"raft ceiling, {settings}", _bind_ceiling(settings, plan.raft_commands)))
    for durability in plan.durabilities:
        if plan.sequential_commits:
            for nodes in plan.sequential_nodes:
                cell = Cell("plain", nodes, 1, plan.sequential_commits, durability, sequential=True)
                out.append((f"sequential, {nodes} node(s)", _bind_cell(cell)))
        for kind, nodes, clients in itertools.product(plan.topic_kinds, plan.nodes, plan.clients):
            cell = Cell(kind, nodes, clients, plan.messages, durability, balance_pairs=plan.balance_pairs)
            out.append((f"{kind}, {nodes} node(s), {clients} client(s)", _bind_cell(cell)))
    return out


def _bind_cell(cell: Cell) -> Callable[[], Row]:
    return lambda: run_cell(cell)


def _bind_ceiling(settings: str, commands: int) -> Callable[[], Row]:
    return lambda: run_raft_ceiling(settings, commands)


def run_plan(plan: Plan) -> list[Row]:
    """Run every step with a progress bar, then write <name>.csv, .md and .png into plan.out_dir."""
    started = datetime.datetime.now().astimezone()
    description = machine.describe(REPO_ROOT)
    clock = time.monotonic()
    rows = []
    with tqdm(steps(plan), unit="step", dynamic_ncols=True) as bar:
        for label, measure in bar:
            bar.set_description(label)
            row = measure()
            rows.append(row)
            bar.write(f"{label}: {_summary(row)}")
    _add_ceiling_share(rows)
    description["load average at end"] = machine.load_average()
    info = RunInfo(
        plan.name, plan.command, started.isoformat(timespec="seconds"), time.monotonic() - clock, description
    )
    paths = write_all(plan.out_dir, info, rows)
    print("wrote " + ", ".join(paths.values()))
    return rows


def _summary(row: Row) -> str:
    if not row.ok:
        return row.status
    parts = [f"{row.us_per_message} µs/msg", f"{row.messages_per_s:,.0f} msgs/s"]
    if row.latency_ms_p50 is not None:
        parts.append(f"p50 {row.latency_ms_p50} ms, p99 {row.latency_ms_p99} ms")
    if row.ratio_vs_java is not None:
        parts.append(f"{row.ratio_vs_java}x Java")
    if row.cpu_us_per_message_per_node:
        nodes = " + ".join(f"{v:g}" for v in row.cpu_us_per_message_per_node)
        parts.append(f"CPU µs/msg: nodes {nodes}, clients {row.client_cpu_us_per_message:g}")
    return ", ".join(parts)


def _add_ceiling_share(rows: list[Row]) -> None:
    """Each cell's messages/s as a fraction of the engine's own commits/s (the first ceiling row)."""
    ceiling = next((r.messages_per_s for r in rows if r.section == RAFT_CEILING and r.ok), None)
    if not ceiling:
        return
    for row in rows:
        if row.section == MATRIX and row.messages_per_s:
            row.share_of_raft_ceiling = rounded(row.messages_per_s / ceiling, 2)
