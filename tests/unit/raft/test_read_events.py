"""A connected Raft connection's read event takes every message it can parse without asking the socket for its
error (a getsockopt syscall per message received), and a peer's close still disconnects it."""

from __future__ import annotations

import select
import socket
from typing import Any

from connection_stubs import NullPoller, framed
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE

from laminar.node.raft._connection import FastTcpConnection

WAIT_S = 10.0


class _CountingSocket:
    """The connection's socket, counting the getsockopt calls made on it."""

    def __init__(self, inner: socket.socket) -> None:
        self._inner = inner
        self.getsockopts = 0

    def getsockopt(self, *args: Any) -> Any:
        self.getsockopts += 1
        return self._inner.getsockopt(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_read_events_of_a_connected_socket_ask_no_socket_error_and_a_close_still_disconnects() -> None:
    """Three messages in one read event arrive in order, with no getsockopt; the peer's close then disconnects the
    connection at the next read event (the empty read), and its disconnect callback runs."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    counting = _CountingSocket(ours)
    got: list[Any] = []
    closed: list[bool] = []
    try:
        connection = FastTcpConnection(NullPoller(), socket=counting, onDisconnected=lambda: closed.append(True))
        connection.setOnMessageReceivedCallback(got.append)
        counting.getsockopts = 0  # the constructor set keepalive options: not a read event's
        messages = [{"type": "next_node_idx", "next_node_idx": n} for n in range(3)]
        theirs.sendall(b"".join(framed(m) for m in messages))
        select.select([ours], [], [], WAIT_S)
        connection._TcpConnection__processConnection(ours.fileno(), POLL_EVENT_TYPE.READ)  # type: ignore[attr-defined]
        assert got == messages
        assert counting.getsockopts == 0, "a read event asked the socket for its error"
        theirs.close()
        select.select([ours], [], [], WAIT_S)
        connection._TcpConnection__processConnection(ours.fileno(), POLL_EVENT_TYPE.READ)  # type: ignore[attr-defined]
        assert connection.state == CONNECTION_STATE.DISCONNECTED
        assert closed == [True]
    finally:
        ours.close()
        theirs.close()
