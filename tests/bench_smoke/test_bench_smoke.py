"""The benchmark harness end to end, tiny: real nodes, real client processes, real result files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bench.balance import TransferWorkload
from bench.plan import Plan, run_plan
from bench.rows import CSV_COLUMNS
from bench.soak import SoakPlan, run_soak
from bench.workloads import TOPIC_KINDS

EXPECTED_COLUMNS = {
    "section", "topic", "nodes", "clients", "messages_per_client", "durability", "status", "us_per_message",
    "messages_per_s", "latency_ms_p50", "latency_ms_p99", "rss_mib_peak_per_node", "java_us_per_message",
    "ratio_vs_java", "share_of_raft_ceiling",
}  # fmt: skip


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.timeout(120)
def test_one_tiny_cell_writes_csv_markdown_and_chart_with_sane_numbers(tmp_path: Path) -> None:
    """A plain and a balance cell (1 node, 1 client, 200 messages), 10 sequential commits, a small Raft ceiling."""
    plan = Plan(
        name="smoke",
        out_dir=str(tmp_path),
        command="pytest tests/bench_smoke",
        topic_kinds=("plain", "balance"),
        nodes=(1,),
        clients=(1,),
        messages=200,
        sequential_nodes=(1,),
        sequential_commits=10,
        raft_commands=200,
        raft_settings=("laminar",),
    )
    rows = run_plan(plan)
    balance_ok = (
        "ok" if TOPIC_KINDS["balance"].missing() is None else "skipped: " + str(TOPIC_KINDS["balance"].missing())
    )
    assert [r.status for r in rows] == ["ok", "ok", "ok", balance_ok], rows

    columns, records = _read_csv(tmp_path / "smoke.csv")
    assert columns == CSV_COLUMNS and set(columns) >= EXPECTED_COLUMNS
    by_section = {r["section"]: r for r in records if r["topic"] != "balance"}
    cell = by_section["matrix"]
    assert (cell["topic"], cell["nodes"], cell["clients"], cell["messages_per_client"]) == ("plain", "1", "1", "200")
    assert cell["durability"] == "default" and cell["not_valid"] == "0"
    us, rate = float(cell["us_per_message"]), float(cell["messages_per_s"])
    assert 0 < us < 100_000 and rate == pytest.approx(1e6 / us, rel=0.05)
    assert 0 < float(cell["latency_ms_p50"]) <= float(cell["latency_ms_p99"]) < 30_000
    assert 10 < float(cell["rss_mib_peak_per_node"]) < 4096  # one node: one value, in MiB
    # One node: one value. The kernel counts a process's CPU in 10 ms ticks, and this cell is shorter than a few.
    assert 0 <= float(cell["cpu_us_per_message_per_node"]) < 100_000
    assert 0 < float(cell["client_cpu_us_per_message"]) < 100_000
    assert float(cell["java_us_per_message"]) == 55 and float(cell["ratio_vs_java"]) > 0
    assert float(cell["share_of_raft_ceiling"]) > 0
    assert float(by_section["sequential"]["latency_ms_p50"]) > 0
    assert float(by_section["raft_ceiling"]["messages_per_s"]) > 0
    balance = next(r for r in records if r["topic"] == "balance")
    if balance_ok == "ok":  # transfers are built never to be stale: every one must succeed
        assert balance["not_valid"] == "0" and float(balance["us_per_message"]) > 0

    markdown = (tmp_path / "smoke.md").read_text(encoding="utf-8")
    for expected in ("| nodes | 1 client |", "/ 55 (", "## Sequential commits", "## Raw Raft ceiling", "| CPU |"):
        assert expected in markdown
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(120)
def test_soak_stops_by_itself_and_reports_memory_per_node(tmp_path: Path) -> None:
    """A soak of 600 messages on one node finishes, and writes samples with one RSS column per node."""
    plan = SoakPlan(out_dir=str(tmp_path), command="pytest", messages=600, seconds=20, nodes=1, clients=2, sample_s=0.5)
    result = run_soak(plan)
    assert result.committed == 600 and not result.errors, result
    columns, samples = _read_csv(tmp_path / "soak.csv")
    assert columns == ["elapsed_s", "committed", "messages_per_s", "rss_mib_node1"]
    assert int(samples[-1]["committed"]) == 600 and float(samples[-1]["rss_mib_node1"]) > 10
    assert "| 1 |" in (tmp_path / "soak.md").read_text(encoding="utf-8")
    assert (tmp_path / "soak.png").read_bytes().startswith(b"\x89PNG")


def test_a_balance_transfer_is_the_json_json_dumps_would_write() -> None:
    """The workload formats its transfers by hand, for speed: the bytes must be json.dumps's."""
    workload = TransferWorkload("t", 3, 5, 2)
    workload.balances = {account: 1_000 for pair in workload.pairs for account in pair}
    workload.seen = 17
    key, value = workload.message(1)
    expected = {"to": "c3-b1", "amount": 1, "from_balance": 1_000, "to_balance": 1_000, "seen": 17}
    assert (key, value) == (b"c3-a1", json.dumps(expected).encode())
    assert workload.balances["c3-a1"] == 999 and workload.balances["c3-b1"] == 1_001
