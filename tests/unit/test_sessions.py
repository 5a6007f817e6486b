"""A session's ack bookkeeping, without processes."""

from __future__ import annotations

import grpc
import pytest

from laminar import limits
from laminar.node.service._sessions import SessionFailure, _Session
from laminar.node.state_machine import Outcome
from laminar.v1 import laminar_pb2 as pb

CLIENT = b"c" * 16


def outcome(nonce: int) -> Outcome:
    return Outcome(CLIENT, nonce, pb.VALID, nonce + 100, "")


def test_a_session_reports_only_outcomes_of_nonces_it_sent() -> None:
    """Outcomes from an older session's entries (nonces this one has not sent yet) are not
    reported here: the client would skip them, and the node insists on consecutive nonces."""
    session = _Session(CLIENT, next_nonce=10)
    session.expected_nonce = 13  # this session has sent 10, 11, 12
    session.committed([outcome(n) for n in range(5, 20)])
    acks = session.next_acks()
    assert acks is not None
    assert [c.nonce for c in acks.commits] == [10, 11, 12]


def test_received_is_cumulative() -> None:
    """`received_through` only moves forward."""
    session = _Session(CLIENT, next_nonce=1)
    session.received(5)
    session.received(3)
    acks = session.next_acks()
    assert acks is not None and acks.received_through == 5


def test_a_run_outcome_is_clipped_to_the_nonces_this_session_sent() -> None:
    """One Outcome covering nonces 5..19 is acknowledged as one Commit for 10..12, offsets shifted."""
    session = _Session(CLIENT, next_nonce=10)
    session.expected_nonce = 13
    session.committed([Outcome(CLIENT, 5, pb.VALID, 105, "", count=15)])
    acks = session.next_acks()
    assert acks is not None
    assert [(c.nonce, c.count, c.intention_offset) for c in acks.commits] == [(10, 3, 110)]


def test_a_nonce_is_reported_once_when_an_old_entry_and_its_resend_both_apply() -> None:
    """After a fail-over the new leader applies the old leader's entry (nonces 10..12) and then the
    client's resend of the same nonces (answered from the dedupe table): one Commit, not two."""
    session = _Session(CLIENT, next_nonce=10)
    session.expected_nonce = 13  # the client resent 10, 11, 12
    session.committed([Outcome(CLIENT, 10, pb.VALID, 110, "", count=3)])  # the old leader's entry
    session.committed([Outcome(CLIENT, 10, pb.VALID, 110, "", count=3)])  # the resend, a duplicate
    first = session.next_acks()
    assert first is not None
    assert [(c.nonce, c.count) for c in first.commits] == [(10, 3)]
    session.expected_nonce = 15
    session.committed([Outcome(CLIENT, 11, pb.VALID, 111, "", count=4)])  # overlaps 11, 12; new 13, 14
    second = session.next_acks()
    assert second is not None
    assert [(c.nonce, c.count, c.intention_offset) for c in second.commits] == [(13, 2, 113)]


def test_commits_are_reported_in_nonce_order_without_gaps() -> None:
    """An old entry's outcome for nonces past a gap (12..13 while 10..11 are not reported yet) is not
    reported out of order: the session's own resend of 12..13 applies after 10..11, and reports it."""
    session = _Session(CLIENT, next_nonce=10)
    session.expected_nonce = 14
    session.committed([Outcome(CLIENT, 12, pb.VALID, 112, "", count=2)])
    session.committed([Outcome(CLIENT, 10, pb.VALID, 110, "", count=4)])
    acks = session.next_acks()
    assert acks is not None
    assert [(c.nonce, c.count) for c in acks.commits] == [(10, 4)]


def test_a_commit_never_arrives_before_its_received() -> None:
    """An entry can apply before the tick thread reports it received (a lone commit on one node, or
    an old leader's entry after a fail-over): the frame with its Commit says it is received too."""
    session = _Session(CLIENT, next_nonce=1)
    session.expected_nonce = 4
    session.committed([Outcome(CLIENT, 1, pb.VALID, 1, "", count=3)])
    acks = session.next_acks()
    assert acks is not None
    assert acks.received_through >= 3


def test_acks_frames_stay_under_the_message_limit_when_reasons_are_long() -> None:
    """10,000 Commits with 1 KiB reasons each (a program rejecting every message its own way) go out
    in several Acks frames, each within the 4 MiB message limit, in nonce order."""
    session = _Session(CLIENT, next_nonce=1)
    session.expected_nonce = 10_001
    reason = "r" * limits.REASON_BYTES_MAX
    session.committed(
        [Outcome(CLIENT, n, pb.ERROR, n, f"{n:05d}{reason}"[: limits.REASON_BYTES_MAX]) for n in range(1, 10_001)]
    )
    nonces: list[int] = []
    while len(nonces) < 10_000:
        acks = session.next_acks()
        assert acks is not None
        assert acks.ByteSize() <= limits.GRPC_MESSAGE_BYTES_MAX
        nonces.extend(c.nonce for c in acks.commits)
    assert nonces == list(range(1, 10_001))


def test_a_resend_with_other_contents_ends_the_session_if_the_original_was_reported() -> None:
    """After a fail-over the old entry's outcome for nonce 10 is reported first; the client's resend of
    10 had other contents (a conflict): the session ends with INVALID_ARGUMENT and the reason, rather
    than leave the client believing its resend applied. Unreported, a conflict is an ERROR Commit."""
    session = _Session(CLIENT, next_nonce=10)
    session.expected_nonce = 12
    session.committed([Outcome(CLIENT, 10, pb.VALID, 110, "")])
    session.committed(
        [Outcome(CLIENT, 11, pb.ERROR, 0, "nonce 11 was applied before with other contents", conflict=True)]
    )
    acks = session.next_acks()
    assert acks is not None
    assert [(c.nonce, c.effect) for c in acks.commits] == [(10, pb.VALID), (11, pb.ERROR)]
    session.committed(
        [Outcome(CLIENT, 10, pb.ERROR, 0, "nonce 10 was applied before with other contents", conflict=True)]
    )
    with pytest.raises(SessionFailure) as failure:
        session.next_acks()
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT and "other contents" in failure.value.message


def test_a_frame_over_the_run_bounds_is_proposed_in_runs_of_consecutive_nonces_each_within_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frame over RUN_BYTES_MAX or RUN_INTENTIONS_MAX (weighted) becomes consecutive runs, each within both, one
    mutation over them alone; together they hold the frame's mutations in order, and every run keeps the principal
    authorization stamped on the frame. A frame within them stays whole (the bytes the client sent)."""
    from laminar.node.service._sessions import _pieces

    monkeypatch.setattr(limits, "RUN_BYTES_MAX", 1000)
    monkeypatch.setattr(limits, "RUN_INTENTIONS_MAX", 8)
    mutations = [pb.Mutation(nonce=10 + i, kind=pb.PUT, topic="t", key=b"k", value=b"v" * 90) for i in range(12)]
    mutations.insert(3, pb.Mutation(nonce=0, kind=pb.PUT, topic="t", key=b"big", value=b"b" * 3000))
    mutations += [pb.Mutation(nonce=0, kind=pb.CREATE_TOPIC, topic=f"c{i}") for i in range(5)]
    for i, m in enumerate(mutations):
        m.nonce = 10 + i
    weights = [4 if m.kind == pb.CREATE_TOPIC else 1 for m in mutations]
    frame = pb.MutationFrame(mutations=mutations, principal="alice").SerializeToString()
    pieces = _pieces(frame, 10, weights)
    assert len(pieces) > 3
    seen: list[pb.Mutation] = []
    for piece, first, count, weighted, topic in pieces:
        run = pb.MutationFrame.FromString(piece)
        assert run.principal == "alice"
        assert [m.nonce for m in run.mutations] == list(range(first, first + count))
        assert weighted == sum(weights[first - 10 : first - 10 + count]) and topic == 0  # none marked
        assert count == 1 or (len(piece) <= 1000 + len(b"\x22\x05alice") and weighted <= 8)
        seen += run.mutations
    assert seen == mutations
    small = pb.MutationFrame(mutations=mutations[:2]).SerializeToString()
    assert _pieces(small, 10, weights[:2]) == [(small, 10, 2, 2, 0)]


def test_a_commits_only_session_sends_received_only_with_a_commit() -> None:
    """Hello.commits_only: `received` alone makes no Acks frame; the next Commit's frame carries it."""
    session = _Session(CLIENT, next_nonce=1, received_acks=False)
    session.expected_nonce = 3
    session.received(2)
    assert session.next_acks() is None
    session.committed([outcome(1)])
    acks = session.next_acks()
    assert acks is not None
    assert acks.received_through == 2 and [c.nonce for c in acks.commits] == [1]


def test_a_frames_mutations_are_spliced_from_the_bytes_sent_and_parse_as_the_frame_did() -> None:
    """The run's MutationFrame bytes are the client's own (a view, not re-serialized) when the ClientFrame holds only
    that field, with the auth gate's appended principal merged as a parser merges it; anything else (a Hello before
    the mutations, an unknown field) is serialized anew. Every way, they parse to the frame's mutations."""
    from laminar._wire import length_delimited
    from laminar.node.service._sessions import _mutation_frame_bytes

    mutations = [pb.Mutation(nonce=1 + i, kind=pb.PUT, topic="t", key=b"k", value=b"v" * i) for i in range(5)]
    plain = pb.ClientFrame(mutations=pb.MutationFrame(mutations=mutations, principal="mallory")).SerializeToString()
    stamped = plain + length_delimited(b"\x12", length_delimited(b"\x22", b"alice"))  # as auth/_gate.py appends
    hello_first = pb.ClientFrame(hello=pb.Hello(next_nonce=1)).SerializeToString() + plain
    unknown = plain + b"\x98\x06\x01"  # field 99, a varint
    for raw, principal in ((plain, "mallory"), (stamped, "alice"), (hello_first, "mallory"), (unknown, "mallory")):
        frame = pb.ClientFrame.FromString(raw)
        spliced = _mutation_frame_bytes(frame, raw)
        parsed = pb.MutationFrame.FromString(bytes(spliced))
        assert list(parsed.mutations) == mutations and parsed.principal == principal
    assert isinstance(_mutation_frame_bytes(pb.ClientFrame.FromString(plain), plain), memoryview)


def test_idle_sessions_hold_no_timer_each_and_one_reaper_closes_them() -> None:
    """Sessions that said Hello and nothing else wait without a timer of their own (their writers once each held
    one and woke on it every quarter of the idle timeout): while they wait, the event loop schedules timers for
    the one reaper only; it closes every one of them with UNAVAILABLE within 1.25 x session_idle_s plus a margin."""
    import asyncio
    from types import SimpleNamespace
    from typing import Any

    from laminar.node.config import ServingLimits
    from laminar.node.service._sessions import SESSION_IDLE_CHECKS, SessionRouter

    sessions, idle_s = 50, 0.4
    hello = pb.ClientFrame(hello=pb.Hello(client_id=b"", next_nonce=1))

    class Context:
        def __init__(self, n: int) -> None:
            hello.hello.client_id = n.to_bytes(16, "big")
            self._first: bytes | None = hello.SerializeToString()

        async def read(self) -> bytes:
            first, self._first = self._first, None
            if first is None:
                await asyncio.Event().wait()  # a client that sends nothing more
            return first  # type: ignore[return-value]

        async def write(self, message: Any) -> None:
            pass

    async def run() -> tuple[int, list[BaseException | None], float]:
        loop = asyncio.get_running_loop()
        node = SimpleNamespace(
            observe_commit_latency=None, offer=None, topic_run_max=None, nonce_max=None, is_leader=None,
            welcome=lambda: pb.Welcome(), read_barrier=None,
        )  # fmt: skip
        router = SessionRouter(node, ServingLimits(session_idle_s=idle_s), None)  # type: ignore[arg-type]
        started = loop.time()
        calls = [asyncio.ensure_future(router.run(Context(n))) for n in range(sessions)]
        await asyncio.sleep(idle_s / SESSION_IDLE_CHECKS / 2)
        assert router.count() == sessions
        timers = 0
        call_at = loop.call_at

        def counted(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            nonlocal timers
            timers += 1
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = counted  # type: ignore[method-assign]
        await asyncio.sleep(idle_s / 2)  # two of the reaper's checks, and every session's old timer at least once
        loop.call_at = call_at  # type: ignore[method-assign]
        ended = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), idle_s * 1.25 + 2.0)
        return timers, ended, loop.time() - started

    timers, ended, took_s = asyncio.run(run())
    assert timers <= 2 * SESSION_IDLE_CHECKS, f"{timers} timers for {sessions} idle sessions"
    for end in ended:
        assert isinstance(end, SessionFailure) and end.code == grpc.StatusCode.UNAVAILABLE and "idle" in end.message
    assert idle_s <= took_s < idle_s * 1.25 + 1.0
