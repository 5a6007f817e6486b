"""Write the etcd comparison: <name>.csv (every run), <name>.md (figures, ratios, what differs), <name>.png."""

from __future__ import annotations

import csv
import dataclasses
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.compare_proc import ETCD, LAMINAR, PIPELINED, READ_BACK, SEQUENTIAL
from bench.etcd_compare import ComparePlan, Run, csv_columns

TXN = "pipelined_txn"
Metric = Callable[[Run], float | None]


@dataclass(frozen=True)
class CompareInfo:
    plan: ComparePlan
    started: str
    elapsed_s: float
    machine: dict[str, str]


def server_cpu(run: Run) -> float | None:
    return sum(run.server_cpu_us_per_message_per_node) if run.server_cpu_us_per_message_per_node else None


# (label, workload on Laminar's side, workload on etcd's side, metric, digits): one line of the summary.
LINES: list[tuple[str, str, str, Metric, int]] = [
    ("pipelined: µs per message", PIPELINED, PIPELINED, lambda r: r.us_per_message, 1),
    ("pipelined: µs per message (etcd: --txn-batch puts per Txn)", PIPELINED, TXN, lambda r: r.us_per_message, 1),
    ("pipelined: commit p50 ms (queueing behind the burst)", PIPELINED, PIPELINED, lambda r: r.latency_ms_p50, 2),
    ("pipelined: server CPU µs per message (3 nodes summed)", PIPELINED, PIPELINED, server_cpu, 1),
    ("pipelined: client CPU µs per message", PIPELINED, PIPELINED, lambda r: r.client_cpu_us_per_message, 1),
    ("sequential: p50 ms", SEQUENTIAL, SEQUENTIAL, lambda r: r.latency_ms_p50, 2),
    ("sequential: p99 ms", SEQUENTIAL, SEQUENTIAL, lambda r: r.latency_ms_p99, 2),
    ("sequential: max ms", SEQUENTIAL, SEQUENTIAL, lambda r: r.latency_ms_max, 2),
    ("sequential: server CPU µs per message (3 nodes, idle work included)", SEQUENTIAL, SEQUENTIAL, server_cpu, 0),
    ("sequential: client CPU µs per message", SEQUENTIAL, SEQUENTIAL, lambda r: r.client_cpu_us_per_message, 0),
    ("read back from the start: s", READ_BACK, READ_BACK, lambda r: r.wall_s, 3),
    ("read back: server CPU µs per message", READ_BACK, READ_BACK, server_cpu, 1),
    ("read back: client CPU µs per message", READ_BACK, READ_BACK, lambda r: r.client_cpu_us_per_message, 1),
]

DIFFERENCES = """\
## What differs between the two

- **Durability**: both acknowledge a write only once a majority has it on disk. etcd (its defaults)
  fsyncs its WAL on the leader and on each follower before they count; Laminar runs at
  `--durability fsync` (the journal is fdatasync'ed before a node counts an entry). Neither is
  configured to skip the sync.
- **Batching**: Laminar's leader packs every message waiting to be proposed into one Raft log entry,
  so one fsync covers many pipelined messages. etcd batches Raft entries too (several proposals per
  Ready, one WAL fsync per Ready), but each Put is its own entry and its own apply in its B-tree
  backend; a Txn of many puts is one entry, hence the "puts per Txn" line. The pipelined etcd figure
  with one Put per call is bound by the Python client (see its client CPU per message: a unary gRPC
  call costs a Python client far more than a frame on Laminar's stream), not by etcd's server.
- **Client**: both clients are Python gRPC over one HTTP/2 connection from each client process.
  Laminar's client pipelines puts on one bidirectional session stream and gets acks back on it;
  the etcd client here (bench/etcd_client.py) issues one unary call per Put (`future()`), which is
  how etcd's own clients talk to it. etcd's server is Go; Laminar's is Python, so the server CPU
  per message compares the two implementations, not just the two designs.
- **Keys and reads**: each etcd write goes to a distinct key (so that reading the prefix back returns
  every message), while Laminar's plain workload writes every message of a client under one key and
  reads back its event log. etcd's read back is range gets of 1,000 keys a page, all pages at the
  first page's revision (the first page linearizable), from the leader; Laminar's is one listener
  from offset 0 on the leader's node, counting put events.
- **CPU figures**: each server's CPU time over the run (user + system, read from /proc/<pid>/stat by
  psutil, in 10 ms kernel ticks) divided by the run's messages. It includes what the node does anyway
  (heartbeats, polling), which dominates in a sequential run where the nodes mostly wait: read those
  as CPU per second of waiting more than as the cost of a message. Both clusters are running during
  every run, so each system's idle work also slows the other a little, in both directions.
- **Where requests land**: etcd's clients talk to the leader's client port directly (no forwarding);
  Laminar's client finds the leader itself.
"""


def write_results(info: CompareInfo, runs: Sequence[Run]) -> list[str]:
    os.makedirs(info.plan.out_dir, exist_ok=True)
    stem = os.path.join(info.plan.out_dir, info.plan.name)
    with open(f"{stem}.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=csv_columns())
        writer.writeheader()
        for run in runs:
            record = dataclasses.asdict(run)
            record["server_cpu_us_per_message_per_node"] = ";".join(
                f"{v:.1f}" for v in run.server_cpu_us_per_message_per_node
            )
            writer.writerow({k: "" if v is None else v for k, v in record.items()})
    chart = _chart(f"{stem}.png", runs)
    kept = _kept_notes(f"{stem}.md")
    with open(f"{stem}.md", "w", encoding="utf-8") as f:
        f.write(markdown(info, runs, os.path.basename(chart) if chart else None))
        f.write(kept)
    return [f"{stem}.csv", f"{stem}.md", *([chart] if chart else [])]


# Everything after this line in a results file is written by hand (before/after figures of a change, the
# time budget of a commit) and survives the next run, which rewrites only what is above it.
NOTES_MARKER = "<!-- notes kept across runs: everything below this line -->"


def _kept_notes(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return ""
    at = text.find(NOTES_MARKER)
    return "" if at < 0 else "\n" + text[at:]


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*out, *["| " + " | ".join(line) + " |" for line in lines], ""]


def _by_round(runs: Sequence[Run], system: str, workload: str) -> dict[int, Run]:
    return {r.round: r for r in runs if r.system == system and r.workload == workload and r.ok}


def round_ratios(runs: Sequence[Run], lam_workload: str, etcd_workload: str, metric: Metric) -> list[float]:
    """Laminar ÷ etcd within each round where both figures exist: a ratio from runs minutes apart at most."""
    lam, etcd = _by_round(runs, LAMINAR, lam_workload), _by_round(runs, ETCD, etcd_workload)
    ratios = []
    for round_ in sorted(set(lam) & set(etcd)):
        mine, theirs = metric(lam[round_]), metric(etcd[round_])
        if mine is not None and theirs:
            ratios.append(mine / theirs)
    return ratios


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summary_lines(runs: Sequence[Run]) -> list[list[str]]:
    lines = []
    for label, lam_workload, etcd_workload, metric, digits in LINES:
        lam = [v for r in _by_round(runs, LAMINAR, lam_workload).values() if (v := metric(r)) is not None]
        etcd = [v for r in _by_round(runs, ETCD, etcd_workload).values() if (v := metric(r)) is not None]
        ratios = round_ratios(runs, lam_workload, etcd_workload, metric)
        if not lam and not etcd:
            continue
        per_round = ", ".join(f"{x:.2f}" for x in ratios)
        ratio = _median(ratios)
        lines.append([label, _fmt(_median(lam), digits), _fmt(_median(etcd), digits), _fmt(ratio, 2) + "×", per_round])
    return lines


def markdown(info: CompareInfo, runs: Sequence[Run], chart: str | None) -> str:
    plan = info.plan
    lines = [
        f"# Laminar beside etcd: {plan.name}",
        "",
        f"Run {info.started}, took {info.elapsed_s / 60:.1f} min. Command: `{plan.command}` (`make bench-etcd`).",
        "",
        *_table(["machine", ""], list(info.machine.items())),
        f"Both clusters: 3 members on loopback on this machine, running side by side. {plan.rounds} rounds; "
        f"in each, every workload ran on both systems back to back (etcd first in odd rounds). Pipelined: "
        f"{plan.clients} client processes x {plan.messages:,} writes of 32 bytes; sequential: one client, "
        f"{plan.sequential:,} writes, each waiting for its commit; read back: everything the round's pipelined "
        "run wrote, from the start. Figures are medians over the rounds; the ratio is Laminar ÷ etcd (below 1: "
        "Laminar is faster or cheaper), the median of the per-round ratios, which cancel most of the "
        "machine's drift: on a machine shared with other work, read the ratios rather than the absolute figures.",
        "",
        *_table(["figure", "Laminar", "etcd", "ratio", "per round"], summary_lines(runs)),
    ]
    if chart:
        lines += [f"![per-round ratios]({chart})", ""]
    lines += _open_loop(runs)
    lines += [DIFFERENCES, *_all_runs(runs)]
    return "\n".join(lines)


OPEN_LOOP_INTRO = (
    "Writes offered at a fixed rate, a fraction of Laminar's measured pipelined maximum (the median "
    "messages/s of its pipelined runs above), by {senders} sender processes for {seconds:.0f} s; the same "
    "absolute rates for etcd. Latency counts from each message's due time on the schedule, not from when it "
    "was sent (no coordinated omission); a message not committed (delivered) within the drain period counts "
    "as infinitely late (an empty cell: that percentile was never reached). Each system also has a listener "
    "in its own process, attached before the schedule starts: Laminar a Listener on the topic, etcd a Watch "
    "on the key prefix (both on the leader); delivery is from the due time to the listener seeing the "
    'event. "lag" is the generator\'s own worst lateness against its schedule: when it is large the '
    "client machine, not the system, limited the offered rate. Targets at 50 %: commit p99 ≤ 10 ms and "
    "delivery p99 ≤ 10 ms."
)


def _open_loop(runs: Sequence[Run]) -> list[str]:
    open_runs = [r for r in runs if r.workload == "open_loop"]
    if not open_runs:
        return []
    lines = []
    for fraction in sorted({r.offered_fraction for r in open_runs if r.offered_fraction is not None}):
        lam = next((r for r in open_runs if r.system == LAMINAR and r.offered_fraction == fraction), None)
        etcd = next((r for r in open_runs if r.system == ETCD and r.offered_fraction == fraction), None)
        offered = (lam or etcd).offered_per_s if (lam or etcd) else None
        lines.append([f"{fraction:.0%}", _fmt(offered, 0), *_open_cells(lam), *_open_cells(etcd)])
    header = [
        "offered", "writes/s", "Laminar commit p50 / p99 / p99.9 ms", "Laminar delivery p50 / p99 / p99.9 ms",
        "Laminar lost", "Laminar lag ms", "etcd commit p50 / p99 / p99.9 ms",
        "etcd delivery (watch) p50 / p99 / p99.9 ms", "etcd lost", "etcd lag ms",
    ]  # fmt: skip
    plan_text = OPEN_LOOP_INTRO.format(senders=open_runs[0].clients, seconds=_seconds(open_runs[0]))
    return ["## Latency under load (open loop)", "", plan_text, "", *_table(header, lines)]


def _seconds(run: Run) -> float:
    return run.total_messages / run.offered_per_s if run.offered_per_s else 0.0


def _open_cells(run: Run | None) -> list[str]:
    if run is None:
        return ["", "", "", ""]
    if not run.ok:
        return [run.status, "", "", ""]

    def trio(a: float | None, b: float | None, c: float | None) -> str:
        return " / ".join("∞" if v is None else f"{v:,.2f}" for v in (a, b, c))

    cells = [trio(run.latency_ms_p50, run.latency_ms_p99, run.latency_ms_p999)]
    cells.append(trio(run.delivery_ms_p50, run.delivery_ms_p99, run.delivery_ms_p999))
    return [*cells, str(run.lost), _fmt(run.send_lag_ms_max, 1)]


def _all_runs(runs: Sequence[Run]) -> list[str]:
    header = [
        "round", "system", "workload", "clients", "msgs/client", "µs/msg", "msgs/s", "wall s",
        "p50 ms", "p99 ms", "max ms", "server CPU µs/msg per node", "client CPU µs/msg", "status",
    ]  # fmt: skip
    lines = [
        [
            str(r.round),
            r.system,
            r.workload,
            str(r.clients),
            f"{r.messages_per_client:,}",
            _fmt(r.us_per_message, 1),
            _fmt(r.messages_per_s, 0),
            _fmt(r.wall_s, 3),
            _fmt(r.latency_ms_p50, 2),
            _fmt(r.latency_ms_p99, 2),
            _fmt(r.latency_ms_max, 2),
            ", ".join(f"{v:.1f}" for v in r.server_cpu_us_per_message_per_node),
            _fmt(r.client_cpu_us_per_message, 1),
            r.status,
        ]
        for r in runs
    ]
    return ["## Every run", "", *_table(header, lines)]


CHART_LINES = [0, 1, 5, 6, 10]  # indexes into LINES: the figures the targets are about


def _chart(path: str, runs: Sequence[Run]) -> str | None:
    """Per-round Laminar ÷ etcd ratios of the headline figures, on a log scale with 1 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(LINES[i][0], round_ratios(runs, LINES[i][1], LINES[i][2], LINES[i][3])) for i in CHART_LINES]
    series = [(label, ratios) for label, ratios in series if ratios]
    if not series:
        return None
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for label, ratios in series:
        axes.plot(range(1, len(ratios) + 1), ratios, marker="o", label=label)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    axes.set_xlabel("round")
    axes.set_ylabel("Laminar ÷ etcd (below 1: Laminar better)")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
