"""A client whose session ends ABORTED (another live client shares its id) stops, with an error saying why.

A stand-in leader on loopback (a real gRPC server) ends every Session with ABORTED, as a node does to the
older of two sessions of one client id; no node process is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from wire_stub import serve_session

import laminar
from laminar.v1 import laminar_pb2 as pb

WAIT_S = 5.0
WHY = "another session with this client id opened: a client id belongs to one writer"


class AbortingLeader:
    def __init__(self) -> None:
        self.sessions = 0
        self._lock = threading.Lock()
        self._server, self.address = serve_session(self._session)

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
