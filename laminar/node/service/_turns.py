"""Heavy client frames take turns on the event loop; a light frame never waits for them.

Every session's reader runs on the one event loop, and taking in a frame (decode it, check each mutation, cut
it into runs) is Python work between two awaits. Readers whose frames arrived together run one after another,
so a session with one put waited for every other session's frame: 32 sessions with a frame of 256 puts each
ready held a well-behaved client's one put for 80-100 ms (bench/results/hostile.md,
slow_ack_readers). A frame over FRAME_LIGHT_BYTES_MAX or FRAME_LIGHT_MUTATIONS_MAX is taken in only in its
turn: one heavy frame at a time, and the next heavy reader is let go by a callback of the loop's next
iteration, so whatever became ready meanwhile (light frames, acks to write, gRPC's completions) runs between
two heavy frames. Heavy readers go in the order they asked; each asks for one frame at a time, so that is
round robin between heavy sessions. Throughput is not traded: the turn only orders work the loop does anyway.
"""

from __future__ import annotations

import asyncio
import collections


class FrameTurns:
    """One heavy frame at a time on the event loop (not thread-safe: the loop's readers only)."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def waiting(self) -> int:
        return len(self._waiting)

    async def take(self) -> None:
        """Return once this reader holds the turn; it must `release` it when its frame is taken in."""
        if not self._held:
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the turn was handed over as this reader was cancelled: hand it on
            raise

    def release(self) -> None:
        """Hand the turn on at the loop's next iteration (after what became ready meanwhile)."""
        assert self._held, "release without take"
        asyncio.get_running_loop().call_soon(self._hand_on)

    def _hand_on(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():  # a cancelled reader's waiter is skipped
                waiter.set_result(None)
                return
        self._held = False
