"""A PNG of both matrices: one panel per topic kind, µs/message against clients, a line per cluster size.

Ours are solid lines, the original (Java) Laminar's dashed, in the same colour for the same number
of nodes, on a log scale so 26 µs and 745 µs both read.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display: write files only

import matplotlib.pyplot as plt  # noqa: E402 - must follow the backend choice
from matplotlib.axes import Axes  # noqa: E402

from bench.reference import java_us  # noqa: E402
from bench.rows import MATRIX, Row  # noqa: E402
from bench.workloads import TOPIC_KINDS  # noqa: E402

COLOURS = {1: "tab:blue", 3: "tab:orange", 5: "tab:green", 7: "tab:red"}
PANEL_INCHES = 4.2


def write_chart(path: str, rows: Sequence[Row]) -> None:
    cells = [r for r in rows if r.section == MATRIX and r.ok and r.us_per_message]
    topics = [t for t in TOPIC_KINDS if any(r.topic == t for r in cells)] or ["plain"]
    figure, axes = plt.subplots(1, len(topics), figsize=(PANEL_INCHES * len(topics), PANEL_INCHES), squeeze=False)
    try:
        for axis, topic in zip(axes[0], topics, strict=True):
            _panel(axis, topic, [r for r in cells if r.topic == topic])
        figure.suptitle("Laminar (solid) vs the original Java Laminar (dashed): µs per message, lower is better")
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)


def _panel(axis: Axes, topic: str, rows: Sequence[Row]) -> None:
    java_row = TOPIC_KINDS[topic].java_row
    for nodes in sorted({r.nodes for r in rows}):
        mine = sorted((r.clients, r.us_per_message) for r in rows if r.nodes == nodes and r.durability == "default")
        colour = COLOURS.get(nodes, "black")
        if mine:
            axis.plot(*zip(*mine, strict=True), "o-", color=colour, label=f"{nodes} node{'s' * (nodes > 1)}")
        theirs = [(c, java_us(java_row, nodes, c)) for c, _ in mine]
        theirs = [(c, us) for c, us in theirs if us is not None]
        if theirs:
            axis.plot(*zip(*theirs, strict=True), "s--", color=colour, alpha=0.6)
    axis.set_title(f"{topic} (vs Java {java_row})")
    axis.set_xlabel("clients")
    axis.set_ylabel("µs per message")
    axis.set_yscale("log")
    axis.set_xticks(sorted({r.clients for r in rows}) or [1])
    axis.grid(True, which="both", alpha=0.3)
    if rows:
        axis.legend(fontsize="small")
