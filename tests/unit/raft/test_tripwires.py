"""Tripwires on every correction we make to pysyncobj: each lives in an override of a private or
name-mangled method, or reads a private attribute. If pysyncobj renamed one, the correction would
silently stop being called. These tests pin the version, check each name exists, and drive real
engines (autoTick=False, doTick()) to show each correction still fires."""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import inspect
import shutil
from pathlib import Path

import pysyncobj.syncobj as pysyncobj_module
import pysyncobj.tcp_server as pysyncobj_tcp_server
import pysyncobj.transport as pysyncobj_transport
from pysyncobj import SyncObj
from pysyncobj.syncobj import _COMMAND_TYPE, _RAFT_STATE
from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.transport import TCPTransport
from raft_harness import Cluster, compact, deliver

from laminar.node.raft._connection import FastTcpConnection
from laminar.node.raft._engine import RaftEngine

PINNED_PYSYNCOBJ = "0.3.17"
PAYLOADS = [b"p%02d" % i for i in range(1, 21)]

# pysyncobj methods RaftEngine overrides (or calls by their mangled names).
OVERRIDDEN = [
    "_onTick",
    "_doDestroy",
    "_checkCommandsToApply",
    "_SyncObj__loadDumpFile",
    "_SyncObj__onMessageReceived",
]
CALLED = [
    "_SyncObj__sendNextNodeIdx",
    "_SyncObj__generateRaftTimeout",
    # our tick (RaftEngine._tick) calls each step of pysyncobj's
    "_SyncObj__applyLogEntries",
    "_SyncObj__loadDumpFile",
    "_SyncObj__connectedToAnyone",
    "_SyncObj__setState",
    "_SyncObj__setCurrentTerm",
    "_SyncObj__getCurrentLogIndex",
    "_SyncObj__getCurrentLogTerm",
    "_SyncObj__onLeaderChanged",
    "_SyncObj__onBecomeLeader",
    "_SyncObj__getEntries",
    "_SyncObj__sendAppendEntries",
    "_SyncObj__tryLogCompaction",
    "_isLeader",
    "_getLeader",
    "doTick",
    "_applyCommand",
    "_getFuncName",
]
# pysyncobj's TCP connection internals FastTcpConnection (_connection.py) overrides or uses.
CONNECTION_METHODS = [
    "_TcpConnection__processSend",
    "_TcpConnection__processRead",
    "_TcpConnection__trySendBuffer",
    "_TcpConnection__processConnection",
    "_TcpConnection__processConnectionTimeout",
    "_TcpConnection__tryReadBuffer",
]
CONNECTION_ATTRIBUTES = [
    "_TcpConnection__writeBuffer",
    "_TcpConnection__socket",
    "_TcpConnection__fileno",
    "_TcpConnection__poller",
    "_TcpConnection__recvBufferSize",
    "_TcpConnection__readBuffer",
    "_TcpConnection__state",
    "_TcpConnection__onMessageReceived",
]
# Instance attributes RaftEngine reads or writes.
ATTRIBUTES = [
    "_SyncObj__raftLog",
    "_SyncObj__pipeNotifier",
    "_SyncObj__commandsQueue",
    "_SyncObj__raftNextIndex",
    "_SyncObj__raftMatchIndex",
    "_SyncObj__raftElectionDeadline",
    "_SyncObj__leaderCommitIndex",
    "_SyncObj__raftCommitIndex",
    "_SyncObj__transport",
    "_methodToID",
    "_SyncObj__needLoadDumpFile",
    "_SyncObj__conf",
    "_SyncObj__startTime",
    "_SyncObj__numOneSecondDumps",
    "_SyncObj__raftState",
    "_SyncObj__selfNode",
    "_SyncObj__transferInProgress",
    "_SyncObj__raftLeader",
    "_SyncObj__votesCount",
    "_SyncObj__otherNodes",
    "_SyncObj__lastResponseTime",
    "_SyncObj__newAppendEntriesTime",
    "_SyncObj__onReadyCalled",
    "_SyncObj__onTickCallbacksLock",
    "_SyncObj__onTickCallbacks",
    "_SyncObj__forceLogCompaction",
    "_poller",
]
# RaftEngine._tick is a port of this method: a change to it in pysyncobj must be ported too.
PYSYNCOBJ_TICK_SHA256 = "cc9eb08232d005ba4e21a33ec453e5d02fe3537dadebda8571406c57f65a3c37"


def _isolate(cluster: Cluster, i: int) -> None:
    cut = cluster[i].address
    for n, node in enumerate(cluster.nodes):
        others = {p.address for p in cluster.nodes if p is not node}
        node.engine.partitioned_from = frozenset(others if n == i else {cut})


def test_pysyncobj_is_the_pinned_version() -> None:
    """The corrections were written against, and are tested with, exactly this pysyncobj."""
    assert importlib.metadata.version("pysyncobj") == PINNED_PYSYNCOBJ


def test_every_overridden_or_called_private_name_exists(cluster: Cluster) -> None:
    """Each pysyncobj name we override, call or read exists where we expect it."""
    for name in OVERRIDDEN + CALLED:
        assert callable(getattr(SyncObj, name, None)), name
    for name in OVERRIDDEN:
        assert name in vars(RaftEngine), name
    engine = cluster[0].engine
    for name in ATTRIBUTES:
        assert hasattr(engine, name), name
    assert isinstance(engine._SyncObj__commandsQueue._FastQueue__queue, collections.deque)  # read without its lock
    assert callable(pysyncobj_module.createJournal)
    assert callable(getattr(TCPTransport, "setOnUtilityMessageCallback", None)) and "send" in vars(TCPTransport)
    # The message keys our corrections read are those pysyncobj writes.
    source = inspect.getsource(SyncObj)
    for key in (
        "'prevLogIdx'",
        "'prevLogTerm'",
        "'entries'",
        "'serialized'",
        "'commit_index'",
        "'next_node_idx'",
        "'transmission'",
        "'success'",
        "'reset'",
        "'response_vote'",
    ):
        assert key in source, key


def test_our_tick_ports_pysyncobjs_tick_as_it_is() -> None:
    """RaftEngine._tick copies SyncObj._onTick step for step (but for the leader's commit rule): the
    copy stays right only while pysyncobj's method is the one it was ported from."""
    source = inspect.getsource(SyncObj._onTick).encode()
    assert hashlib.sha256(source).hexdigest() == PYSYNCOBJ_TICK_SHA256


def test_our_journal_replaces_pysyncobjs_and_utility_commands_are_not_served(cluster: Cluster) -> None:
    """createJournal hands pysyncobj our durable journal; the transport registers no utility commands."""
    engine = cluster[0].engine
    assert engine._SyncObj__raftLog is engine._journal
    assert engine._SyncObj__transport._onUtilityMessageCallbacks == {}


def test_a_vote_delivered_twice_counts_once(tmp_path: Path) -> None:
    """A candidate of 5 with its own vote and one other, that other delivered twice, does not lead:
    pysyncobj counted each response_vote message, so a duplicate made a minority a majority."""
    five = Cluster(tmp_path, size=5)
    try:
        a, b = five[0], five[1]
        engine = a.engine
        term = engine.raftCurrentTerm + 1
        engine._SyncObj__raftCurrentTerm = term
        engine._SyncObj__raftState = _RAFT_STATE.CANDIDATE
        engine._SyncObj__votesCount = 1
        vote = {"type": "response_vote", "term": term}
        deliver(a, b, vote)
        deliver(a, b, dict(vote))
        assert not engine._isLeader()
        assert engine._SyncObj__votesCount == 2
        deliver(a, five[2], dict(vote))
        assert engine._isLeader()  # a third voter is a majority of 5
    finally:
        five.close()


def test_a_reply_of_another_term_is_dropped(cluster: Cluster) -> None:
    """A next_node_idx reply carrying an older term leaves the leader's matchIndex alone."""
    a, b = cluster[0], cluster[1]
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:3]))
    peer = a.peer(b.address)
    a.engine._SyncObj__raftMatchIndex[peer] = 1
    stale = {
        "type": "next_node_idx",
        "next_node_idx": 1000,
        "reset": False,
        "success": True,
        "term": a.engine.raftCurrentTerm - 1,
    }
    deliver(a, b, stale)
    assert a.engine._SyncObj__raftMatchIndex[peer] == 1


def test_a_late_success_reply_does_not_move_next_index_back(cluster: Cluster) -> None:
    """A success reply older than the last send leaves nextIndex where the last send put it."""
    a, b = cluster[0], cluster[1]
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:10]))
    peer = a.peer(b.address)
    next_index = a.engine._SyncObj__raftNextIndex[peer]
    a.engine._SyncObj__raftMatchIndex[peer] = 2
    deliver(
        a,
        b,
        {
            "type": "next_node_idx",
            "next_node_idx": 5,
            "reset": False,
            "success": True,
            "term": a.engine.raftCurrentTerm,
        },
    )
    assert a.engine._SyncObj__raftMatchIndex[peer] == 4
    assert a.engine._SyncObj__raftNextIndex[peer] == next_index


def test_a_stale_append_that_would_cut_applied_entries_is_ignored(cluster: Cluster) -> None:
    """An append whose entries conflict with entries this follower has applied changes nothing."""
    a, b = cluster[0], cluster[1]
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:10]))
    cluster.until(lambda: b.engine.raftLastApplied == a.log_end(), "the follower to apply")
    before = list(b.journal[:])
    term = a.engine.raftCurrentTerm
    deliver(
        b,
        a,
        {
            "type": "append_entries",
            "term": term,
            "commit_index": 1,
            "prevLogIdx": 2,
            "prevLogTerm": b.journal[1][2],
            "entries": [(b"\x00", 3, term + 7)],
        },
    )
    assert list(b.journal[:]) == before


def test_the_journal_is_compacted_at_start_not_cleared(cluster: Cluster) -> None:
    """A node killed after publishing a snapshot but before compacting its journal restarts with every
    entry after the snapshot (pysyncobj would clear a journal that does not begin at the snapshot)."""
    b = cluster[1]
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:10]))
    snapshot_index = compact(cluster, 0)
    assert all(cluster.propose(0, PAYLOADS[10:]))
    end = cluster[0].log_end()
    cluster.until(lambda: b.engine.raftLastApplied == end, "the follower to apply")
    cluster.stop(1)
    shutil.copy(cluster[0].root / "raft.snapshot", b.root / "raft.snapshot")  # published, journal not compacted
    assert b.journal[0][1] < snapshot_index - 1
    cluster.restart(1)
    b.engine.partitioned_from = frozenset({cluster[0].address, cluster[2].address})  # nothing to repair it
    cluster.tick(3)
    assert b.journal[0][1] == snapshot_index - 1
    assert b.log_end() == end


def test_a_follower_syncs_before_it_acknowledges(cluster: Cluster) -> None:
    """The journal is fsynced before a success reply leaves: no tick runs between the append and the check."""
    a, b = cluster[0], cluster[1]
    _isolate(cluster, 1)
    cluster.elect(0)
    assert all(cluster.propose(0, PAYLOADS[:3]))
    b.engine.partitioned_from = frozenset()
    syncs = b.journal.syncs
    deliver(
        b,
        a,
        {
            "type": "append_entries",
            "term": a.engine.raftCurrentTerm,
            "commit_index": 1,
            "prevLogIdx": 1,
            "prevLogTerm": 0,
            "entries": list(a.journal[1:]),
        },
    )
    assert b.log_end() == a.log_end()
    assert b.journal.syncs == syncs + 1 and not b.journal.needs_sync


def test_the_leader_syncs_what_it_appends(cluster: Cluster) -> None:
    """_onTick runs: it counts ticks, and the leader's appended entries are made durable (by its sync thread)."""
    a = cluster[0]
    cluster.elect(0)
    ticks = a.engine._ticks
    syncs = a.journal.syncs
    a.engine.propose(b"x", lambda _ok: None)
    cluster.tick(3)
    assert a.engine._ticks > ticks
    cluster.until(lambda: not a.journal.needs_sync, "the leader's journal to be synced")
    assert a.journal.syncs > syncs and a.journal.synced_index == a.log_end()


def test_a_follower_fails_commands_instead_of_forwarding_them(cluster: Cluster) -> None:
    """_checkCommandsToApply runs on a follower: a proposal there fails at once (no forwarding)."""
    cluster.elect(0)
    results: list[bool] = []
    cluster[1].engine.propose(b"x", results.append)
    cluster.tick(3)
    assert results == [False]


def test_snapshot_chunks_go_through_the_receiver(cluster: Cluster) -> None:
    """A chunk that continues no transfer reaches our receiver, which refuses it."""
    a, b = cluster[0], cluster[1]
    cluster.elect(0)
    refused = b.engine._receiver.refused
    deliver(
        b,
        a,
        {
            "type": "append_entries",
            "term": a.engine.raftCurrentTerm,
            "commit_index": 0,
            "serialized": (b"junk", False, True),
            "snapshot_offset": 99,
        },
    )
    assert b.engine._receiver.refused == refused + 1


def test_connections_are_ours_and_entries_are_pickled_with_protocol_5(cluster: Cluster) -> None:
    """Both pysyncobj modules that build connections build FastTcpConnection, whose pysyncobj internals
    exist, the live connections are of that class, and a proposed entry is a REGULAR command pickled
    with protocol 5 (pysyncobj's protocol 2 made a 3 MiB entry 4.5 MiB and cost 150 ms)."""
    assert pysyncobj_transport.TcpConnection is FastTcpConnection
    assert pysyncobj_tcp_server.TcpConnection is FastTcpConnection
    for name in CONNECTION_METHODS:
        assert callable(getattr(TcpConnection, name, None)), name
    a = cluster[0]
    cluster.elect(0)
    assert all(cluster.propose(0, [b"x" * 1000]))
    connections = list(a.engine._SyncObj__transport._connections.values())
    assert connections and all(isinstance(c, FastTcpConnection) for c in connections)
    for name in CONNECTION_ATTRIBUTES:
        assert hasattr(connections[0], name), name
    command = a.journal[-1][0]
    assert command[0] == _COMMAND_TYPE.REGULAR and command[1:3] == b"\x80\x05"
