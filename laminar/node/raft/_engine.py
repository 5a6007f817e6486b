"""pysyncobj, configured and corrected for Laminar. The only module that imports pysyncobj.

What we change and why:
- One replicated method, `_apply_entry(payload)`: each log entry carries a whole batch of
  intentions (an encoded IntentionBatch), so the per-entry cost of the Raft engine is shared.
- `appendEntriesUseBatch=False`: a proposal is sent to the followers at once instead of on the
  next 50 ms tick, and the pipe notifier wakes the tick thread when we propose.
- No forwarding: pysyncobj forwards queued commands to the new leader when this node loses
  leadership. A forwarded later entry could then commit without an earlier one of the same
  client, so we fail them instead; the client resends from its oldest uncommitted nonce.
- No stale truncation: pysyncobj lets a success reply that arrives after a newer send move
  `nextIndex` backwards; the next append then makes the follower delete entries it has already
  acknowledged (and maybe applied), so the leader can count an entry as replicated on a follower
  that no longer has it. We keep `nextIndex` from going backwards on success, and a follower
  ignores an append that would delete entries it has already applied (committed entries never
  conflict, so such an append is stale by construction).
- Replies know their term: a follower's `next_node_idx` carries the term it answers in, and the
  leader drops one from another term. pysyncobj's carry none, so a reply to an append of an older
  term (delayed, or arriving after this node was elected again) could raise `matchIndex` to an
  index this follower's log no longer holds, and the leader would commit and acknowledge entries
  a majority does not have. (A fault run lost acknowledged appends after leader changes; this is
  one way that happens. See bench/results/torture-20261130-lost-appends.)
- One vote per voter: pysyncobj counts `response_vote` messages, not voters, so a vote delivered
  twice counts twice and a candidate with a minority of votes becomes leader, one whose log may lack
  committed entries (Raft's leader completeness), or beside the real leader of its term. We count
  each member's vote once per term. (Found by the simulator on a network that duplicates.)
- A durable journal (see _journal.py): a follower syncs before it acknowledges entries (in the
  transport, before any `next_node_idx` reply); the leader syncs in a thread of its own while its
  appends travel, and counts itself toward a commit only through the index its journal has synced
  (our own tick, `_tick`, owns the leader's commit rule: pysyncobj's counts the leader always). So
  `committed` means durable on a majority. One fsync covers everything appended since the last one.
  Measured before the sync left the tick thread: the leader's fsync was still running when the first
  follower's reply arrived in 77 % of sequential writes (by 0.23 ms at the median).
- Log compaction by store checkpoint (see _snapshot.py), never pysyncobj's default, which forks
  and pickles the whole object (a process holding gRPC threads and a RocksDB handle must not
  fork). When: _compaction.py (once the applied journal weighs as much as the last snapshot, so the
  total snapshot work is linear in the data written), or past `log_entries_max` entries.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pysyncobj.syncobj as _pysyncobj_module
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.syncobj import _COMMAND_TYPE, _RAFT_STATE
from pysyncobj.transport import TCPTransport, TransportNotReadyError

from laminar import limits
from laminar.node._fail_stop import EXIT_APPLY_FAILED, fail_stop
from laminar.node.raft._compaction import CompactionPolicy
from laminar.node.raft._connection import PICKLE_PROTOCOL  # importing it installs our TCP connection
from laminar.node.raft._journal import DurableJournal, SyncThread
from laminar.node.raft._messages import problem as message_problem
from laminar.node.raft._port import ApplyFn, ResultFn, SnapshotHooks
from laminar.node.raft._snapshot import (
    SnapshotCorrupt,
    SnapshotReceiver,
    Snapshotter,
    snapshot_entries,
    verify,
)

log = logging.getLogger("laminar.raft")

_NEVER = 2**62


@dataclass(frozen=True)
class RaftSettings:
    self_address: str  # host:port this node's Raft listens on (binds only there)
    peer_addresses: tuple[str, ...]  # the other nodes' Raft host:port
    journal_path: str
    snapshot_path: str
    durability: str = "fsync"  # "fsync": sync before acknowledging; "none": page cache only
    log_entries_max: int = limits.RAFT_LOG_ENTRIES_MAX  # compact the journal past this many entries
    compaction: CompactionPolicy = field(default_factory=CompactionPolicy)  # ... or when this says so
    password: str | None = None
    # etcd's defaults (1 s election, 100 ms heartbeat): on a shared 2-core machine a busy node's
    # tick thread can lag for hundreds of milliseconds, and a shorter timeout elects spuriously.
    election_timeout_s_min: float = 1.0
    election_timeout_s_max: float = 2.0
    heartbeat_s: float = 0.1
    leader_fallback_s: float = 4.0  # a leader that hears from no majority for this long steps down
    auto_tick: bool = True  # False: no tick thread; the caller drives the engine with doTick() (tests)


DURABILITY_MODES = ("fsync", "none")
BAD_MESSAGES_LOGGED_MAX = 10  # malformed Raft messages logged one by one; past this, one in a thousand
# Operations waiting to run in the tick thread: `received` acks (one per entry in flight, so at most
# ENTRIES_INFLIGHT_MAX) and leadership transfers.
TICK_TASKS_MAX = 16


def monotonic() -> float:
    """pysyncobj's clock: every deadline it keeps (election, next heartbeat, a peer's last response,
    its start time) is in it, and our tick compares against them. It is CLOCK_MONOTONIC_RAW, not
    time.monotonic's CLOCK_MONOTONIC: NTP slews one and not the other, so they drift apart (0.31 s
    after 9 hours on the shared test machine). Compared across the two clocks, the next heartbeat
    was always due once the drift passed the heartbeat period, and an idle leader sent appends on
    every tick, about 930 round trips a second to each follower (20 % of a core per node, idle); an
    election or fallback deadline would move by the drift, which grows with uptime. Read through
    pysyncobj's module, so that a clock put there (a test's) is ours too."""
    return float(_pysyncobj_module.monotonicTime())


_create_pysyncobj_journal = _pysyncobj_module.createJournal


def _create_journal(spec: Any) -> Any:
    """pysyncobj builds its journal from `conf.journalFile`; we hand it a journal object instead."""
    return spec if isinstance(spec, DurableJournal) else _create_pysyncobj_journal(spec)


_pysyncobj_module.createJournal = _create_journal


class _SyncingTransport(TCPTransport):  # type: ignore[misc]
    """Makes the journal durable before a follower acknowledges entries, and answers no
    "utility" commands: pysyncobj accepts those (add/remove node, transfer leadership, status)
    from any connection to the Raft port, before the peer identifies itself."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:  # noqa: N803 - pysyncobj's names
        self._snapshot_offsets: dict[str, int] = {}  # peer address -> bytes of its snapshot transfer sent
        super().__init__(syncObj, selfNode, otherNodes)

    def setOnUtilityMessageCallback(self, message: str, callback: Any) -> None:  # noqa: N802
        pass

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:  # noqa: N802 - pysyncobj's name
        # pysyncobj lets any connection that says 'readonly' follow the log: the leader would stream it
        # every entry and snapshot. Laminar has no read-only members; such a connection is closed.
        if message == "readonly" and not (self._syncObj.encryptor and not conn.sendRandKey):
            conn.disconnect()
            self._unknownConnections.discard(conn)
            return
        super()._onIncomingMessageReceived(conn, message)

    def send(self, node: Any, message: dict[str, Any]) -> Any:
        partitioned = self._syncObj.partitioned_from
        if partitioned and str(node.address) in partitioned:  # (no address string built per message when none is)
            return False  # fault injection: the link to this peer is cut
        if message.get("type") == "next_node_idx":
            if message.get("success"):
                self._syncObj._journal.sync()
            # The term of the append it answers (see RaftEngine._SyncObj__onMessageReceived).
            message = {**message, "term": self._syncObj.raftCurrentTerm}
        elif message.get("serialized") is not None:
            message = self._tag_snapshot_chunk(node, message)
        return super().send(node, message)

    def _tag_snapshot_chunk(self, node: Any, message: dict[str, Any]) -> dict[str, Any]:
        """Each snapshot chunk carries its offset in the transfer (see SnapshotReceiver): the
        receiver refuses one that does not continue exactly where the previous one ended."""
        offsets = self._snapshot_offsets
        chunk = message["serialized"]
        if not isinstance(chunk, tuple):
            return message
        data, first, _last = chunk
        offset = 0 if first else offsets.get(str(node.address), -1)
        offsets[str(node.address)] = offset + len(data) if offset >= 0 else -1
        return {**message, "snapshot_offset": offset}


ROLE_NAMES = {_RAFT_STATE.FOLLOWER: "follower", _RAFT_STATE.CANDIDATE: "candidate", _RAFT_STATE.LEADER: "leader"}


class RaftEngine(SyncObj):  # type: ignore[misc]
    # pysyncobj's private state that our tick (`_tick`) writes as well as reads
    _SyncObj__needLoadDumpFile: bool
    _SyncObj__onReadyCalled: bool
    _SyncObj__raftElectionDeadline: float

    def __init__(
        self,
        settings: RaftSettings,
        on_apply: ApplyFn,
        on_role: Callable[[str], None],
        snapshot_hooks: SnapshotHooks,
    ) -> None:
        self._on_apply = on_apply
        self._on_role = on_role
        if settings.durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {DURABILITY_MODES}, not {settings.durability!r}")
        self._journal = DurableJournal(settings.journal_path, sync=settings.durability == "fsync")
        # The leader's fsync, off the tick thread ("none": nothing to wait for, the tick marks it synced).
        self._syncer: SyncThread | None = (
            SyncThread(self._journal, self._wake_tick) if settings.durability == "fsync" else None
        )
        self._sync_asked_at = -1  # the journal's `appends` when the sync thread was last asked (tick thread)
        self._snapshot_path = settings.snapshot_path
        self._snapshot_hooks = snapshot_hooks
        self._flush_deadline: float | None = None  # a due snapshot waits for the store's flush until then (tick)
        self._snapshots = Snapshotter(
            settings.snapshot_path + ".work", snapshot_hooks, prepare_compaction=self._journal.prepare_compaction
        )
        if os.path.exists(settings.snapshot_path):
            self._snapshots.snapshot_bytes = os.path.getsize(settings.snapshot_path)
        self._compaction = settings.compaction
        self._receiver = SnapshotReceiver(settings.snapshot_path + ".incoming")
        conf = SyncObjConf(
            autoTick=settings.auto_tick,
            appendEntriesUseBatch=False,
            commandsQueueSize=limits.RAFT_COMMANDS_QUEUE_MAX,
            commandsWaitLeader=False,
            raftMinTimeout=settings.election_timeout_s_min,
            raftMaxTimeout=settings.election_timeout_s_max,
            appendEntriesPeriod=settings.heartbeat_s,
            leaderFallbackTimeout=settings.leader_fallback_s,
            connectionTimeout=settings.leader_fallback_s,
            journalFile=self._journal,
            password=settings.password or None,
            # pysyncobj binds 0.0.0.0 unless told otherwise; its traffic is pickle, so listen only
            # on the address the config names.
            bindAddress=settings.self_address,
            logCompactionMinEntries=settings.log_entries_max,
            logCompactionMinTime=_NEVER,
            logCompactionBatchSize=limits.SNAPSHOT_CHUNK_BYTES,
            fullDumpFile=settings.snapshot_path,
            serializer=self._snapshots.serialize,
            deserializer=self._snapshots.deserialize,
            serializeChecker=self._snapshots.check,
            useFork=False,
            dynamicMembershipChange=True,
            onStateChanged=self._state_changed,
            connectionRetryTime=0.5,
            # No entry reaches this size, so none goes into pysyncobj's chunked "transmission" mode
            # (slow, and its last-chunk test compares against the wrong length).
            appendEntriesBatchSizeBytes=limits.RAFT_ENTRY_BYTES_MAX + 1024,
        )
        # (tick count when queued, task): a task runs at the end of the first tick that began after
        # it was queued, so that tick has taken in every command proposed before it.
        self._in_tick: queue.Queue[tuple[int, Callable[[], None]]] = queue.Queue(maxsize=TICK_TASKS_MAX)
        # Tasks taken from the queue, waiting for their tick (tick thread only): at most the
        # TICK_TASKS_MAX queued during one tick, since older ones run at the end of each tick.
        self._held: collections.deque[tuple[int, Callable[[], None]]] = collections.deque()
        self._ticks = 0  # ticks begun; written by the tick thread only
        # Fault injection (tests only, like etcd's failpoints): Raft addresses whose traffic this
        # node drops, both ways. Replaced whole, never mutated, so the tick thread reads it safely.
        self.partitioned_from: frozenset[str] = frozenset()
        self.bad_messages = 0  # malformed messages dropped (tick thread only)
        self._leader_heard_at = monotonic()  # when an append of the current term last arrived (tick thread)
        self._votes_term = -1  # the term whose votes _voters holds (tick thread only)
        self._voters: set[str] = set()  # addresses of the members whose vote in _votes_term was counted
        super().__init__(settings.self_address, list(settings.peer_addresses), conf, transportClass=_SyncingTransport)
        self.addOnTickCallback(self._run_tick_tasks)

    # ---- proposing (any thread) -------------------------------------------------------------

    def propose(self, payload: bytes, on_result: ResultFn) -> None:
        """Queue one entry. on_result(True) once applied here, on_result(False) if it was not."""

        def callback(_result: Any, error: int) -> None:
            on_result(error == FAIL_REASON.SUCCESS)

        # What `self._apply_entry(payload, callback=callback)` does, but pickled with protocol 5:
        # pysyncobj's protocol 2 turns bytes into a latin-1 str (a 3 MiB entry: 77 ms to pickle, 75 ms to
        # unpickle at apply, 4.5 MiB in the journal and on the wire), and an entry that grew past
        # appendEntriesBatchSizeBytes that way went to pysyncobj's chunked "transmission" mode.
        function_id = self._methodToID[self._getFuncName("_apply_entry")]
        command = pickle.dumps((function_id, (payload,)), PICKLE_PROTOCOL)
        self._applyCommand(command, callback, _COMMAND_TYPE.REGULAR)

    @replicated  # type: ignore[misc]
    def _apply_entry(self, payload: bytes) -> None:
        # pysyncobj applies entries in order and bumps raftLastApplied after each one returns.
        index = self.raftLastApplied + 1
        try:
            self._on_apply(index, payload)
        except BaseException:  # noqa: BLE001 - fail_stop logs it and ends the process
            fail_stop(f"apply of raft entry {index} failed", EXIT_APPLY_FAILED, log)

    # ---- queries (any thread) ---------------------------------------------------------------

    def role(self) -> str:
        return "leader" if self._isLeader() else ("follower" if self._getLeader() is not None else "candidate")

    def leader_silence_s(self) -> float:
        """Seconds since a follower last heard from its leader (0 on the leader). pysyncobj keeps
        naming a leader until its election timeout fires (1-2 s), a dead one included."""
        return 0.0 if self._isLeader() else monotonic() - self._leader_heard_at

    def leader_address(self) -> str | None:
        leader = self._getLeader()
        return None if leader is None else str(leader.address)

    def status(self) -> dict[str, Any]:
        return dict(self.getStatus())

    def members(self) -> list[str]:
        """Raft addresses of every voting member, this node first."""
        for _ in range(3):  # the tick thread may change the set while we copy it
            try:
                return [str(self.selfNode.address), *sorted(str(n.address) for n in self.otherNodes)]
            except RuntimeError:
                continue
        return [str(self.selfNode.address)]

    def is_connected(self, raft_address: str) -> bool:
        return any(str(n.address) == raft_address and self.isNodeConnected(n) for n in self.otherNodes)

    def change_membership(self, add: bool, raft_address: str, on_done: Callable[[bool, str], None]) -> None:
        """Add or remove one voting member; on_done(ok, reason) once committed or refused."""

        def callback(_result: Any, error: int) -> None:
            names = {v: k for k, v in vars(FAIL_REASON).items() if not k.startswith("_")}
            on_done(error == FAIL_REASON.SUCCESS, names.get(error, str(error)))

        if add:
            self.addNodeToCluster(raft_address, callback=callback)
        else:
            self.removeNodeFromCluster(raft_address, callback=callback)

    def after_tick(self, task: Callable[[], None]) -> None:
        """Run `task` in the tick thread at the end of the next tick that begins after this call:
        by then the leader has appended what was proposed before it to its log and sent it to the
        followers. Blocks while TICK_TASKS_MAX tasks wait."""
        self._in_tick.put((self._ticks, task))

    def transfer_leadership(self) -> None:
        """Hand leadership to the most caught-up follower (runs in the tick thread: it sends)."""
        self.after_tick(lambda: self.transferLeadership(None))

    def _run_tick_tasks(self) -> None:
        if not self._held and not self._in_tick.queue:
            # Most ticks. The deque's length, read without the queue's lock (qsize takes it): a task put
            # meanwhile waits for the next tick, as it did when qsize ran just before the put.
            return
        while True:
            try:
                self._held.append(self._in_tick.get_nowait())
            except queue.Empty:
                break
        while self._held and self._held[0][0] < self._ticks:
            self._held.popleft()[1]()

    @property
    def journal_syncs(self) -> int:
        return self._journal.syncs

    @property
    def snapshots(self) -> Snapshotter:
        return self._snapshots

    # ---- corrections to pysyncobj (tick thread) ---------------------------------------------

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803 - pysyncobj's names
        self._ticks += 1
        if self._syncer is None or not self._isLeader():
            # A follower synced what it acknowledged; what is left (a tail it appended as leader, or
            # loaded at start) is synced here, as is everything when durability is "none" (no fsync).
            self._journal.sync()
        else:
            self._request_sync()  # e.g. the no-op appended when this node became leader
        self._compact_if_due()
        self._tick(timeToWait)

    def _request_sync(self) -> None:
        """Ask the sync thread for an fsync once per entry appended (twice a tick while the sync ran, each
        request woke the sync thread again: measured 2.9 requests per sequential write, ~6 % of the tick
        thread's time in Event.set)."""
        journal = self._journal
        if self._syncer is not None and journal.needs_sync and journal.appends != self._sync_asked_at:
            self._sync_asked_at = journal.appends
            self._syncer.request()

    def _save_commit_hint(self) -> None:
        """pysyncobj's once-a-second journal timer (the commit hint's save): in the sync thread when there is one,
        so its write and rename (1-1.5 ms, at worst 9-25 ms, on the shared test machine) do not stall the tick."""
        if self._syncer is not None:
            self._syncer.request_hint_save()
        else:
            self._journal.onOneSecondTimer()

    def _wake_tick(self) -> None:
        """The sync thread has synced: wake the tick thread, which may now count the leader, if that can
        commit anything (`_sync_completes_majority`)."""
        if not self._sync_completes_majority():
            return
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)
        if notifier is not None:
            try:
                notifier.notify()
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def _sync_completes_majority(self) -> bool:
        """Sync thread, right after an fsync: whether enough followers already hold an entry past the
        commit index that the leader's vote now completes a majority for it. If not, the tick has nothing
        to commit yet, and a wake-up would be a tick for nothing (measured on a 3-node leader's sequential
        writes: its fsync ends before the first follower's reply in most writes, so this tick was one of
        ~3.4 per write, with the pipe's write here and its read there). No wake-up is lost: the synced
        index is set before this reads the match indexes, and the tick thread sets a match index (taking
        a reply, in poll) before its next tick reads the synced index (`_leader_commit`), so, under the
        interpreter lock, either that tick sees this sync or this sees that reply. Not the leader, or the
        members changing under this read: wake it, as before."""
        if not self._isLeader():
            return True
        try:
            others = self._SyncObj__otherNodes
            match = self._SyncObj__raftMatchIndex
            commit = self.raftCommitIndex
            holders = 1 + sum(1 for node in others if match.get(node, 0) > commit)
        except RuntimeError:  # the tick thread changed the set or the dict while this iterated them
            return True
        return holders > (len(others) + 1) / 2

    def _doDestroy(self) -> None:  # noqa: N802 - pysyncobj's name
        if self._syncer is not None:
            self._syncer.stop()
        super()._doDestroy()

    def _tick(self, timeToWait: float) -> None:  # noqa: N803 - pysyncobj's name
        """pysyncobj 0.3.17's SyncObj._onTick, step for step, except the leader's commit rule
        (`_leader_commit`) and the leader's sync, requested right after its new entries are sent."""
        transport = self._SyncObj__transport
        if not transport.ready:
            try:
                transport.tryGetReady()
            except TransportNotReadyError:
                pass  # still not ready: handled just below
        if not transport.ready:
            time.sleep(timeToWait)
            self._SyncObj__applyLogEntries()
            return
        if self._SyncObj__needLoadDumpFile:
            dump_file = self._SyncObj__conf.fullDumpFile
            if dump_file is not None and os.path.isfile(dump_file):
                self._SyncObj__loadDumpFile(clearJournal=False)
            self._SyncObj__needLoadDumpFile = False
        if monotonic() - self._SyncObj__startTime > self._SyncObj__numOneSecondDumps:
            self._SyncObj__numOneSecondDumps += 1
            self._save_commit_hint()
        self._maybe_stand()
        if self._SyncObj__raftState == _RAFT_STATE.LEADER:
            self._leader_commit()
            self._leader_fallback()
        need_send = self._SyncObj__applyLogEntries()
        leading = self._SyncObj__raftState == _RAFT_STATE.LEADER
        if leading and (monotonic() > self._SyncObj__newAppendEntriesTime or need_send):
            self._SyncObj__sendAppendEntries()
        if not self._SyncObj__onReadyCalled and self.raftLastApplied == self._SyncObj__leaderCommitIndex:
            if self._SyncObj__conf.onReady:
                self._SyncObj__conf.onReady()
            self._SyncObj__onReadyCalled = True
        self._checkCommandsToApply()
        if self._SyncObj__raftState == _RAFT_STATE.LEADER:
            self._request_sync()  # the new entries are sent: their fsync now runs beside the followers'
        self._try_log_compaction()
        with self._SyncObj__onTickCallbacksLock:
            for callback in self._SyncObj__onTickCallbacks:
                callback()
        self._poller.poll(timeToWait)

    def _try_log_compaction(self) -> None:
        """pysyncobj's __tryLogCompaction, skipped in the ticks where it would do nothing: no snapshot being
        built or waiting to be taken, no compaction forced, and the journal within logCompactionMinEntries (its
        time rule never fires: logCompactionMinTime is _NEVER). That is what it finds after asking the
        Snapshotter (a lock) and reading the clock, in every tick but the few around a snapshot."""
        if (
            self._snapshots.idle
            and not self._SyncObj__forceLogCompaction
            and len(self._SyncObj__raftLog) <= self._SyncObj__conf.logCompactionMinEntries
        ):
            return
        self._SyncObj__tryLogCompaction()

    def _maybe_stand(self) -> None:
        """pysyncobj's election timeout, unchanged: a follower or candidate that heard from no leader
        stands for the next term (and leads at once when it is the only member)."""
        if self._SyncObj__raftState not in (_RAFT_STATE.FOLLOWER, _RAFT_STATE.CANDIDATE):
            return
        if self._SyncObj__selfNode is None:
            return
        if not (self._SyncObj__raftElectionDeadline < monotonic() and self._SyncObj__connectedToAnyone()):
            return
        self._SyncObj__raftElectionDeadline = monotonic() + self._SyncObj__generateRaftTimeout()
        self._SyncObj__transferInProgress = False
        self._SyncObj__raftLeader = None
        self._SyncObj__setState(_RAFT_STATE.CANDIDATE)
        self._SyncObj__setCurrentTerm(self.raftCurrentTerm + 1, self._SyncObj__selfNode.id)
        self._SyncObj__votesCount = 1
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(
                node,
                {
                    "type": "request_vote",
                    "term": self.raftCurrentTerm,
                    "last_log_index": self._SyncObj__getCurrentLogIndex(),
                    "last_log_term": self._SyncObj__getCurrentLogTerm(),
                },
            )
        self._SyncObj__onLeaderChanged()
        if self._SyncObj__votesCount > (len(self._SyncObj__otherNodes) + 1) / 2:
            self._SyncObj__onBecomeLeader()

    def _leader_commit(self) -> None:
        """Raft's commit rule (§5.3, §5.4.2): the highest index of the current term held by a majority,
        where the leader counts only through what its journal has synced (pysyncobj counts it always:
        with the fsync off the tick thread, that would commit an entry one follower holds durably and
        the leader in its page cache, and a power loss of the leader could then lose it)."""
        match = self._SyncObj__raftMatchIndex
        others = self._SyncObj__otherNodes
        synced = self._journal.synced_index
        majority = (len(others) + 1) / 2
        index = commit = self.raftCommitIndex
        while index < self._SyncObj__getCurrentLogIndex():
            index += 1
            holders = (1 if synced >= index else 0) + sum(1 for node in others if match[node] >= index)
            if holders <= majority:
                break
            entries = self._SyncObj__getEntries(index, 1)
            if entries and entries[0][2] == self.raftCurrentTerm:
                commit = index
        if commit != self.raftCommitIndex:
            self._SyncObj__raftCommitIndex = commit
            self._journal.setRaftCommitIndex(commit)
        self._SyncObj__leaderCommitIndex = commit

    def _leader_fallback(self) -> None:
        """pysyncobj's, unchanged: a leader that heard from no majority for leaderFallbackTimeout steps down."""
        deadline = monotonic() - self._SyncObj__conf.leaderFallbackTimeout
        responses = self._SyncObj__lastResponseTime
        heard = 1 + sum(1 for node in self._SyncObj__otherNodes if responses[node] > deadline)
        if heard <= (len(self._SyncObj__otherNodes) + 1) / 2:
            self._SyncObj__setState(_RAFT_STATE.FOLLOWER)
            self._SyncObj__raftLeader = None

    def _compact_if_due(self) -> None:
        # Not while a snapshot is in flight: pysyncobj keeps the force flag until its next compaction, so a
        # flag raised now would start another snapshot as soon as this one is taken (each byte-triggered
        # compaction used to run twice that way). `idle`, not `busy`: the same answer here, without a lock.
        if not self._snapshots.idle:
            return
        hooks = self._snapshot_hooks
        if self._flush_deadline is not None:  # due, and the store's memtable is being flushed first
            if hooks.flushing is not None and hooks.flushing() and monotonic() < self._flush_deadline:
                return
            self._flush_deadline = None
            self.forceLogCompaction()
            return
        droppable_bytes, droppable_entries = self._journal.size_through(self.raftLastApplied)
        if not self._compaction.due(droppable_bytes, droppable_entries, self._snapshots.snapshot_bytes):
            return
        if hooks.flush_start is not None:
            hooks.flush_start()  # see SnapshotHooks.flush_start; the snapshot starts once it is done
            self._flush_deadline = monotonic() + limits.SNAPSHOT_FLUSH_AHEAD_S_MAX
            return
        self.forceLogCompaction()

    def _state_changed(self, old: int, new: int) -> None:
        self._on_role(ROLE_NAMES.get(new, str(new)))

    def _checkCommandsToApply(self) -> None:  # noqa: N802 - pysyncobj's name
        if not self._SyncObj__commandsQueue._FastQueue__queue:
            # Nothing proposed since the last tick (most ticks, on every node): pysyncobj's and our loops would
            # each take the queue's lock and catch its Empty. Read without the lock: a command put after this
            # read notifies the pipe, and the tick it wakes takes it.
            return
        if self._isLeader():
            journal = self._SyncObj__raftLog
            length_before = len(journal)
            super()._checkCommandsToApply()
            if len(journal) != length_before and self._syncer is None and not self._SyncObj__otherNodes:
                # Wake the tick loop at once: a single node without a sync thread commits its own entry
                # on the next tick, which would otherwise wait a whole autoTickPeriod (50 ms) in poll().
                # With peers, their replies wake the tick that commits; with a sync thread, its
                # `on_synced` does. A wake-up here was one empty tick per entry (measured: 5.1 ticks
                # per sequential write on a 3-node leader, one of them this).
                self._SyncObj__pipeNotifier.notify()
            return
        pending: Any = self._SyncObj__commandsQueue
        while True:
            try:
                _command, callback = pending.get_nowait()
            except queue.Empty:
                return
            if callable(callback):
                callback(None, FAIL_REASON.NOT_LEADER)

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:  # noqa: N802, N803 - pysyncobj's names
        # At start pysyncobj keeps the journal only if it begins with the snapshot's last two entries,
        # as compaction leaves it. A crash after a snapshot was published but before the journal was
        # compacted leaves it beginning earlier, and pysyncobj would then clear it, losing every entry
        # after the snapshot, acknowledged ones included. Compact it first, as pysyncobj would have.
        if not clearJournal:
            entries = snapshot_entries(self._snapshot_path)
            if entries is not None:
                dropped = self._journal.drop_through_snapshot(*entries)
                if dropped:
                    log.info("journal compacted at start to the snapshot at raft index %d", entries[1][1])
        SyncObj._SyncObj__loadDumpFile(self, clearJournal)

    def _SyncObj__onMessageReceived(self, node: Any, message: dict[str, Any]) -> None:  # noqa: N802
        partitioned = self.partitioned_from
        if partitioned and str(node.address) in partitioned:
            return  # fault injection: the link to this peer is cut
        why = message_problem(message)
        if why is not None:
            self._drop_bad_message(node, why)
            return
        try:
            self._dispatch(node, message)
        except Exception:
            # pysyncobj would let it end this tick's processing of every connection; one peer's
            # message that fails must not hold up the others.
            log.exception("a %s message from %s failed; dropped", message.get("type"), node.address)

    def _drop_bad_message(self, node: Any, why: str) -> None:
        """Bad input on the Raft port (see _messages.py): dropped, counted, logged (first ones only)."""
        self.bad_messages += 1
        if self.bad_messages <= BAD_MESSAGES_LOGGED_MAX or self.bad_messages % 1000 == 0:
            log.warning(
                "dropped a malformed Raft message from %s (%d so far): %s", node.address, self.bad_messages, why
            )

    def _dispatch(self, node: Any, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "append_entries" and self._is_stale_append(message):
            return
        if kind == "append_entries" and message.get("term", 0) >= self.raftCurrentTerm:
            self._leader_heard_at = monotonic()  # the leader's appends and heartbeats
        if kind == "append_entries" and "prevLogIdx" not in message and message["term"] >= self.raftCurrentTerm:
            self._receive_snapshot_chunk(node, message)
            return
        if kind == "append_entries" and self._append_keeping_matches(node, message):
            return
        if kind == "response_vote" and not self._first_vote_of(node, message):
            return
        if kind == "next_node_idx" and message.get("term", self.raftCurrentTerm) != self.raftCurrentTerm:
            # A reply to an append of another term: pysyncobj's replies carry no term, and a late one
            # (a delayed link, a leader elected again) would set matchIndex from a log this follower
            # may no longer hold, letting the leader commit what a majority does not have.
            return
        if kind == "next_node_idx" and message.get("success") and self._isLeader():
            next_before = self._SyncObj__raftNextIndex.get(node)
            SyncObj._SyncObj__onMessageReceived(self, node, message)
            next_index = self._SyncObj__raftNextIndex
            if next_before is not None and node in next_index and next_index[node] < next_before:
                next_index[node] = next_before
            return
        SyncObj._SyncObj__onMessageReceived(self, node, message)

    def _first_vote_of(self, node: Any, message: dict[str, Any]) -> bool:
        """pysyncobj counts a candidate's votes with a counter, not by voter: one vote delivered twice
        (a duplicated message, a request answered twice) counts twice, and a candidate that a minority
        voted for leads beside the real leader of its term, or with a log that lacks committed entries.
        Found by the simulator (seeds 2000149, 2000111: two leaders in one term; 2000107: a leader
        without committed entries, then no commit at all). Each member counts once per term; False
        drops a repeat, or a vote from a node that is not a member. A vote of another term passes
        (pysyncobj ignores it) and leaves the voters of this term alone: a late one from an older term
        must not clear them, or a repeat arriving after it would count again."""
        if int(message["term"]) != self.raftCurrentTerm:
            return True
        if self._votes_term != self.raftCurrentTerm:
            self._votes_term, self._voters = self.raftCurrentTerm, set()
        voter = str(node.address)
        if voter in self._voters or all(str(n.address) != voter for n in self.otherNodes):
            return False
        self._voters.add(voter)
        return True

    def _follow(self, node: Any, message: dict[str, Any]) -> None:
        """pysyncobj's handling of an append's term and leader (step down, reset the election timer,
        record the leader), without touching the log or the commit index: the caller does those."""
        SyncObj._SyncObj__onMessageReceived(
            self, node, {"type": "append_entries", "term": message["term"], "commit_index": -1}
        )
        self._SyncObj__leaderCommitIndex = message["commit_index"]

    def _advance_commit(self, leader_commit: int, verified_through: int) -> None:
        """Raft: commitIndex = min(leaderCommit, the last entry known to match the leader's log)."""
        commit = min(leader_commit, verified_through)
        if commit > self.raftCommitIndex:
            self._SyncObj__raftCommitIndex = commit
            self._journal.setRaftCommitIndex(commit)

    # ---- correction: appends delete only from the first conflicting entry (Raft §5.3) ---------

    def _append_keeping_matches(self, node: Any, message: dict[str, Any]) -> bool:
        """pysyncobj deletes every entry after prevLogIdx on each append, even entries that match
        the leader's, and re-adds what the message carries: a follower that acknowledged entries can
        lose them (to a crash between the truncation and the next sync, or to an append carrying
        fewer entries than it holds, as after a snapshot install that kept the log's tail). Raft
        deletes only from the first entry that conflicts. Entries the follower already holds are
        skipped; the rest go to pysyncobj as an append after the last matching entry. True if the
        message was handled here."""
        prev = message.get("prevLogIdx")
        if message["term"] < self.raftCurrentTerm or message.get("transmission") is not None or prev is None:
            return False
        journal = self._SyncObj__raftLog
        first, last = journal[0][1], journal[-1][1]
        if not first <= prev <= last or journal[prev - first][2] != message["prevLogTerm"]:
            return False  # pysyncobj answers: the leader must go back
        entries = message.get("entries", [])
        matched = 0
        for entry in entries:
            index = entry[1]
            if index > last or journal[index - first][2] != entry[2]:
                break
            matched += 1
        if matched < len(entries):
            if matched:
                message = {
                    **message,
                    "prevLogIdx": entries[matched - 1][1],
                    "prevLogTerm": entries[matched - 1][2],
                    "entries": entries[matched:],
                }
            SyncObj._SyncObj__onMessageReceived(self, node, message)
            return True
        if not entries and last == prev:
            if message["commit_index"] <= self.raftCommitIndex:
                return False  # a heartbeat at the end of the log: pysyncobj deletes nothing, and replies
            self._take_commit_notice(node, message)
            return True
        verified_through = prev + len(entries)
        self._follow(node, message)
        self._advance_commit(message["commit_index"], verified_through)
        self._SyncObj__sendNextNodeIdx(node, nextNodeIdx=verified_through + 1, success=True)
        return True

    def _take_commit_notice(self, node: Any, message: dict[str, Any]) -> None:
        """An append with no entries that ends where this log ends and moves the commit index on: pysyncobj's
        leader sends one to every follower as soon as it commits an entry. Taken without a reply. The reply
        would tell the leader nothing it does not know (this log ends where the entries it acknowledged
        end) and cost a message each way per follower and commit: on the leader, two receipts and a tick
        per sequential write; on each follower, a send. A heartbeat (a commit index this node has already)
        is still answered, so the leader hears from an idle follower every heartbeat period, far inside its
        fallback timeout; a busy one answers every append that carries entries."""
        self._follow(node, message)
        self._advance_commit(message["commit_index"], message["prevLogIdx"])

    # ---- correction: a snapshot from the leader is whole, and keeps a matching log (Raft §7) --

    def _receive_snapshot_chunk(self, node: Any, message: dict[str, Any]) -> None:
        """pysyncobj writes chunks of any transfer into one file and installs whatever it holds at a
        last chunk; we take only chunks that continue one transfer, and install a verified file."""
        self._follow(node, message)
        chunk = message.get("serialized")
        if chunk is None:
            return  # the leader's snapshot is still being written
        path = self._receiver.take(str(node.address), message["term"], message.get("snapshot_offset"), chunk)
        if path is None:
            return
        self._install_received_snapshot(node, path)
        # Installing a snapshot can take a while; time spent on it is not the leader's silence.
        self._SyncObj__raftElectionDeadline = monotonic() + self._SyncObj__generateRaftTimeout()

    def _install_received_snapshot(self, node: Any, path: str) -> None:
        """Raft §7. A snapshot whose last entry this node's log holds keeps the entries after it; one
        whose last entry it does not hold replaces the log; one this node has already applied changes
        nothing. The reply counts this node at the snapshot's last index: the entries after it are
        the follower's own, not yet checked against the leader's log, and the next append checks them."""
        try:
            meta = verify(path)
        except SnapshotCorrupt:
            log.exception("a received snapshot failed verification")
            return
        last_entry = meta[0]
        index, term = last_entry[1], last_entry[2]
        journal = self._SyncObj__raftLog
        first = journal[0][1]
        if self.raftLastApplied >= index:
            os.unlink(path)  # committed entries are the same everywhere: nothing to install
        else:
            position = index - first
            matches = 0 < position < len(journal) and journal[position][2] == term
            self._snapshots.publish_received(path, self._snapshot_path)
            log.info(
                "installing a snapshot at raft index %d (term %d); this log ends at %d: %s",
                index,
                term,
                journal[-1][1],
                "keeping the entries after it" if matches else "replaced",
            )
            self._SyncObj__loadDumpFile(clearJournal=not matches)
            if len(journal) < 2 or journal[1][1] != index or self.raftLastApplied != index:
                log.error("installing the snapshot at raft index %d failed; the leader will resend", index)
                return
        if self.raftCommitIndex < index:
            self._SyncObj__raftCommitIndex = index  # the snapshot holds committed entries only
            self._journal.setRaftCommitIndex(index)
        self._SyncObj__sendNextNodeIdx(node, nextNodeIdx=index + 1, success=True)

    def _is_stale_append(self, message: dict[str, Any]) -> bool:
        """True for an append that would delete entries this node has already applied."""
        if "prevLogIdx" not in message or message.get("transmission") is not None:
            return False
        if message["term"] < self.raftCurrentTerm:
            return False  # pysyncobj ignores it anyway
        prev_index = message["prevLogIdx"]
        journal = self._SyncObj__raftLog
        if len(journal) == 0:
            return False  # never after start (pysyncobj keeps at least the last applied entry)
        last_index = journal[-1][1]
        return bool(prev_index is not None and prev_index < last_index and prev_index + 1 <= self.raftLastApplied)
