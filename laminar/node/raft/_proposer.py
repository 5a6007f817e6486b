"""Packs pending client mutations into log entries and proposes them at once.

Sessions hand over validated frames (one over RUN_BYTES_MAX or RUN_INTENTIONS_MAX as several runs
of consecutive nonces: service/_sessions.py). One thread takes what is pending and proposes it as
one entry without waiting for a timer, so a lone message goes out immediately while a busy leader
builds bigger entries. When nothing is in flight and nobody is proposing, the session's own thread
proposes what it offers, which saves a lone commit the handoff to the proposer thread. Either way
one proposal at a time takes from the queues and proposes (`_proposing`), so entries keep the order
they were taken in.

In flight: what is proposed and not yet applied is bounded three ways, ENTRIES_INFLIGHT_MAX
entries, ENTRIES_INFLIGHT_BYTES_MAX payload bytes and ENTRIES_INFLIGHT_INTENTIONS_MAX intentions
weighted by their apply cost (`Proposal.cost_intentions`); and topic creates and destroys by time: no
more of them than the apply thread, at its measured pace, applies in ENTRIES_INFLIGHT_TOPIC_APPLY_MS_MAX
(raft/_pace.py; entries, and the runs sessions cut frames into, hold half of it). "Applied" means stored by the apply
thread (`after_apply`), not handed to its queue, which is when the engine reports an entry done: counting
only to the queue let a frame wait behind up to APPLY_QUEUE_ENTRIES_MAX more entries than the bounds
say. Entries apply in log order, so what is in flight when a frame is proposed is what that frame
waits behind: the bounds keep that to a fraction of a second of work, and everything else waits in
the per-session queues below, where each session gets its turn. Waiting for in-flight entries is
also what lets the next batch grow (group commit). A frame over the bounds goes when nothing else is
in flight, alone.

Small entries wait for the log to commit what is in it (Nagle's rule, RFC 896, for entries): while an
entry is being replicated (proposed, its commit not yet known here), another entry is proposed only once
what is queued would fill at least a fraction of one (PIPELINED_ENTRY_BYTES_MIN or
PIPELINED_ENTRY_INTENTIONS_MIN); less waits until no entry is being replicated, and goes then, with
whatever joined it. An entry costs the leader about a millisecond of CPU whatever it holds (measured:
1.3 ms in its tick thread and 0.5 ms on the gRPC loop per sequential write), so writers that each send a
put now and then, proposed one entry each up to ENTRIES_INFLIGHT_MAX deep, spent the CPU on entries and
queued behind them: at 3,000 puts/s from two open-loop senders, commits took 26 ms at the median.
Waiting instead for the entry being replicated (a few ms) packs them. It waits for the commit, not for
the apply: the round trip (append, send, the followers' fsync and replies) is what an entry's cost buys
and what batching saves, while apply costs by the intention, so the next entry's round trip runs beside
the previous entry's apply instead of after it (measured in the open loop at 6,000 puts/s: an entry every
8 ms, 2-2.5 of them the apply, when the next one waited for it; bench/results/etcd.md). A lone write finds
nothing in flight and goes at once, as before; large frames (pipelined bulk writers) still fill
ENTRIES_INFLIGHT_MAX entries in flight.

Fairness by cost: weighted fair queueing (Demers, Keshav, Shenker, SIGCOMM 1989), equal weights, with
a virtual time that follows the work taken. A frame is tagged as it is queued with a start, the later
of the virtual time and its session's previous finish, and a finish, its start plus its cost (payload
bytes, plus its weighted intentions at ENTRIES_INFLIGHT_BYTES_MAX / ENTRIES_INFLIGHT_INTENTIONS_MAX
bytes each: its share of the in-flight budget). Frames are taken in (finish, start) order, and each
frame taken moves the virtual time on by its cost divided by the sessions with frames queued (what
each of them would have had of that work, shared equally), and at least to the frame's start. A
session that just had 3 MiB taken finishes its next frame 3 MiB later; another session's 100-byte
put finishes 100 bytes after the virtual time, so it goes first, into the next entry (and an entry
takes another session's frame only if it starts within its first frame's turn, so the put is not
packed with heavier frames whose apply it would wait for before its commit). Start-time fair
queueing (frames in start order, the virtual time at the start of the frame taken last) had a
light session's next put wait for one frame of every big sender: with eight sessions' 1 MiB puts
tagged at one virtual time, the time stayed there while their eight heads were taken one by one,
and the good client's puts in the hostile suite waited 1-1.5 s each round (bench/results/hostile.md).
Over time, sessions with frames queued share the log equally by cost, whatever their frame sizes.
When nothing is queued or in flight, the virtual time moves to the largest finish: the past is
forgotten. A session's own frames keep their order (its nonces go into the log in sequence), so
nothing the state machine's nonce checks rely on changes: only frames of different sessions are
interleaved, and those never depended on each other's order (an older session of the same client id
is closed, and its stale frames dropped, when a newer one opens).

The light lane: a light frame (at most LIGHT_LANE_FRAME_BYTES_MAX and LIGHT_LANE_FRAME_INTENTIONS_MAX) of a light
session (nothing of it in flight when the frame was queued, but in the lane: a client that puts now and then) may be
proposed past the bounds above, when the log is busy with pipelined entries (at least PIPELINED_ENTRY_BYTES_MIN or
PIPELINED_ENTRY_INTENTIONS_MIN in flight) and the regular rules hold it, in an entry of light frames only (up to
LIGHT_LANE_ENTRY_BYTES_MAX, LIGHT_LANE_ENTRY_INTENTIONS_MAX), with at most ENTRIES_INFLIGHT_LIGHT_LANE_MAX such
entries in flight. The fair queue puts a light session's put first in line, but the line moved only as in-flight
entries applied: in the hostile suite the well-behaved client's put waited for a free slot behind three entries of
others' 256-put frames (slow_ack_readers), or for the one 1 MiB entry in flight to apply (big_frames: 25 ms at the
median, 230 ms at p99), and then for its own entry's round. In the lane it goes at once behind them: it still waits
for what is in flight (log order), not also for it to apply first. What a light put waits behind is thus bounded by
the in-flight bounds (or one frame over them), and the lane's own entry. Small writers alone are not changed: with
only small entries in flight, Nagle's rule holds (the lane needs a busy log). A session's share (its finish tag) is
not asked: after its put was taken, the virtual time moves on only as other frames are taken, so while one entry
stalls the log its next put would start after the virtual time and miss the lane. Nor are pipelining writers' small
frames light: such a writer has frames in flight whenever it sends the next (the Python client keeps up to
CLIENT_FRAMES_INFLIGHT_MAX); without that rule, the pipelined throughput cell's small frames made the log shared
(below), and it lost a third of its throughput. Its frames in the lane, though, leave a session light, and the lane
holds up to ENTRIES_INFLIGHT_LIGHT_LANE_MAX entries: a light client's put waits behind what is in flight, but not for
its own previous put to apply. When any frame in flight made a session heavy and the lane held one entry, a light
client that puts every 50 ms, once one put was slow (a loaded machine: 150-250 ms), queued its next put behind that
one by the regular rules, then behind the in-flight bounds refilled, and so on: in hostile big_frames, the slowest 5 %
of the good client's puts spent 41 % of their time there (from the session's check to the proposal; 0.3 ms at the
median), always with its previous put still in flight. A pipelining writer still leaves the lane at its first frame
over the light bounds (its next frames then find it in flight), and light frames are few bytes whatever their number.

A shared log: the lane spares a light put the wait for a slot, not the wait behind the in-flight bounds (1 MiB of
others' puts took 25-40 ms to apply at the median on a quiet machine, 100+ at p99). So for LIGHT_SESSION_RECENT_MS
after a light frame was taken into a busy log, entries in flight are bounded by the smaller
ENTRIES_INFLIGHT_SHARED_BYTES_MAX and ENTRIES_INFLIGHT_SHARED_INTENTIONS_MAX (a frame over them goes alone when nothing
else is in flight, as before): bulk writers keep less ahead of the light client's next put. A bulk writer alone, or
bulk writers among themselves, keep the full bounds. The window is time, not entries: a light client puts now and
then, and the bound must already be small when its next put comes. A light frame renews the window when it finds the
log busy, or when it came LIGHT_SESSION_GAP_MS_MIN or more after its session's previous frame (paced, below, the log
is seldom busy when the light put comes). A light client (a session whose last LIGHT_SESSION_STREAK_MIN frames taken
were all light, each that long after the one before) makes the log shared at each light frame, busy or not: bulk
writers that start beside it find the log shared at their first frame. When only a light frame that found the log
busy opened the window, the first bulk frames went unpaced before the light client's next put came (hostile
big_frames: two 1 MiB entries in the attack's first 0.2 s, while the leader also took in the 8 sessions' first 3 MiB
frames, and the good puts of that time waited 70-175 ms). A pipelining writer's first frames are light too (its
topic's create, a warm-up put), so one light frame is not enough: its next frames find it in flight. Small frames
sent back to back (a pipelining or open-loop sender, each frame alone in flight when the log is quick) neither make
nor keep the log shared: when they did, the open loop's senders paced each other's larger frames at each lull.

Paced: a 1 MiB put is one entry, over the shared bounds, so it goes alone: a light put waits behind at most one, but
bulk writers that keep the log full keep the machine full too (2 cores, 3 nodes, one disk: at 10+ MiB/s of 1 MiB
puts a follower's fsync took 120-150 ms and a 1 MiB apply 25-55 ms, holding the GIL), and every step of the light
put's round (the leader's event loop, its tick, the followers' fsync, the apply) waited on that. So while the log is
shared, frames over a light frame's bounds are paced: each entry's cost of them (`cost_bytes`) puts off the next such
frame by that cost at ENTRIES_SHARED_BYTES_PER_S_MAX, over all sessions (the fair queue shares it; a bound per session
would let N bulk writers take N times it), with no credit kept from idle time; and such a frame also waits for its own
cost at that rate from when it was queued, so the first frame of a burst waits its turn too (going at once, the first
1 MiB entry of hostile big_frames replicated and applied while the leader took in 24-48 MiB of the burst's frames and
the attacker sent them, on the same 2 cores: the good puts behind it took 125-175 ms). Frames held back wait in their
queues, and their sessions' readers stop at SESSION_UNCOMMITTED_BYTES_MAX (HTTP/2 slows the senders): flow control,
nothing dropped or refused. Frames within a light frame's bounds are never held, whatever their session has in
flight. Bulk writers alone, or among themselves, are never paced: the log is shared only while a light client puts.

Log time: every entry is stamped with this node's wall clock (`clock_ms`) as it is built. A leader
that has proposed nothing for LOG_TIME_TICK_MS proposes a time tick (an entry of the stamp alone,
7 bytes of payload), so that log time keeps moving on an idle cluster: at most one entry per
LOG_TIME_TICK_MS, only while nothing else is proposed, never more than one in flight.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from laminar import limits
from laminar.node._entry import encode_entry, encode_time
from laminar.node.raft._pace import TopicPace
from laminar.node.raft._port import RaftPort

log = logging.getLogger("laminar.proposer")

ClockMs = Callable[[], int]  # wall-clock time in ms since the Unix epoch
# Runs a callable once the entry the log just reported done is applied and stored: the engine reports an entry
# done as soon as it is handed to the apply queue (node: Applier.when_applied). The callable is given the entry's
# apply wall time in seconds (0.0: not measured, e.g. applied before). Without one: at once, unmeasured.
AppliedHook = Callable[[float], None]
AfterApply = Callable[[AppliedHook], None]


def _at_once(done: AppliedHook) -> None:
    done(0.0)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def cost_bytes(run_bytes: int, cost_intentions: int) -> int:
    """A frame's cost in the fair queue: its bytes, and each weighted intention at its share of the
    in-flight budget (so that filling either bound costs the same)."""
    return run_bytes + cost_intentions * (limits.ENTRIES_INFLIGHT_BYTES_MAX // limits.ENTRIES_INFLIGHT_INTENTIONS_MAX)


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
    # sessions share the log by cost. None: one shared session, in offer order.
    session: object = None
    # Its intentions weighted by apply cost (a put is 1; limits.INTENTION_COST_*): what it counts
    # against ENTRIES_INFLIGHT_INTENTIONS_MAX and in its session's share. 0: one per intention.
    cost_intentions: int = 0
    # Of its intentions, topic creates and destroys: in flight they are also bounded by time (raft/_pace.py).
    topic_intentions: int = 0

    def weighted_intentions(self) -> int:
        return self.cost_intentions or self.intentions


@dataclass(frozen=True)
class _Cost:
    """What an entry counts in flight."""

    size: int  # payload bytes of its runs
    intentions: int
    weighted: int  # intentions weighted by apply cost
    topic: int  # topic creates and destroys
    lane: bool = False  # an entry of the light lane
    sessions: tuple[object, ...] = ()  # each frame's session


_NO_COST = _Cost(0, 0, 0, 0)  # a time tick's


@dataclass
class _Tagged:
    start: int
    finish: int
    proposal: Proposal
    light: bool  # it may go in the light lane: a light frame, nothing of its session in flight when it was queued
    queued_s: float = 0.0  # time.monotonic() when it was queued (a shared log's pace holds a bulk frame from then)


def _light_sized(proposal: Proposal) -> bool:
    """Whether the frame is within a light frame's bounds (LIGHT_LANE_FRAME_*)."""
    return (
        len(proposal.run) <= limits.LIGHT_LANE_FRAME_BYTES_MAX
        and proposal.weighted_intentions() <= limits.LIGHT_LANE_FRAME_INTENTIONS_MAX
    )


# What the proposer thread may take next (`Proposer._ready`): an entry by the regular rules, or one of the light lane.
_ENTRY = "entry"
_LANE = "lane"


class Proposer:
    def __init__(
        self, engine: RaftPort, clock_ms: ClockMs | None = wall_clock_ms, after_apply: AfterApply = _at_once
    ) -> None:
        """clock_ms=None: entries carry no time and no time ticks are proposed (tests of batching alone).
        after_apply: see AfterApply; an entry counts in flight until it runs what it is given."""
        self._engine = engine
        self._after_apply = after_apply
        self._clock_ms = clock_ms
        self._proposed_at_s = time.monotonic()  # when an entry was last proposed (for time ticks)
        # One FIFO per session with proposals pending, and a heap of each FIFO's head tags:
        # (finish, start, sequence, session), the sequence breaking ties in queueing order.
        self._queues: dict[object, collections.deque[_Tagged]] = {}
        self._heads: list[tuple[int, int, int, object]] = []
        self._sequence = itertools.count()
        self._finish: dict[object, int] = {}  # each session's last finish tag, while it matters
        self._virtual = 0  # the virtual time: the work taken, shared among the sessions that had frames queued
        self._pending = 0  # proposals queued, all sessions
        self._pending_intentions = 0
        self._pending_bytes = 0
        self._inflight_entries = 0
        self._replicating_entries = 0  # of them, proposed and not yet reported by the log (committed or not)
        self._inflight_bytes = 0
        self._inflight_intentions = 0  # weighted, as cost_intentions
        self._inflight_topic = 0  # of them, topic creates and destroys (Proposal.topic_intentions)
        self._inflight_lane = 0  # of the entries, the light lane's
        # Frames in flight by session, outside the light lane (a light session has none: see "The light lane").
        self._inflight_frames: dict[object, int] = {}
        self._shared_until_s = 0.0  # time.monotonic() until which the log is shared (see "A shared log" above)
        # Light frames taken in a row, by session (a light client's, see "A shared log" above); a heavy frame ends it.
        self._light_streaks: dict[object, tuple[int, float]] = {}  # (light frames, when the last was queued)
        self._paced_until_s = 0.0  # time.monotonic() before which a shared log takes no frame over the light bounds
        self._pace = TopicPace()  # the apply thread's measured pace of topic ops: their in-flight bound in time
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
            if self._proposing or self._inflight_entries:
                self._lock.notify_all()  # the proposer thread takes it, batched with what follows
                return True
            batch = self._take()
            self._proposing = True
        self._propose_and_release(batch)
        return True

    def _enqueue(self, proposal: Proposal) -> None:
        """Under the lock: tag the proposal and append it to its session's FIFO."""
        session = proposal.session
        start = max(self._virtual, self._finish.get(session, 0))
        finish = start + cost_bytes(len(proposal.run), proposal.weighted_intentions())
        self._finish[session] = finish
        queue = self._queues.get(session)
        if queue is None:
            queue = self._queues[session] = collections.deque()
            heapq.heappush(self._heads, (finish, start, next(self._sequence), session))
        # Nothing of its session in flight but in the lane: see "The light lane".
        light = session not in self._inflight_frames and _light_sized(proposal)
        queue.append(_Tagged(start, finish, proposal, light, time.monotonic()))
        self._pending += 1
        self._pending_intentions += proposal.intentions
        self._pending_bytes += len(proposal.run)

    def _wait_for_room(self, proposal: Proposal, timeout_s: float) -> bool:
        """Under the lock: wait until the proposal fits in the queue (or the proposer stops). A session
        with nothing queued always gets in: the shared bound must not let a big sender's frames keep
        another session's one frame out (the frame is held in memory either way, by its session)."""
        return self._lock.wait_for(
            lambda: (
                self._stopped
                or proposal.session not in self._queues
                or (
                    self._pending_intentions + proposal.intentions <= limits.PROPOSAL_QUEUE_INTENTIONS_MAX
                    and self._pending_bytes + len(proposal.run) <= limits.PROPOSAL_QUEUE_BYTES_MAX
                )
            ),
            timeout_s,
        )

    def pending_intentions(self) -> int:
        """Intentions offered and not yet proposed (a gauge; read without the lock)."""
        return self._pending_intentions

    def topic_run_max(self) -> int:
        """Topic ops a run may hold now (sessions cut frames at this): half their paced in-flight bound."""
        with self._lock:
            return self._pace.run_max()

    def inflight(self) -> tuple[int, int, int]:
        """(entries, payload bytes, weighted intentions) proposed and not yet applied (a gauge)."""
        return self._inflight_entries, self._inflight_bytes, self._inflight_intentions

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                ready = self._wait_ready()
                if self._stopped:
                    return
                lane = ready == _LANE
                if ready is None:
                    if not self._tick_due():
                        continue
                    batch = []  # a time tick
                else:
                    batch = self._take(lane)
                    if not batch:
                        continue  # the heads were of sessions gone: dropped
                self._proposing = True
                self._lock.notify_all()
            if batch:
                self._propose_and_release(batch, lane)
            else:
                self._propose_tick()

    def _wait_ready(self) -> str | None:
        """Under the lock: wait until there is something to take (what `_ready` says), or the proposer stopped, or a
        time tick may be due (None). The wait is measured anew at each wake-up: a frame queued meanwhile may be held by
        the shared log's pace, and the thread must wake when that ends, not at the next time tick."""
        while not self._stopped:
            ready = self._ready()
            if ready is not None:
                return ready
            if not self._lock.wait(self._wait_s()):
                return None if self._stopped else self._ready()
        return None

    def _ready(self) -> str | None:
        """Under the lock: what the proposer thread can take now: _ENTRY (the head fits in flight, or is of a
        session gone and is dropped), _LANE (the light lane is open to the head), or None."""
        if not self._heads or self._proposing:
            return None
        tagged = self._queues[self._heads[0][3]][0]
        if not tagged.proposal.is_current() or self._entry_ready(tagged):
            return _ENTRY
        return _LANE if self._lane_ready(tagged) else None

    def _entry_ready(self, tagged: _Tagged) -> bool:
        """Under the lock: whether the head may start an entry by the in-flight bounds, the shared log's pace and
        Nagle's rule."""
        head = tagged.proposal
        if self._inflight_entries >= limits.ENTRIES_INFLIGHT_MAX or self._held_by_pace(tagged):
            return False
        if self._replicating_entries and not self._fills_a_pipelined_entry():
            return False  # a small entry waits for the log's commit: see "Small entries wait" above
        return self._fits_inflight(head, 0, 0, 0)

    def _held_by_pace(self, tagged: _Tagged) -> bool:
        """Under the lock: whether a shared log's pace holds this frame back now (frames of a light frame's size never
        are, whatever their session has in flight)."""
        return time.monotonic() < self._pace_hold_end_s(tagged)

    def _pace_hold_end_s(self, tagged: _Tagged) -> float:
        """Under the lock: until when (time.monotonic()) a shared log's pace holds this frame back: a frame over a light
        frame's bounds waits for the cost of those taken before it, and for its own cost at the pace since it was
        queued (see "Paced" above); never past the end of the shared log."""
        if _light_sized(tagged.proposal):
            return 0.0
        own_s = cost_bytes(len(tagged.proposal.run), tagged.proposal.weighted_intentions()) / (
            limits.ENTRIES_SHARED_BYTES_PER_S_MAX
        )
        return min(max(self._paced_until_s, tagged.queued_s + own_s), self._shared_until_s)

    def _pace_entry(self, batch: list[Proposal]) -> None:
        """Under the lock, as an entry is taken: while the log is shared, the cost of its frames over the light bounds
        puts off the next such frame by that cost at ENTRIES_SHARED_BYTES_PER_S_MAX (see "Paced" above)."""
        now = time.monotonic()
        if now >= self._shared_until_s:
            return
        cost = sum(cost_bytes(len(t.run), t.weighted_intentions()) for t in batch if not _light_sized(t))
        if cost:
            self._paced_until_s = max(now, self._paced_until_s) + cost / limits.ENTRIES_SHARED_BYTES_PER_S_MAX

    def _wait_s(self) -> float | None:
        """How long the proposer thread may sleep before a time tick or the shared log's pace may let the head go."""
        tick_s = self._tick_wait_s()
        if not self._heads:
            return tick_s
        paced_s = self._pace_hold_end_s(self._queues[self._heads[0][3]][0]) - time.monotonic()
        if paced_s <= 0:
            return tick_s
        return paced_s if tick_s is None else min(tick_s, paced_s)

    def _lane_ready(self, tagged: _Tagged) -> bool:
        """Under the lock: whether the head may go in the light lane (see "The light lane" above): it is light, the
        lane has room, and the log is busy with pipelined entries (else the regular rules, Nagle's among them)."""
        return tagged.light and self._inflight_lane < limits.ENTRIES_INFLIGHT_LIGHT_LANE_MAX and self._busy()

    def _busy(self) -> bool:
        """Under the lock: whether the log is busy with pipelined entries."""
        return (
            self._inflight_bytes >= limits.PIPELINED_ENTRY_BYTES_MIN
            or self._inflight_intentions >= limits.PIPELINED_ENTRY_INTENTIONS_MIN
        )

    def _inflight_max(self) -> tuple[int, int]:
        """Under the lock: the in-flight bounds now (bytes, weighted intentions): the shared ones while a light client
        is about (see "A shared log" above)."""
        if time.monotonic() < self._shared_until_s:
            return limits.ENTRIES_INFLIGHT_SHARED_BYTES_MAX, limits.ENTRIES_INFLIGHT_SHARED_INTENTIONS_MAX
        return limits.ENTRIES_INFLIGHT_BYTES_MAX, limits.ENTRIES_INFLIGHT_INTENTIONS_MAX

    def _fills_a_pipelined_entry(self) -> bool:
        """Under the lock: whether what is queued is worth an entry of its own while others are in flight."""
        return (
            self._pending_bytes >= limits.PIPELINED_ENTRY_BYTES_MIN
            or self._pending_intentions >= limits.PIPELINED_ENTRY_INTENTIONS_MIN
        )

    def _fits_inflight(self, proposal: Proposal, batch_bytes: int, batch_intentions: int, batch_topic: int) -> bool:
        """Under the lock: whether the proposal may join a batch of this much (bytes, weighted intentions, topic
        ops); the first of a batch with nothing in flight always may (a frame over the bounds goes alone)."""
        if not self._inflight_entries and not batch_bytes and not batch_intentions:
            return True
        bytes_max, intentions_max = self._inflight_max()
        return (
            self._inflight_bytes + batch_bytes + len(proposal.run) <= bytes_max
            and self._inflight_intentions + batch_intentions + proposal.weighted_intentions() <= intentions_max
            and (
                not proposal.topic_intentions
                or self._inflight_topic + batch_topic + proposal.topic_intentions <= self._pace.inflight_max()
            )
        )

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
                self._replicating_entries += 1
                self._proposed_at_s = time.monotonic()
            self._engine.propose(encode_time(self._clock_ms()), lambda applied: self._settle(applied, _NO_COST))
        finally:
            with self._lock:
                self._proposing = False
                self._lock.notify_all()

    def _propose_and_release(self, batch: list[Proposal], lane: bool = False) -> None:
        try:
            if batch:
                self._propose(batch, lane)
        finally:
            with self._lock:
                self._proposing = False
                self._wake_proposer()

    def _take(self, lane: bool = False) -> list[Proposal]:
        """Under the lock: one entry's frames, in (finish, start) order, while they fit (`_joins`, or for the light
        lane `_joins_lane`). The first that does not stays at the head for the next entry."""
        batch: list[Proposal] = []
        first: tuple[object, _Tagged] | None = None  # the entry's first frame and its session
        intentions = weighted = size = topic = 0
        while self._heads:
            session = self._heads[0][3]
            tagged = self._queues[session][0]
            head = tagged.proposal
            current = head.is_current()
            if lane:
                joins = self._joins_lane(tagged, size, weighted)
            else:
                joins = self._joins(tagged, session, first, (intentions, weighted, size, topic))
            if current and not joins:
                break
            self._pop_head(session)
            if not current:
                continue
            if first is None:
                first = (session, tagged)
            self._count_light(session, tagged)
            batch.append(head)
            intentions += head.intentions
            weighted += head.weighted_intentions()
            size += len(head.run)
            topic += head.topic_intentions
        assert len(self._heads) == len(self._queues), (len(self._heads), len(self._queues))
        assert self._pending >= 0 and (self._pending == 0) == (not self._queues)
        if first is not None and first[1].light and self._shares_log(first[0]):
            self._shared_until_s = time.monotonic() + limits.LIGHT_SESSION_RECENT_MS / 1000
        self._pace_entry(batch)
        return batch

    def _count_light(self, session: object, tagged: _Tagged) -> None:
        """Under the lock, as a frame is taken: its session's run of light frames grows by a light frame queued at least
        LIGHT_SESSION_GAP_MS_MIN after the session's previous one, starts again at a light frame sooner, or ends at a
        heavy frame."""
        if not tagged.light:
            self._light_streaks.pop(session, None)
            return
        if session not in self._light_streaks and len(self._light_streaks) >= limits.PROPOSER_SESSION_TAGS_MAX:
            self._light_streaks.clear()  # sessions gone left theirs: at worst a light client is seen a few puts later
        count, previous_s = self._light_streaks.get(session, (0, -math.inf))
        spaced = tagged.queued_s - previous_s >= limits.LIGHT_SESSION_GAP_MS_MIN / 1000
        self._light_streaks[session] = (count + 1 if spaced else 0, tagged.queued_s)

    def _shares_log(self, session: object) -> bool:
        """Under the lock, as a light frame of this session is taken: whether it makes (or keeps) the log shared: the
        log is busy, or the session is a light client (LIGHT_SESSION_STREAK_MIN spaced light frames in a row), whatever
        the log holds, so bulk writers that start beside it are paced from their first frame; or the log is shared and
        this light frame came LIGHT_SESSION_GAP_MS_MIN or more after its session's previous one (a light client whose
        previous put was still in flight lost its streak, not its place). Light frames sent back to back do not renew
        the window: open-loop senders' frames did, at each lull, and kept their own larger frames paced."""
        streak = self._light_streaks.get(session, (0, 0.0))[0]
        return (
            self._busy()
            or streak >= limits.LIGHT_SESSION_STREAK_MIN
            or (streak > 0 and time.monotonic() < self._shared_until_s)
        )

    def _joins(
        self, tagged: _Tagged, session: object, first: tuple[object, _Tagged] | None, batch: tuple[int, int, int, int]
    ) -> bool:
        """Under the lock: whether the head frame goes into the entry being built, of (intentions, weighted
        intentions, bytes, topic ops) so far, whose first frame is `first`. It must fit in flight; in a non-empty
        entry, also within the entry bounds, and it must be of the first frame's session, or start within that
        frame's turn (start <= its finish tag) and finish within the turn after (no later than its finish plus its
        cost): a light session's put is not made to wait for the apply of heavier sessions' frames packed behind it
        in its own entry; they go in the next one. Sessions with frames of like cost still share entries."""
        head = tagged.proposal
        intentions, weighted, size, topic = batch
        if not self._fits_inflight(head, size, weighted, topic) or self._held_by_pace(tagged):
            return False
        if first is None:
            return True
        first_session, first_tag = first
        turn = first_tag.finish - first_tag.start
        return (
            intentions + head.intentions <= limits.BATCH_INTENTIONS_MAX
            and size + len(head.run) <= limits.RUN_BYTES_MAX
            and weighted + head.weighted_intentions() <= limits.RUN_INTENTIONS_MAX
            and (not head.topic_intentions or topic + head.topic_intentions <= self._pace.run_max())
            and (
                session is first_session
                or (tagged.start <= first_tag.finish and tagged.finish <= first_tag.finish + turn)
            )
        )

    @staticmethod
    def _joins_lane(tagged: _Tagged, size: int, weighted: int) -> bool:
        """Whether the head frame goes into the light lane's entry of this many bytes and weighted intentions so far:
        light frames only, within the lane entry's bounds (not the in-flight ones: the lane is past them)."""
        head = tagged.proposal
        return (
            tagged.light
            and size + len(head.run) <= limits.LIGHT_LANE_ENTRY_BYTES_MAX
            and weighted + head.weighted_intentions() <= limits.LIGHT_LANE_ENTRY_INTENTIONS_MAX
        )

    def _pop_head(self, session: object) -> None:
        """Under the lock: take the session's head frame off its queue; the virtual time moves on by its cost
        shared among the sessions with frames queued, and at least to its start."""
        heapq.heappop(self._heads)
        queue = self._queues[session]
        tagged = queue.popleft()
        share = (tagged.finish - tagged.start) // len(self._queues)
        self._virtual = max(self._virtual + share, tagged.start)
        self._pending -= 1
        self._pending_intentions -= tagged.proposal.intentions
        self._pending_bytes -= len(tagged.proposal.run)
        if queue:
            heapq.heappush(self._heads, (queue[0].finish, queue[0].start, next(self._sequence), session))
            return
        del self._queues[session]
        if self._finish.get(session, 0) <= self._virtual:
            self._finish.pop(session, None)
        elif len(self._finish) > limits.PROPOSER_SESSION_TAGS_MAX:
            self._forget_tags()

    def _forget_tags(self) -> None:
        """Under the lock: drop the tags the virtual time has passed; if still too many, keep queued sessions' only."""
        kept = {s: f for s, f in self._finish.items() if f > self._virtual}
        if len(kept) > limits.PROPOSER_SESSION_TAGS_MAX:
            kept = {s: f for s, f in kept.items() if s in self._queues}
        self._finish = kept

    def _end_busy_period(self) -> None:
        """Under the lock, with nothing queued and nothing in flight: the virtual time moves past every
        finish tag given, so what sessions sent before the log went idle counts no more."""
        if self._finish and not self._queues and not self._inflight_entries:
            self._virtual = max(self._virtual, max(self._finish.values()))
            self._finish.clear()

    def _propose(self, batch: list[Proposal], lane: bool = False) -> None:
        payload = encode_entry([p.run for p in batch], self._clock_ms() if self._clock_ms is not None else 0)
        # _take packs at most BATCH_BYTES_MAX, or one frame that gRPC bounded: larger would stall heartbeats.
        assert len(payload) <= limits.RAFT_ENTRY_BYTES_MAX, len(payload)
        cost = _Cost(
            sum(len(p.run) for p in batch),
            sum(p.intentions for p in batch),
            sum(p.weighted_intentions() for p in batch),
            sum(p.topic_intentions for p in batch),
            lane,
            () if lane else tuple(p.session for p in batch),  # a lane entry keeps its sessions light
        )
        with self._lock:
            self._inflight_lane += lane
            for session in cost.sessions:
                self._inflight_frames[session] = self._inflight_frames.get(session, 0) + 1
            self._inflight_entries += 1
            self._replicating_entries += 1
            self._inflight_bytes += cost.size
            self._inflight_intentions += cost.weighted
            self._inflight_topic += cost.topic
            self._proposed_at_s = time.monotonic()
        # A refusal reaches on_result before the `received` acks would go out: at once when
        # pysyncobj's queue is full, or in the tick that takes the command, before that tick runs
        # the after_tick task. An entry the log took gets its result only when it applies, later.
        fate = {"acked": False, "refused": False}  # written and read in that order: see above

        def on_result(applied: bool) -> None:
            if not applied and not fate["acked"]:
                fate["refused"] = True
            self._settle(applied, cost)

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

    def _settle(self, applied: bool, cost: _Cost) -> None:
        """The log is done with an entry: not applied (it leaves the in-flight count now), or handed to the apply
        queue, where it still counts until it is applied: what a frame proposed now waits behind includes the
        queued entries (the apply queue holds up to APPLY_QUEUE_ENTRIES_MAX, each up to the run bounds). Either
        way it is no longer being replicated: a small entry waiting for that may go now."""
        with self._lock:
            self._replicating_entries -= 1
            assert 0 <= self._replicating_entries <= self._inflight_entries, self._replicating_entries
            self._wake_proposer()
        if applied:
            self._after_apply(lambda apply_s: self._entry_done(True, cost, apply_s))
        else:
            self._entry_done(False, cost, 0.0)

    def _entry_done(self, applied: bool, cost: _Cost, apply_s: float) -> None:
        if not applied:
            log.debug("an entry was not applied (leadership changed); its clients resend")
        with self._lock:
            self._pace.observe(cost.topic, cost.intentions, apply_s)
            self._inflight_entries -= 1
            self._inflight_bytes -= cost.size
            self._inflight_intentions -= cost.weighted
            self._inflight_topic -= cost.topic
            self._inflight_lane -= cost.lane
            for session in cost.sessions:
                left = self._inflight_frames[session] - 1
                assert left >= 0, left
                if left:
                    self._inflight_frames[session] = left
                else:
                    del self._inflight_frames[session]
            assert self._inflight_lane >= 0, self._inflight_lane
            assert self._inflight_entries >= 0 and self._inflight_bytes >= 0 and self._inflight_intentions >= 0
            assert self._inflight_topic >= 0, self._inflight_topic
            self._end_busy_period()
            self._wake_proposer()

    def _wake_proposer(self) -> None:
        """Under the lock: the proposer thread may take a batch now, if there is one, and offers may
        find room. With nothing pending and no offer waiting, nobody waits for what changed: a lone
        commit woke the proposer thread twice for nothing (when proposed and when applied), each
        time as the commit path needed the GIL."""
        if self._pending or self._offer_waiters:
            self._lock.notify_all()
