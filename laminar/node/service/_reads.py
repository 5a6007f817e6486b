"""Store reads for the event loop's streams (listeners, group members, workers), in batches on a pool of their own.

Every read the loop's streams ask for in one turn of the loop goes to a read thread as one job (at most
LISTEN_READ_BATCH_MAX reads, split over the read threads), and its results come back in one wake-up of the loop.
`run_in_executor` per read cost the loop, per read, a concurrent Future (a Condition and its RLock), a chained
asyncio future, a `add_done_callback` under the concurrent Future's lock while a read thread may hold it, and a
write to the loop's self-pipe: when 2,000 never-reading listeners were cancelled at once, 39% of the loop's time
went there (py-spy of the leader, mostly waiting for that lock while the machine's cores were taken), and a good
client's session, on the same loop, waited 0.5-1.4 s for its turn. A read whose stream ended before its batch
left (its future was cancelled) is not run at all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
# One read: the function, its arguments, and the loop's future for its result.
_Read = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class StoreReads:
    """`await reads(fn, *args)`: fn(*args) on a read thread, batched with the other reads of this turn of the loop.
    Event loop only (but `stop`)."""

    def __init__(self, threads: int, batch_max: int, name: str = "listen") -> None:
        assert threads >= 1 and batch_max >= 1
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._threads = threads
        self._batch_max = batch_max
        self._queued: list[_Read] = []
        self._flush_due = False
        self.jobs = 0  # batches handed to the read threads, each one wake-up of the loop when done

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queued.append((fn, args, future))
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand this turn's reads to the read threads: as few jobs as keep every thread busy, none over batch_max."""
        self._flush_due = False
        queued = [read for read in self._queued if not read[2].done()]  # a cancelled stream's read is not run
        self._queued = []
        if not queued:
            return
        per_job = min(self._batch_max, -(-len(queued) // self._threads))
        for start in range(0, len(queued), per_job):
            batch = queued[start : start + per_job]
            self.jobs += 1
            try:
                self._pool.submit(_run, loop, batch)
            except RuntimeError as stopped:  # the pool is shut down: the node is stopping
                _deliver(batch, [(False, stopped)] * len(batch))

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _run(loop: asyncio.AbstractEventLoop, batch: list[_Read]) -> None:
    """On a read thread: every read of the batch, then one wake-up of the loop with all their outcomes."""
    outcomes: list[tuple[bool, Any]] = []
    for fn, args, _ in batch:
        try:
            outcomes.append((True, fn(*args)))
        except Exception as e:  # noqa: BLE001 - the reader's own error, raised in its stream
            outcomes.append((False, e))
    try:
        loop.call_soon_threadsafe(_deliver, batch, outcomes)
    except RuntimeError:  # the loop is closed: the node is stopping
        pass


def _deliver(batch: list[_Read], outcomes: list[tuple[bool, Any]]) -> None:
    for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():  # its stream ended meanwhile
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
