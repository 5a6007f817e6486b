"""The Raft connection reads a large message in time linear in its size: the read buffer grows in place and
gives up each message's bytes in place (pysyncobj's `bytes +=` copied all that was buffered at every read)."""

from __future__ import annotations

import select
import socket
import threading
import time

from connection_stubs import NullPoller, framed

from laminar.node.raft._connection import FastTcpConnection

READ_BYTES = 4096  # what one read asks for: a message of MESSAGE_BYTES takes many reads
MESSAGE_BYTES = 256 * 1024
WAIT_S = 10.0


def test_a_large_message_is_read_into_one_buffer_grown_in_place_and_taken_out_in_place() -> None:
    """Two messages (a large append, then a small reply) sent back to back arrive whole and in order. The buffer
    that held the first read is the one that holds the last (each read appended to it, no copy of what was
    there), and what is left after the first message is in that same buffer."""
    large = {"type": "append_entries", "entries": [(bytes(range(256)) * (MESSAGE_BYTES // 256), 7, 2)]}
    small = {"type": "next_node_idx", "next_node_idx": 8}
    frames = framed(large) + framed(small)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)  # as pysyncobj's sockets: a read with nothing there returns False
    sender = threading.Thread(target=theirs.sendall, args=(frames,))  # more than the socket holds: sent meanwhile
    try:
        connection = FastTcpConnection(NullPoller(), socket=ours, recvBufferSize=READ_BYTES)
        sender.start()
        buffer = None
        appends = 0  # reads that added to the buffer
        deadline_s = time.monotonic() + WAIT_S
        while buffer is None or len(buffer) < len(frames):
            assert time.monotonic() < deadline_s, "the frames did not arrive"
            select.select([ours], [], [], WAIT_S)
            more = True
            while more:
                held = 0 if buffer is None else len(buffer)
                more = connection._TcpConnection__processRead()  # type: ignore[attr-defined]
                if buffer is None:
                    if not connection._TcpConnection__readBuffer:  # type: ignore[attr-defined]
                        continue  # nothing read yet: pysyncobj's empty bytes()
                    buffer = connection._TcpConnection__readBuffer  # type: ignore[attr-defined]
                assert connection._TcpConnection__readBuffer is buffer, f"read {appends + 1} copied the buffer"
                appends += len(buffer) > held
        assert appends >= len(frames) // READ_BYTES, appends
        assert connection._TcpConnection__processParseMessage() == large  # type: ignore[attr-defined]
        assert connection._TcpConnection__readBuffer is buffer, "the first message was taken out by a copy"
        assert connection._TcpConnection__processParseMessage() == small  # type: ignore[attr-defined]
        assert len(buffer) == 0
    finally:
        sender.join(WAIT_S)
        ours.close()
        theirs.close()
