"""The simulated world every node lives in: one clock, one event queue, seeded randomness.

Nothing here knows about Raft. Events run one at a time, in (time, key, sequence) order, where `key`
names what the event belongs to (a node, a link): two events at one instant run in an order fixed by
their keys, not by the order they were scheduled in, so a seed replays the same run even when
pysyncobj iterates a set of nodes in another order (string hashes change between processes).
"""

from __future__ import annotations

import heapq
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

SIM_START_S = 1000.0  # the clock starts here, not at 0 (pysyncobj treats 0 as "never")
# Code takes time: each clock read advances the clock this much. Without it a loop that waits for
# the clock to move (pysyncobj sends for up to one heartbeat period per tick) would never end.
CLOCK_READ_S = 0.000001


def stream(seed: int, *names: object) -> random.Random:
    """An independent random stream for one purpose (a node, a link, the fault plan)."""
    key = "/".join(str(n) for n in names).encode()
    return random.Random((seed << 32) ^ zlib.crc32(key))


class Clock:
    def __init__(self) -> None:
        self.now_s = SIM_START_S

    def now(self) -> float:
        """The time, as the code under test reads it (each read costs CLOCK_READ_S)."""
        self.now_s += CLOCK_READ_S
        return self.now_s

    def spend(self, seconds: float) -> None:
        self.now_s += seconds


@dataclass(order=True)
class _Event:
    at_s: float
    key: str
    seq: int
    run: Callable[[], None] = field(compare=False)
    label: str = field(compare=False, default="")
    cancelled: bool = field(compare=False, default=False)


class Scheduler:
    """A priority queue of callbacks in simulated time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._queue: list[_Event] = []
        self._seq = 0
        self.events_run = 0

    def at(self, at_s: float, key: str, run: Callable[[], None], label: str = "") -> _Event:
        self._seq += 1
        event = _Event(max(at_s, self.clock.now_s), key, self._seq, run, label)
        heapq.heappush(self._queue, event)
        return event

    def after(self, delay_s: float, key: str, run: Callable[[], None], label: str = "") -> _Event:
        return self.at(self.clock.now_s + delay_s, key, run, label)

    def run_next(self) -> _Event | None:
        """Advance the clock to the next event and run it (None when nothing is left)."""
        while self._queue:
            event = heapq.heappop(self._queue)
            if event.cancelled:
                continue
            self.clock.now_s = max(self.clock.now_s, event.at_s)  # code that ran may have spent time
            self.events_run += 1
            event.run()
            return event
        return None

    def next_at(self) -> float | None:
        while self._queue and self._queue[0].cancelled:
            heapq.heappop(self._queue)
        return self._queue[0].at_s if self._queue else None
