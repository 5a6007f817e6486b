"""Packs pending client mutations into log entries and proposes them at once.

Sessions hand over whole validated frames. One thread takes everything pending (up to a batch
bound) and proposes it as one entry without waiting for a timer, so a lone message goes out
immediately while a busy leader builds bigger entries. At most ENTRIES_INFLIGHT_MAX entries are
proposed and not yet applied: waiting for one is what lets the next batch grow (group commit).
When nothing is in flight and nobody is proposing, the session's own thread proposes what it
offers, which saves a lone commit the handoff to the proposer thread. Either way one proposal at
a time takes from the queue and proposes (`_proposing`), so entries keep the queue's order.

Fairness: the queue is one FIFO per session (a Proposal's `session`), and an entry takes frames
from the sessions in turn, one frame each per round. A session that queued many big frames thus
delays another session's small frame by about one entry, not by all of its frames. A session's
own frames keep their order (its nonces go into the log in sequence), so nothing the state
machine's nonce checks rely on changes: only frames of different sessions are interleaved, and
those never depended on each other's order (an older session of the same client id is closed,
and its stale frames dropped, when a newer one opens).

Log time: every entry is stamped with this node's wall clock (`clock_ms`) as it is built. A leader
that has proposed nothing for LOG_TIME_TICK_MS proposes a time tick (an entry of the stamp alone,
7 bytes of payload), so that log time keeps moving on an idle cluster: at most one entry per
LOG_TIME_TICK_MS, only while nothing else is proposed, never more than one in flight.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from laminar import limits
from laminar.node._entry import encode_entry, encode_time
from laminar.node.raft._port import RaftPort

log = logging.getLogger("laminar.proposer")

ClockMs = Callable[[], int]  # wall-clock time in ms since the Unix epoch


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Proposal:
    run: bytes  # laminar.node._entry.encode_run(...) output
    intentions: int
    is_current: Callable[[], bool]  # False once its session is gone: it is dropped, not proposed
    on_received: Callable[[], None]  # called once the entry holding it is handed to the log
    # Called instead of on_received when the log refused the entry (pysyncobj's command queue was
    # full, or this node was no longer the leader when its tick took the command): nothing of it
    # is in the log, so its client must not be told `received`; it must resend.
    on_dropped: Callable[[], None] = lambda: None
    # Whose frame this is (the session object): one session's proposals keep their order, and
    # sessions take turns in each entry. None: one shared turn, in offer order.
    session: object = None


class Proposer:
    def __init__(self, engine: RaftPort, clock_ms: ClockMs | None = wall_clock_ms) -> None:
        """clock_ms=None: entries carry no time and no time ticks are proposed (tests of batching alone)."""
        self._engine = engine
        self._clock_ms = clock_ms
        self._proposed_at_s = time.monotonic()  # when an entry was last proposed (for time ticks)
        # One FIFO per session with proposals pending, and the sessions' turn order: each session
        # with a non-empty FIFO is in _turns exactly once.
        self._queues: dict[object, collections.deque[Proposal]] = {}
        self._turns: collections.deque[object] = collections.deque()
        self._pending = 0  # proposals queued, all sessions
        self._pending_intentions = 0
        self._pending_bytes = 0
        self._inflight_entries = 0
        self._proposing = False  # a thread has taken a batch and not yet handed it to the engine
        self._offer_waiters = 0  # sessions waiting in offer() for room in the queue
        self._lock = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="proposer", daemon=True)
        self._thread.start()

    def offer(self, proposal: Proposal, timeout_s: float) -> bool:
        """Queue a proposal; False if the queue stayed full for timeout_s (backpressure)."""
        with self._lock:
            self._offer_waiters += 1
            try:
                fits = self._wait_for_room(proposal, timeout_s)
            finally:
                self._offer_waiters -= 1
            if not fits or self._stopped:
                return False
            self._enqueue(proposal)
            self._pending_intentions += proposal.intentions
            self._pending_bytes += len(proposal.run)
            if self._proposing or self._inflight_entries:
                self._lock.notify_all()  # the proposer thread takes it, batched with what follows
                return True
            batch = self._take()
            self._proposing = True
        self._propose_and_release(batch)
        return True

    def _enqueue(self, proposal: Proposal) -> None:
        """Under the lock: append to its session's FIFO; a session new to the queue takes the last turn."""
        queue = self._queues.get(proposal.session)
        if queue is None:
            queue = self._queues[proposal.session] = collections.deque()
            self._turns.append(proposal.session)
        queue.append(proposal)
        self._pending += 1

    def _wait_for_room(self, proposal: Proposal, timeout_s: float) -> bool:
        """Under the lock: wait until the proposal fits in the queue (or the proposer stops)."""
        return self._lock.wait_for(
            lambda: (
                self._stopped
                or (
                    self._pending_intentions + proposal.intentions <= limits.PROPOSAL_QUEUE_INTENTIONS_MAX
                    # A frame larger than the bound still goes in alone, once the queue is empty.
                    and (
                        not self._pending or self._pending_bytes + len(proposal.run) <= limits.PROPOSAL_QUEUE_BYTES_MAX
                    )
                )
            ),
            timeout_s,
        )

    def pending_intentions(self) -> int:
        """Intentions offered and not yet proposed (a gauge; read without the lock)."""
        return self._pending_intentions

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                ready = self._lock.wait_for(
                    lambda: (
                        self._stopped
                        or (
                            self._pending > 0
                            and not self._proposing
                            and self._inflight_entries < limits.ENTRIES_INFLIGHT_MAX
                        )
                    ),
                    self._tick_wait_s(),
                )
                if self._stopped:
                    return
                if not ready:
                    if not self._tick_due():
                        continue
                    batch = []  # a time tick
                else:
                    batch = self._take()
                self._proposing = True
                self._lock.notify_all()
            if batch:
                self._propose_and_release(batch)
            else:
                self._propose_tick()

    def _tick_wait_s(self) -> float | None:
        """How long the proposer thread may sleep before a time tick may be due (None: never)."""
        if self._clock_ms is None:
            return None
        since_s = time.monotonic() - self._proposed_at_s
        return max(limits.LOG_TIME_TICK_MS / 1000 - since_s, limits.LOG_TIME_TICK_MS / 10_000)

    def _tick_due(self) -> bool:
        """Whether to propose a time tick now (under the lock): this node leads, and nothing was
        proposed for LOG_TIME_TICK_MS and nothing is queued, being proposed or in flight."""
        idle_s = time.monotonic() - self._proposed_at_s
        return (
            self._clock_ms is not None
            and idle_s * 1000 >= limits.LOG_TIME_TICK_MS
            and not (self._pending or self._proposing or self._inflight_entries)
            and self._engine.is_leader()
        )

    def _propose_tick(self) -> None:
        assert self._clock_ms is not None
        try:
            with self._lock:
                self._inflight_entries += 1
                self._proposed_at_s = time.monotonic()
            self._engine.propose(encode_time(self._clock_ms()), self._entry_done)
        finally:
            with self._lock:
                self._proposing = False
                self._lock.notify_all()

    def _propose_and_release(self, batch: list[Proposal]) -> None:
        try:
            if batch:
                self._propose(batch)
        finally:
            with self._lock:
                self._proposing = False
                self._wake_proposer()

    def _take(self) -> list[Proposal]:
        """Under the lock: one entry's frames, one per session per round, in turn order. A session
        whose next frame does not fit in this entry keeps its place at the front for the next one."""
        batch: list[Proposal] = []
        intentions = size = 0
        waiting: list[object] = []  # sessions whose next frame did not fit, in turn order
        while self._turns:
            session = self._turns.popleft()
            queue = self._queues[session]
            head = queue[0]
            if batch and (
                intentions + head.intentions > limits.BATCH_INTENTIONS_MAX
                or size + len(head.run) > limits.BATCH_BYTES_MAX
            ):
                waiting.append(session)
                continue
            queue.popleft()
            self._pending -= 1
            self._pending_intentions -= head.intentions
            self._pending_bytes -= len(head.run)
            if queue:
                self._turns.append(session)
            else:
                del self._queues[session]
            if not head.is_current():
                continue
            batch.append(head)
            intentions += head.intentions
            size += len(head.run)
        self._turns.extendleft(reversed(waiting))
        assert len(self._turns) == len(self._queues), (len(self._turns), len(self._queues))
        assert self._pending >= 0 and (self._pending == 0) == (not self._queues)
        return batch

    def _propose(self, batch: list[Proposal]) -> None:
        payload = encode_entry([p.run for p in batch], self._clock_ms() if self._clock_ms is not None else 0)
        # _take packs at most BATCH_BYTES_MAX, or one frame that gRPC bounded: larger would stall heartbeats.
        assert len(payload) <= limits.RAFT_ENTRY_BYTES_MAX, len(payload)
        with self._lock:
            self._inflight_entries += 1
            self._proposed_at_s = time.monotonic()
        # A refusal reaches on_result before the `received` acks would go out: at once when
        # pysyncobj's queue is full, or in the tick that takes the command, before that tick runs
        # the after_tick task. An entry the log took gets its result only when it applies, later.
        fate = {"acked": False, "refused": False}  # written and read in that order: see above

        def on_result(applied: bool) -> None:
            if not applied and not fate["acked"]:
                fate["refused"] = True
            self._entry_done(applied)

        self._engine.propose(payload, on_result)
        if fate["refused"]:
            self._drop(batch)
            return

        def received() -> None:
            fate["acked"] = True
            if fate["refused"]:
                self._drop(batch)
                return
            for proposal in batch:
                proposal.on_received()

        # The `received` acks go out from the tick thread once it has taken the entry into the log
        # (and sent it to the followers). Sent from here, they woke the session writers at the very
        # moment the tick thread needed the interpreter: 0.1-0.15 ms more per lone commit.
        self._engine.after_tick(received)

    def _drop(self, batch: list[Proposal]) -> None:
        log.warning("the log refused an entry of %d client runs (command queue full or leadership lost)", len(batch))
        for proposal in batch:
            proposal.on_dropped()

    def _entry_done(self, applied: bool) -> None:
        if not applied:
            log.debug("an entry was not applied (leadership changed); its clients resend")
        with self._lock:
            self._inflight_entries -= 1
            self._wake_proposer()

    def _wake_proposer(self) -> None:
        """Under the lock: the proposer thread may take a batch now, if there is one, and offers may
        find room. With nothing pending and no offer waiting, nobody waits for what changed: a lone
        commit woke the proposer thread twice for nothing (when proposed and when applied), each
        time as the commit path needed the GIL."""
        if self._pending or self._offer_waiters:
            self._lock.notify_all()
