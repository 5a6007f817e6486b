"""The Raft transport's compression: cheap per message, and readable both ways by peers that compress the
old way (zlib's defaults), so nodes of both kinds can share a cluster."""

from __future__ import annotations

import pickle
import zlib

from laminar import limits
from laminar.node.raft._connection import _COMPRESS_WINDOW_BITS, _deflate, _stored_body

TINY = pickle.dumps({"type": "append_entries", "entries": [(b"\x00" * 120, 7, 2)]}, 5)
SMALL = pickle.dumps({"type": "append_entries", "entries": [(b"\x00" * limits.RAFT_MESSAGE_COMPRESS_BYTES_MIN, 7, 2)]})
LARGE = pickle.dumps({"entries": [(bytes(range(256)) * (limits.RAFT_MESSAGE_COMPRESS_BYTES_MAX // 256 + 8), 1, 1)]})


def test_each_message_is_one_zlib_stream_with_a_small_window_that_any_peer_inflates() -> None:
    """A small message is compressed, a tiny or a large one stored; a compressed one says a 4 KiB window in
    its header (the deflate state behind it is 24 KiB, not zlib's default ~270 KiB per message); each
    inflates whole with zlib's default reader, which is what an older peer uses."""
    for raw, compressed in ((TINY, False), (SMALL, True), (LARGE, False)):
        data = _deflate(raw)
        if compressed:
            assert data[0] >> 4 == _COMPRESS_WINDOW_BITS - 8, "CINFO: the window the stream was written with"
        assert (len(data) < len(raw)) is compressed
        assert zlib.decompress(data) == raw
        assert zlib.decompressobj().decompress(data, limits.RAFT_MESSAGE_BYTES_MAX) == raw


def test_a_tiny_message_is_read_back_without_the_inflater_and_a_damaged_one_is_not() -> None:
    """The stored stream of a tiny message is read by `_stored_body` (no zlib state); a flipped bit
    anywhere, a cut or a longer stream, and any compressed stream, are left to the inflater (None), which
    refuses the damaged ones."""
    data = _deflate(TINY)
    assert _stored_body(data) == TINY
    assert _stored_body(_deflate(SMALL)) is None
    assert _stored_body(zlib.compress(TINY, 0)) in (None, TINY)  # zlib's own stored form may differ
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x04
        assert _stored_body(bytes(damaged)) is None, position
    assert _stored_body(data[:-1]) is None
    assert _stored_body(data + b"\x00") is None


def test_a_stream_compressed_with_zlibs_defaults_still_inflates_the_way_we_read() -> None:
    """What an older peer sends (zlib.compress at level 3, a 32 KiB window) is read by the reader our
    connection uses (a bounded decompressobj)."""
    inflater = zlib.decompressobj()
    assert inflater.decompress(zlib.compress(SMALL, 3), limits.RAFT_MESSAGE_BYTES_MAX) == SMALL
    assert inflater.eof and not inflater.unconsumed_tail
