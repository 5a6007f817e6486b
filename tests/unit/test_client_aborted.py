"""A client whose session ends ABORTED (another live client shares its id) stops, with an error saying why.

A stand-in leader on loopback (a real gRPC server) ends every Session with ABORTED, as a node does to the
older of two sessions of one client id; no node process is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

import laminar
from laminar.local_cluster import free_port_block
from laminar.v1 import laminar_pb2 as pb

WAIT_S = 5.0
WHY = "another session with this client id opened: a client id belongs to one writer"


class AbortingLeader:
    def __init__(self) -> None:
        self.sessions = 0
        self._lock = threading.Lock()
        self.address = f"127.0.0.1:{free_port_block(1) + 1}"
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.stream_stream_rpc_method_handler(
            self._session,
            request_deserializer=pb.ClientFrame.FromString,
            response_serializer=pb.ServerFrame.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("laminar.v1.Laminar", {"Session": handler})]
        )
        self._server.add_insecure_port(self.address)
        self._server.start()

    def _session(self, requests: Iterator[pb.ClientFrame], context: Any) -> Iterator[pb.ServerFrame]:
        with self._lock:
            self.sessions += 1
        next(requests)  # the Hello
        yield pb.ServerFrame(welcome=pb.Welcome(node_id="1"))
        context.abort(grpc.StatusCode.ABORTED, WHY)

    def stop(self) -> None:
        self._server.stop(0)


@pytest.fixture
def leader() -> Iterator[AbortingLeader]:
    server = AbortingLeader()
    yield server
    server.stop()


def test_aborted_ends_the_client_with_the_reason_and_no_retry(leader: AbortingLeader) -> None:
    """ABORTED is not retried: retrying would close the other client's session, and so on for ever."""
    client = laminar.Client([leader.address], close_timeout=0)
    try:
        write = client.put("t", b"k", b"v")
        with pytest.raises(laminar.InvalidRequest, match="one writer"):
            write.committed(timeout=WAIT_S)
        assert leader.sessions == 1
    finally:
        with pytest.raises(laminar.Unacknowledged):
            client.close(timeout=0)
