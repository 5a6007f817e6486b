"""The Python client honours a node's retry hint (RESOURCE_EXHAUSTED with `laminar-retry-after-ms`, what a node answers
past sessions_max, listeners_max or a rate limit, and to a listener it cut for not reading): it waits at least the hint,
then tries again, and a Listener resumes after the last event it delivered. Stand-in nodes on loopback (real gRPC
servers), no node process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

import laminar
from laminar.local_cluster import free_port_block
from laminar.v1 import laminar_pb2 as pb

HINT_MS = 700
WAIT_S = 10.0


class FullNode:
    """Refuses the first call of each RPC with RESOURCE_EXHAUSTED and a retry hint, then serves; records when."""

    def __init__(self) -> None:
        self.address = f"127.0.0.1:{free_port_block(1) + 1}"
        self.calls: dict[str, list[float]] = {"Session": [], "Listen": [], "Get": []}
        self.listen_from: list[int] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Session": grpc.stream_stream_rpc_method_handler(
                self._session, pb.ClientFrame.FromString, pb.ServerFrame.SerializeToString
            ),
            "Listen": grpc.unary_stream_rpc_method_handler(
                self._listen, pb.ListenRequest.FromString, pb.ListenFrame.SerializeToString
            ),
            "Get": grpc.unary_unary_rpc_method_handler(
                self._get, pb.GetRequest.FromString, pb.GetResponse.SerializeToString
            ),
        }
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("laminar.v1.Laminar", handlers)])
        self._server.add_insecure_port(self.address)
        self._server.start()

    def _first(self, rpc: str) -> bool:
        with self._lock:
            self.calls[rpc].append(time.monotonic())
            return len(self.calls[rpc]) == 1

    def _refuse(self, context: Any) -> None:
        context.set_trailing_metadata((("laminar-retry-after-ms", str(HINT_MS)),))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "this node serves 1 sessions already (sessions_max)")

    def _session(self, requests: Iterator[pb.ClientFrame], context: Any) -> Iterator[pb.ServerFrame]:
        if self._first("Session"):
            self._refuse(context)
        next(requests)  # the Hello
        yield pb.ServerFrame(welcome=pb.Welcome(node_id="1"))
        frame = next(requests)
        nonce = frame.mutations.mutations[0].nonce
        yield pb.ServerFrame(
            acks=pb.Acks(received_through=nonce, commits=[pb.Commit(nonce=nonce, effect=pb.VALID, intention_offset=1)])
        )
        while context.is_active():
            time.sleep(0.05)

    def _listen(self, request: pb.ListenRequest, context: Any) -> Iterator[pb.ListenFrame]:
        first = self._first("Listen")
        self.listen_from.append(request.from_offset)
        after = request.from_offset
        for offset in range(after + 1, after + 3):
            yield pb.ListenFrame(events=[pb.Event(kind=pb.PUT, key=b"k%d" % offset, consequence_offset=offset)])
        if first:  # as a node cuts a listener whose client took no frame for stream_send_stall_s
            context.set_trailing_metadata((("laminar-retry-after-ms", str(HINT_MS)),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "the client took no Listen frame for 30 s: it must read")
        while context.is_active():
            time.sleep(0.05)

    def _get(self, request: pb.GetRequest, context: Any) -> pb.GetResponse:
        if self._first("Get"):
            self._refuse(context)
        return pb.GetResponse(found=True, value=b"v", topic_exists=True)

    def gap_s(self, rpc: str) -> float:
        calls = self.calls[rpc]
        assert len(calls) >= 2, f"{rpc} was not tried again: {calls}"
        return calls[1] - calls[0]

    def stop(self) -> None:
        self._server.stop(0)


def test_a_refused_session_is_retried_after_the_hint_and_commits() -> None:
    """A session refused RESOURCE_EXHAUSTED with a 700 ms hint is opened again no sooner than 700 ms later (not after
    the client's own 50 ms backoff), and the write commits on it."""
    node = FullNode()
    client = laminar.Client([node.address], close_timeout=0)
    try:
        commit = client.put("t", b"k", b"v").committed(timeout=WAIT_S)
        assert commit.ok
        assert node.gap_s("Session") >= HINT_MS / 1000
    finally:
        client.close(timeout=0)
        node.stop()


def test_a_listener_cut_with_a_hint_comes_back_after_it_and_resumes_after_its_last_event() -> None:
    """A Listen stream that ends RESOURCE_EXHAUSTED with a hint (a node's cut of a listener that did not read) is
    opened again no sooner than the hint, from the last offset delivered: no event lost, none twice."""
    node = FullNode()
    try:
        with laminar.Listener([node.address], "t") as listener:
            offsets = [listener.next_event(timeout=WAIT_S).consequence_offset for _ in range(4)]
        assert offsets == [1, 2, 3, 4]
        assert node.listen_from[:2] == [0, 2]
        assert node.gap_s("Listen") >= HINT_MS / 1000
    finally:
        node.stop()


def test_a_get_refused_with_a_hint_is_retried_after_it() -> None:
    """A Get refused RESOURCE_EXHAUSTED with a hint (a node's unary pool full) is retried after the hint, not raised."""
    node = FullNode()
    client = laminar.Client([node.address], close_timeout=0)
    try:
        value = client.get("t", b"k", stale_ok=True, timeout=WAIT_S)
        assert value.found and value.value == b"v"
        assert node.gap_s("Get") >= HINT_MS / 1000
    finally:
        client.close(timeout=0)
        node.stop()
