"""A PNG of both matrices: one panel per topic kind, µs/message against clients, a line per cluster size.

Ours are solid lines, the original (Java) Laminar's dashed, in the same colour for the same number
of nodes, on a log scale so 26 µs and 745 µs both read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display: write files only

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from bench.reference import java_us
from bench.rows import MATRIX, Row
from bench.workloads import TOPIC_KINDS

if TYPE_CHECKING:
    from bench.soak import Sample

COLOURS = {1: "tab:blue", 3: "tab:orange", 5: "tab:green", 7: "tab:red"}
PANEL_INCHES = 4.2


def write_chart(path: str, rows: Sequence[Row]) -> None:
    cells = [r for r in rows if r.section == MATRIX and r.ok and r.us_per_message]
    topics = [t for t in TOPIC_KINDS if any(r.topic == t for r in cells)] or ["plain"]
    figure, axes = plt.subplots(1, len(topics), figsize=(PANEL_INCHES * len(topics), PANEL_INCHES), squeeze=False)
    try:
        for axis, topic in zip(axes[0], topics, strict=True):
            _panel(axis, topic, [r for r in cells if r.topic == topic])
        figure.suptitle("µs per message, lower is better\nsolid: this Laminar, dashed: the original Java Laminar")
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)


def _panel(axis: Axes, topic: str, rows: Sequence[Row]) -> None:
    java_row = TOPIC_KINDS[topic].java_row
    # One durability per panel (the first, alphabetically) so lines of different modes never mix.
    durability = min((r.durability for r in rows), default="default")
    rows = [r for r in rows if r.durability == durability]
    for nodes in sorted({r.nodes for r in rows}):
        mine = sorted((r.clients, r.us_per_message) for r in rows if r.nodes == nodes)
        colour = COLOURS.get(nodes, "black")
        if mine:
            axis.plot(*zip(*mine, strict=True), "o-", color=colour, label=f"{nodes} node{'s' * (nodes > 1)}")
        theirs = [(c, java_us(java_row, nodes, c)) for c, _ in mine]
        theirs = [(c, us) for c, us in theirs if us is not None]
        if theirs:
            axis.plot(*zip(*theirs, strict=True), "s--", color=colour, alpha=0.6)
    axis.set_title(f"{topic} topic, durability {durability}\n(dashed: Java's {java_row} row)", fontsize="medium")
    axis.set_xlabel("clients")
    axis.set_ylabel("µs per message")
    axis.set_yscale("log")
    axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 10, 20, 50, 100, ...
    axis.yaxis.set_major_formatter(ScalarFormatter())  # 100, not 10^2
    axis.yaxis.set_minor_formatter(NullFormatter())
    axis.set_xticks(sorted({r.clients for r in rows}) or [1])
    axis.grid(True, which="both", alpha=0.3)
    if rows:
        axis.legend(fontsize="small", loc="best")


def write_soak_chart(path: str, samples: Sequence[Sample]) -> None:
    """Throughput over time above, each node's RSS below: both should be flat lines."""
    figure, (rate_axis, rss_axis) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    try:
        times = [s.elapsed_s for s in samples[1:]]
        rate_axis.plot(times, [s.messages_per_s for s in samples[1:]], color="tab:blue")
        rate_axis.set_ylabel("committed msgs/s")
        rate_axis.set_ylim(bottom=0)
        for node in range(len(samples[0].rss_mib) if samples else 0):
            rss_axis.plot([s.elapsed_s for s in samples], [s.rss_mib[node] for s in samples], label=f"node {node + 1}")
        rss_axis.set_ylabel("RSS MiB")
        rss_axis.set_xlabel("seconds")
        rss_axis.set_ylim(bottom=0)
        rss_axis.legend(fontsize="small")
        for axis in (rate_axis, rss_axis):
            axis.grid(True, alpha=0.3)
        figure.suptitle("Laminar soak: throughput and memory over time")
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
