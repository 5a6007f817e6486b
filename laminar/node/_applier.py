"""The apply pipeline: committed log entries become store contents, events for listeners and acks.

For each committed entry, in log order: the state machine computes its effects, the store writes
them as one RocksDB batch (with the applied mark), then listeners are woken and clients get their
outcomes. Also the apply side of log compaction: checkpointing the store for a snapshot and
replacing it with one received from the leader.

Threads: the Raft thread hands each committed entry to `on_commit`, which queues it for the apply
thread. Apply has its own thread so that a big batch (or a costly topic program) never delays
heartbeats and votes: a node busy applying must not look dead to its peers. An entry of one
intention, when the apply thread is idle and no pipeline call is in flight, is applied by the Raft
thread itself: its stall is one program call at most, and a lone commit saves a thread handoff.
Both threads are started with the sandbox's stack size (the Raft thread inside
program_thread_stacks(), see _node.py); a program called from any other thread is handed to the
sandbox's own thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from laminar import limits
from laminar.node._entry import one_intention_at_most
from laminar.node._fail_stop import EXIT_APPLY_FAILED, EXIT_STORE_LOST, fail_stop
from laminar.node._metrics import NodeMetrics
from laminar.node.sandbox import start_program_thread
from laminar.node.state_machine import Outcome, StateMachine
from laminar.node.store import Store, StoreClosed, WriteSet
from laminar.v1 import laminar_pb2 as pb

log = logging.getLogger("laminar.node")

APPLY_SLOW_MS = 200  # an entry that takes longer than this to apply and store is logged
PublishFn = Callable[[dict[str, int]], None]  # newest consequence offset per topic written
DeliverFn = Callable[[list[Outcome]], None]  # outcomes of the intentions applied, to their clients
FailStopFn = Callable[[str, int], NoReturn]  # (why, exit status): log it and end the process
# Run once an entry is applied and stored, given its apply wall time in seconds (0.0: not measured, because the entry
# was applied before the hook was given, was found stored already, or held no intentions). The proposer's
# AfterApply takes one; the node layer may not import the Raft layer's name for it (tests/unit/test_layers.py).
AppliedHook = Callable[[float], None]


class Applier:
    """Applies committed entries in log order and keeps the store the state machine's only copy."""

    def __init__(
        self,
        node_id: int,
        store: Store,
        machine: StateMachine,
        metrics: NodeMetrics,
        publish: PublishFn,
        deliver: DeliverFn,
        stop_node: FailStopFn = fail_stop,
    ) -> None:
        self._node_id = node_id
        self._stop_node = stop_node
        self._store = store
        self._machine = machine
        self._metrics = metrics
        self._publish = publish
        self._deliver = deliver
        # Items: an entry to apply, a callable to run once everything queued before it is applied
        # (read barriers), or None to stop.
        self._queue: queue.Queue[tuple[int, bytes] | Callable[[], None] | None] = queue.Queue(
            maxsize=limits.APPLY_QUEUE_ENTRIES_MAX
        )
        # Hooks to run once an entry is applied (`when_applied`), by its Raft index; guarded by _hooks_lock.
        self._hooks_lock = threading.Lock()
        self._hooks: dict[int, list[AppliedHook]] = {}
        self._handed_index = 0  # the last entry on_commit took (the Raft thread)
        self._applied_index = 0  # the last entry applied and stored (either thread)
        self._last_apply_s = 0.0  # how long that entry took to apply and store (0.0: not measured)
        # Programs run on this thread: it gets their stack size explicitly (see laminar/node/sandbox/_threads.py).
        self._thread = start_program_thread(self._loop, "apply")

    def queued_entries(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        """Apply what is queued, then stop the apply thread (after the Raft thread has stopped)."""
        self._queue.put(None)
        self._thread.join()

    # ---- the Raft thread ------------------------------------------------------------------------

    def on_commit(self, raft_index: int, payload: bytes) -> None:
        """A committed entry, in log order (the port's ApplyFn)."""
        self._handed_index = raft_index
        if (
            self._queue.unfinished_tasks == 0
            # Pipelines: any entry may end calls by log time and run an on_result for each (up to
            # CALL_EXPIRIES_PER_ENTRY_MAX): not on the Raft thread. (Read while the apply thread is idle.)
            and not self._machine.calls_in_flight
            and (entry := one_intention_at_most(payload, limits.APPLY_INLINE_BYTES_MAX)) is not None
        ):
            # Nothing is queued or being applied (only this thread queues entries), so applying
            # here keeps the order, and a lone commit skips a thread handoff: about 0.1 ms of a
            # sequential commit on 3 nodes and 2 cores. One intention only, so the Raft thread
            # stalls for at most one program call's budget (pysyncobj would apply everything here).
            # A failure stops the node, as in the apply thread (the Raft adapter sees to it).
            self._apply_now(raft_index, payload, entry)
            return
        self._queue.put((raft_index, payload))  # blocks only when the apply thread is far behind

    def when_applied(self, hook: AppliedHook) -> None:
        """Run `hook` once the entry on_commit took last is applied and stored: now, if it is. Called on the Raft
        thread right after on_commit (the engine reports a proposal done there, when it is only queued): the
        proposer counts an entry in flight until this runs, so that what a new frame waits behind, the apply
        queue included, stays within its bounds; and it learns the apply's pace from the time it is given."""
        with self._hooks_lock:
            if self._applied_index < self._handed_index:
                self._hooks.setdefault(self._handed_index, []).append(hook)
                return
            apply_s = self._last_apply_s if self._applied_index == self._handed_index else 0.0
        hook(apply_s)

    def _applied(self, raft_index: int, apply_s: float = 0.0) -> None:
        """After an entry is applied and stored (or found stored already): the hooks waiting for it, given how long
        its apply took (apply_s; 0.0 when not measured)."""
        with self._hooks_lock:
            self._applied_index = max(self._applied_index, raft_index)
            self._last_apply_s = apply_s
            hooks = self._hooks.pop(raft_index, None)
        for hook in hooks or ():
            hook(apply_s)

    # ---- waiting for the store (any thread) -------------------------------------------------------

    def wait_applied(self, timeout_s: float) -> bool:
        """Wait until everything handed to the apply thread so far is applied and stored. Raft
        reports an entry done once it is in the apply queue, so a marker queued now runs after it."""
        deadline = time.monotonic() + timeout_s
        applied = threading.Event()
        try:
            self._queue.put(applied.set, timeout=timeout_s)
        except queue.Full:
            return False
        return applied.wait(max(0.0, deadline - time.monotonic()))

    # ---- the apply thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if isinstance(item, tuple):
                    self._apply_now(*item)
                else:
                    item()
            except BaseException:  # noqa: BLE001 -- fail_stop logs it and ends the process
                where = item[0] if isinstance(item, tuple) else "(read barrier)"
                fail_stop(f"applying raft entry {where} failed", EXIT_APPLY_FAILED)
            finally:
                self._queue.task_done()

    def _apply_now(self, raft_index: int, payload: bytes, entry: pb.IntentionBatch | None = None) -> None:
        """`entry`: the payload decoded already (one_intention_at_most did), or None."""
        started = time.perf_counter()
        applied = self._machine.apply(raft_index, payload, entry)
        if applied is None:
            self._applied(raft_index)
            return
        self._store.commit(applied.writes, applied.mark)
        # Workers' streams read the leases: an entry that granted or released one wakes them as events do.
        self._publish(applied.topic_offsets if not applied.calls.granted else {**applied.topic_offsets, "*calls": 0})
        self._deliver(applied.outcomes)
        elapsed_s = time.perf_counter() - started
        self._applied(raft_index, elapsed_s)
        metrics = self._metrics
        metrics.apply_latency.observe(elapsed_s)
        intentions = applied.intentions
        if intentions:
            metrics.batch_intentions.observe(intentions)
            metrics.intentions.inc(intentions)
        if applied.events:
            metrics.events.inc(applied.events)
        if applied.program_errors:
            metrics.observe_program_errors(applied.program_errors)
        calls = applied.calls
        metrics.observe_calls(calls.issued, calls.redeliveries, calls.results)
        if elapsed_s * 1000 > APPLY_SLOW_MS:
            log.warning(
                "node %d: slow apply: raft entry %d (%d intentions, %d events) took %.0f ms (threshold %d ms)",
                self._node_id,
                raft_index,
                intentions,
                applied.events,
                elapsed_s * 1000,
                APPLY_SLOW_MS,
            )

    # ---- the apply side of snapshots (the Raft port's SnapshotHooks; its thread or its builder) ----

    def drained_applied_index(self) -> int:
        """The Raft index the store holds, once everything queued is applied."""
        self._queue.join()
        return self._machine.applied_mark.raft_index

    def checkpoint(self, target_dir: str, raft_index: int) -> None:
        """A RocksDB checkpoint of the store as applied through raft_index, into target_dir."""
        self._queue.join()  # the store must hold every entry through raft_index
        # Entries without intentions (no-ops) do not move the store's mark; a snapshot at
        # `raft_index` must say it holds everything through it, or a restart would reinstall it.
        self._store.commit(WriteSet(), self._machine.skip(raft_index))
        self._store.checkpoint(target_dir)

    def install_snapshot(self, checkpoint_dir: str) -> None:
        """Replace the store with a checkpoint received from the leader."""
        self._queue.join()
        try:
            self._store.replace_with(checkpoint_dir)
        except StoreClosed as e:  # the old store is closed, the new one did not open: serve nothing more
            self._stop_node(f"node {self._node_id}: {e}", EXIT_STORE_LOST)
        self._machine.reload()
        log.info("node %d: store replaced by a snapshot at %s", self._node_id, self._machine.applied_mark)
        self._publish({"*": 0})
