"""The serving limits of one node (docs/operations.md, "Serving limits"), each against a real node on
loopback started with small [serving] values: past a bound a client gets RESOURCE_EXHAUSTED with a
retry hint, idle and never-reading streams are reclaimed, and a well-behaved client still gets through."""

from __future__ import annotations

import queue
import socket
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config
from laminar.v1 import laminar_pb2 as pb

SESSIONS_MAX = 4
LISTENERS_MAX = 4
CONNECTIONS_MAX = 6  # calls on more connections: RESOURCE_EXHAUSTED; gRPC accepts 16 more, then closes
CONNECTIONS_ANSWERED_OVER_MAX = 16
IDLE_S = 1.0
STALL_S = 1.5
RPC_TIMEOUT_S = 10.0
RETRY_KEY = "laminar-retry-after-ms"


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """One node with small serving limits, shared by the module; its client address."""
    root = tmp_path_factory.mktemp("serving")
    base = free_port_block(1)
    config = root / "cluster.toml"
    serving = (
        f"[serving]\nsessions_max = {SESSIONS_MAX}\nlisteners_max = {LISTENERS_MAX}\n"
        f"connections_max = {CONNECTIONS_MAX}\nsession_idle_s = {IDLE_S}\nstream_send_stall_s = {STALL_S}\n"
    )
    write_config(str(config), 1, base, str(root / "data"))
    text = config.read_text()
    split = text.index("[[nodes]]")
    config.write_text(text[:split] + serving + "\n" + text[split:])  # a table before the [[nodes]] array
    cluster = LocalCluster(str(config), [1], log_dir=str(root))
    cluster.start_all()
    address = f"127.0.0.1:{base + 1}"
    try:
        with laminar.Client([address]) as client:
            client.create_topic("t").committed(timeout=20)
        yield address
    finally:
        alive = cluster.alive(1)
        cluster.stop_all()
    assert alive, "the node died during the module"


class RawSession:
    """A Session stream driven frame by frame, as a careless or hostile client would."""

    def __init__(self, channel: grpc.Channel, client_id: bytes | None = None) -> None:
        self.client_id = client_id or uuid.uuid4().bytes
        self._frames: queue.Queue[bytes | None] = queue.Queue()
        call = channel.stream_stream(
            "/laminar.v1.Laminar/Session",
            request_serializer=lambda b: b,
            response_deserializer=pb.ServerFrame.FromString,
        )
        self._frames.put(pb.ClientFrame(hello=pb.Hello(client_id=self.client_id, next_nonce=1)).SerializeToString())
        self.call = call(iter(self._frames.get, None), timeout=RPC_TIMEOUT_S * 3)

    def welcome(self) -> pb.ServerFrame:
        return next(self.call)

    def error(self) -> grpc.RpcError:
        """The status the stream ended with (after any frames)."""
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as error:
            return error
        raise AssertionError("the stream ended without an error")

    def close(self) -> None:
        self._frames.put(None)
        self.call.cancel()


def _retry_hint(error: grpc.RpcError) -> int:
    hints = [int(v) for k, v in (error.trailing_metadata() or ()) if k == RETRY_KEY]  # type: ignore[attr-defined]
    assert hints, f"no {RETRY_KEY} in {error.trailing_metadata()}"  # type: ignore[attr-defined]
    return hints[0]


def _good_client_commits(address: str) -> None:
    with laminar.Client([address]) as client:
        commit = client.put("t", b"good", b"v").committed(timeout=RPC_TIMEOUT_S)
    assert commit.effect == "VALID", commit


def test_sessions_past_the_limit_get_resource_exhausted_with_a_retry_hint(node: str) -> None:
    """With sessions_max sessions open, one more gets RESOURCE_EXHAUSTED and a retry hint; once one
    closes, a well-behaved client commits."""
    with grpc.insecure_channel(node) as channel:
        held = [RawSession(channel) for _ in range(SESSIONS_MAX)]
        try:
            for s in held:
                assert s.welcome().HasField("welcome")
            extra = RawSession(channel)
            error = extra.error()
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "sessions_max" in error.details()
            assert _retry_hint(error) > 0
        finally:
            for s in held:
                s.close()
    _good_client_commits(node)


def test_an_idle_session_is_closed_with_a_hint_naming_this_node(node: str) -> None:
    """A session that said Hello and nothing else is closed after session_idle_s with UNAVAILABLE
    and the leader hint (this node), so a client knows to come back here when it has work."""
    with grpc.insecure_channel(node) as channel:
        silent = RawSession(channel)
        started = time.monotonic()
        silent.welcome()
        error = silent.error()
        took = time.monotonic() - started
        silent.close()
    assert error.code() == grpc.StatusCode.UNAVAILABLE and "idle" in error.details()
    assert dict(error.trailing_metadata() or ()).get("laminar-leader") == node  # type: ignore[attr-defined]
    assert IDLE_S <= took < IDLE_S + 5


def test_a_second_session_of_one_client_id_closes_the_older_with_aborted(node: str) -> None:
    """Two live sessions with one client id: the older ends with ABORTED saying why; the newer serves."""
    client_id = uuid.uuid4().bytes
    with grpc.insecure_channel(node) as channel:
        older = RawSession(channel, client_id)
        older.welcome()
        newer = RawSession(channel, client_id)
        newer.welcome()
        error = older.error()
        newer.close()
    assert error.code() == grpc.StatusCode.ABORTED and "client id belongs to one writer" in error.details()


def test_listeners_past_the_limit_get_resource_exhausted_with_a_retry_hint(node: str) -> None:
    """With listeners_max Listen streams open, one more gets RESOURCE_EXHAUSTED and a retry hint."""
    with grpc.insecure_channel(node) as channel:
        listen = channel.unary_stream(
            "/laminar.v1.Laminar/Listen",
            request_serializer=pb.ListenRequest.SerializeToString,
            response_deserializer=pb.ListenFrame.FromString,
        )
        held = [listen(pb.ListenRequest(topic="t"), timeout=RPC_TIMEOUT_S) for _ in range(LISTENERS_MAX)]
        try:
            for call in held:
                next(call)  # each is being served: the CREATE_TOPIC event
            with pytest.raises(grpc.RpcError) as caught:
                next(listen(pb.ListenRequest(topic="t"), timeout=RPC_TIMEOUT_S))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "listeners_max" in caught.value.details() and _retry_hint(caught.value) > 0
        finally:
            for call in held:
                call.cancel()


def test_a_listener_that_never_reads_is_cut_and_a_good_client_is_not_held_up(node: str) -> None:
    """A Listen stream whose client takes no frame for stream_send_stall_s ends with
    RESOURCE_EXHAUSTED (the node holds one frame for it at most); puts meanwhile commit."""
    value = b"x" * (512 * 1024)
    with laminar.Client([node]) as client:
        client.create_topic("big")
        for i in range(12):  # 6 MiB: far past what gRPC's windows take in for a client that does not read
            last = client.put("big", f"k{i}".encode(), value)
        last.committed(timeout=RPC_TIMEOUT_S * 2)
    with grpc.insecure_channel(node) as channel:
        call = channel.unary_stream(
            "/laminar.v1.Laminar/Listen",
            request_serializer=pb.ListenRequest.SerializeToString,
            response_deserializer=pb.ListenFrame.FromString,
        )(pb.ListenRequest(topic="big"), timeout=RPC_TIMEOUT_S * 3)
        time.sleep(STALL_S + 2)  # read nothing meanwhile
        _good_client_commits(node)
        with pytest.raises(grpc.RpcError) as caught:
            for _ in call:
                pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "must read" in caught.value.details()
    assert _retry_hint(caught.value) > 0  # the Python Listener waits for it, then resumes after its last event


def test_concurrent_digests_are_rate_limited_with_a_retry_hint(node: str) -> None:
    """Digest reads the whole store: of 20 concurrent calls some are refused with RESOURCE_EXHAUSTED
    and a retry hint rather than all run at once; at least one answers."""
    with grpc.insecure_channel(node) as channel:
        digest = channel.unary_unary(
            "/laminar.v1.Laminar/Digest",
            request_serializer=pb.DigestRequest.SerializeToString,
            response_deserializer=pb.DigestResponse.FromString,
        )
        futures = [digest.future(pb.DigestRequest(), timeout=RPC_TIMEOUT_S) for _ in range(20)]
        answered, refused = 0, []
        for f in futures:
            try:
                f.result()
                answered += 1
            except grpc.RpcError as error:
                refused.append(error)
    assert answered >= 1 and refused, (answered, len(refused))
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_hint(error) > 0


def test_a_status_flood_is_rate_limited_with_a_retry_hint(node: str) -> None:
    """200 concurrent Status calls: past the node's per-second budget they get RESOURCE_EXHAUSTED and a retry hint."""
    with grpc.insecure_channel(node) as channel:
        status = channel.unary_unary(
            "/laminar.v1.Laminar/Status",
            request_serializer=pb.StatusRequest.SerializeToString,
            response_deserializer=pb.StatusResponse.FromString,
        )
        futures = [status.future(pb.StatusRequest(), timeout=RPC_TIMEOUT_S) for _ in range(200)]
        refused = []
        for f in futures:
            try:
                f.result()
            except grpc.RpcError as error:
                refused.append(error)
    assert refused and all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_hint(e) > 0 for e in refused)


def test_a_listen_from_past_any_offset_is_invalid_argument(node: str) -> None:
    """Listen from offset 2^64 - 1 (offset + 1 does not fit the store's keys) is INVALID_ARGUMENT, not UNKNOWN."""
    with grpc.insecure_channel(node) as channel:
        call = channel.unary_stream(
            "/laminar.v1.Laminar/Listen",
            request_serializer=pb.ListenRequest.SerializeToString,
            response_deserializer=pb.ListenFrame.FromString,
        )(pb.ListenRequest(topic="t", from_offset=2**64 - 1), timeout=RPC_TIMEOUT_S)
        with pytest.raises(grpc.RpcError) as caught:
            next(call)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "from_offset" in caught.value.details()


def test_calls_on_connections_past_the_limit_get_resource_exhausted_with_a_retry_hint(node: str) -> None:
    """With calls open on connections_max connections, a call on one more connection is answered RESOURCE_EXHAUSTED
    with a retry hint naming connections_max (not closed unanswered); once those calls end, a client commits."""
    local = [("grpc.use_local_subchannel_pool", 1)]  # a TCP connection of its own per channel
    channels = [grpc.insecure_channel(node, options=local) for _ in range(CONNECTIONS_MAX + 1)]
    listens, sessions = [], []
    try:
        for channel in channels[:LISTENERS_MAX]:
            listen = channel.unary_stream(
                "/laminar.v1.Laminar/Listen",
                request_serializer=pb.ListenRequest.SerializeToString,
                response_deserializer=pb.ListenFrame.FromString,
            )
            listens.append(listen(pb.ListenRequest(topic="t"), timeout=RPC_TIMEOUT_S))
            next(listens[-1])  # served: the CREATE_TOPIC event
        for channel in channels[LISTENERS_MAX:CONNECTIONS_MAX]:
            sessions.append(RawSession(channel))
            sessions[-1].welcome()
        get = channels[-1].unary_unary(
            "/laminar.v1.Laminar/Get",
            request_serializer=pb.GetRequest.SerializeToString,
            response_deserializer=pb.GetResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            get(pb.GetRequest(topic="t", key=b"k", stale_ok=True), timeout=RPC_TIMEOUT_S)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "connections_max" in caught.value.details()
        assert _retry_hint(caught.value) > 0
    finally:
        for call in listens:
            call.cancel()
        for s in sessions:
            s.close()
        for channel in channels:
            channel.close()
    _good_client_commits(node)


def test_connections_past_those_answered_are_closed_and_the_node_lives(node: str) -> None:
    """More silent TCP connections than gRPC accepts (connections_max and the ones answered past it): the node closes
    the rest (it does not die); once they go, a client connects and commits."""
    host, port = node.rsplit(":", 1)
    accepted = CONNECTIONS_MAX + CONNECTIONS_ANSWERED_OVER_MAX
    sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(accepted + 8)]
    try:
        time.sleep(0.5)
        closed = sum(1 for s in sockets if _closed_by_peer(s))
        assert closed >= 8 - 1, f"{closed} of {len(sockets)} connections closed by the node"
    finally:
        for s in sockets:
            s.close()
    deadline = time.monotonic() + RPC_TIMEOUT_S
    while True:  # the node notices the closed sockets as it reads them
        try:
            _good_client_commits(node)
            return
        except laminar.LaminarError:
            if time.monotonic() > deadline:
                raise


def _closed_by_peer(s: socket.socket) -> bool:
    s.settimeout(0.2)
    try:
        return s.recv(1 << 16) == b""
    except TimeoutError:
        return False
    except OSError:
        return True
