"""Fuzzing every RPC of a real node: random and mutated frames, wrong types, huge fields, odd
handshakes and nonces, listeners that never read. Each gets a clear status; the node stays up,
keeps serving, and its memory stays bounded."""

from __future__ import annotations

import uuid

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config
from laminar.v1 import laminar_pb2 as pb

CLEAR_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE,
}
CALL_TIMEOUT_S = 3.0
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def node(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fuzz")
    base = free_port_block(1)
    write_config(str(root / "c.toml"), 1, base, str(root / "data"))
    cluster = LocalCluster(str(root / "c.toml"), [1], log_dir=str(root))
    cluster.start_all()
    address = f"127.0.0.1:{base + 1}"
    try:
        with laminar.Client([address]) as client:
            client.create_topic("t").committed(timeout=30)
        with grpc.insecure_channel(address) as channel:
            yield cluster, address, channel
    finally:
        cluster.stop_all()


def _call(channel: grpc.Channel, method: str, kind: str, payload: object) -> grpc.StatusCode:
    identity = lambda b: b  # noqa: E731 - send raw bytes, read raw bytes
    try:
        if kind == "unary":
            channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)(
                payload, timeout=CALL_TIMEOUT_S
            )
        elif kind == "server_stream":
            call = channel.unary_stream(method, request_serializer=identity, response_deserializer=identity)(
                payload, timeout=CALL_TIMEOUT_S
            )
            for _ in call:
                pass
        else:
            call = channel.stream_stream(method, request_serializer=identity, response_deserializer=identity)(
                iter(payload),
                timeout=CALL_TIMEOUT_S,  # type: ignore[call-overload]
            )
            for _ in call:
                pass
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def _still_serving(cluster: LocalCluster, address: str) -> None:
    assert cluster.alive(1), "the node died"
    # A topic of its own: the fuzzers may legitimately destroy "t" (a valid DESTROY_TOPIC frame).
    control = f"control-{uuid.uuid4().hex}"
    with laminar.Client([address]) as client:
        assert client.create_topic(control).committed(timeout=10).ok
        assert client.put(control, "control", "ok").committed(timeout=10).ok


mutations = st.builds(
    pb.Mutation,
    nonce=st.integers(0, 2**64 - 1),
    kind=st.integers(0, 9),
    topic=st.text(max_size=300),
    key=st.binary(max_size=2000),
    value=st.binary(max_size=3000),
    program=st.text(max_size=200),
    args=st.binary(max_size=100),
)
hellos = st.builds(pb.Hello, client_id=st.binary(max_size=20), next_nonce=st.integers(0, 2**64 - 1))
frames = st.one_of(
    st.binary(max_size=200),
    hellos.map(lambda h: pb.ClientFrame(hello=h).SerializeToString()),
    st.lists(mutations, max_size=5).map(
        lambda ms: pb.ClientFrame(mutations=pb.MutationFrame(mutations=ms)).SerializeToString()
    ),
)


def _mutated(data: bytes, flips: list[int]) -> bytes:
    buffer = bytearray(data)
    for flip in flips:
        if buffer:
            buffer[flip % len(buffer)] ^= 1 << (flip % 8)
    return bytes(buffer)


@FUZZ
@given(sequence=st.lists(frames, min_size=0, max_size=6), start_with_hello=st.booleans())
def test_fuzzed_sessions_get_clear_statuses(node, sequence: list[bytes], start_with_hello: bool) -> None:  # type: ignore[no-untyped-def]
    """Any sequence of frames (hello or not, nonces skipping, repeating or huge) gets a clear status."""
    _, _address, channel = node
    if start_with_hello:
        hello = pb.Hello(client_id=uuid.uuid4().bytes, next_nonce=1)
        sequence = [pb.ClientFrame(hello=hello).SerializeToString(), *sequence]
    code = _call(channel, "/laminar.v1.Laminar/Session", "bidi", sequence)
    assert code in CLEAR_CODES | {grpc.StatusCode.CANCELLED}, code


@FUZZ
@given(
    valid=st.lists(mutations, min_size=1, max_size=3),
    flips=st.lists(st.integers(0, 10_000), min_size=1, max_size=8),
)
def test_mutated_valid_frames_get_clear_statuses(node, valid: list[pb.Mutation], flips: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Bit flips in otherwise well-formed frames are refused clearly, never crash the node."""
    _, _, channel = node
    hello = pb.ClientFrame(hello=pb.Hello(client_id=uuid.uuid4().bytes, next_nonce=1)).SerializeToString()
    for n, m in enumerate(valid, start=1):
        m.nonce, m.topic = n, "t"
    frame = pb.ClientFrame(mutations=pb.MutationFrame(mutations=valid)).SerializeToString()
    code = _call(channel, "/laminar.v1.Laminar/Session", "bidi", [hello, _mutated(frame, flips)])
    assert code in CLEAR_CODES | {grpc.StatusCode.CANCELLED}, code


@FUZZ
@given(
    method=st.sampled_from(["Status", "Digest", "ChangeMembership", "InjectFault", "Auth"]),
    payload=st.binary(max_size=300),
)
def test_fuzzed_unary_calls_get_clear_statuses(node, method: str, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    """Random bytes as Status, Digest, ChangeMembership, InjectFault or Auth requests: a clear status."""
    _, _, channel = node
    assert _call(channel, f"/laminar.v1.Laminar/{method}", "unary", payload) in CLEAR_CODES


@FUZZ
@given(topic=st.text(max_size=300), offset=st.integers(0, 2**64 - 1), junk=st.binary(max_size=50))
def test_fuzzed_listens_get_clear_statuses(node, topic: str, offset: int, junk: bytes) -> None:  # type: ignore[no-untyped-def]
    """Any topic name and offset (and trailing junk) ends with a clear status or the deadline."""
    _, _, channel = node
    request = pb.ListenRequest(topic=topic, from_offset=offset).SerializeToString() + junk
    assert _call(channel, "/laminar.v1.Laminar/Listen", "server_stream", request) in CLEAR_CODES


def test_the_node_survived_the_fuzzing(node) -> None:  # type: ignore[no-untyped-def]
    """After every fuzz target above, the node is up and commits (runs last in this module)."""
    cluster, address, _ = node
    _still_serving(cluster, address)


def _rss_growth_mib(process, address: str, topic: str) -> float:  # type: ignore[no-untyped-def]
    """RSS growth of the node while 40 MB of events commit on `topic`."""
    with laminar.Client([address]) as client:
        client.create_topic(topic).committed(timeout=10)
        before = process.memory_info().rss
        value = b"x" * 100_000
        for n in range(400):
            client.put(topic, str(n % 50), value)
        client.flush(timeout=120)
    return float(process.memory_info().rss - before) / 2**20


def test_listeners_that_never_read_do_not_grow_memory(node) -> None:  # type: ignore[no-untyped-def]
    """Twenty listeners that never read while 40 MB of events commit cost the node no more than a
    frame and a flow-control window each: it never buffers the stream for them."""
    import psutil

    cluster, address, _ = node
    process = psutil.Process(cluster.pid(1))
    _rss_growth_mib(process, address, "warm-up")  # the journal and memtable reach their steady size
    alone = _rss_growth_mib(process, address, "alone")
    channels, calls = [], []
    try:
        for _ in range(20):
            channel = grpc.insecure_channel(address)
            channels.append(channel)
            call = channel.unary_stream(
                "/laminar.v1.Laminar/Listen",
                request_serializer=pb.ListenRequest.SerializeToString,
                response_deserializer=lambda b: b,
            )(pb.ListenRequest(topic="idle", from_offset=0))
            calls.append(call)
        idle = _rss_growth_mib(process, address, "idle")
        print(f"RSS growth writing 40 MB: {alone:.0f} MiB alone, {idle:.0f} MiB past 20 idle listeners")
        per_listener_mib = 5  # a 1 MiB frame in flight plus gRPC's flow-control window
        assert idle < alone + 20 * per_listener_mib, "idle listeners must not buffer the stream"
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()
    _still_serving(cluster, address)
