"""Bad input on the Raft port: a malformed or hostile message from a peer (or from anyone who connects,
without a password) neither stops a node's tick thread nor changes its journal. Real engines, driven by
doTick(); messages handed to the engine as its transport would, and raw bytes sent to its port."""

from __future__ import annotations

import socket
import struct
import zlib
from typing import Any

from raft_harness import Cluster, deliver

from laminar import limits

PAYLOADS = [b"p%02d" % i for i in range(1, 11)]


def _bad_messages(term: int, last: int) -> list[Any]:
    append = {"type": "append_entries", "term": term, "commit_index": last, "prevLogIdx": last, "prevLogTerm": term}
    return [
        "not a dict",
        ["status"],
        {},
        {"type": "no such type", "term": term},
        {"type": "apply_command", "command": b"\x00anything"},
        {"type": "apply_command_response", "request_id": 1, "log_idx": 5, "log_term": 1},
        {"type": "request_vote", "term": "7", "last_log_index": 1, "last_log_term": 1},
        {"type": "request_vote", "term": term + 1},
        {"type": "next_node_idx", "term": term, "next_node_idx": None, "reset": True, "success": True},
        {**append, "entries": [("not bytes", last + 1, term)]},
        {**append, "entries": [(b"x", str(last + 1), term)]},
        {**append, "entries": [(b"x", last + 1)]},
        {**append, "entries": [(b"x", last + 5, term)]},
        {**append, "entries": [(b"x", last + 1, term + 9)]},
        {**append, "entries": "nope"},
        {**append, "prevLogIdx": -3},
        {**append, "commit_index": None},
        {**append, "transmission": "finish", "data": b"\x80\x05junk"},
        {"type": "append_entries", "term": term, "commit_index": 0, "serialized": False},
        {
            "type": "append_entries",
            "term": term,
            "commit_index": 0,
            "serialized": ("x", True, True),
            "snapshot_offset": 0,
        },
    ]


def test_malformed_messages_change_nothing_and_the_cluster_carries_on(cluster: Cluster) -> None:
    """Each malformed message (wrong types, missing keys, entries out of order, commands we never accept
    from a peer) is dropped and counted at both the leader and a follower; the journals are unchanged and
    the cluster still commits afterwards. pysyncobj raised in the middle of its handler for most of them,
    some after deleting journal entries, and appended a peer's `apply_command` to the leader's log."""
    a, b = cluster[0], cluster[1]
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS))
    cluster.until(lambda: b.log_end() == a.log_end(), "the follower to catch up")
    term, last = a.engine.raftCurrentTerm, a.log_end()
    for node, sender in ((b, a), (a, b)):
        journal = list(node.journal[:])
        bad = _bad_messages(term, last)
        for message in bad:
            deliver(node, sender, message)
        cluster.tick(3)
        assert list(node.journal[:]) == journal
        assert node.engine.bad_messages == len(bad)
    assert a.engine._isLeader() and a.engine.raftCurrentTerm == term
    assert all(cluster.propose(0, [b"after"]))


def _frame(payload: bytes) -> bytes:
    return struct.pack("i", len(payload)) + payload


def test_garbage_oversized_and_inflating_frames_on_the_raft_port_only_close_that_connection(cluster: Cluster) -> None:
    """Raw bytes to a follower's Raft port: garbage, a 2 GiB length header, a zlib bomb, a 'readonly'
    follower: each connection is closed (pysyncobj would wait for 2 GiB, inflate the bomb whole, and
    stream the log to the read-only one), and the cluster keeps committing."""
    b = cluster[1]
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:3]))
    host, port = b.address.split(":")
    bomb = zlib.compress(b"\0" * (limits.RAFT_MESSAGE_BYTES_MAX + 1), 9)
    import pickle

    attempts = [
        b"\xff\xfe garbage that is not a frame at all",
        struct.pack("i", 2**31 - 1) + b"x" * 1000,
        _frame(bomb),
        _frame(zlib.compress(pickle.dumps("readonly"))),
    ]
    for attempt in attempts:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(attempt)
            s.settimeout(0.05)
            closed = False
            for _ in range(200):
                cluster.tick()
                try:
                    if s.recv(1024) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    closed = True
                    break
            assert closed, f"the node kept a connection that sent {attempt[:20]!r}"
    assert all(cluster.propose(0, [b"after"]))
    cluster.until(lambda: b.log_end() == cluster[0].log_end(), "the follower to keep following")
