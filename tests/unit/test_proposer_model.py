"""The proposer against a model log, with its own threads: light clients, pipelining writers and bulk writers offer
frames at once while a log thread commits entries in order, applies them later, and now and then loses the
leadership (every entry not yet committed fails, and the sessions whose frames it held are closed, as the node does).

What must hold whatever the interleaving: no frame is proposed twice; a session's frames reach the log in the order
it offered them, with nothing skipped while the session lives; a frame of a live session is not held forever; the
entries in flight never pass their bound; and once everything settled, nothing counts in flight or waits.

The other proposer tests pin one rule each with a recorder; this one runs the rules together, as a node does."""

from __future__ import annotations

import collections
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from laminar import limits
from laminar.node.raft._proposer import Proposal, Proposer

SEED = 20261207
RUN_S = 2.5  # the writers offer for this long, and until each has offered FRAMES_MIN
FRAMES_MIN = 20  # frames each writer offers at least: every kind must get through (a loaded machine takes longer)
RUN_S_MAX = 30.0  # a writer that has not offered FRAMES_MIN by then is starved: the test fails
SETTLE_S = 10.0  # then everything offered by a live session must be proposed, and every entry settled, within this
LEADERSHIP_LOSS_PER_ENTRY = 0.01  # the chance that the log fails what it has not committed, at each entry
OFFER_TIMEOUT_S = 0.05  # a writer's offer waits this long for room, then tries again (as sessions do)
_HEADER = struct.Struct(">IIQ")  # a frame's bytes begin with (writer, its frame number, its length)


@dataclass
class Writer:
    """One client: a session at a time; a new one after the log closed the last."""

    number: int
    kind: str  # "light": one small frame, waits for its commit; "pipelined": small frames, 8 ahead; "bulk": big frames
    session: object = field(default_factory=object)
    sent: int = 0  # frames offered, over all its sessions
    closed: set[object] = field(default_factory=set)  # its sessions the log closed
    offered: dict[object, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    settled: dict[int, threading.Event] = field(default_factory=dict)  # frame number -> set once committed or failed

    def frame_bytes(self, rng: random.Random) -> int:
        if self.kind == "light":
            return rng.randint(_HEADER.size, 200)
        if self.kind == "pipelined":
            return rng.randint(_HEADER.size, 4096)
        return rng.choice([64 * 1024, 256 * 1024, 1024 * 1024 - 64])

    def ahead_max(self) -> int:
        return {"light": 1, "pipelined": 8, "bulk": 4}[self.kind]


class ModelLog:
    """The Raft port the proposer sees: entries commit in order, apply later; a leadership loss fails the rest."""

    def __init__(
        self, rng: random.Random, on_commit: Callable[[bytes], None], on_loss: Callable[[list[bytes]], None]
    ) -> None:
        self._rng = rng
        self._on_commit = on_commit
        self._on_loss = on_loss
        self._cond = threading.Condition()
        self._uncommitted: collections.deque[tuple[bytes, Callable[[bool], None]]] = collections.deque()
        self._unapplied: collections.deque[Callable[[float], None]] = collections.deque()
        self.proposed: list[bytes] = []
        self.inflight_seen_max = 0
        self.proposer: Proposer | None = None
        self.stopped = False
        self._thread = threading.Thread(target=self._run, name="model-log", daemon=True)
        self._thread.start()

    # ---- RaftPort, as far as the proposer uses it ----

    def propose(self, payload: bytes, on_result: Callable[[bool], None]) -> None:
        assert self.proposer is not None
        entries, _bytes, _weighted = self.proposer.inflight()
        with self._cond:
            self.inflight_seen_max = max(self.inflight_seen_max, entries)
            self.proposed.append(payload)
            self._uncommitted.append((payload, on_result))
            self._cond.notify_all()

    def after_tick(self, task: Callable[[], None]) -> None:
        task()

    def is_leader(self) -> bool:
        return True

    def after_apply(self, done: Callable[[float], None]) -> None:
        with self._cond:
            self._unapplied.append(done)
            self._cond.notify_all()

    # ---- the log's own thread ----

    def stop(self) -> None:
        with self._cond:
            self.stopped = True
            self._cond.notify_all()
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.stopped or self._uncommitted or self._unapplied, 0.01)
                if self.stopped:
                    return
                step = self._next_step()
            step()
            time.sleep(self._rng.uniform(0, 0.0005))

    def _next_step(self) -> Callable[[], None]:
        """Under the lock: what the log does next: commit the oldest entry, apply the oldest committed one, or lose
        the leadership (every uncommitted entry fails, oldest first)."""
        if self._uncommitted and self._rng.random() < LEADERSHIP_LOSS_PER_ENTRY:
            lost = list(self._uncommitted)
            self._uncommitted.clear()

            def lose() -> None:
                self._on_loss([payload for payload, _ in lost])
                for _payload, on_result in lost:
                    on_result(False)

            return lose
        if self._uncommitted and (not self._unapplied or self._rng.random() < 0.6):
            payload, on_result = self._uncommitted.popleft()

            def commit() -> None:
                on_result(True)
                self._on_commit(payload)

            return commit
        if self._unapplied:
            done = self._unapplied.popleft()
            return lambda: done(0.0)
        return lambda: None


def frames_of(payload: bytes) -> list[tuple[int, int]]:
    """(writer, frame number) of each frame in an entry (the proposer was built without a clock: no time stamp)."""
    frames = []
    at = 0
    while at < len(payload):
        writer, number, length = _HEADER.unpack_from(payload, at)
        assert length >= _HEADER.size, length
        frames.append((writer, number))
        at += length
    assert at == len(payload), (at, len(payload))
    return frames


def frame(writer: int, number: int, size: int) -> bytes:
    return _HEADER.pack(writer, number, size) + b"\0" * (size - _HEADER.size)


def test_frames_reach_the_log_once_in_session_order_and_nothing_stays_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six writers of three kinds against a log that commits, applies and loses the leadership at random: every
    frame of a live session is proposed exactly once and in its session's order, within SETTLE_S; entries in flight
    stay within their bound (the light lane's included); at the end nothing is queued or in flight."""
    # The light writers make the log shared, so the bulk writers are paced: at the node's rate (sized for a machine
    # that takes ~10 MiB/s of 1 MiB puts), RUN_S gives them ~10 MiB between them; this log takes frames in
    # microseconds, so the pace is scaled up with it (still held back, 16 ms per MiB, often in the run).
    monkeypatch.setattr(limits, "ENTRIES_SHARED_BYTES_PER_S_MAX", 64 * limits.MIB)
    rng = random.Random(SEED)
    writers = [Writer(n, kind) for n, kind in enumerate(["light", "light", "pipelined", "pipelined", "bulk", "bulk"])]
    owner: dict[tuple[int, int], object] = {}  # (writer, frame number) -> the session that offered it
    lock = threading.Lock()

    def lose(payloads: list[bytes]) -> None:
        """The node closes every session whose frames the failed entries held: their clients resend in new ones."""
        with lock:
            for payload in payloads:
                for writer, number in frames_of(payload):
                    w = writers[writer]
                    w.closed.add(owner[(writer, number)])
                    if w.session is owner[(writer, number)]:
                        w.session = object()
                    w.settled[number].set()

    def commit(payload: bytes) -> None:
        for writer, number in frames_of(payload):
            writers[writer].settled[number].set()

    log = ModelLog(random.Random(SEED + 1), commit, lose)
    proposer = Proposer(log, clock_ms=None, after_apply=log.after_apply)  # type: ignore[arg-type]
    log.proposer = proposer
    stop_at = time.monotonic() + RUN_S
    give_up_at = time.monotonic() + RUN_S_MAX

    def write(w: Writer, wrng: random.Random) -> None:
        # Frames of this writer not yet committed (nor failed); those of a closed session count no more: the proposer
        # drops them unproposed, as it does the frames of a session gone.
        outstanding: collections.deque[tuple[object, threading.Event]] = collections.deque()
        while (time.monotonic() < stop_at or w.sent < FRAMES_MIN) and time.monotonic() < give_up_at:
            while outstanding and (outstanding[0][1].is_set() or outstanding[0][0] in w.closed):
                outstanding.popleft()
            if len(outstanding) >= w.ahead_max():
                outstanding[0][1].wait(0.01)
                continue
            with lock:
                session, number = w.session, w.sent
                w.sent += 1
                owner[(w.number, number)] = session
                w.offered[session].append(number)
            settled = threading.Event()
            w.settled[number] = settled
            p = Proposal(
                run=frame(w.number, number, w.frame_bytes(wrng)),
                intentions=1,
                is_current=lambda s=session, w=w: s not in w.closed,  # type: ignore[misc]
                on_received=lambda: None,
                on_dropped=settled.set,
                session=session,
            )
            while not proposer.offer(p, OFFER_TIMEOUT_S):
                assert time.monotonic() < give_up_at + SETTLE_S, "the proposer's queue stayed full"
            outstanding.append((session, settled))

    threads = [
        threading.Thread(target=write, args=(w, random.Random(rng.random())), name=f"writer-{w.number}", daemon=True)
        for w in writers
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(RUN_S_MAX + SETTLE_S)
            assert not t.is_alive(), f"{t.name} is stuck"
        deadline = time.monotonic() + SETTLE_S
        while proposer.inflight() != (0, 0, 0) or proposer.pending_intentions():
            assert time.monotonic() < deadline, (proposer.inflight(), proposer.pending_intentions())
            time.sleep(0.01)
    finally:
        proposer.stop()
        log.stop()

    proposed: dict[object, list[int]] = collections.defaultdict(list)
    every: list[tuple[int, int]] = []
    for payload in log.proposed:
        for writer, number in frames_of(payload):
            every.append((writer, number))
            proposed[owner[(writer, number)]].append(number)
    assert len(every) == len(set(every)), "a frame was proposed twice"
    sessions = 0
    for w in writers:
        assert w.sent >= FRAMES_MIN, (w.kind, w.sent)  # every kind of writer got through
        for session, numbers in w.offered.items():
            sessions += 1
            got = proposed.get(session, [])
            assert got == sorted(got), (w.kind, "out of its session's order", got)
            if session not in w.closed:
                assert got == numbers, (w.kind, "a live session's frames were skipped or held", numbers, got)
            else:
                assert got == numbers[: len(got)], (w.kind, "a closed session's frames skipped one", numbers, got)
    assert sessions > len(writers), "no leadership was lost: the model did not exercise it"
    assert log.inflight_seen_max <= limits.ENTRIES_INFLIGHT_MAX + limits.ENTRIES_INFLIGHT_LIGHT_LANE_MAX
