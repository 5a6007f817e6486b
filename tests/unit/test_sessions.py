"""A session's ack bookkeeping, without processes."""

from __future__ import annotations

from laminar.node.service._sessions import _Session
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
