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
    """Sessions take turns: with one session's many big frames queued (two never fit one entry), another
    session's small frame goes into the very next entry, and the big sender's frames stay in their order."""
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_MAX", 1)
    engine = RecordingEngine()
    proposer = Proposer(engine, clock_ms=None)  # type: ignore[arg-type]
    big_sender, small_sender = object(), object()
    big = limits.BATCH_BYTES_MAX * 6 // 10  # two of them exceed one entry
    frames = [b"%d" % n + b"x" * (big - 1) for n in range(8)]
    try:
        for frame in frames:  # the first goes out at once and stays in flight; the rest queue
            assert proposer.offer(proposal(frame, session=big_sender), WAIT_S)
        assert proposer.offer(proposal(b"small", session=small_sender), WAIT_S)
        assert engine.entries == [frames[0]]
        engine.results[0](True)
        wait_until(lambda: len(engine.entries) == 2)
        assert engine.entries[1] == frames[1] + b"small"  # not after frames[2:]
        for n in range(2, len(frames)):
            engine.results[n - 1](True)
            wait_until(lambda n=n: len(engine.entries) == n + 1)
            assert engine.entries[n] == frames[n]
    finally:
        proposer.stop()
