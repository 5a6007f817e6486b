"""docs/protocol.md, rule by rule, with a raw client that knows only that page and the .proto.

tests/wire_stub.py is the pipelining, resending client; the probes here send hand-made frames.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from wire_stub import WireClient, leader_hint, redirect

from laminar.client._connect import is_fatal
from laminar.v1 import laminar_pb2 as pb
from laminar.v1 import laminar_pb2_grpc

CALL_TIMEOUT_S = 10.0
FRAME_BYTES_MAX = 4 * 1024 * 1024  # the page: at most 4 MiB per frame
HINT_SILENCE_S_MAX = 0.5  # the page: a follower names a leader it heard from within 0.5 s
HINT_SLACK_S = 0.4  # a follower's tick thread and our polling may each lag a little on a busy machine


def _hello(client_id: bytes, next_nonce: int = 1) -> pb.ClientFrame:
    return pb.ClientFrame(hello=pb.Hello(client_id=client_id, next_nonce=next_nonce))


def _puts(first: int, count: int, topic: str = "docs", value: bytes = b"v") -> pb.ClientFrame:
    mutations = [
        pb.Mutation(nonce=n, kind=pb.PUT, topic=topic, key=b"k", value=value) for n in range(first, first + count)
    ]
    return pb.ClientFrame(mutations=pb.MutationFrame(mutations=mutations))


class Probe:
    """One Session fed from a list of frames (bytes or messages); the stream stays open for acks."""

    def __init__(self, address: str, frames: list[pb.ClientFrame | bytes]) -> None:
        self.channel = grpc.insecure_channel(address)
        self._frames = frames
        self._done = threading.Event()
        method = self.channel.stream_stream(
            "/laminar.v1.Laminar/Session",
            request_serializer=lambda f: f if isinstance(f, bytes) else f.SerializeToString(),
            response_deserializer=pb.ServerFrame.FromString,
        )
        self.call = method(self._send(), timeout=CALL_TIMEOUT_S)

    def _send(self) -> Iterator[pb.ClientFrame | bytes]:
        yield from self._frames
        self._done.wait(CALL_TIMEOUT_S)  # keep the stream open while we read

    def error(self) -> grpc.RpcError:
        """Read until the stream ends; the status it ended with."""
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as error:
            return error
        finally:
            self.close()
        raise AssertionError("the session was not ended")

    def commits_through(self, last: int) -> list[tuple[int, pb.Commit]]:
        """(received_through so far, Commit) for every Commit up to nonce `last`."""
        seen: list[tuple[int, pb.Commit]] = []
        received = 0
        for frame in self.call:
            if frame.WhichOneof("body") != "acks":
                continue
            received = max(received, frame.acks.received_through)
            for commit in frame.acks.commits:
                seen.append((received, commit))
                if commit.nonce + max(1, commit.count) - 1 >= last:
                    return seen
        raise AssertionError("the stream ended before the last Commit")

    def close(self) -> None:
        self._done.set()
        self.call.cancel()
        self.channel.close()


def _leader(addresses: list[str]) -> str:
    """Follow the page: open a Session anywhere; UNAVAILABLE names the leader."""
    deadline = time.monotonic() + CALL_TIMEOUT_S
    address = addresses[0]
    while time.monotonic() < deadline:
        probe = Probe(address, [_hello(uuid.uuid4().bytes)])
        try:
            frame = next(probe.call)
            assert frame.WhichOneof("body") == "welcome"
            return address
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            hint = leader_hint(error)
            address = hint or addresses[(addresses.index(address) + 1) % len(addresses)]
            if not hint:
                time.sleep(0.1)
        finally:
            probe.close()
    raise AssertionError("no leader")


def test_handshake_pipelining_and_each_frame_rule(make_cluster) -> None:
    """Handshake and pipelined frames; the frame byte limit (4 MiB: INVALID_ARGUMENT; past 8 MiB gRPC's
    RESOURCE_EXHAUSTED, which the Python client does not retry); empty frames; Hello.next_nonce for
    a new client; a Commit never before its received; nothing of a refused frame applies; a resend
    with other contents is an ERROR, not the original outcome."""
    c = make_cluster(3)
    leader = _leader(c.addresses)
    client_id = uuid.uuid4().bytes

    # Handshake, then three frames sent before any ack is read; an empty MutationFrame is a no-op.
    create = pb.ClientFrame(
        mutations=pb.MutationFrame(mutations=[pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="docs")])
    )
    empty = pb.ClientFrame(mutations=pb.MutationFrame())
    probe = Probe(leader, [_hello(client_id), create, empty, _puts(2, 4096), empty, _puts(4098, 100)])
    assert next(probe.call).WhichOneof("body") == "welcome"
    seen = probe.commits_through(4197)
    probe.close()
    nonce = 1
    for received, commit in seen:
        assert commit.nonce == nonce, "in nonce order, never overlapping"
        nonce += max(1, commit.count)
        assert received >= nonce - 1, "a Commit never arrives before its received"
        assert commit.effect == pb.VALID
    assert nonce == 4198

    # A frame over 4 MiB (4096 puts of 1.1 KiB: within the count limit) is INVALID_ARGUMENT, at once.
    big = _puts(4198, 4096, value=b"x" * 1100)
    assert big.ByteSize() > FRAME_BYTES_MAX
    error = Probe(leader, [_hello(client_id, 4198), big]).error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert "the limit is 4194304 bytes" in error.details()
    assert is_fatal(error), "the Python client gives up on it"

    # Far over it, gRPC refuses the frame before the node sees it: RESOURCE_EXHAUSTED, but not to retry.
    huge = _puts(4198, 1, value=b"x" * (9 * 1024 * 1024))
    error = Probe(leader, [_hello(client_id, 4198), huge]).error()
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    assert "Received message larger than max" in error.details()
    assert is_fatal(error), "the Python client does not retry a frame that can never pass"

    # A ClientFrame with neither a Hello nor mutations ends the session with a reason that says so.
    error = Probe(leader, [_hello(client_id, 4198), b""]).error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Hello" in error.details() and "only one Hello" not in error.details(), error.details()

    # Hello.next_nonce: a client id the cluster does not know starts at 1; a known one at most at its
    # last applied nonce + 1 (the message says where to resend from). Both answered at once.
    started = time.monotonic()
    error = Probe(leader, [_hello(uuid.uuid4().bytes, next_nonce=2)]).error()
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "starts at nonce 1" in error.details()
    error = Probe(leader, [_hello(client_id, next_nonce=4199)]).error()
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "resend from 4198" in error.details()
    assert time.monotonic() - started < 3.0

    # Nothing of the refused frames applied: the next nonce is still 4198, and it is applied once.
    probe = Probe(leader, [_hello(client_id, 4198), _puts(4198, 1)])
    next(probe.call)
    [(_, commit)] = probe.commits_through(4198)
    probe.close()
    assert commit.nonce == 4198 and commit.effect == pb.VALID
    with grpc.insecure_channel(leader) as channel:
        got = laminar_pb2_grpc.LaminarStub(channel).Get(pb.GetRequest(topic="docs", key=b"k"), timeout=CALL_TIMEOUT_S)
    assert got.topic_offset == 4198  # the create and 4197 puts

    # A resend must repeat the original mutation: nonce 4198 resent with another value gets an ERROR
    # Commit that says so (intention offset 0), and applies nothing; the original stays.
    probe = Probe(leader, [_hello(client_id, 4198), _puts(4198, 1, value=b"changed")])
    next(probe.call)
    [(_, commit)] = probe.commits_through(4198)
    probe.close()
    assert (commit.nonce, commit.effect, commit.intention_offset) == (4198, pb.ERROR, 0)
    assert "other contents" in commit.reason, commit.reason
    with grpc.insecure_channel(leader) as channel:
        got = laminar_pb2_grpc.LaminarStub(channel).Get(pb.GetRequest(topic="docs", key=b"k"), timeout=CALL_TIMEOUT_S)
    assert got.topic_offset == 4198 and got.value == b"v"

    # Log time: every event carries the time_ms of its entry, never below an earlier event's, and
    # every node serves the same times (it is part of the log).
    times = [_event_times(address, "docs", 4198) for address in c.addresses]
    assert times[0] == times[1] == times[2]
    assert all(t > 0 for t in times[0]) and times[0] == sorted(times[0])
    assert abs(times[0][-1] / 1000 - time.time()) < 600


def _event_times(address: str, topic: str, count: int) -> list[int]:
    """time_ms of the first `count` events of `topic`, read with a raw Listen."""
    times: list[int] = []
    with grpc.insecure_channel(address) as channel:
        stream = laminar_pb2_grpc.LaminarStub(channel).Listen(
            pb.ListenRequest(topic=topic, from_offset=0), timeout=CALL_TIMEOUT_S
        )
        for frame in stream:
            times.extend(e.time_ms for e in frame.events)
            if len(times) >= count:
                stream.cancel()
                return times[:count]
    raise AssertionError("the stream ended")


def _raise(error: grpc.RpcError) -> None:
    raise error


def test_redirects_stale_hints_and_resend_after_the_leader_dies(make_cluster) -> None:
    """A follower redirects to the leader; once the leader is killed, followers stop naming it within
    0.5 s; the pipelining client resumes on the new leader with every nonce committed once, in order."""
    c = make_cluster(3)
    leader = _leader(c.addresses)
    followers = [a for a in c.addresses if a != leader]
    error, hint = redirect(lambda: _raise(Probe(followers[0], [_hello(uuid.uuid4().bytes)]).error()))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and hint == leader

    client = WireClient(c.addresses, "docs")
    try:
        client.create_topic_then_produce(messages_max=2_000_000)
        assert client.wait_committed(20_000, 30)
        c.cluster.kill(c.addresses.index(leader) + 1)  # kill -9 with frames in flight
        killed_at = time.monotonic()
        named_dead_at = killed_at  # the last time a follower named the dead node
        while time.monotonic() - killed_at < 2.5:
            for follower in followers:
                hint = leader_hint(Probe(follower, [_hello(uuid.uuid4().bytes)]).error())
                if hint == leader:
                    named_dead_at = time.monotonic()
            time.sleep(0.05)
        stale_s = named_dead_at - killed_at
        assert stale_s <= HINT_SILENCE_S_MAX + HINT_SLACK_S, f"a follower named the dead leader {stale_s:.2f} s on"
        assert client.wait_committed(client.committed_through + 20_000, 30), client.errors[-5:]
        last = client.finish(30)
    finally:
        client.close()
    assert client.violations == [], client.violations[:10]
    assert client.sessions >= 2 and last > 40_000


def _consumer_op(nonce: int, kind: int, topic: str, **op: object) -> pb.Mutation:
    return pb.Mutation(nonce=nonce, kind=kind, topic=topic, consumer=pb.ConsumerOp(**op))  # type: ignore[arg-type]


def _session(leader: str, mutations: list[pb.Mutation]) -> list[pb.Commit]:
    """One Session with a new client id; every Commit of its mutations, spread out one per nonce."""
    probe = Probe(leader, [_hello(uuid.uuid4().bytes), pb.ClientFrame(mutations=pb.MutationFrame(mutations=mutations))])
    try:
        assert next(probe.call).WhichOneof("body") == "welcome"
        seen = probe.commits_through(len(mutations))
    finally:
        probe.close()
    return [commit for _, commit in seen for _ in range(max(1, commit.count))]


def _first_frame(address: str, request: pb.ListenRequest) -> pb.ListenFrame:
    with grpc.insecure_channel(address) as channel:
        stub = laminar_pb2_grpc.LaminarStub(channel)
        return next(stub.Listen(request, timeout=CALL_TIMEOUT_S))


def test_consumers_section_with_raw_frames(make_cluster) -> None:
    """The page's Consumers section: consumer mutations and their effects, Listen from a durable consumer's
    position, a group member's stream of leased events, GROUP_ACK of an event not leased, DescribeTopic."""
    c = make_cluster(1)
    leader = _leader(c.addresses)
    puts = [pb.Mutation(nonce=n, kind=pb.PUT, topic="cw", key=b"k", value=b"v") for n in range(2, 7)]
    join = pb.GroupSettings(lease_ms=60_000, unacked_max=2)
    consumers = [
        _consumer_op(7, pb.CONSUMER_ACK, "cw", name="c", offset=3),
        _consumer_op(8, pb.CONSUMER_ACK, "cw", name="c", offset=99),
        _consumer_op(9, pb.GROUP_JOIN, "cw", name="g", member="m", settings=join),
        _consumer_op(10, pb.CONSUMER_ACK, "cw", name="g", offset=1),
    ]
    commits = _session(leader, [pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="cw"), *puts, *consumers])
    assert [commit.effect for commit in commits[6:]] == [pb.VALID, pb.ERROR, pb.VALID, pb.ERROR]
    assert "past the last event" in commits[7].reason and "is a consumer group" in commits[9].reason
    durable = _first_frame(leader, pb.ListenRequest(topic="cw", consumer="c"))
    assert durable.events[0].consequence_offset == 4, "from_offset 0 with a consumer starts after its position"
    member = _first_frame(leader, pb.ListenRequest(topic="cw", consumer="g", member="m"))
    assert [e.consequence_offset for e in member.events] == [1, 2], "unacked_max 2: the two oldest, leased to m"
    acked = _session(leader, [_consumer_op(1, pb.GROUP_ACK, "cw", name="g", member="m", offsets=[1, 5])])
    assert acked[0].effect == pb.INVALID and "1 of 2 offsets were not leased" in acked[0].reason
    member = _first_frame(leader, pb.ListenRequest(topic="cw", consumer="g", member="m"))
    assert [e.consequence_offset for e in member.events] == [2, 3], "a reconnecting member gets what it holds"
    with grpc.insecure_channel(leader) as channel:
        described = laminar_pb2_grpc.LaminarStub(channel).DescribeTopic(pb.DescribeTopicRequest(topic="cw"))
    assert [(x.name, x.group, x.acked_offset) for x in described.consumers] == [("c", False, 3), ("g", True, 1)]
    with pytest.raises(grpc.RpcError) as refused:
        _first_frame(leader, pb.ListenRequest(topic="cw", member="m"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
