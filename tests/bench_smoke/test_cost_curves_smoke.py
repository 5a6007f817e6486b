"""bench/cost_curves.py stays runnable: its shape fit on known curves, and a tiny run writing real result files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bench.cost_curves import (
    CLIENTS,
    CSV_COLUMNS,
    LISTENERS,
    TOPICS,
    VALUE_BYTES,
    CurvePlan,
    exponent,
    run_curves,
    shape,
)


def test_exponent_recovers_the_power_of_known_curves() -> None:
    """The log-log fit gives 0 for a constant, 1 for a line, 2 for a square; too few points give None."""
    xs = [1, 10, 100, 1000]
    assert exponent(xs, [5.0] * 4) == pytest.approx(0.0)
    assert exponent(xs, [3.0 * x for x in xs]) == pytest.approx(1.0)
    assert exponent(xs, [float(x * x) for x in xs]) == pytest.approx(2.0)
    assert exponent([10], [1.0]) is None and exponent([10, 10], [1.0, 2.0]) is None
    assert [shape(k) for k in (0.0, 0.5, 1.0, 2.0)] == ["flat", "sublinear", "linear", "WORSE than linear"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        return list(reader)


@pytest.mark.timeout(120)
def test_a_tiny_topics_curve_writes_csv_markdown_and_chart(tmp_path: Path) -> None:
    """One node, 1 then 3 topics, 20 puts a point: every point committed, RSS measured, all three files written."""
    plan = CurvePlan(out_dir=str(tmp_path), command="pytest", curves=(TOPICS,), points={TOPICS: (1, 3)}, messages=20,
                     point_timeout_s=20.0, nodes=1)  # fmt: skip
    points = run_curves(plan)
    assert [(p.curve, p.x, p.status, p.messages) for p in points] == [(TOPICS, 1, "ok", 20), (TOPICS, 3, "ok", 20)]
    assert all(p.messages_per_s > 0 and 10 < p.rss_mib_max < 2000 for p in points), points
    rows = _rows(tmp_path / "curves.csv")
    assert [(r["curve"], r["x"], r["messages"]) for r in rows] == [(TOPICS, "1", "20"), (TOPICS, "3", "20")]
    report = (tmp_path / "curves.md").read_text()
    assert "Command: `pytest`" in report and "| topics | 1 to 3 |" in report
    assert (tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.bench
@pytest.mark.timeout(300)
def test_every_curve_tiny_on_one_node(tmp_path: Path) -> None:
    """All four curves, two points each, on one node: listeners get every put, client processes commit theirs."""
    points_by_curve = {TOPICS: (1, 2), VALUE_BYTES: (32, 4096), LISTENERS: (1, 2), CLIENTS: (1, 2)}
    plan = CurvePlan(out_dir=str(tmp_path), command="pytest", points=points_by_curve, messages=20,
                     point_timeout_s=30.0, nodes=1)  # fmt: skip
    points = run_curves(plan)
    assert [(p.curve, p.x, p.status) for p in points] == [(c, x, "ok") for c, xs in points_by_curve.items() for x in xs]
    listeners = [p for p in points if p.curve == LISTENERS]
    assert [p.messages for p in listeners] == [20, 20] and all(p.work_per_s > 0 for p in listeners)
