"""The wire protocol as docs/protocol.md describes it, driven with plain generated stubs (no laminar.Client)."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator

import grpc
import pytest
from wire_stub import redirect

from laminar.v1 import laminar_pb2 as pb
from laminar.v1 import laminar_pb2_grpc

TIMEOUT_S = 20.0


class Session:
    """One Session stream: frames go in through a queue, so sends never wait for acks."""

    def __init__(self, address: str, client_id: bytes, next_nonce: int) -> None:
        self.channel = grpc.insecure_channel(address)
        self.outbox: queue.Queue[pb.ClientFrame | None] = queue.Queue()
        self.outbox.put(pb.ClientFrame(hello=pb.Hello(client_id=client_id, next_nonce=next_nonce)))
        self.call = laminar_pb2_grpc.LaminarStub(self.channel).Session(self._frames(), timeout=TIMEOUT_S)
        self.received_through = 0
        self.commits: dict[int, pb.Commit] = {}

    def _frames(self) -> Iterator[pb.ClientFrame]:
        while (frame := self.outbox.get()) is not None:
            yield frame

    def send(self, mutations: list[pb.Mutation]) -> None:
        self.outbox.put(pb.ClientFrame(mutations=pb.MutationFrame(mutations=mutations)))

    def welcome(self) -> pb.Welcome:
        frame = next(self.call)
        assert frame.WhichOneof("body") == "welcome"
        return frame.welcome

    def until_committed(self, last_nonce: int) -> None:
        """Read acks until `last_nonce` has its Commit; check the rules of the page on the way."""
        while last_nonce not in self.commits:
            frame = next(self.call)
            assert frame.WhichOneof("body") == "acks"
            if frame.acks.received_through:
                assert frame.acks.received_through >= self.received_through, "received_through is cumulative"
                self.received_through = frame.acks.received_through
            for run in frame.acks.commits:
                # One Commit covers `count` consecutive nonces (0 reads as 1); spread it out.
                assert all(run.nonce > n for n in self.commits), "in nonce order, never overlapping"
                for i in range(max(1, run.count)):
                    offset = run.intention_offset + i if run.intention_offset else 0
                    self.commits[run.nonce + i] = pb.Commit(
                        nonce=run.nonce + i, effect=run.effect, intention_offset=offset, reason=run.reason
                    )

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()
        self.channel.close()


def put(nonce: int, key: str, value: str) -> pb.Mutation:
    return pb.Mutation(nonce=nonce, kind=pb.PUT, topic="proto", key=key.encode(), value=value.encode())


def welcome(address: str) -> None:
    session = Session(address, uuid.uuid4().bytes, 1)
    try:
        session.welcome()
    finally:
        session.close()


def leader_and_follower(addresses: list[str]) -> tuple[str, str]:
    """Redirects: a Session on a follower ends UNAVAILABLE with the leader in `laminar-leader`."""
    for address in addresses:
        try:
            welcome(address)
            continue  # this one leads; try the next to see a redirect
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        error, leader = redirect(lambda address=address: welcome(address))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert leader in addresses and leader != address
        return leader, address
    raise AssertionError("no node redirected")


def test_handshake_pipelined_puts_acks_redirect_resend_and_listen(make_cluster) -> None:
    """Everything a client in another language needs, following docs/protocol.md step by step."""
    c = make_cluster(3)
    leader, follower = leader_and_follower(c.addresses)
    client_id = uuid.uuid4().bytes

    # Handshake, then 1 create + 100 puts in 5 frames, sent before reading any ack.
    first = Session(leader, client_id, next_nonce=1)
    welcome = first.welcome()
    assert {p.client_address for p in welcome.peers} == set(c.addresses) and welcome.term >= 1
    first.send([pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="proto")])
    for frame in range(5):
        first.send([put(2 + frame * 20 + i, f"k{i % 10}", f"v{frame * 20 + i}") for i in range(20)])
    first.until_committed(101)
    assert first.received_through == 101
    assert [first.commits[n].effect for n in range(1, 102)] == [pb.VALID] * 101
    offsets = [first.commits[n].intention_offset for n in range(1, 102)]
    assert offsets == sorted(offsets) and len(set(offsets)) == 101
    first.close()

    # Resume: pretend the commits from nonce 52 on were lost with the connection. A new session
    # starts from the oldest uncommitted nonce and resends the same mutations, then new ones.
    second = Session(leader, client_id, next_nonce=52)
    second.welcome()
    second.send([put(n, f"k{(n - 2) % 10}", f"v{n - 2}") for n in range(52, 102)])
    second.send([put(n, "late", f"n{n}") for n in range(102, 106)])
    second.until_committed(105)
    for n in range(52, 102):  # duplicates: the original outcome, not a second application
        assert second.commits[n] == first.commits[n]
    assert second.commits[102].intention_offset == offsets[-1] + 1
    second.close()

    # Nonce rules: a session may not skip ahead of what was applied.
    ahead = Session(leader, client_id, next_nonce=200)
    with pytest.raises(grpc.RpcError) as caught:
        ahead.welcome()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    ahead.close()

    # Listen from 0 on a follower: every event once, in order, gapless.
    with grpc.insecure_channel(follower) as channel:
        stub = laminar_pb2_grpc.LaminarStub(channel)
        stream = stub.Listen(pb.ListenRequest(topic="proto", from_offset=0), timeout=TIMEOUT_S)
        events: list[pb.Event] = []
        for frame in stream:
            events.extend(frame.events)
            if len(events) >= 105:
                break
        stream.cancel()
        assert [e.consequence_offset for e in events] == list(range(1, 106))
        assert events[0].kind == pb.CREATE_TOPIC and events[-1].value == b"n105"
        # Resume from an offset, and read the state as a snapshot.
        stream = stub.Listen(pb.ListenRequest(topic="proto", from_offset=103), timeout=TIMEOUT_S)
        assert [e.consequence_offset for e in next(stream).events][:2] == [104, 105]
        stream.cancel()
        snapshot = stub.Listen(pb.ListenRequest(topic="proto", snapshot=True), timeout=TIMEOUT_S)
        frame = next(snapshot)
        snapshot.cancel()
        assert frame.snapshot_end and frame.snapshot_offset == 105
        assert {e.key: e.value for e in frame.snapshot}[b"late"] == b"n105"
        assert len(frame.snapshot) == 11  # k0..k9 and late

    # Get: linearizable on the leader; a follower redirects unless stale_ok.
    with grpc.insecure_channel(leader) as channel:
        got = laminar_pb2_grpc.LaminarStub(channel).Get(pb.GetRequest(topic="proto", key=b"k9"), timeout=TIMEOUT_S)
        assert got.found and got.value == b"v99" and got.topic_offset == 105
    with grpc.insecure_channel(follower) as channel:
        stub = laminar_pb2_grpc.LaminarStub(channel)
        error, hint = redirect(lambda: stub.Get(pb.GetRequest(topic="proto", key=b"k9"), timeout=TIMEOUT_S))
        assert error.code() == grpc.StatusCode.UNAVAILABLE and hint == leader
        stale = stub.Get(pb.GetRequest(topic="proto", key=b"k9", stale_ok=True), timeout=TIMEOUT_S)
        assert stale.value == b"v99"


def test_a_bad_frame_ends_the_session_with_invalid_argument_and_nothing_is_applied(make_cluster) -> None:
    """Out-of-sequence nonces and a first frame that is not a Hello get INVALID_ARGUMENT with a reason."""
    c = make_cluster(1)
    session = Session(c.addresses[0], uuid.uuid4().bytes, 1)
    session.welcome()
    session.send([pb.Mutation(nonce=2, kind=pb.CREATE_TOPIC, topic="x")])
    with pytest.raises(grpc.RpcError) as caught:
        session.until_committed(2)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "out of sequence" in caught.value.details()
    session.close()
    with grpc.insecure_channel(c.addresses[0]) as channel:
        frames = iter([pb.ClientFrame(mutations=pb.MutationFrame())])
        with pytest.raises(grpc.RpcError) as caught:
            list(laminar_pb2_grpc.LaminarStub(channel).Session(frames, timeout=TIMEOUT_S))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = laminar_pb2_grpc.LaminarStub(channel).Status(pb.StatusRequest(), timeout=TIMEOUT_S)
        assert status.intention_offset == 0
