"""Run one measurement on a fresh cluster: a matrix cell or a sequential-commit run."""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

import laminar
from bench.balance import DEFAULT_PAIRS
from bench.client_proc import ClientJob, ClientReport
from bench.cluster import BenchCluster, CpuMeter, RssSampler, mib
from bench.processes import ClientsFailed, run_clients
from bench.reference import java_us
from bench.rows import MATRIX, SEQUENTIAL, Row
from bench.stats import percentile, rounded
from bench.workloads import TOPIC_KINDS, TopicKind

TOPIC = "bench"
CREATE_TIMEOUT_S = 30.0
CELL_TIMEOUT_S_BASE = 60.0
CELL_TIMEOUT_S_PER_MESSAGE = 0.005  # 5 ms a message: a bound against hangs, far above any normal figure


@dataclass(frozen=True)
class Cell:
    topic_kind: str
    nodes: int
    clients: int
    messages: int  # per client
    durability: str = "default"
    sequential: bool = False
    balance_pairs: int = DEFAULT_PAIRS  # balance only: account pairs per client (cache 2 x pairs x clients)

    @property
    def kind(self) -> TopicKind:
        return TOPIC_KINDS[self.topic_kind]

    @property
    def timeout_s(self) -> float:
        return CELL_TIMEOUT_S_BASE + CELL_TIMEOUT_S_PER_MESSAGE * self.messages * self.clients

    def empty_row(self) -> Row:
        section = SEQUENTIAL if self.sequential else MATRIX
        row = Row(section, self.topic_kind, self.nodes, self.clients, self.messages, self.durability)
        row.window_per_client = 1 if self.sequential else None  # every matrix cell pipelines all its messages
        if not self.sequential:
            row.java_us_per_message = java_us(self.kind.java_row, self.nodes, self.clients)
        return row


def run_cell(cell: Cell) -> Row:
    """Measure one cell; a failure becomes the row's status, never an exception (but Ctrl-C is)."""
    row = cell.empty_row()
    missing = cell.kind.missing()
    if missing:
        row.status = f"skipped: {missing}"
        return row
    try:
        with BenchCluster(cell.nodes, cell.durability) as cluster, RssSampler(cluster.pids) as rss:
            _create_topic(cluster, cell)
            row.node_durability = cluster.node_durability
            cpu = CpuMeter(cluster.pids)
            try:
                reports = run_clients(_jobs(cluster, cell), started=cpu.start)
            except ClientsFailed as failed:  # the nodes' logs explain it, and vanish with the cluster
                raise ClientsFailed(f"{failed}\n{cluster.log_tail()}") from failed
            cpu.stop()
        _fill(row, reports)
        _fill_cpu(row, reports, cpu.spent_s)
        row.rss_mib_peak_per_node = mib(list(rss.peak_bytes.values()))
        row.rss_mib_peak_max = max(row.rss_mib_peak_per_node)
    except Exception as error:  # noqa: BLE001 - one failed cell must not lose the others
        row.status = f"failed: {_first_line(error)}"
        tqdm.write(f"cell {cell} failed:\n{error}")
    return row


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else repr(error)


def _create_topic(cluster: BenchCluster, cell: Cell) -> None:
    program = cell.kind.program_source()
    with laminar.Client(cluster.addresses) as client:
        pending = client.create_topic(
            TOPIC, program=program, args=cell.kind.create_args(cell.clients, cell.balance_pairs)
        )
        commit = pending.committed(timeout=CREATE_TIMEOUT_S)
    if not commit.ok:
        raise RuntimeError(f"creating the {cell.topic_kind} topic was {commit.effect}: {commit.reason}")


def _jobs(cluster: BenchCluster, cell: Cell) -> list[ClientJob]:
    return [
        ClientJob(
            addresses=tuple(cluster.addresses),
            topic=TOPIC,
            topic_kind=cell.topic_kind,
            client_index=index,
            client_count=cell.clients,
            messages=cell.messages,
            timeout_s=cell.timeout_s,
            sequential=cell.sequential,
            balance_pairs=cell.balance_pairs,
        )
        for index in range(cell.clients)
    ]


def _fill_cpu(row: Row, reports: list[ClientReport], node_cpu_s: dict[int, float]) -> None:
    """CPU time per message: where the machine's cores went, which wall time alone does not tell."""
    total = row.clients * row.messages_per_client
    row.cpu_us_per_message_per_node = [round(node_cpu_s[n] / total * 1e6, 1) for n in sorted(node_cpu_s)]
    row.client_cpu_us_per_message = rounded(sum(r.cpu_s for r in reports) / total * 1e6)


def _fill(row: Row, reports: list[ClientReport]) -> None:
    """Laminar's definition: the slowest client's wall time over every message of every client."""
    wall_s = max(r.wall_s for r in reports)
    total = sum(len(r.latencies_s) for r in reports)
    latencies_ms = [s * 1000 for r in reports for s in r.latencies_s]
    row.wall_s = rounded(wall_s, 3)
    row.us_per_message = rounded(wall_s / total * 1e6)
    row.messages_per_s = rounded(total / wall_s, 0)
    row.latency_ms_p50 = rounded(percentile(latencies_ms, 0.50), 2)
    row.latency_ms_p99 = rounded(percentile(latencies_ms, 0.99), 2)
    row.latency_ms_max = rounded(max(latencies_ms), 2)
    row.not_valid = sum(r.not_valid for r in reports)
    if row.not_valid:
        reason = next(r.first_reason for r in reports if r.first_reason)
        tqdm.write(
            f"warning: {row.not_valid} commits were not VALID in {row.topic}/{row.nodes}n/{row.clients}c: {reason}"
        )
    if row.java_us_per_message and row.us_per_message:
        row.ratio_vs_java = rounded(row.us_per_message / row.java_us_per_message, 2)
