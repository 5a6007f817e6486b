"""Topic creates and destroys in flight bounded by time: the apply thread's measured pace of them sets how many may be
in flight (laminar/node/raft/_pace.py), the proposer holds a frame of them back when that is full, and sessions cut
frames at half of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from laminar import limits
from laminar.node.raft._pace import TopicPace
from laminar.node.raft._proposer import Proposal, Proposer

WAIT_S = 5.0
STATIC_MAX = limits.ENTRIES_INFLIGHT_INTENTIONS_MAX // limits.INTENTION_COST_TOPIC


def test_the_bound_is_the_weighted_one_until_an_entry_of_topic_ops_is_measured() -> None:
    """No sample yet: what ENTRIES_INFLIGHT_INTENTIONS_MAX holds of topic ops. An entry of fewer topic ops than
    APPLY_PACE_SAMPLE_INTENTIONS_MIN (its own cost would read as slow ops), one mostly of puts, or one not measured
    (0 s) is no sample."""
    pace = TopicPace()
    assert pace.inflight_max() == STATIC_MAX and pace.run_max() == STATIC_MAX // 2
    pace.observe(limits.APPLY_PACE_SAMPLE_INTENTIONS_MIN - 1, limits.APPLY_PACE_SAMPLE_INTENTIONS_MIN - 1, 1.0)
    pace.observe(100, 1000, 1.0)  # 900 puts
    pace.observe(500, 500, 0.0)
    assert pace.us_per_op() is None and pace.inflight_max() == STATIC_MAX


def test_the_bound_is_what_the_measured_pace_applies_in_the_time_bound_within_its_floor_and_ceiling() -> None:
    """At 100 us a topic op, ENTRIES_INFLIGHT_TOPIC_APPLY_MS_MAX holds that many, a run half of it. A much slower pace
    stops at ENTRIES_INFLIGHT_TOPIC_INTENTIONS_MIN, a much faster one at what the weighted bound holds."""
    pace = TopicPace()
    pace.observe(500, 500, 500 * 100e-6)
    expected = int(limits.ENTRIES_INFLIGHT_TOPIC_APPLY_MS_MAX * 1000 / 100)
    assert limits.ENTRIES_INFLIGHT_TOPIC_INTENTIONS_MIN < expected < STATIC_MAX
    assert pace.inflight_max() == expected and pace.run_max() == expected // 2
    slow, fast = TopicPace(), TopicPace()
    slow.observe(500, 500, 5.0)  # 10 ms a topic op
    fast.observe(500, 500, 500 * 1e-6)
    assert slow.inflight_max() == limits.ENTRIES_INFLIGHT_TOPIC_INTENTIONS_MIN
    assert fast.inflight_max() == STATIC_MAX


def test_the_pace_follows_a_machine_that_slows_within_a_few_entries_and_one_stall_moves_it_a_quarter() -> None:
    """A load that makes every apply 4x slower (30 us a topic op quiet, 120 us loaded) cuts the bound by at least half
    within four entries; a single entry stalled 10x moves the estimate by a quarter of its excess only."""
    pace = TopicPace()
    pace.observe(500, 500, 500 * 30e-6)
    quiet = pace.inflight_max()
    for _ in range(4):
        pace.observe(500, 500, 500 * 120e-6)
    assert pace.inflight_max() <= quiet // 2
    steady = TopicPace()
    steady.observe(500, 500, 500 * 30e-6)
    steady.observe(500, 500, 500 * 300e-6)
    assert steady.us_per_op() == pytest.approx(30 + 0.25 * 270)


class _Engine:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[bytes] = []
        self.results: list[Callable[[bool], None]] = []

    def propose(self, payload: bytes, on_result: Callable[[bool], None]) -> None:
        with self.lock:
            self.entries.append(payload)
            self.results.append(on_result)

    def after_tick(self, task: Callable[[], None]) -> None:
        task()

    def proposed(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while len(self.entries) < count:
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.001)


def _topic_ops(run: bytes, session: object, ops: int) -> Proposal:
    cost = ops * limits.INTENTION_COST_TOPIC
    return Proposal(run, ops, lambda: True, lambda: None, session=session, cost_intentions=cost, topic_intentions=ops)


def _second_frame_waits(apply_s: float) -> bool:
    """A session's 200 topic ops proposed, applied in apply_s; its next 200 proposed (nothing in flight: at once);
    then another session's 20: whether they wait for the second 200 to be applied."""
    engine = _Engine()
    hooks: list[Callable[[float], None]] = []
    proposer = Proposer(engine, clock_ms=None, after_apply=hooks.append)  # type: ignore[arg-type]
    churner, other = object(), object()
    try:
        assert proposer.offer(_topic_ops(b"first", churner, 200), WAIT_S)
        engine.proposed(1)
        engine.results[0](True)
        hooks.pop()(apply_s)  # applied: the pace is measured
        assert proposer.offer(_topic_ops(b"second", churner, 200), WAIT_S)
        engine.proposed(2)
        assert proposer.offer(_topic_ops(b"third", other, 20), WAIT_S)
        time.sleep(0.1)
        waited = len(engine.entries) == 2
        engine.results[1](True)
        hooks.pop()(apply_s)
        engine.proposed(3)
        return waited
    finally:
        proposer.stop()


def test_after_slow_topic_ops_a_frame_of_them_within_the_weighted_bound_waits_for_what_is_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 topic ops applied in 100 ms (500 us each): the paced bound is 10 ms / 500 us = 20 topic ops, so with 200
    in flight another session's 20 wait until they are applied, though 220 is far within what
    ENTRIES_INFLIGHT_INTENTIONS_MAX holds (without the pace they went at once, behind 100 ms of apply). At a fast
    pace (5 us each: 2,000) the same frame goes at once."""
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_TOPIC_APPLY_MS_MAX", 10)
    monkeypatch.setattr(limits, "ENTRIES_INFLIGHT_TOPIC_INTENTIONS_MIN", 10)
    monkeypatch.setattr(limits, "PIPELINED_ENTRY_INTENTIONS_MIN", 1)  # every frame is worth an entry of its own
    assert _second_frame_waits(0.1)
    assert not _second_frame_waits(0.001)


def test_a_frame_of_topic_ops_is_cut_into_runs_of_the_paced_run_bound_and_puts_are_not_counted() -> None:
    """Sessions cut a frame with more topic creates and destroys than the proposer's paced run bound into runs of at
    most that many, consecutive; the puts among them count against the weighted bounds only."""
    from laminar.node.service._sessions import _pieces
    from laminar.v1 import laminar_pb2 as pb

    kinds = [pb.CREATE_TOPIC, pb.PUT, pb.DESTROY_TOPIC, pb.CREATE_TOPIC, pb.PUT, pb.PUT, pb.DESTROY_TOPIC]
    mutations = [pb.Mutation(nonce=10 + n, kind=k, topic=f"t{n}") for n, k in enumerate(kinds)]
    frame = pb.MutationFrame(mutations=mutations).SerializeToString()
    topics = [k in (pb.CREATE_TOPIC, pb.DESTROY_TOPIC) for k in kinds]
    weights = [limits.INTENTION_COST_TOPIC if t else 1 for t in topics]
    pieces = _pieces(frame, 10, weights, topics, topic_run_max=2)
    assert [(nonce, count) for _, nonce, count, _, _ in pieces] == [(10, 3), (13, 4)]
    for run, nonce, count, _, topic in pieces:
        assert [m.nonce for m in pb.MutationFrame.FromString(run).mutations] == list(range(nonce, nonce + count))
        assert topic == sum(topics[nonce - 10 : nonce - 10 + count]) <= 2
    assert len(_pieces(frame, 10, weights, topics, topic_run_max=4)) == 1
