"""Permissions checked again at apply: a grant revoked between the leader's check and the apply takes effect."""

from __future__ import annotations

import uuid
from pathlib import Path

from laminar.node._entry import encode_run
from laminar.node.state_machine import StateMachine
from laminar.node.store import Store
from laminar.v1 import laminar_pb2 as pb

A = pb.AuthRequest.Action
CLIENT = uuid.UUID(int=7).bytes


def _run(principal: str, *mutations: pb.Mutation) -> bytes:
    frame = pb.MutationFrame(mutations=list(mutations), principal=principal)
    return encode_run(CLIENT, frame.SerializeToString())


def _auth(*changes: pb.AuthChange) -> bytes:
    return pb.IntentionBatch(auth_changes=list(changes)).SerializeToString()


def test_a_write_whose_grant_was_revoked_before_it_applied_is_an_error_and_changes_nothing(tmp_path: Path) -> None:
    """With auth on, a run stamped with a user applies only what the user may do when it applies: after the
    revoke, its PUT is ERROR naming the permission and the topic gets no event; without a user, nothing applies."""
    store = Store(str(tmp_path / "store"))
    machine = StateMachine(store)
    index = 0

    def apply(payload: bytes) -> list[tuple[int, str]]:
        nonlocal index
        index += 1
        applied = machine.apply(index, payload)
        assert applied is not None
        store.commit(applied.writes, applied.mark)
        return [(o.effect, o.reason) for o in applied.outcomes]

    put = pb.Mutation(nonce=2, kind=pb.PUT, topic="t", key=b"k", value=b"v")
    assert apply(_run("", pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="t"))) == [(pb.VALID, "")]
    apply(
        _auth(
            pb.AuthChange(action=A.USER_ADD, user="root"),
            pb.AuthChange(action=A.USER_GRANT, user="root", role="root"),
            pb.AuthChange(action=A.USER_ADD, user="w"),
            pb.AuthChange(action=A.ROLE_ADD, role="w"),
            pb.AuthChange(action=A.ROLE_GRANT, role="w", grant=pb.Grant(permission=pb.PERMISSION_WRITE, pattern="t")),
            pb.AuthChange(action=A.USER_GRANT, user="w", role="w"),
            pb.AuthChange(action=A.ENABLE),
        )
    )
    assert apply(_run("w", put)) == [(pb.VALID, "")]
    apply(_auth(pb.AuthChange(action=A.USER_REVOKE, user="w", role="w")))
    put.nonce = 3
    [(effect, reason)] = apply(_run("w", put))
    assert effect == pb.ERROR and "user 'w' lacks write on topic 't'" in reason
    put.nonce = 4
    [(effect, reason)] = apply(_run("", put))
    assert effect == pb.ERROR and "without an identity" in reason
    events = [pb.Event.FromString(e) for e in store.read_events("t", 0, 100, 1 << 20)]
    assert [e.kind for e in events] == [pb.CREATE_TOPIC, pb.PUT], "a refused write appended an event"
    store.close()
