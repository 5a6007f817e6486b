"""One result row: a matrix cell, a sequential run, or a Raft ceiling run. One CSV line each."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MATRIX, SEQUENTIAL, RAFT_CEILING = "matrix", "sequential", "raft_ceiling"


@dataclass
class Row:
    section: str  # MATRIX, SEQUENTIAL or RAFT_CEILING
    topic: str  # topic kind, or the Raft settings measured
    nodes: int
    clients: int
    messages_per_client: int
    durability: str  # the mode the harness asked for ("default": the node's own default)
    node_durability: str = ""  # what the leader's status said it does
    window_per_client: int | None = None  # messages a client may have in flight; empty: all of them
    status: str = "ok"  # "ok", "skipped: why" or "failed: why"
    us_per_message: float | None = None  # slowest client's wall time / (clients x messages)
    messages_per_s: float | None = None  # clients x messages / slowest client's wall time
    latency_ms_p50: float | None = None  # per message, send to committed ack
    latency_ms_p99: float | None = None
    latency_ms_max: float | None = None
    not_valid: int | None = None  # commits that were not VALID (a plain or passthrough run has none)
    wall_s: float | None = None  # the slowest client's
    rss_mib_peak_max: float | None = None  # the largest of the nodes' peaks
    rss_mib_peak_per_node: list[float] = field(default_factory=list)
    cpu_us_per_message_per_node: list[float] = field(default_factory=list)  # each node's CPU over the timed part
    client_cpu_us_per_message: float | None = None  # every client process's CPU, summed
    java_us_per_message: float | None = None  # the original Laminar's figure for this cell
    ratio_vs_java: float | None = None  # ours / theirs: below 1 is faster than Java Laminar
    share_of_raft_ceiling: float | None = None  # messages_per_s / raw pysyncobj commits/s

    @property
    def ok(self) -> bool:
        return self.status == "ok"


CSV_COLUMNS = [f.name for f in dataclasses.fields(Row)]


def csv_record(row: Row) -> dict[str, object]:
    record = dataclasses.asdict(row)
    record["rss_mib_peak_per_node"] = ";".join(f"{v:.1f}" for v in row.rss_mib_peak_per_node)
    record["cpu_us_per_message_per_node"] = ";".join(f"{v:.1f}" for v in row.cpu_us_per_message_per_node)
    return {k: "" if v is None else v for k, v in record.items()}
