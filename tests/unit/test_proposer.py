"""The proposer: a lone proposal goes out from the offering thread, busy ones are batched, order is kept.

The Raft engine is replaced by a recorder: this tests the batching and ordering of the proposer alone (the
integration tests run it against real pysyncobj nodes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from laminar import limits
from laminar.node.raft._proposer import Proposal, Proposer

WAIT_S = 5.0


class RecordingEngine:
    """Records each proposed entry, the thread that proposed it, and its result callback."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[bytes] = []
        self.threads: list[str] = []
        self.results: list[Callable[[bool], None]] = []

    def propose(self, payload: bytes, on_result: Callable[[bool], None]) -> None:
        with self.lock:
            self.entries.append(payload)
            self.threads.append(threading.current_thread().name)
            self.results.append(on_result)

    def after_tick(self, task: Callable[[], None]) -> None:
        task()


def proposal(run: bytes, received: list[bytes] | None = None, session: object = None) -> Proposal:
    return Proposal(
        run=run,
        intentions=1,
        is_current=lambda: True,
        on_received=(lambda: received.append(run)) if received is not None else (lambda: None),
        session=session,
    )


def wait_until(predicate: Callable[[], Any]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_lone_proposal_goes_out_from_the_offering_thread_and_busy_ones_are_batched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing in flight: the offer proposes at once, in the caller's thread. As many in flight as allowed (one
    here): later offers wait in the queue and go out together, from the proposer thread, once one is applied."""
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_MAX", 1)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    try:
        received: list[bytes] = []
        assert proposer.offer(proposal(b"a", received), WAIT_S)
        assert engine.entries == [b"a"] and engine.threads == [threading.current_thread().name]
        assert received == [b"a"]
        assert proposer.offer(proposal(b"b", received), WAIT_S)
        assert proposer.offer(proposal(b"c", received), WAIT_S)
        time.sleep(0.05)
        assert engine.entries == [b"a"]  # "a" is in flight: b and c wait to be batched
        engine.results[0](True)
        wait_until(lambda: len(engine.entries) == 2)
        assert engine.entries[1] == b"bc" and engine.threads[1] == "proposer"
        wait_until(lambda: received == [b"a", b"b", b"c"])
    finally:
        proposer.stop()


def test_while_an_entry_is_in_flight_a_small_one_waits_for_it_and_a_full_one_does_not() -> None:
    """Nagle's rule for entries: with one entry in flight (of ENTRIES_INFLIGHT_MAX allowed), small frames queue
    until it applies and then go together in one entry; frames that add up to PIPELINED_ENTRY_BYTES_MIN go at
    once, beside it. Before, every frame that found room in flight was an entry of its own: a millisecond of the
    leader's CPU per entry, spent on writers that could have shared one."""
    assert limits.ENTRIES_INFLIGHT_MAX > 1
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    try:
        assert proposer.offer(proposal(b"a"), WAIT_S)
        assert proposer.offer(proposal(b"b", session=object()), WAIT_S)
        assert proposer.offer(proposal(b"c", session=object()), WAIT_S)
        time.sleep(0.05)
        assert engine.entries == [b"a"]  # b and c are small: they wait for "a"
        engine.results[0](True)
        wait_until(lambda: len(engine.entries) == 2)
        assert engine.entries[1] == b"bc"
        bulk = b"x" * limits.PIPELINED_ENTRY_BYTES_MIN  # "bc" is still in flight
        assert proposer.offer(proposal(bulk, session=object()), WAIT_S)
        wait_until(lambda: len(engine.entries) == 3)
        assert engine.entries[2] == bulk
    finally:
        proposer.stop()


def test_a_small_entry_waits_for_the_commit_of_the_one_in_flight_not_for_its_apply() -> None:
    """Nagle's rule waits for the entry being replicated: once the log reports it committed (queued for apply),
    a small frame goes at once, its round trip beside that entry's apply. Before, it waited for the apply too,
    and at 6,000 puts/s in the open loop each entry's cycle was the round trip plus the apply."""
    engine = RecordingEngine()
    hooks: list[Callable[[float], None]] = []
    proposer = Proposer(engine, clock_ms=None, after_apply=hooks.append)  # type: ignore[arg-type]
    try:
        assert proposer.offer(proposal(b"a"), WAIT_S)
        assert proposer.offer(proposal(b"b", session=object()), WAIT_S)
        time.sleep(0.05)
        assert engine.entries == [b"a"]  # "a" is being replicated: "b" waits for it
        engine.results[0](True)  # committed, queued for apply, not applied: its hook has not run
        wait_until(lambda: len(engine.entries) == 2)
        assert engine.entries[1] == b"b" and proposer.inflight()[0] == 2 and len(hooks) == 1
        assert proposer.offer(proposal(b"c", session=object()), WAIT_S)
        hooks.pop()(0.0)  # "a" applied; "b" is still being replicated: "c" waits for it
        time.sleep(0.05)
        assert len(engine.entries) == 2 and proposer.inflight()[0] == 1
        engine.results[1](False)  # "b" not committed (leadership lost): nothing is replicated, "c" goes
        wait_until(lambda: len(engine.entries) == 3)
        assert engine.entries[2] == b"c"
    finally:
        proposer.stop()


def test_offers_from_many_threads_keep_each_threads_order() -> None:
    """Whichever thread proposes and however sessions take turns, each session's frames stay in sequence."""
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    sessions, frames = 4, 200
    done = threading.Event()

    def complete() -> None:  # the log applies every entry, a little later
        applied = 0
        while not done.is_set() or applied < len(engine.results):
            with engine.lock:
                pending = engine.results[applied:]
            for on_result in pending:
                on_result(True)
            applied += len(pending)
            time.sleep(0.0005)

    def session(index: int) -> None:
        for n in range(frames):
            assert proposer.offer(proposal(b"%d:%d;" % (index, n), session=index), WAIT_S)

    completer = threading.Thread(target=complete)
    completer.start()
    threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S)
        wait_until(lambda: sum(e.count(b";") for e in engine.entries) == sessions * frames)
    finally:
        done.set()
        completer.join(WAIT_S)
        proposer.stop()
    seen: dict[int, list[int]] = {i: [] for i in range(sessions)}
    for run in b"".join(engine.entries).split(b";")[:-1]:
        index, n = run.split(b":")
        seen[int(index)].append(int(n))
    assert all(numbers == list(range(frames)) for numbers in seen.values())
    assert len(engine.entries) < sessions * frames  # some were batched


def test_a_lone_commit_never_wakes_the_proposer_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proposed from the offering thread and applied, a lone entry leaves the proposer thread asleep: with nothing
    pending and no offer waiting for room, the proposer's condition is never notified (it was, twice, for nothing)."""
    engine = RecordingEngine()
    proposer = Proposer(engine)  # type: ignore[arg-type]
    notified: list[str] = []
    notify_all = threading.Condition.notify_all

    def counting(condition: threading.Condition) -> None:
        if condition is proposer._lock:
            notified.append(threading.current_thread().name)
        notify_all(condition)

    monkeypatch.setattr(threading.Condition, "notify_all", counting)
    try:
        for n in range(3):
            assert proposer.offer(proposal(b"lone-%d" % n), WAIT_S)
            wait_until(lambda n=n: len(engine.results) == n + 1)
            engine.results[n](True)
        assert notified == []
    finally:
        proposer.stop()


def test_a_small_frame_of_another_session_goes_into_the_next_entry_not_after_a_big_senders_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sessions share the log by cost: with one session's many big frames queued (two never fit one entry), another
    session's small frame goes alone into the very next entry, and the big sender's frames follow in their order."""
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_MAX", 1)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_sender, small_sender = object(), object()
    big = limits.RUN_BYTES_MAX * 6 // 10  # two of them exceed one entry
    frames = [b"%d" % n + b"x" * (big - 1) for n in range(8)]
    try:
        for run in frames:  # the first goes out at once and stays in flight; the rest queue
            assert proposer.offer(proposal(run, session=big_sender), WAIT_S)
        assert proposer.offer(proposal(b"small", session=small_sender), WAIT_S)
        assert engine.entries == [frames[0]]
        engine.results[0](True)
        wait_until(lambda: len(engine.entries) == 2)
        assert engine.entries[1] == b"small"  # not after frames[1:]
        for n in range(2, len(frames) + 1):
            engine.results[n - 1](True)
            wait_until(lambda n=n: len(engine.entries) == n + 1)
            assert engine.entries[n] == frames[n - 1]
    finally:
        proposer.stop()


def bounded(monkeypatch: pytest.MonkeyPatch, inflight_bytes: int, inflight_intentions: int) -> None:
    """Small in-flight bounds (runs and entries at half of them, as in limits.py), so a test needs few frames."""
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_BYTES_MAX", inflight_bytes)
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_INTENTIONS_MAX", inflight_intentions)
    monkeypatch.setattr(limits, "RUN_BYTES_MAX", inflight_bytes // 2)
    monkeypatch.setattr(limits, "RUN_INTENTIONS_MAX", inflight_intentions // 2)
    monkeypatch.setattr(limits, "PIPELINED_ENTRY_BYTES_MIN", inflight_bytes // 8)
    monkeypatch.setattr(limits, "PIPELINED_ENTRY_INTENTIONS_MIN", inflight_intentions // 8)
    # The light lane's frames at their share of the bounds in limits.py (none here unless a test says so: every frame
    # weighs at least one intention, more than 1/256 of these bounds).
    monkeypatch.setattr(limits, "LIGHT_LANE_FRAME_BYTES_MAX", inflight_bytes // 128)
    monkeypatch.setattr(limits, "LIGHT_LANE_FRAME_INTENTIONS_MAX", inflight_intentions // 256)
    monkeypatch.setattr(limits, "LIGHT_LANE_ENTRY_BYTES_MAX", inflight_bytes // 16)
    monkeypatch.setattr(limits, "LIGHT_LANE_ENTRY_INTENTIONS_MAX", inflight_intentions // 8)
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_SHARED_BYTES_MAX", inflight_bytes // 4)
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_SHARED_INTENTIONS_MAX", inflight_intentions // 4)


HEAVY_BYTES, LIGHT_BYTES = 300, 20


def light_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bounded` at 1,000 B and 100 intentions, with a light frame at most 10 B and one intention."""
    bounded(monkeypatch, inflight_bytes=1000, inflight_intentions=100)
    monkeypatch.setattr(limits, "LIGHT_LANE_FRAME_BYTES_MAX", 10)
    monkeypatch.setattr(limits, "LIGHT_LANE_FRAME_INTENTIONS_MAX", 1)


def frame(kind: bytes, n: int) -> bytes:
    """A run the tests can find again in an entry: b"H" frames are HEAVY_BYTES long, b"L" ones LIGHT_BYTES."""
    size = HEAVY_BYTES if kind == b"H" else LIGHT_BYTES
    return (kind + b"%03d" % n).ljust(size, b".")


def runs_of(entry: bytes) -> list[bytes]:
    runs, i = [], 0
    while i < len(entry):
        size = HEAVY_BYTES if entry[i : i + 1] == b"H" else LIGHT_BYTES
        runs.append(entry[i : i + size])
        i += size
    return runs


def weighed(run: bytes, session: object, intentions: int = 1, cost_intentions: int = 0) -> Proposal:
    return Proposal(run, intentions, lambda: True, lambda: None, session=session, cost_intentions=cost_intentions)


def test_what_is_proposed_and_not_applied_stays_within_the_bytes_and_weighted_intentions_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Node-wide in-flight bounds: however many frames sessions queue, the entries proposed and not yet applied
    never hold more than ENTRIES_INFLIGHT_BYTES_MAX bytes nor ENTRIES_INFLIGHT_INTENTIONS_MAX weighted intentions
    (two creates weigh 8 here, a put 1); the rest waits in the queues and goes as entries apply, each session's
    frames in order. Before these bounds, four entries of up to 1 MiB each went out whatever they held."""
    bounded(monkeypatch, inflight_bytes=1000, inflight_intentions=40)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    heavy, creator = object(), object()
    weights = {frame(b"H", n): 1 for n in range(12)}
    weights |= {frame(b"L", n): 8 for n in range(12)}
    try:
        for n in range(12):
            assert proposer.offer(weighed(frame(b"H", n), heavy), WAIT_S)
            assert proposer.offer(weighed(frame(b"L", n), creator, intentions=2, cost_intentions=8), WAIT_S)
        applied = 0
        while True:
            wait_until(lambda applied=applied: len(engine.entries) > applied or not proposer.pending_intentions())
            time.sleep(0.02)  # the proposer takes all it may
            with engine.lock:
                ahead = engine.entries[applied:]
            if not ahead:
                break
            assert sum(len(e) for e in ahead) <= 1000
            assert sum(weights[r] for e in ahead for r in runs_of(e)) <= 40
            engine.results[applied](True)
            applied += 1
        taken = [r for e in engine.entries for r in runs_of(e)]
        assert [r for r in taken if r[:1] == b"H"] == [frame(b"H", n) for n in range(12)]
        assert [r for r in taken if r[:1] == b"L"] == [frame(b"L", n) for n in range(12)]
        assert proposer.inflight() == (0, 0, 0) and proposer.pending_intentions() == 0
    finally:
        proposer.stop()


def test_a_session_that_just_proposed_a_big_frame_waits_its_turn_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fairness by cost: with a big sender's frames queued behind two of its own in flight, another session's small
    put goes into the very next entry, ahead of the big sender's next frame and alone (not packed with frames of
    the big sender, whose apply it would wait for), and a frame over the bounds goes alone once nothing is in
    flight. Round-robin by frame put the small put behind a whole frame of the big sender."""
    bounded(monkeypatch, inflight_bytes=1000, inflight_intentions=100)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_sender, small_sender = object(), object()
    big = [b"%d" % n + b"x" * 449 for n in range(6)]  # 450 B: two fit in flight, one per entry
    try:
        for run in big:
            assert proposer.offer(weighed(run, big_sender), WAIT_S)
        wait_until(lambda: len(engine.entries) == 2)
        time.sleep(0.05)
        assert engine.entries == big[:2]  # a third would pass 1000 B in flight
        assert proposer.offer(weighed(b"small", small_sender), WAIT_S)
        wait_until(lambda: len(engine.entries) == 3)
        assert engine.entries[2] == b"small"  # room for it, and first in order: at once, alone
        applied = 0
        while len(engine.entries) < 7:  # the big sender's frames follow, in order, as entries apply
            engine.results[applied](True)
            applied += 1
            time.sleep(0.05)
        assert engine.entries[3:] == big[2:]
        huge = b"h" * 1500  # over both bounds: alone, once everything before it applied
        assert proposer.offer(weighed(huge, small_sender), WAIT_S)
        time.sleep(0.05)
        assert len(engine.entries) == 7
        for n in range(applied, 7):
            engine.results[n](True)
        wait_until(lambda: len(engine.entries) == 8)
        assert engine.entries[7] == huge
    finally:
        proposer.stop()


def test_a_session_with_nothing_queued_gets_in_when_big_senders_filled_the_shared_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared queue's byte bound keeps a session's second frame out, never another session's first: big
    senders that fill PROPOSAL_QUEUE_BYTES_MAX do not make a small writer wait for room (its one frame is held by
    its session either way)."""
    monkeypatch.setattr(limits, "PROPOSAL_QUEUE_BYTES_MAX", 1000)
    bounded(monkeypatch, inflight_bytes=100, inflight_intentions=100)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_sender, small_sender = object(), object()
    try:
        assert proposer.offer(weighed(b"f" * 900, big_sender), WAIT_S)  # in flight
        assert proposer.offer(weighed(b"q" * 900, big_sender), WAIT_S)  # queued: the queue holds 900 B
        assert not proposer.offer(weighed(b"r" * 900, big_sender), 0.05)  # its next waits for room
        assert proposer.offer(weighed(b"small", small_sender), 0.0)  # another session's first gets in
        assert not proposer.offer(weighed(b"a" * 200, small_sender), 0.05)  # not its second
    finally:
        proposer.stop()


def test_an_entry_counts_in_flight_until_it_is_applied_not_when_the_log_queues_it() -> None:
    """The engine reports an entry done once it is in the apply queue; it stays in flight until the applier runs
    the hook it was given (Applier.when_applied), so frames proposed meanwhile wait behind queued entries too.
    Before, the in-flight bounds ended at the queue, and the apply queue's entries (up to APPLY_QUEUE_ENTRIES_MAX
    of them, each up to the run bounds) were waited behind on top of them."""
    engine = RecordingEngine()
    hooks: list[Callable[[float], None]] = []
    proposer = Proposer(engine, clock_ms=None, after_apply=hooks.append)  # type: ignore[arg-type]
    try:
        assert proposer.offer(proposal(b"a"), WAIT_S)
        wait_until(lambda: len(engine.entries) == 1)
        engine.results[0](True)  # committed and queued for apply
        assert proposer.inflight()[0] == 1 and len(hooks) == 1
        hooks.pop()(0.0)  # applied
        assert proposer.inflight() == (0, 0, 0)
        assert proposer.offer(proposal(b"b"), WAIT_S)
        wait_until(lambda: len(engine.entries) == 2)
        engine.results[1](False)  # not applied (leadership lost): out of flight at once, no hook
        assert proposer.inflight() == (0, 0, 0) and not hooks
    finally:
        proposer.stop()


def test_a_light_sessions_next_put_waits_behind_one_big_frame_not_one_of_every_big_sender(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight sessions with big frames queued, all tagged at the same virtual time, and a light session putting
    again right after its previous put was taken: the light session's next put goes into the log after at most
    one more big frame, not after one of each big sender. With the virtual time at the start of the frame taken
    last (start-time fair queueing), it stayed put while the big senders' heads were taken one by one, and the
    light session's next put, tagged after its previous one, waited for all of them: hostile big_frames, 8
    sessions of 1 MiB puts, gave the good client's puts 1-1.5 s each round (bench/results/hostile.md)."""
    bounded(monkeypatch, inflight_bytes=1000, inflight_intentions=100)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_senders, light = [object() for _ in range(8)], object()
    big = {(s, n): b"B%d%d" % (s, n) + b"x" * 597 for s in range(8) for n in range(3)}  # one per entry
    try:
        for n in range(3):
            for s in range(8):
                assert proposer.offer(weighed(big[s, n], big_senders[s]), WAIT_S)
        assert proposer.offer(weighed(b"light-1", light), WAIT_S)
        applied = 0

        def apply_until_proposed(run: bytes) -> int:
            """Apply entries in order until `run` is proposed; how many entries were proposed before it."""
            nonlocal applied
            while True:
                with engine.lock:
                    if run in engine.entries:
                        return engine.entries.index(run)
                    ready = applied < len(engine.entries)
                if ready:
                    engine.results[applied](True)
                    applied += 1
                time.sleep(0.01)

        apply_until_proposed(b"light-1")
        assert proposer.offer(weighed(b"light-2", light), WAIT_S)
        with engine.lock:
            proposed_before = len(engine.entries)
        second = apply_until_proposed(b"light-2")
        assert second - proposed_before <= 1, engine.entries[proposed_before:second]  # was 7 (one per big sender)
        for s in range(8):  # each big sender's frames taken so far, in its order
            taken = [e for e in engine.entries if e.startswith(b"B%d" % s)]
            assert taken == [big[s, n] for n in range(len(taken))]
    finally:
        proposer.stop()


def test_a_light_put_goes_at_once_behind_a_full_log_in_the_light_lane_one_lane_entry_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the in-flight bounds full of a big sender's entries, a light session's put is proposed at once behind
    them (the light lane), not once enough of them applied; another light session's put then waits for the lane's
    entry, and goes in the lane again once it applied, while the big sender's frames still wait for room. So too
    behind one frame over the bounds, in flight alone. Before the lane, the light put waited in the queue for the
    in-flight entries to apply (hostile slow_ack_readers and big_frames: the good client's put waited 25 ms at the
    median and 120-230 ms at p99 there, and then for its own entry's round)."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "LIGHT_SESSION_RECENT_MS", 0)  # the lane alone: the log is never shared
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_LIGHT_LANE_MAX", 1)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_sender, light_a, light_b = object(), object(), object()
    big = [b"%d" % n + b"x" * 496 for n in range(6)]  # 497 B: two fit in flight, one per entry, nothing beside them
    try:
        for run in big:
            assert proposer.offer(weighed(run, big_sender), WAIT_S)
        wait_until(lambda: len(engine.entries) == 2)
        time.sleep(0.05)
        assert engine.entries == big[:2]  # in-flight bytes full: the big sender's next frames wait
        assert proposer.offer(weighed(b"light-a", light_a), WAIT_S)
        wait_until(lambda: len(engine.entries) == 3)  # timed out before the lane
        assert engine.entries[2] == b"light-a" and proposer.inflight()[:2] == (3, 1001)
        assert proposer.offer(weighed(b"light-b", light_b), WAIT_S)
        time.sleep(0.05)
        assert len(engine.entries) == 3  # the lane holds one entry in flight
        engine.results[2](True)  # light-a applied (entries need not apply in order for the proposer)
        wait_until(lambda: len(engine.entries) == 4)
        assert engine.entries[3] == b"light-b"
        engine.results[3](True)
        time.sleep(0.05)
        assert len(engine.entries) == 4  # the big sender's frames still wait for room
        engine.results[0](True)
        engine.results[1](True)
        wait_until(lambda: len(engine.entries) == 6)
        assert engine.entries[4:] == big[2:4]
        for n in (4, 5):
            engine.results[n](True)
        wait_until(lambda: len(engine.entries) == 8)
        huge = b"h" * 1500  # over the bounds: in flight alone, once nothing else is
        assert proposer.offer(weighed(huge, big_sender), WAIT_S)
        for n in (6, 7):
            engine.results[n](True)
        wait_until(lambda: len(engine.entries) == 9)
        assert engine.entries[8] == huge
        assert proposer.offer(weighed(b"light-c", light_a), WAIT_S)
        wait_until(lambda: len(engine.entries) == 10)
        assert engine.entries[9] == b"light-c"
    finally:
        proposer.stop()


def test_after_a_light_put_into_a_busy_log_bulk_writers_keep_the_shared_bounds_in_flight_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A light put taken while the log is busy shares the log: for LIGHT_SESSION_RECENT_MS the big sender keeps at most
    ENTRIES_INFLIGHT_SHARED_BYTES_MAX in flight (here one 200 B frame where the full bound holds four), so the light
    client's next put waits behind less; once that time has passed without a light put, the full bounds again.
    Before, the big sender refilled the full bound between the light client's puts, and each of them waited behind
    it (hostile slow_ack_readers: 0.5-0.8 MB of others' puts ahead of the good put, 26 ms at the median to apply
    on a quiet machine)."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "LIGHT_SESSION_RECENT_MS", 300)
    monkeypatch.setattr(limits, "RUN_BYTES_MAX", 300)  # one big frame per entry
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_sender, light = object(), object()
    big = [b"%02d" % n + b"x" * 198 for n in range(20)]  # 200 B
    applied = 0

    def apply_all_in_flight() -> None:
        nonlocal applied
        time.sleep(0.02)  # the proposer takes all it may
        with engine.lock:
            proposed = len(engine.entries)
        for n in range(applied, proposed):
            engine.results[n](True)
        applied = proposed

    try:
        for run in big[:4]:
            assert proposer.offer(weighed(run, big_sender), WAIT_S)
        wait_until(lambda: len(engine.entries) == 4)  # the full bounds: four entries, 800 B in flight
        assert proposer.offer(weighed(b"light", light), WAIT_S)
        wait_until(lambda: b"light" in engine.entries)
        apply_all_in_flight()
        for run in big[4:12]:
            assert proposer.offer(weighed(run, big_sender), WAIT_S)
        time.sleep(0.05)
        assert proposer.inflight()[:2] == (1, 200)  # shared: the first alone, the rest wait (was 4, 800 B)
        time.sleep(0.3)  # no light put for LIGHT_SESSION_RECENT_MS
        apply_all_in_flight()
        wait_until(lambda: proposer.inflight()[1] == 800)  # the full bounds again
    finally:
        proposer.stop()


def test_a_pipelining_writers_small_frame_is_neither_light_nor_makes_the_log_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session with frames in flight is not light, however small its next frame: it waits for a slot by the regular
    rules, and bulk writers keep the full bounds after it. Without that rule, a pipelining client's small frames went
    in the lane and made the log shared: the pipelined throughput cell lost a third of its throughput (3 clients,
    main 39.0k / 46.0k / 51.5k msgs/s against 31.1k / 28.9k / 19.7k, alternated)."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "LIGHT_SESSION_RECENT_MS", 60_000)
    monkeypatch.setattr(limits, "RUN_BYTES_MAX", 300)  # one big frame per entry
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    writer = object()
    big = [b"%02d" % n + b"x" * 198 for n in range(12)]  # 200 B
    try:
        for run in big[:4]:
            assert proposer.offer(weighed(run, writer), WAIT_S)
        wait_until(lambda: len(engine.entries) == 4)
        assert proposer.offer(weighed(b"small", writer), WAIT_S)
        for run in big[4:]:
            assert proposer.offer(weighed(run, writer), WAIT_S)
        time.sleep(0.05)
        assert len(engine.entries) == 4  # no lane for it: its session has frames in flight
        for n in range(4):
            engine.results[n](True)
        wait_until(lambda: b"small" in b"".join(engine.entries))
        wait_until(lambda: proposer.inflight()[1] >= 800)  # the full bounds: the log is not shared
    finally:
        proposer.stop()


def fill_then_put(proposer: Proposer, engine: RecordingEngine, big_sender: object, light: object, size: int) -> None:
    """The big sender offers four runs of `size` bytes (two entries go in flight, two wait), then the light client
    offers put-1, which goes in the lane: three entries proposed."""
    for n in range(4):
        assert proposer.offer(weighed(b"%d" % n + b"x" * (size - 1), big_sender), WAIT_S)
    wait_until(lambda: len(engine.entries) == 2)
    assert proposer.offer(weighed(b"put-1", light), WAIT_S)
    wait_until(lambda: len(engine.entries) == 3)


def test_a_light_clients_next_put_goes_in_the_lane_while_the_entries_ahead_of_it_stall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A light client puts, its put goes in the lane and applies, and it puts again while the big sender's entries
    still have not applied: the next put goes in the lane at once too. When a light session also had to be within its
    share (finish tag no later than the virtual time), it was not: nothing else was taken meanwhile, so the virtual
    time had not moved past its previous put, and the put waited for the stalled entries."""
    light_lane(monkeypatch)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_sender, light = object(), object()
    try:
        fill_then_put(proposer, engine, big_sender, light, 497)  # two fill the in-flight bytes
        engine.results[2](True)  # put-1 applied; the big entries ahead of it have not
        assert proposer.offer(weighed(b"put-2", light), WAIT_S)
        wait_until(lambda: len(engine.entries) == 4)  # timed out with the share rule
        assert engine.entries[2:] == [b"put-1", b"put-2"]
    finally:
        proposer.stop()


def test_a_light_clients_next_put_goes_in_the_lane_while_its_previous_put_is_still_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A light client puts again before its previous put applied (it puts every 50 ms; one put took longer): its frame
    in the lane leaves it light, so the next put goes in the lane at once too, up to ENTRIES_INFLIGHT_LIGHT_LANE_MAX
    lane entries in flight; past that it waits for one of them, not for the big sender's. When any frame in flight made
    a session heavy, the next put waited by the regular rules for the in-flight bounds to free, one slow put made the
    next slow too, and so on (hostile big_frames: 41 % of the slowest 5 % of the good client's commit time)."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_LIGHT_LANE_MAX", 2)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_sender, light = object(), object()
    try:
        fill_then_put(proposer, engine, big_sender, light, 500)  # two fill the in-flight bytes, no put fits beside them
        assert proposer.offer(weighed(b"put-2", light), WAIT_S)  # put-1 still in flight
        wait_until(lambda: len(engine.entries) == 4)  # timed out when put-1 in flight made the session heavy
        assert engine.entries[2:] == [b"put-1", b"put-2"]
        assert proposer.offer(weighed(b"put-3", light), WAIT_S)
        time.sleep(0.05)
        assert len(engine.entries) == 4  # two lane entries in flight: the lane is full
        engine.results[2](True)  # put-1 applied; the big entries ahead of it have not
        wait_until(lambda: len(engine.entries) == 5)
        assert engine.entries[4] == b"put-3"
        time.sleep(0.05)
        assert len(engine.entries) == 5  # the big sender's frames still wait for room
    finally:
        proposer.stop()


def test_while_a_light_client_shares_the_log_bulk_frames_are_paced_and_its_puts_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the log is shared, a frame over the light bounds goes only once the cost of those before it has passed at
    ENTRIES_SHARED_BYTES_PER_S_MAX, even with nothing in flight; the light client's puts go at once meanwhile; once no
    light put came for LIGHT_SESSION_RECENT_MS, bulk frames go back to back. Unpaced, bulk writers kept the log and
    the machine full (hostile big_frames: 10+ MiB/s of 1 MiB puts, the good client's commit p99 280-719 ms; paced
    72-160)."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "LIGHT_SESSION_RECENT_MS", 1500)
    monkeypatch.setattr(limits, "ENTRIES_SHARED_BYTES_PER_S_MAX", 1000)  # a 500 B frame (510 cost) holds the next 0.5 s
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_sender, light = object(), object()
    big = [b"%d" % n + b"x" * 499 for n in range(4)]  # 500 B: two fill the in-flight bytes
    apply_all = applier(engine)
    try:
        for run in big[:2]:
            assert proposer.offer(weighed(run, big_sender), WAIT_S)
        wait_until(lambda: len(engine.entries) == 2)
        assert proposer.offer(weighed(b"put-1", light), WAIT_S)  # into a busy log: shared from now
        wait_until(lambda: len(engine.entries) == 3)
        apply_all()
        assert proposer.offer(weighed(big[2], big_sender), WAIT_S)
        wait_until(lambda: len(engine.entries) == 4)  # nothing paced before it: it goes after its own cost
        apply_all()
        taken_at = time.monotonic()
        assert proposer.offer(weighed(big[3], big_sender), WAIT_S)
        assert proposer.offer(weighed(b"put-2", light), WAIT_S)
        wait_until(lambda: b"put-2" in engine.entries)  # a light put is never paced
        apply_all()
        time.sleep(0.2)
        assert big[3] not in engine.entries  # nothing in flight, yet held: 510 B at 1,000 B/s
        wait_until(lambda: big[3] in engine.entries)
        assert time.monotonic() - taken_at >= 0.45
        apply_all()
        time.sleep(1.6)  # no light put for LIGHT_SESSION_RECENT_MS: the log is no longer shared
        for n in range(4, 8):
            assert proposer.offer(weighed(b"%d" % n + b"x" * 499, big_sender), WAIT_S)
            wait_until(lambda: not proposer.pending_intentions())  # each goes at once (after the last applied)
            apply_all()
    finally:
        proposer.stop()


def applier(engine: RecordingEngine) -> Callable[[], None]:
    """Applies, at each call, every entry proposed since the last call (or since it was made)."""
    with engine.lock:
        applied = len(engine.results)

    def apply_all() -> None:
        nonlocal applied
        with engine.lock:
            results = engine.results[applied:]
        for result in results:
            result(True)
        applied += len(results)

    return apply_all


def light_puts(
    proposer: Proposer, engine: RecordingEngine, light: object, count: int, gap_s: float | None = None
) -> None:
    """The light client puts `count` times, each into an idle log, each applied before the next, each `gap_s` (by
    default LIGHT_SESSION_GAP_MS_MIN) after the one before."""
    apply_all = applier(engine)
    if gap_s is None:
        gap_s = limits.LIGHT_SESSION_GAP_MS_MIN / 1000
    for n in range(count):
        if n:
            time.sleep(gap_s)
        put = b"put-%d" % n
        assert proposer.offer(weighed(put, light), WAIT_S)
        wait_until(lambda: put in engine.entries)  # noqa: B023 - waited for before the loop moves on
        apply_all()
    wait_until(lambda: proposer.inflight() == (0, 0, 0))


def test_a_light_client_in_an_idle_log_makes_it_shared_so_a_bulk_writer_is_paced_from_its_first_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A light client (LIGHT_SESSION_STREAK_MIN light frames in a row) shares the log at each put, busy or not: a bulk
    writer that starts beside it is paced from its first frames: its second frame waits for the first's cost at the
    rate, with nothing in flight. Before, only a light frame that found the log busy shared it, so the bulk writer's
    first frames went back to back until the light client's next put came (hostile big_frames: two 1 MiB entries in the
    attack's first 0.2 s, the good puts then 70-175 ms)."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "LIGHT_SESSION_RECENT_MS", 5000)
    monkeypatch.setattr(limits, "ENTRIES_SHARED_BYTES_PER_S_MAX", 1000)  # a 500 B frame (510 cost) holds 0.51 s
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    bulk, light = object(), object()
    big = [b"%d" % n + b"x" * 499 for n in range(2)]
    try:
        light_puts(proposer, engine, light, limits.LIGHT_SESSION_STREAK_MIN)
        apply_all = applier(engine)
        for run in big:
            assert proposer.offer(weighed(run, bulk), WAIT_S)
        wait_until(lambda: big[0] in engine.entries)
        first_at = time.monotonic()
        apply_all()
        time.sleep(0.2)
        assert big[1] not in engine.entries  # nothing in flight, yet held (went at once when the log was not shared)
        wait_until(lambda: big[1] in engine.entries)
        assert time.monotonic() - first_at >= 0.45
    finally:
        proposer.stop()


def test_a_writers_first_light_frames_do_not_make_the_log_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer than LIGHT_SESSION_STREAK_MIN light frames in a row (a pipelining writer's topic create and warm-up put,
    then its frames find it in flight) leave an idle log unshared: bulk frames then go back to back, unpaced."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "LIGHT_SESSION_RECENT_MS", 5000)
    monkeypatch.setattr(limits, "ENTRIES_SHARED_BYTES_PER_S_MAX", 1000)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    writer = object()
    try:
        light_puts(proposer, engine, writer, limits.LIGHT_SESSION_STREAK_MIN - 1)
        apply_all = applier(engine)
        for n in range(3):
            run = b"%d" % n + b"x" * 499
            assert proposer.offer(weighed(run, writer), WAIT_S)
            wait_until(lambda: run in engine.entries)  # noqa: B023 - waited for before the loop moves on
            apply_all()
    finally:
        proposer.stop()


def test_light_frames_sent_back_to_back_do_not_make_the_log_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer whose light frames come sooner than LIGHT_SESSION_GAP_MS_MIN after one another (a pipelining or
    open-loop sender at a moderate rate, each small frame alone in flight) is not a light client, however many there
    are: bulk frames beside it go back to back, unpaced. Before the gap rule, two open-loop senders at 10 % of the
    maximum rate made the log shared and paced each other's larger frames."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "LIGHT_SESSION_RECENT_MS", 5000)
    monkeypatch.setattr(limits, "LIGHT_SESSION_GAP_MS_MIN", 500)  # far above the time between the puts below
    monkeypatch.setattr(limits, "ENTRIES_SHARED_BYTES_PER_S_MAX", 1000)  # a 500 B frame (510 cost) would hold 0.51 s
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    sender, bulk = object(), object()
    try:
        light_puts(proposer, engine, sender, limits.LIGHT_SESSION_STREAK_MIN + 3, gap_s=0.0)
        apply_all = applier(engine)
        started = time.monotonic()
        for n in range(3):
            run = b"%d" % n + b"x" * 499
            assert proposer.offer(weighed(run, bulk), WAIT_S)
            wait_until(lambda: run in engine.entries)  # noqa: B023 - waited for before the loop moves on
            apply_all()
        assert time.monotonic() - started < 0.45  # paced, the three would take over 1 s
    finally:
        proposer.stop()


def test_light_frames_sent_back_to_back_do_not_keep_a_shared_log_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared log's window lapses LIGHT_SESSION_RECENT_MS after the light client's last put, even while another
    session sends light frames back to back (into a log that is not busy): those do not renew it, so bulk frames then
    go unpaced. When any light frame renewed it, an open-loop sender's frames kept it open at each lull."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "LIGHT_SESSION_RECENT_MS", 300)
    monkeypatch.setattr(limits, "LIGHT_SESSION_GAP_MS_MIN", 50)
    monkeypatch.setattr(limits, "ENTRIES_SHARED_BYTES_PER_S_MAX", 1000)  # a 500 B frame (510 cost) would hold 0.51 s
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    light, sender, bulk = object(), object(), object()
    try:
        light_puts(proposer, engine, light, limits.LIGHT_SESSION_STREAK_MIN)  # the log is shared from now
        apply_all = applier(engine)
        ended = time.monotonic() + 0.5  # past the light client's window
        n = 0
        while time.monotonic() < ended:
            put = b"quick-%d" % n
            assert proposer.offer(weighed(put, sender), WAIT_S)
            wait_until(lambda: put in engine.entries)  # noqa: B023 - waited for before the loop moves on
            apply_all()
            n += 1
        started = time.monotonic()
        assert proposer.offer(weighed(b"x" * 500, bulk), WAIT_S)
        wait_until(lambda: b"x" * 500 in engine.entries)
        assert time.monotonic() - started < 0.15  # in a window renewed by the quick puts, held 0.3 s
    finally:
        proposer.stop()


def test_in_a_shared_log_a_bulk_frame_waits_for_its_own_cost_even_with_nothing_paced_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the log is shared, a frame over the light bounds goes only once its own cost at the rate has passed since
    it was queued, even when nothing was paced before it and nothing is in flight: the first frame of a burst waits its
    turn too. Before, it went at once and only the next one waited (hostile big_frames: the first 1 MiB entry
    replicated and applied while the leader took in the burst's 3 MiB frames, and the good puts behind it took
    125-175 ms)."""
    light_lane(monkeypatch)
    monkeypatch.setattr(limits, "LIGHT_SESSION_RECENT_MS", 5000)
    monkeypatch.setattr(limits, "ENTRIES_SHARED_BYTES_PER_S_MAX", 1000)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    bulk, light = object(), object()
    big = b"x" * 500
    try:
        light_puts(proposer, engine, light, limits.LIGHT_SESSION_STREAK_MIN)
        apply_all = applier(engine)
        queued_at = time.monotonic()
        assert proposer.offer(weighed(big, bulk), WAIT_S)
        time.sleep(0.2)
        assert big not in engine.entries  # held: went at once before
        assert proposer.offer(weighed(b"put-x", light), WAIT_S)
        wait_until(lambda: b"put-x" in engine.entries)  # a light put meanwhile is not held
        apply_all()
        wait_until(lambda: big in engine.entries)
        assert time.monotonic() - queued_at >= 0.45
    finally:
        proposer.stop()
