"""The matrix the original (Java) Laminar published: average microseconds per message, lower is better.

10,000 pipelined messages per client, every node and client on one machine; the figure is the
slowest client's wall time divided by (clients x messages). "~" values were read off its charts.
"""

from __future__ import annotations

JAVA_MESSAGES_PER_CLIENT = 10_000

# (row, nodes, clients) -> microseconds per message
JAVA_US_PER_MESSAGE: dict[tuple[str, int, int], float] = {
    ("plain", 1, 1): 55,
    ("plain", 1, 3): 29,
    ("plain", 1, 5): 26,
    ("plain", 3, 1): 140,
    ("plain", 3, 3): 105,
    ("plain", 3, 5): 84,
    ("plain", 5, 1): 188,
    ("plain", 5, 3): 128,
    ("plain", 5, 5): 107,
    ("programmable", 1, 1): 185,
    ("programmable", 1, 3): 115,
    ("programmable", 1, 5): 101,
    ("programmable", 3, 1): 470,
    ("programmable", 3, 3): 310,
    ("programmable", 3, 5): 285,
    ("programmable", 5, 1): 745,
    ("programmable", 5, 3): 515,
    ("programmable", 5, 5): 445,
}


def java_us(row: str, nodes: int, clients: int) -> float | None:
    return JAVA_US_PER_MESSAGE.get((row, nodes, clients))
