"""Limits, mutation rules, and the hand-built protobuf framing. No processes."""

from __future__ import annotations

import uuid

import pytest

import laminar
from laminar import _rules, limits
from laminar.node._entry import encode_run, one_intention_at_most
from laminar.node.service._listen import encode_listen_frame
from laminar.v1 import laminar_pb2 as pb


@pytest.mark.parametrize("name", ["a", "chat", "A.b-c_9", "x" * 255])
def test_valid_topic_names(name: str) -> None:
    """Names matching [A-Za-z0-9._-]{1,255} are accepted."""
    assert _rules.topic_problem(name) is None


@pytest.mark.parametrize("name", ["", "has space", "slash/", "ü", "x" * 256, "nul\x00"])
def test_invalid_topic_names(name: str) -> None:
    """Anything else is refused with the rule in the message."""
    problem = _rules.topic_problem(name)
    assert problem is not None and "must match" in problem


def test_size_limits_are_enforced_at_their_bound() -> None:
    """A key or value exactly at its limit passes; one byte more is refused with the numbers."""
    ok = pb.Mutation(kind=pb.PUT, topic="t", key=b"k" * limits.KEY_BYTES_MAX, value=b"v" * limits.VALUE_BYTES_MAX)
    assert _rules.mutation_problem(ok) is None
    big_key = pb.Mutation(kind=pb.PUT, topic="t", key=b"k" * (limits.KEY_BYTES_MAX + 1))
    assert f"limit is {limits.KEY_BYTES_MAX}" in (_rules.mutation_problem(big_key) or "")
    big_value = pb.Mutation(kind=pb.PUT, topic="t", value=b"v" * (limits.VALUE_BYTES_MAX + 1))
    assert f"limit is {limits.VALUE_BYTES_MAX}" in (_rules.mutation_problem(big_value) or "")
    big_program = pb.Mutation(kind=pb.CREATE_TOPIC, topic="t", program="#" * (limits.PROGRAM_SOURCE_BYTES_MAX + 1))
    assert "program is" in (_rules.mutation_problem(big_program) or "")


def test_the_cheap_checks_refuse_what_the_full_ones_did() -> None:
    """mutation_problem skips encoding a short program and reading an unset Retention: a program of 4-byte characters
    over the bound in bytes, a retention over its bound on any kind of write, and args over theirs are still refused;
    a program exactly at the bound in bytes, and a retention at its bound, still pass."""
    quarter = limits.PROGRAM_SOURCE_BYTES_MAX // 4
    assert _rules.mutation_problem(pb.Mutation(kind=pb.CREATE_TOPIC, topic="t", program="\U0001f600" * quarter)) is None
    wide = pb.Mutation(kind=pb.CREATE_TOPIC, topic="t", program="\U0001f600" * (quarter + 1))
    assert "program is" in (_rules.mutation_problem(wide) or "")
    for kind in (pb.PUT, pb.CREATE_TOPIC, pb.CONFIGURE_TOPIC):
        over = pb.Mutation(kind=kind, topic="t", retention=pb.Retention(max_events=limits.RETENTION_EVENTS_MAX + 1))
        assert "retention max_events" in (_rules.mutation_problem(over) or ""), kind
        at = pb.Mutation(kind=kind, topic="t", retention=pb.Retention(max_age_ms=limits.RETENTION_AGE_MS_MAX))
        assert _rules.mutation_problem(at) is None
    args = pb.Mutation(kind=pb.CREATE_TOPIC, topic="t", args=b"a" * (limits.PROGRAM_ARGS_BYTES_MAX + 1))
    assert "args are" in (_rules.mutation_problem(args) or "")


def test_a_message_at_every_limit_fits_in_one_grpc_message() -> None:
    """The gRPC message bound leaves room for the largest legal mutation."""
    m = pb.Mutation(
        nonce=2**63,
        kind=pb.CREATE_TOPIC,
        topic="x" * 255,
        key=b"k" * limits.KEY_BYTES_MAX,
        value=b"v" * limits.VALUE_BYTES_MAX,
        program="p" * limits.PROGRAM_SOURCE_BYTES_MAX,
        args=b"a" * limits.PROGRAM_ARGS_BYTES_MAX,
    )
    frame = pb.ClientFrame(mutations=pb.MutationFrame(mutations=[m]))
    assert frame.ByteSize() < limits.GRPC_MESSAGE_BYTES_MAX
    assert limits.FRAME_BYTES_MAX + frame.ByteSize() < limits.GRPC_MESSAGE_BYTES_MAX


def test_client_refuses_bad_input_before_sending() -> None:
    """The client checks the rules locally: no node is needed to get the error."""
    with laminar.Client(["127.0.0.1:1"]) as client:
        with pytest.raises(laminar.InvalidRequest, match="topic name"):
            client.put("bad name", "k", "v")
        with pytest.raises(laminar.InvalidRequest, match="must be bytes or str"):
            client.put("t", 5, "v")  # type: ignore[arg-type]


def test_spliced_run_decodes_as_the_messages_it_was_built_from() -> None:
    """encode_run builds IntentionBatch bytes that protobuf decodes back exactly."""
    client_id = uuid.uuid4().bytes
    mutations = [pb.Mutation(nonce=n, kind=pb.PUT, topic="t", key=b"k", value=b"v" * n) for n in range(1, 200)]
    frame = pb.MutationFrame(mutations=mutations).SerializeToString()
    batch = pb.IntentionBatch.FromString(encode_run(client_id, frame) + encode_run(client_id, frame))
    assert len(batch.runs) == 2
    assert batch.runs[0].client_id == client_id and list(batch.runs[1].mutations) == mutations


def test_spliced_listen_frame_round_trips() -> None:
    """encode_listen_frame builds a ListenFrame from stored events without decoding them."""
    events = [pb.Event(kind=pb.PUT, key=b"k", value=b"x" * n, consequence_offset=n) for n in range(1, 300)]
    frame = pb.ListenFrame.FromString(encode_listen_frame([e.SerializeToString() for e in events]))
    assert list(frame.events) == events


def test_public_api_is_small_and_explicit() -> None:
    """The package exports what DESIGN.md names, and every exception derives from LaminarError."""
    for name in ("Client", "Listener", "Commit", "Event", "Kind", "Effect", "LaminarError"):
        assert name in laminar.__all__
    for name in ("InvalidRequest", "Unavailable", "Timeout", "ClientClosed", "ProtocolError", "ConfigError"):
        assert issubclass(getattr(laminar, name), laminar.LaminarError)
    assert laminar.Kind.PUT == "PUT" and laminar.Effect.VALID == "VALID"


def test_only_small_entries_of_at_most_one_intention_are_applied_by_the_tick_thread() -> None:
    """The tick thread applies an entry itself only when it holds at most one intention (its stall is
    then bounded by one program call); anything else, or anything it cannot read, goes to the apply thread."""

    def entry(*puts: bytes) -> bytes:
        mutations = [pb.Mutation(nonce=n + 1, kind=pb.PUT, topic="t", key=b"k", value=v) for n, v in enumerate(puts)]
        return encode_run(b"c" * 16, pb.MutationFrame(mutations=mutations).SerializeToString())

    assert one_intention_at_most(b"", limits.APPLY_INLINE_BYTES_MAX) == pb.IntentionBatch()  # a read barrier, a no-op
    one = entry(b"v")
    assert one_intention_at_most(one, limits.APPLY_INLINE_BYTES_MAX) == pb.IntentionBatch.FromString(one)
    assert one_intention_at_most(entry(b"v", b"w"), limits.APPLY_INLINE_BYTES_MAX) is None
    assert (
        one_intention_at_most(entry(b"x" * limits.APPLY_INLINE_BYTES_MAX), limits.APPLY_INLINE_BYTES_MAX) is None
    )  # one, but large
    assert (
        one_intention_at_most(b"\xff\xff\xff", limits.APPLY_INLINE_BYTES_MAX) is None
    )  # unreadable: the state machine decides, elsewhere
