"""pysyncobj's TCP connection, made cheap for large messages.

pysyncobj serializes every Raft message in its tick thread, once per follower, and the heartbeats of
a tick wait behind that work. For entries of several MiB its choices made the tick take seconds and
followers elect (measured: a 1.4 s tick on a leader sending 3 MiB entries, 35 leader changes in the
hostile-client probe):
- pickle protocol 2, which turns `bytes` into a latin-1 `str` and back: 77 ms to pickle and 75 ms to
  unpickle a 3 MiB entry, 50 % larger on the wire. We pickle with protocol 5: 0.9 ms and 2.4 ms.
  (Receivers read any protocol; every node runs the same Python 3.)
- zlib level 3 on everything: ~45 ms per MiB. A message larger than RAFT_MESSAGE_COMPRESS_BYTES_MAX
  is framed as a stored zlib stream (level 0: a copy and a checksum); `zlib.decompress` reads both.
- `zlib.compress` with zlib's default window (32 KiB) and memory level: a ~270 KiB deflate state
  allocated, faulted in and freed for every message. That alone cost 60-125 us per message (measured on
  a 242-byte append: 63 us at level 1, 126 us at level 0), three to four times per sequential write,
  in the tick threads of the leader and the followers. Ours is a 4 KiB window and memory level 4
  (24 KiB of state): 6 us for that message, 32 us for 10 KiB. A zlib stream names its window in its
  header, and inflating reads any window up to 32 KiB, so peers that compress the old way still read
  ours and we theirs.
- compression of tiny messages at all: a reply or a lone append (60-300 bytes) gains nothing on the
  wire, but each deflate costs ~29 us and its inflate ~20 us (zlib's state set up and torn down), and both
  release the interpreter lock, a chance for another thread to take it: four sends and four receipts per
  sequential write on the leader. A message under RAFT_MESSAGE_COMPRESS_BYTES_MIN goes as a stored zlib
  stream built here (2 us; any zlib reader inflates it), and one in that exact form is read back without
  zlib's inflater (`_stored_body`, 5 us).
- a `bytes` send buffer rebuilt by slicing after every partial socket send: quadratic in the backlog
  (0.9 s of one tick for 31 sends). Ours is a bytearray consumed from the front (amortized O(1)).
- a send buffer drained only by the next send once the socket was full (see `_drain_when_writable`).
- reads until a read fails: each readable event cost a second `recv` that raised EAGAIN (a syscall, an
  exception, and one more release of the interpreter lock), plus a `getsockopt` after every read. We stop
  at a short read: poll is level-triggered, so bytes that arrive after it are reported again.
Incoming frames are bounded (RAFT_MESSAGE_BYTES_MAX, before and after inflating): pysyncobj would
buffer up to 2 GiB for one length header, and inflate a zlib bomb whole.

Installed by replacing the class name in the two pysyncobj modules that construct connections (as
_engine.py replaces `createJournal`); tests/unit/raft/test_tripwires.py checks it is in place.
"""

from __future__ import annotations

import pickle
import socket
import struct
import zlib
from typing import Any

import pysyncobj.tcp_server as _tcp_server_module
import pysyncobj.transport as _transport_module
from pysyncobj.monotonic import monotonic as monotonic_time
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection

from laminar import limits

_COMPRESSED_LEVEL = 3  # pysyncobj's own
# The deflate state's size: (1 << (wbits + 2)) + (1 << (mem_level + 9)) bytes, 24 KiB here (see the docstring).
_COMPRESS_WINDOW_BITS = 12
_COMPRESS_MEM_LEVEL = 4
PICKLE_PROTOCOL = 5
_LENGTH = struct.Struct("i")  # pysyncobj's frame header


# A zlib stream of one final stored deflate block: header (deflate, 32 KiB window, no preset dictionary,
# the check bits that make it a multiple of 31), then the block's BFINAL=1/BTYPE=00 byte, LEN and NLEN.
_STORED_HEAD = b"\x78\x01\x01"
_STORED_LENGTHS = struct.Struct("<HH")
_STORED_OVERHEAD_BYTES = len(_STORED_HEAD) + _STORED_LENGTHS.size + 4  # and the Adler-32 at the end
assert limits.RAFT_MESSAGE_COMPRESS_BYTES_MIN <= 0xFFFF  # one stored block holds at most 65,535 bytes


def _stored(raw: bytes) -> bytes:
    """`raw` as a zlib stream of one stored block (len(raw) <= 65,535), without zlib's deflater."""
    length = len(raw)
    return b"".join(
        (_STORED_HEAD, _STORED_LENGTHS.pack(length, length ^ 0xFFFF), raw, zlib.adler32(raw).to_bytes(4, "big"))
    )


def _stored_body(data: bytes) -> bytes | None:
    """The message inside a stream `_stored` wrote, checksum verified; None for any other stream
    (compressed, written by another zlib, or damaged: the inflater then reads or refuses it)."""
    if not data.startswith(_STORED_HEAD) or len(data) < _STORED_OVERHEAD_BYTES:
        return None
    length, inverse = _STORED_LENGTHS.unpack_from(data, len(_STORED_HEAD))
    start = len(_STORED_HEAD) + _STORED_LENGTHS.size
    if inverse != length ^ 0xFFFF or len(data) != start + length + 4:
        return None
    body = data[start : start + length]
    return body if zlib.adler32(body) == int.from_bytes(data[start + length :], "big") else None


def _deflate(raw: bytes) -> bytes:
    """`raw` as one zlib stream: stored under RAFT_MESSAGE_COMPRESS_BYTES_MIN (built here), compressed up to
    RAFT_MESSAGE_COMPRESS_BYTES_MAX, stored past it."""
    if len(raw) < limits.RAFT_MESSAGE_COMPRESS_BYTES_MIN:
        return _stored(raw)
    level = _COMPRESSED_LEVEL if len(raw) <= limits.RAFT_MESSAGE_COMPRESS_BYTES_MAX else 0
    deflater = zlib.compressobj(level, zlib.DEFLATED, _COMPRESS_WINDOW_BITS, _COMPRESS_MEM_LEVEL)
    return deflater.compress(raw) + deflater.flush()


class FastTcpConnection(TcpConnection):  # type: ignore[misc]
    _TcpConnection__writeBuffer: Any  # pysyncobj's send buffer (set in its __init__ and disconnect)
    _TcpConnection__socket: Any
    _TcpConnection__fileno: Any
    _TcpConnection__poller: Any
    _TcpConnection__readBuffer: Any
    _TcpConnection__recvBufferSize: int
    recvLastTimestamp: Any  # noqa: N815 - pysyncobj's name

    def send(self, message: Any) -> None:
        if self.sendRandKey:
            message = (self.sendRandKey, message)
        raw = pickle.dumps(message, PICKLE_PROTOCOL)
        data = _deflate(raw)
        if self.encryptor:
            data = self.encryptor.encrypt_at_time(data, int(monotonic_time()))
        buffer: Any = self._TcpConnection__writeBuffer
        if not isinstance(buffer, bytearray):  # pysyncobj resets it to bytes() on disconnect
            buffer = bytearray(buffer)
            self._TcpConnection__writeBuffer = buffer
        buffer += _LENGTH.pack(len(data))
        buffer += data
        self._TcpConnection__trySendBuffer()
        self._drain_when_writable()

    def _drain_when_writable(self) -> None:
        """pysyncobj drops its interest in WRITE once a send buffer empties, and takes it up again only
        from a WRITE event: what a later send leaves unsent waits for the send after it. A multi-MiB entry
        then left the socket one buffer per heartbeat, and the heartbeats queued behind it (a follower
        heard nothing for 1.3 s while the leader's ticks took at most 0.3 s). Ask to be told when the
        socket can take more, so the poller drains the buffer as fast as the peer reads it."""
        if (
            self._TcpConnection__writeBuffer
            and self._TcpConnection__fileno is not None
            and self.state == CONNECTION_STATE.CONNECTED
        ):
            self._TcpConnection__poller.subscribe(
                self._TcpConnection__fileno,
                self._TcpConnection__processConnection,
                POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.WRITE | POLL_EVENT_TYPE.ERROR,
            )

    def _TcpConnection__processConnection(self, descr: Any, eventType: int) -> None:  # noqa: N802, N803
        """pysyncobj's, without its SO_ERROR check on a connected socket's READ events: a `getsockopt` syscall (and
        one more release of the interpreter lock) per message received, six per sequential write over a 3-node
        cluster. The check is how a non-blocking connect learns its outcome; on a connected socket an error
        shows up in the `recv` that follows (an OSError, or an empty read at the peer's close), which disconnects.
        Any other event (connecting, a WRITE, an ERROR, another descriptor) goes to pysyncobj's as before."""
        if (
            eventType != POLL_EVENT_TYPE.READ
            or descr != self._TcpConnection__fileno
            or self._TcpConnection__state != CONNECTION_STATE.CONNECTED
        ):
            TcpConnection._TcpConnection__processConnection(self, descr, eventType)
            return
        self._TcpConnection__processConnectionTimeout()
        if self._TcpConnection__state == CONNECTION_STATE.DISCONNECTED:
            return
        self._TcpConnection__tryReadBuffer()
        while self._TcpConnection__state != CONNECTION_STATE.DISCONNECTED:
            message = self._TcpConnection__processParseMessage()
            if message is None:
                return
            on_message = self._TcpConnection__onMessageReceived
            if on_message is not None:
                on_message(message)

    def _TcpConnection__processParseMessage(self) -> Any:  # noqa: N802 - pysyncobj's (mangled) name
        """pysyncobj's, with bounds: a frame longer than RAFT_MESSAGE_BYTES_MAX (the length is a signed
        32-bit header: up to 2 GiB buffered) or one that inflates past it (a zlib bomb) closes the
        connection instead of filling memory."""
        buffer = self._TcpConnection__readBuffer
        if len(buffer) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(buffer)
        if not 0 <= length <= limits.RAFT_MESSAGE_BYTES_MAX:
            self.disconnect()
            return None
        if len(buffer) - _LENGTH.size < length:
            return None
        with memoryview(buffer) as view:  # one copy of the frame, and no view left to stop the buffer resizing
            data = bytes(view[_LENGTH.size : _LENGTH.size + length])
        try:
            if self.encryptor:
                timestamp = self.encryptor.extract_timestamp(data)
                if timestamp < self.recvLastTimestamp:
                    raise ValueError("replayed message")
                self.recvLastTimestamp = timestamp
                data = self.encryptor.decrypt(data)
            raw = _stored_body(data)
            if raw is None:
                inflater = zlib.decompressobj()
                raw = inflater.decompress(data, limits.RAFT_MESSAGE_BYTES_MAX)
                if inflater.unconsumed_tail or not inflater.eof:
                    raise ValueError("message inflates past RAFT_MESSAGE_BYTES_MAX, or is cut")
            message = pickle.loads(raw)
            if self.recvRandKey:
                rand_key, message = message
                if rand_key != self.recvRandKey:
                    raise ValueError("wrong session key")
        except Exception:  # noqa: BLE001 - anything a peer sends that does not decode closes its connection
            self.disconnect()
            return None
        if isinstance(buffer, bytearray):
            del buffer[: _LENGTH.size + length]  # in place: bytearray drops a prefix without moving the rest
        else:
            self._TcpConnection__readBuffer = buffer[_LENGTH.size + length :]
        return message

    def _TcpConnection__processRead(self) -> bool:  # noqa: N802 - pysyncobj's (mangled) name
        """One read into the buffer; True if the socket may hold more (the read filled what was asked).

        The buffer is a bytearray, grown in place: pysyncobj's `bytes +=` copied everything buffered at each
        read, so a message cost reads x its size (a 1 MiB entry read 64 KiB at a time: 2.9 ms of copying on
        each follower, 10 ms for 3 MiB; quadratic in the entry's size)."""
        asked = self._TcpConnection__recvBufferSize
        try:
            incoming = self._TcpConnection__socket.recv(asked)
        except OSError as e:
            if e.errno not in (socket.errno.EAGAIN, socket.errno.EWOULDBLOCK):  # type: ignore[attr-defined]
                self.disconnect()
            return False
        if not incoming:
            self.disconnect()  # the peer closed
            return False
        buffer = self._TcpConnection__readBuffer
        if not isinstance(buffer, bytearray):  # pysyncobj sets bytes() at each connect and disconnect
            buffer = self._TcpConnection__readBuffer = bytearray(buffer)
        buffer += incoming
        return len(incoming) == asked

    def _TcpConnection__processSend(self) -> bool:  # noqa: N802 - pysyncobj's (mangled) name
        buffer: Any = self._TcpConnection__writeBuffer
        if not buffer:
            return False
        try:
            sent = self._TcpConnection__socket.send(buffer)
        except OSError as e:
            if e.errno not in (socket.errno.EAGAIN, socket.errno.EWOULDBLOCK):  # type: ignore[attr-defined]
                self.disconnect()
            return False
        if sent < 0:
            self.disconnect()
            return False
        if sent == 0:
            return False
        if isinstance(buffer, bytearray):
            del buffer[:sent]  # bytearray drops a prefix without copying the rest
        else:
            self._TcpConnection__writeBuffer = buffer[sent:]
        return True


_transport_module.TcpConnection = FastTcpConnection
_tcp_server_module.TcpConnection = FastTcpConnection
