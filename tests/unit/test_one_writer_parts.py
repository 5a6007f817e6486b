"""A client id belongs to one writer: the pure parts (run encoding, state machine, session bookkeeping)."""

from __future__ import annotations

import uuid
from pathlib import Path

from laminar.node._entry import encode_run
from laminar.node.service._sessions import _Session
from laminar.node.state_machine import Outcome, StateMachine
from laminar.node.store import Store
from laminar.v1 import laminar_pb2 as pb

CLIENT = uuid.UUID(int=7).bytes


def put(nonce: int, value: bytes, topic: str = "t") -> pb.Mutation:
    return pb.Mutation(nonce=nonce, kind=pb.PUT, topic=topic, key=b"k", value=value)


def run(session: int, *mutations: pb.Mutation) -> bytes:
    return encode_run(CLIENT, pb.MutationFrame(mutations=mutations).SerializeToString(), session)


def test_a_run_names_the_session_that_proposed_it() -> None:
    """encode_run's session round-trips through ClientRun.session; without one it reads as 0."""
    batch = pb.IntentionBatch.FromString(run(2**64 - 1, put(1, b"a")) + run(0, put(2, b"b")))
    assert [r.session for r in batch.runs] == [2**64 - 1, 0]
    assert [r.client_id for r in batch.runs] == [CLIENT, CLIENT]


def test_outcomes_carry_the_session_of_their_run(tmp_path: Path) -> None:
    """Two sessions of one client id in one entry: each outcome names the session whose run it answers,
    and a resend with other contents is a conflict, not the first writer's outcome."""
    store = Store(str(tmp_path / "db"))
    machine = StateMachine(store)
    create = encode_run(
        CLIENT,
        pb.MutationFrame(mutations=[pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="t")]).SerializeToString(),
        5,
    )
    applied = machine.apply(2, create + run(11, put(2, b"from A")) + run(22, put(2, b"from B")))
    assert applied is not None
    got = [(o.session, o.nonce, o.effect, o.conflict) for o in applied.outcomes]
    assert got == [(5, 1, pb.VALID, False), (11, 2, pb.VALID, False), (22, 2, pb.ERROR, True)]
    store.close()


def test_a_session_ignores_outcomes_of_another_sessions_runs() -> None:
    """Another writer's VALID for nonce 3 is not reported to this session; its own conflict is, as ERROR."""
    session = _Session(CLIENT, next_nonce=3)
    session.expected_nonce = 4  # this session sent nonce 3
    other = session.token ^ 2
    session.committed([Outcome(CLIENT, 3, pb.VALID, 103, "", session=other)])
    session.committed(
        [
            Outcome(
                CLIENT,
                3,
                pb.ERROR,
                0,
                "nonce 3 was applied before with other contents",
                conflict=True,
                session=session.token,
            )
        ]
    )
    acks = session.next_acks()
    assert acks is not None
    assert [(c.nonce, c.effect) for c in acks.commits] == [(3, pb.ERROR)]
    assert "other contents" in acks.commits[0].reason


def test_outcomes_of_runs_that_name_no_session_still_reach_the_client() -> None:
    """Entries written before runs named their session (session 0) are reported as before."""
    session = _Session(CLIENT, next_nonce=1)
    session.expected_nonce = 2
    session.committed([Outcome(CLIENT, 1, pb.VALID, 9, "")])
    acks = session.next_acks()
    assert acks is not None and [(c.nonce, c.intention_offset) for c in acks.commits] == [(1, 9)]
