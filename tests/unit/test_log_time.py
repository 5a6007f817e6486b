"""Log time: entries stamped by the leader become one monotone clock on every node; idle leaders tick.

The state machine is fed entries with chosen stamps (no processes); the proposer runs against a
recording engine with a chosen clock."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from laminar import limits
from laminar.node._entry import encode_entry, encode_run, encode_time
from laminar.node.raft._proposer import Proposal, Proposer
from laminar.node.state_machine import StateMachine
from laminar.node.store import AppliedMark, Store
from laminar.v1 import laminar_pb2 as pb

ALICE = uuid.UUID(int=1).bytes
MINUTE_MS = 60_000
T0 = 1_800_000_000_000  # a wall-clock time in ms
CLOCK_PROGRAM = """
def on_put(ctx, key, value):
    ctx.put(key, str(ctx.time_ms))
"""


def stamped(time_ms: int, *mutations: pb.Mutation) -> bytes:
    run = encode_run(ALICE, pb.MutationFrame(mutations=list(mutations)).SerializeToString())
    return encode_entry([run], time_ms)


def put(nonce: int, topic: str = "t", key: bytes = b"k") -> pb.Mutation:
    return pb.Mutation(nonce=nonce, kind=pb.PUT, topic=topic, key=key, value=b"v")


class Machine:
    def __init__(self, path: Path) -> None:
        self.store = Store(str(path))
        self.machine = StateMachine(self.store)
        self.index = 0

    def apply(self, payload: bytes) -> None:
        self.index += 1
        applied = self.machine.apply(self.index, payload)
        assert applied is not None
        self.store.commit(applied.writes, applied.mark)

    def times(self, topic: str = "t") -> list[int]:
        return [pb.Event.FromString(e).time_ms for e in self.store.read_events(topic, 0, 1000, 1 << 30)]


def test_log_time_is_the_largest_stamp_so_far_and_unstamped_entries_keep_it(tmp_path: Path) -> None:
    """Events carry their entry's stamp; an entry stamped minutes earlier (a leader whose clock is
    behind) does not move time back; an entry without a stamp (an older journal) applies and keeps
    time where it was; a stamp minutes ahead moves it forward at once."""
    sm = Machine(tmp_path / "a")
    sm.apply(stamped(0, pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="t")))  # before log time existed
    sm.apply(stamped(T0, put(2)))
    sm.apply(stamped(T0 - 5 * MINUTE_MS, put(3)))  # a new leader 5 minutes behind
    sm.apply(stamped(0, put(4)))
    sm.apply(stamped(T0 + 5 * MINUTE_MS, put(5)))  # a new leader 5 minutes ahead
    sm.apply(stamped(T0 + 1, put(6)))  # back to a correct clock: time stays ahead
    assert sm.times() == [0, T0, T0, T0, T0 + 5 * MINUTE_MS, T0 + 5 * MINUTE_MS]
    assert sm.machine.time_ms == T0 + 5 * MINUTE_MS
    sm.apply(encode_time(T0 + 6 * MINUTE_MS))  # a time tick: no intention, time moves
    assert sm.machine.time_ms == T0 + 6 * MINUTE_MS
    assert sm.machine.applied_mark.intention_offset == 6


def test_log_time_survives_a_restart_and_programs_read_it(tmp_path: Path) -> None:
    """Log time is kept with the applied mark: a machine reopened on the store goes on from it (a
    lower stamp after the restart does not move it back); ctx.time_ms is the entry's log time."""
    sm = Machine(tmp_path / "a")
    create = pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="c", program=CLOCK_PROGRAM)
    sm.apply(stamped(T0, create))
    sm.apply(stamped(T0 + 7, put(2, "c", b"x")))
    sm.store.close()
    reopened = Machine(tmp_path / "a")
    reopened.index = sm.index
    assert reopened.machine.time_ms == T0 + 7
    reopened.apply(stamped(T0 - MINUTE_MS, put(3, "c", b"y")))
    events = [pb.Event.FromString(e) for e in reopened.store.read_events("c", 0, 10, 1 << 30)]
    assert [(e.key, e.value, e.time_ms) for e in events[1:]] == [
        (b"x", str(T0 + 7).encode(), T0 + 7),
        (b"y", str(T0 + 7).encode(), T0 + 7),
    ]


def test_nodes_fed_the_same_stamped_entries_have_identical_stores(tmp_path: Path) -> None:
    """Log time is a function of the log: two machines given the same entries store the same bytes."""
    entries = [
        stamped(T0, pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="t")),
        stamped(T0 - 3, put(2)),
        encode_time(T0 + 1000),
        stamped(0, put(3)),
    ]
    a, b = Machine(tmp_path / "a"), Machine(tmp_path / "b")
    for payload in entries:
        a.apply(payload)
        b.apply(payload)
    assert list(a.store.scan(b"")) == list(b.store.scan(b""))
    assert a.times() == [T0, T0, T0 + 1000]


def test_an_applied_mark_written_before_log_time_still_reads() -> None:
    """A store written by the previous version holds a 16-byte mark: it reads with log time 0."""
    old = (12).to_bytes(8, "big") + (34).to_bytes(8, "big")
    assert AppliedMark.decode(old) == AppliedMark(12, 34, 0)
    assert AppliedMark.decode(AppliedMark(12, 34, T0).encode()) == AppliedMark(12, 34, T0)


class LeaderEngine:
    """Records proposed entries; leads while `leading` is set; applies each entry at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[bytes] = []
        self.leading = True

    def propose(self, payload: bytes, on_result: Callable[[bool], None]) -> None:
        with self.lock:
            self.entries.append(payload)
        on_result(True)

    def after_tick(self, task: Callable[[], None]) -> None:
        task()

    def is_leader(self) -> bool:
        return self.leading


def test_an_idle_leader_ticks_and_a_busy_one_or_a_follower_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries carry the proposer's clock; with nothing to propose for LOG_TIME_TICK_MS, a leader
    proposes a time tick (the stamp alone), at most one per interval; a follower proposes none."""
    monkeypatch.setattr(limits, "LOG_TIME_TICK_MS", 50)
    engine = LeaderEngine()
    proposer = Proposer(engine, clock_ms=lambda: T0)  # type: ignore[arg-type]
    try:
        assert proposer.offer(Proposal(b"\x0a\x00", 1, lambda: True, lambda: None), 1.0)
        assert pb.IntentionBatch.FromString(engine.entries[0]).time_ms == T0
        time.sleep(0.5)
        ticks = engine.entries[1:]
        assert 3 <= len(ticks) <= 10, len(ticks)  # ~9 at 50 ms; fewer on a loaded machine
        assert set(ticks) == {encode_time(T0)}
        monkeypatch.setattr(limits, "LOG_TIME_TICK_MS", 300)  # a margin for a loaded machine
        time.sleep(0.06)  # a tick due under the old interval goes out first
        busy_from = len(engine.entries)
        for _ in range(30):  # a busy leader: an entry every 10 ms, so no tick falls due
            assert proposer.offer(Proposal(b"\x0a\x00", 1, lambda: True, lambda: None), 1.0)
            time.sleep(0.01)
        assert encode_time(T0) not in engine.entries[busy_from + 1 :]
        engine.leading = False
        time.sleep(0.1)  # a tick decided before the change may still go out
        count = len(engine.entries)
        time.sleep(0.3)
        assert len(engine.entries) == count
    finally:
        proposer.stop()
