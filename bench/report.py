"""Write a run's results: <name>.csv (every row), <name>.md (the matrices and the machine), <name>.png."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.reference import JAVA_MESSAGES_PER_CLIENT, java_us
from bench.rows import CSV_COLUMNS, MATRIX, RAFT_CEILING, SEQUENTIAL, Row, csv_record
from bench.workloads import TOPIC_KINDS


@dataclass(frozen=True)
class RunInfo:
    name: str  # file stem: "latest", "quick", ...
    command: str  # exactly what was typed, to reproduce it
    started: str  # ISO date and time
    elapsed_s: float
    machine: dict[str, str]


def write_all(out_dir: str, info: RunInfo, rows: Sequence[Row]) -> dict[str, str]:
    """Write the three files; their paths by extension."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: os.path.join(out_dir, f"{info.name}.{ext}") for ext in ("csv", "md", "png")}
    write_csv(paths["csv"], rows)
    from bench.chart import write_chart  # matplotlib is slow to import: only when writing

    write_chart(paths["png"], rows)
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown(info, rows, os.path.basename(paths["png"])))
    return paths


def write_csv(path: str, rows: Iterable[Row]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(csv_record(row))


def _fmt(value: float | int | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return [*out, ""]


def markdown(info: RunInfo, rows: Sequence[Row], chart_name: str) -> str:
    lines = [
        f"# Laminar benchmark: {info.name}",
        "",
        f"Run {info.started}, took {info.elapsed_s / 60:.1f} min. Command: `{info.command}`",
        "",
        *_table(["machine", ""], info.machine.items()),
        "Average time per message in microseconds, lower is better: each client pipelines all its puts "
        "and waits for every commit; the figure is the slowest client's wall time divided by "
        "(clients x messages), as the original (Java) Laminar defined it. Each cell: ours / Java "
        "(ours ÷ Java). Java's figures are for "
        f'{JAVA_MESSAGES_PER_CLIENT:,} messages per client; "programmable" is its AVM topic.',
        "",
        f"![both matrices]({chart_name})",
        "",
    ]
    lines += _matrices(rows)
    lines += _detail(rows)
    lines += _sequential(rows)
    lines += _ceiling(rows)
    return "\n".join(lines)


def _matrices(rows: Sequence[Row]) -> list[str]:
    cells = [r for r in rows if r.section == MATRIX]
    lines: list[str] = []
    for durability in sorted({r.durability for r in cells}):
        for topic in [t for t in TOPIC_KINDS if any(r.topic == t for r in cells)]:
            mine = {(r.nodes, r.clients): r for r in cells if r.topic == topic and r.durability == durability}
            lines += _matrix(topic, durability, mine)
    return lines


def _matrix(topic: str, durability: str, mine: dict[tuple[int, int], Row]) -> list[str]:
    """One topic's table: a row per cluster size, a column per client count."""
    clients = sorted({c for _, c in mine})
    java_row = TOPIC_KINDS[topic].java_row
    lines = [f"## {topic} topic (durability: {durability}; compared with Java's {java_row} row)", ""]
    table = [
        [str(n), *[_cell_text(mine.get((n, c)), java_us(java_row, n, c)) for c in clients]]
        for n in sorted({n for n, _ in mine})
    ]
    return lines + _table(["nodes", *[f"{c} client{'s' * (c > 1)}" for c in clients]], table)


def _cell_text(row: Row | None, java: float | None) -> str:
    if row is None:
        return ""
    if not row.ok:
        return row.status.split(":")[0]
    java_text = f" / {java:g} ({row.ratio_vs_java:.2f}x)" if java and row.ratio_vs_java is not None else ""
    return f"**{_fmt(row.us_per_message)}**{java_text}"


def _detail(rows: Sequence[Row]) -> list[str]:
    header = [
        "topic", "durability", "nodes", "clients", "msgs/client", "in flight/client", "µs/msg", "msgs/s",
        "p50 ms", "p99 ms", "max ms", "CPU µs/msg per node", "client CPU µs/msg",
        "peak RSS MiB per node", "share of raft ceiling", "not VALID", "status",
    ]  # fmt: skip
    lines = [_detail_line(r) for r in rows if r.section == MATRIX]
    return ["## Every cell", "", *_table(header, lines)] if lines else []


def _detail_line(r: Row) -> list[str]:
    durability = f"{r.durability} ({r.node_durability})" if r.node_durability else r.durability
    numbers = [
        _fmt(r.us_per_message),
        _fmt(r.messages_per_s, 0),
        _fmt(r.latency_ms_p50, 2),
        _fmt(r.latency_ms_p99, 2),
        _fmt(r.latency_ms_max, 2),
        ", ".join(f"{v:.1f}" for v in r.cpu_us_per_message_per_node),
        _fmt(r.client_cpu_us_per_message),
        ", ".join(f"{v:.0f}" for v in r.rss_mib_peak_per_node),
        _fmt(r.share_of_raft_ceiling, 2),
        "" if r.not_valid is None else str(r.not_valid),
    ]
    window = "all" if r.window_per_client is None else str(r.window_per_client)
    sizes = [str(r.nodes), str(r.clients), f"{r.messages_per_client:,}", window]
    return [r.topic, durability, *sizes, *numbers, r.status]


def _sequential(rows: Sequence[Row]) -> list[str]:
    lines = [_sequential_line(r) for r in rows if r.section == SEQUENTIAL]
    if not lines:
        return []
    header = ["nodes", "durability", "commits", "p50 ms", "p99 ms", "max ms", "commits/s", "status"]
    intro = "One client: send, wait for the committed ack, repeat. Latency from send to ack."
    return ["## Sequential commits", "", intro, "", *_table(header, lines)]


def _sequential_line(r: Row) -> list[str]:
    latencies = [_fmt(r.latency_ms_p50, 2), _fmt(r.latency_ms_p99, 2), _fmt(r.latency_ms_max, 2)]
    return [str(r.nodes), r.durability, f"{r.messages_per_client:,}", *latencies, _fmt(r.messages_per_s, 0), r.status]


def _ceiling(rows: Sequence[Row]) -> list[str]:
    lines = [
        [
            r.topic,
            str(r.nodes),
            f"{r.messages_per_client:,}",
            _fmt(r.messages_per_s, 0),
            _fmt(r.us_per_message),
            r.status,
        ]
        for r in rows
        if r.section == RAFT_CEILING
    ]
    if not lines:
        return []
    intro = (
        "pysyncobj alone, no Laminar: 3 node processes on loopback, one 16-byte command per log entry, "
        "a pipelined loop on the leader bounded by a window, counting commit callbacks. Laminar packs many "
        'messages into one entry, so its messages/s may exceed this; "share of raft ceiling" above is '
        "its messages/s divided by the first row's commits/s."
    )
    header = ["engine", "nodes", "commands", "commits/s", "µs/commit", "status"]
    return ["## Raw Raft ceiling", "", intro, "", *_table(header, lines)]
