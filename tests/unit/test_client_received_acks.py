"""The client asks the leader for `received` acks only once its user can see them (Pending.received()).

A stand-in leader on loopback (a real gRPC server speaking the Session protocol) records each
session's Hello and acknowledges what the client sends as the Hello asked; no node process is needed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from wire_stub import serve_session

import laminar
from laminar.v1 import laminar_pb2 as pb

WAIT_S = 5.0


class AckingLeader:
    """Welcomes each session; acks `received` at once if the Hello asked for it, commits only when told."""

    def __init__(self) -> None:
        self.hellos: queue.Queue[pb.Hello] = queue.Queue()
        self.commit: queue.Queue[int] = queue.Queue()  # nonces to commit, one at a time
        self._server, self.address = serve_session(self._session)

    def _session(self, requests: Iterator[pb.ClientFrame], context: Any) -> Iterator[pb.ServerFrame]:
        hello = next(requests).hello
        self.hellos.put(hello)
        received: queue.Queue[int] = queue.Queue()
        threading.Thread(target=self._read, args=(requests, received), daemon=True).start()
        yield pb.ServerFrame(welcome=pb.Welcome(node_id="1"))
        while context.is_active():
            try:
                through = received.get(timeout=0.05)
                if not hello.commits_only:
                    yield pb.ServerFrame(acks=pb.Acks(received_through=through))
            except queue.Empty:
                pass
            try:
                nonce = self.commit.get_nowait()
            except queue.Empty:
                continue
            commit = pb.Commit(nonce=nonce, effect=pb.VALID, intention_offset=nonce)
            yield pb.ServerFrame(acks=pb.Acks(received_through=nonce, commits=[commit]))

    def _read(self, requests: Iterator[pb.ClientFrame], received: queue.Queue[int]) -> None:
        try:
            for frame in requests:
                received.put(frame.mutations.mutations[-1].nonce)
        except grpc.RpcError:
            pass  # the client ended this session

    def stop(self) -> None:
        self._server.stop(0)


@pytest.fixture
def leader() -> Iterator[AckingLeader]:
    server = AckingLeader()
    yield server
    server.stop()


def test_a_client_that_only_waits_for_commits_asks_for_no_received_acks(leader: AckingLeader) -> None:
    """Puts waited on with committed() go out in a session whose Hello says commits_only."""
    with laminar.Client([leader.address], close_timeout=WAIT_S) as client:
        pending = client.put("t", b"k", b"v")
        assert leader.hellos.get(timeout=WAIT_S).commits_only
        leader.commit.put(1)
        assert pending.committed(timeout=WAIT_S).intention_offset == 1


def test_the_first_received_wait_reopens_the_session_asking_for_received_acks(leader: AckingLeader) -> None:
    """received() on a client whose session runs without received acks returns at the leader's
    `received`, not at the commit: the client opens its session again, with commits_only false."""
    client = laminar.Client([leader.address], close_timeout=0)
    try:
        pending = client.put("t", b"k", b"v")
        assert leader.hellos.get(timeout=WAIT_S).commits_only
        pending.received(timeout=WAIT_S)  # nothing is committed: only a received ack can end this wait
        again = leader.hellos.get(timeout=WAIT_S)
        assert not again.commits_only and again.next_nonce == 1
        client.put("t", b"k", b"v").received(timeout=WAIT_S)
        assert leader.hellos.empty()  # once per client: later sessions ask from the start
    finally:
        with pytest.raises(laminar.Unacknowledged):
            client.close(timeout=0)
