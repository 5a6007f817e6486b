"""Clients that break the protocol get a clear status; the node keeps serving everyone else."""

from __future__ import annotations

import threading
import uuid

import grpc
import pytest

import laminar
from laminar.v1 import laminar_pb2 as pb

RPC_TIMEOUT_S = 10


def _raw_session(address: str, frames: list[bytes]) -> grpc.RpcError | list[pb.ServerFrame]:
    """Send raw bytes as frames on a Session stream; return what came back or the error."""
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            "/laminar.v1.Laminar/Session",
            request_serializer=lambda b: b,
            response_deserializer=pb.ServerFrame.FromString,
        )
        try:
            return list(call(iter(frames), timeout=RPC_TIMEOUT_S))
        except grpc.RpcError as error:
            return error


def _hello(next_nonce: int = 1, client_id: bytes | None = None) -> bytes:
    hello = pb.Hello(client_id=client_id or uuid.uuid4().bytes, next_nonce=next_nonce)
    return pb.ClientFrame(hello=hello).SerializeToString()


def _frame(*mutations: pb.Mutation) -> bytes:
    return pb.ClientFrame(mutations=pb.MutationFrame(mutations=mutations)).SerializeToString()


def _put(nonce: int, topic: str = "t", value: bytes = b"v") -> pb.Mutation:
    return pb.Mutation(nonce=nonce, kind=pb.PUT, topic=topic, key=b"k", value=value)


CASES = {
    "garbage bytes": ([b"\xff\xfe\xfd garbage"], grpc.StatusCode.INVALID_ARGUMENT),
    "garbage after hello": ([_hello(), b"\x12\xff\xff\xff"], grpc.StatusCode.INVALID_ARGUMENT),
    "no hello": ([_frame(_put(1))], grpc.StatusCode.INVALID_ARGUMENT),
    "short client id": ([_hello(client_id=b"abc")], grpc.StatusCode.INVALID_ARGUMENT),
    "nonce zero": ([_hello(next_nonce=0)], grpc.StatusCode.INVALID_ARGUMENT),
    "skipped nonce": ([_hello(), _frame(_put(1), _put(3))], grpc.StatusCode.INVALID_ARGUMENT),
    "repeated nonce": ([_hello(), _frame(_put(1)), _frame(_put(1))], grpc.StatusCode.INVALID_ARGUMENT),
    "two hellos": ([_hello(), _hello()], grpc.StatusCode.INVALID_ARGUMENT),
    "bad topic": ([_hello(), _frame(_put(1, topic="no spaces"))], grpc.StatusCode.INVALID_ARGUMENT),
    "unknown kind": ([_hello(), _frame(pb.Mutation(nonce=1, kind=77, topic="t"))], grpc.StatusCode.INVALID_ARGUMENT),
    "oversized value": ([_hello(), _frame(_put(1, value=b"x" * (2**20 + 1)))], grpc.StatusCode.INVALID_ARGUMENT),
    # Over the 4 MiB frame limit: the node says so, and a client must not retry (test_protocol_docs.py has more).
    "oversized frame": ([_hello(), _frame(_put(1, value=b"x" * (5 * 2**20)))], grpc.StatusCode.INVALID_ARGUMENT),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_protocol_violations_get_a_clear_status(make_cluster, case: str) -> None:
    """Each violation ends that session with a specific status; other clients are unaffected."""
    frames, code = CASES[case]
    c = make_cluster(1)
    with laminar.Client(c.addresses) as good:
        good.create_topic("t").committed(timeout=10)
        result = _raw_session(c.addresses[0], frames)
        assert isinstance(result, grpc.RpcError), f"{case}: the session was not refused: {result}"
        assert result.code() == code, f"{case}: {result.code()} {result.details()}"
        assert result.details(), "the status says why"
        assert good.put("t", "k", "still fine").committed(timeout=10).ok


def test_a_known_client_may_not_start_ahead_of_its_applied_nonces(make_cluster) -> None:
    """Hello.next_nonce past the last applied nonce + 1 is refused with FAILED_PRECONDITION."""
    c = make_cluster(1)
    client_id = uuid.uuid4().bytes
    with laminar.Client(c.addresses, client_id=uuid.UUID(bytes=client_id)) as client:
        client.create_topic("t").committed(timeout=10)
    result = _raw_session(c.addresses[0], [_hello(next_nonce=50, client_id=client_id)])
    assert isinstance(result, grpc.RpcError) and result.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "resend from 2" in result.details()


def test_clients_that_vanish_mid_stream_lose_nothing_committed(make_cluster) -> None:
    """Clients cancelled mid-pipeline: what committed stays, the node serves on, nothing duplicates."""
    c = make_cluster(3)
    with laminar.Client(c.addresses) as admin:
        admin.create_topic("v").committed(timeout=10)

    def vanish() -> None:
        client = laminar.Client(c.addresses)
        for n in range(2000):
            client.put("v", "k", str(n))
        client.close()  # gone, with messages in flight

    threads = [threading.Thread(target=vanish) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with laminar.Client(c.addresses) as client:
        last = client.put("v", "end", "x").committed(timeout=10)
    c.wait_applied(last.intention_offset)
    with laminar.Listener(c.addresses, "v") as listener:
        events = []
        while not events or events[-1].key != b"end":
            events.append(listener.next_event(timeout=10))
    assert [e.consequence_offset for e in events] == list(range(1, len(events) + 1))
    intentions = [e.intention_offset for e in events]
    assert len(intentions) == len(set(intentions)), "no intention applied twice"
