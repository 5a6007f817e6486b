"""One simulated node: the real Raft adapter and engine, journal, snapshotter, state machine and store, wired
as laminar/node/_node.py wires them, but applied inline in the one simulation thread.

This is the only file of the simulator that knows how the engine is constructed and how applied
entries reach the store: a change to either costs an edit here and nowhere else.

The store under a power loss: RocksDB writes with the WAL unsynced (Store.commit), so after a power
loss it holds some prefix of what was applied. The simulator takes one of the two ends at random:
everything applied survived (the kernel had written it back), or only what the last durable point
held: the last snapshot checkpoint this node took or installed (a checkpoint flushes the memtable to
synced files). A store that went back behind the snapshot reinstalls it at start, and the journal
replays the rest; the checks then tell whether anything acknowledged went missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pysyncobj.syncobj
import pysyncobj.transport
import rocksdict

import laminar.node.raft._engine as engine_module
import laminar.node.raft._journal as journal_module
import laminar.node.raft._snapshot as snapshot_module
import laminar.node.store._store as store_module
from laminar import limits
from laminar.node._applier import Applier
from laminar.node._metrics import NodeMetrics, Sample
from laminar.node.raft import RaftAdapter, RaftSettings, Role, SnapshotHooks
from laminar.node.state_machine import StateMachine
from laminar.node.store import Store
from tests.sim._net import Network, make_transport_class

PYSYNCOBJ_MODULE = pysyncobj.syncobj
ENGINE_MODULE = engine_module
SNAPSHOT_CHUNK_BYTES = 4096  # small, so a snapshot travels in several chunks, as a large one would


@contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, saved)


class NodeId(str):
    """A node address whose hash is the same in every process. pysyncobj keeps peers in sets and
    iterates them (sending, counting); a str's hash changes between processes, so the order would,
    and with it the run. Given to the engine only: the simulation keys its own maps by plain str."""

    __slots__ = ()

    def __hash__(self) -> int:
        return zlib.crc32(self.encode())


def _no_sample() -> Sample:
    raise AssertionError("the simulation serves no metrics")


def _ignore(_: Any) -> None:
    pass


class SimNode:
    """One incarnation of a node process: `crash()` ends it; a restart builds a new one on the same files."""

    def __init__(
        self,
        address: str,
        peers: list[str],
        data_dir: str,
        network: Network,
        log_entries_max: int,
        on_apply: Callable[[SimNode, int, bytes], None],
    ) -> None:
        self.address = address
        self.data_dir = data_dir
        self.journal_path = os.path.join(data_dir, "raft.journal")
        self.snapshot_path = os.path.join(data_dir, "raft.snapshot")
        self.durable_store_dir = data_dir + ".store-durable"  # outside data_dir: the sim's, not the node's
        self._on_apply = on_apply
        self.store = Store(os.path.join(data_dir, "store"))
        self.machine = StateMachine(self.store)
        self.applier = Applier(0, self.store, self.machine, NodeMetrics(_no_sample), _ignore, _ignore)
        hooks = SnapshotHooks(
            checkpoint=self._checkpoint,
            applied_index=self.applier.drained_applied_index,
            install=self._install,
            # The flush ahead of a snapshot, done at once (RocksDB's flush thread would make runs depend on timing):
            # a due snapshot still starts one tick later, as on a node whose flush was quick.
            flush_start=lambda: None,
            flushing=lambda: False,
        )
        settings = RaftSettings(
            self_address=NodeId(address),
            peer_addresses=tuple(NodeId(p) for p in peers),
            journal_path=self.journal_path,
            snapshot_path=self.snapshot_path,
            durability="fsync",
            log_entries_max=log_entries_max,
            auto_tick=False,
        )
        transport_class = make_transport_class(engine_module._SyncingTransport, network)
        with (
            _patched(engine_module, "_SyncingTransport", transport_class),
            _patched(limits, "SNAPSHOT_CHUNK_BYTES", SNAPSHOT_CHUNK_BYTES),
        ):
            self.raft = RaftAdapter(settings, on_apply=self._apply, on_role=self._role_changed, snapshot_hooks=hooks)
        self.engine = self.raft._engine  # the SyncObj subclass: ticked here, and read by the checks
        assert self.engine is not None
        self.transport = self.engine._SyncObj__transport
        self.role = self.raft.role()

    # ---- driving it -----------------------------------------------------------------------------

    def tick(self) -> None:
        self.engine.doTick(0.0)

    def propose(self, payload: bytes, on_result: Callable[[bool], None]) -> None:
        self.raft.propose(payload, on_result)

    def change_membership(self, add: bool, address: str, on_done: Callable[[bool, str], None]) -> None:
        self.raft.change_membership(add, NodeId(address), on_done)

    def _role_changed(self, role: Role) -> None:
        self.role = role

    def crash(self) -> None:
        """The process dies: nothing is synced or flushed; open files are just closed."""
        engine = self.engine
        os.close(engine._journal._fd)
        notifier = getattr(engine, "_SyncObj__pipeNotifier", None)
        if notifier is not None:
            os.close(notifier._PipeNotifier__pipeR)
            os.close(notifier._PipeNotifier__pipeW)
        self.applier.stop()  # its thread is idle: every entry was applied inline (see _apply)
        self.store.close()

    def lose_unsynced_store(self) -> None:
        """Power loss, pessimistic end: the store goes back to its last durable point (after crash())."""
        store_dir = os.path.join(self.data_dir, "store")
        shutil.rmtree(store_dir, ignore_errors=True)
        if os.path.isdir(self.durable_store_dir):
            shutil.copytree(self.durable_store_dir, store_dir)

    # ---- what the checks read -------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.raft.is_leader()

    @property
    def term(self) -> int:
        return self.raft.term()

    @property
    def commit_index(self) -> int:
        return int(self.engine.raftCommitIndex)

    @property
    def last_applied(self) -> int:
        return int(self.engine.raftLastApplied)

    def log(self) -> list[tuple[bytes, int, int]]:
        """The journal as the engine holds it: (command, index, term) per entry."""
        journal = self.engine._journal
        return [journal[i] for i in range(len(journal))]

    def holds(self, index: int, term: int) -> bool:
        """Whether this node's log holds the entry (index, term), or its snapshot covers the index."""
        return _holds(self.engine._journal, index, term)

    def match_index(self, address: str) -> int | None:
        """What this node, as leader, counts the follower at `address` to hold (None: not a peer)."""
        for node, index in self.engine._SyncObj__raftMatchIndex.items():
            if str(node.address) == address:
                return int(index)
        return None

    def digest(self) -> tuple[int, str]:
        offset, sha256, _keys = self.store.digest()
        return offset, sha256

    def events(self, topic: str) -> list[bytes]:
        return self.store.read_events(topic, 0, 1 << 30, 1 << 40)

    # ---- the apply pipeline and snapshot hooks (the node's Applier) -------------------------------

    def _apply(self, raft_index: int, payload: bytes) -> None:
        if self.machine.calls_in_flight:
            # The Applier hands every entry to its thread while pipeline calls are in flight (on_results may
            # run); the simulation has one thread: apply here, as that thread would.
            self.applier._apply_now(raft_index, payload)
        else:
            self.applier.on_commit(raft_index, payload)
        # The Applier applies an entry of one intention in the calling thread when its own thread is
        # idle: every entry the simulation proposes is one, so nothing runs outside this thread.
        assert self.machine.applied_mark.raft_index >= raft_index, "an entry went to the apply thread"
        self._on_apply(self, raft_index, payload)

    def _checkpoint(self, target_dir: str, raft_index: int) -> None:
        db = self.store._db
        if isinstance(db, rocksdict.Rdict):  # background compaction is off (_options_without_background_compaction)
            db.compact_range(None, None)
        self.applier.checkpoint(target_dir, raft_index)
        fresh = self.durable_store_dir + ".new"
        shutil.rmtree(fresh, ignore_errors=True)
        self.store.checkpoint(fresh)
        shutil.rmtree(self.durable_store_dir, ignore_errors=True)
        os.replace(fresh, self.durable_store_dir)

    def _install(self, checkpoint_dir: str) -> None:
        shutil.rmtree(self.durable_store_dir, ignore_errors=True)
        shutil.copytree(checkpoint_dir, self.durable_store_dir)
        self.applier.install_snapshot(checkpoint_dir)


def _holds(journal: Any, index: int, term: int) -> bool:
    if len(journal) == 0:
        return False
    first = journal[0][1]
    if index < first:
        return True  # compacted: only applied (so committed) entries are
    position = index - first
    return position < len(journal) and journal[position][2] == term


class DurableLog:
    """What a stopped node's disk holds of its log: its journal as the engine would load it at a restart
    (a torn tail cut off), and the last index of its snapshot file."""

    def __init__(self, data_dir: str, work_path: str) -> None:
        journal_path = os.path.join(data_dir, "raft.journal")
        snapshot = snapshot_module.snapshot_entries(os.path.join(data_dir, "raft.snapshot"))
        self.snapshot_index = snapshot[1][1] if snapshot is not None else 0
        self.entries: list[tuple[int, int]] = []  # (index, term)
        if not os.path.exists(journal_path):
            return
        shutil.copyfile(journal_path, work_path)  # loaded from a copy: loading cuts a torn tail
        journal_logger = journal_module.log
        disabled, journal_logger.disabled = journal_logger.disabled, True
        try:
            journal = journal_module.DurableJournal(work_path, sync=False)
            self.entries = [(entry[1], entry[2]) for entry in journal]
            os.close(journal._fd)
        finally:
            journal_logger.disabled = disabled
            for path in (work_path, work_path + ".meta"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def holds(self, index: int, term: int) -> bool:
        if index <= self.snapshot_index:
            return True
        return _holds([(b"", i, t) for i, t in self.entries], index, term)


class _ThreadShim:
    """Stands in for the `threading` module inside _snapshot.py: a "thread" runs later, as an event."""

    def __init__(self, start_thread: Callable[[Callable[[], None]], None]) -> None:
        self._start_thread = start_thread
        self.Lock = threading.Lock

    def Thread(self, target: Callable[..., None], args: tuple[Any, ...] = (), **_: Any) -> Any:  # noqa: N802
        start_thread = self._start_thread

        class _Thread:
            def start(self) -> None:
                start_thread(lambda: target(*args))

        return _Thread()


def _sync_thread_class(start_sync: Callable[[Callable[[], None]], None]) -> type:
    """Stands in for the engine's SyncThread: a requested sync runs later, as an event (the simulation
    wakes the node's tick after it, as the thread's `on_synced` does). A request while one is pending
    joins it: the pending sync covers whatever is appended by the time it runs."""

    class SimSyncThread:
        def __init__(self, journal: journal_module.DurableJournal, on_synced: Callable[[], None]) -> None:
            del on_synced
            self._journal = journal
            self._pending = False

        def request(self) -> None:
            if self._pending:
                return
            self._pending = True

            def run() -> None:
                self._pending = False
                self._journal.sync()

            start_sync(run)

        def request_hint_save(self) -> None:
            # At once, in the tick that asks, as the engine saved it before the sync thread did: no new random
            # draws or events, so every seed keeps its run. The thread saves it a little later; a hint that
            # lags is only lower, which a restart tolerates (entries past it are applied once the leader says).
            self._journal.onOneSecondTimer()

        def stop(self) -> None:
            pass

    return SimSyncThread


def _options_without_background_compaction(*args: Any, **kwargs: Any) -> Any:
    """RocksDB options for a simulated node's store: no automatic compaction. A compaction runs in RocksDB's own
    threads, so whether it had finished when a checkpoint was taken (and so the snapshot's files, its size and
    chunks) depended on real time: now and then a seed replayed differently (pipelines seed 95, 5 nodes: 3
    histories in 8 runs, diverging at a snapshot 2 KB smaller). The simulation compacts at each checkpoint instead
    (SimNode._checkpoint), in its one thread."""
    options = rocksdict.Options(*args, **kwargs)
    options.set_disable_auto_compactions(True)
    return options


@contextmanager
def simulated_runtime(
    now: Callable[[], float],
    random_value: Callable[[], float],
    start_thread: Callable[[Callable[[], None]], None],
    start_sync: Callable[[Callable[[], None]], None],
) -> Iterator[None]:
    """Point every clock, random source and thread the engine code reads at the simulation."""

    class _Random:
        @staticmethod
        def random() -> float:
            return random_value()

    with (
        _patched(PYSYNCOBJ_MODULE, "monotonicTime", now),
        _patched(pysyncobj.transport, "monotonicTime", now),
        _patched(PYSYNCOBJ_MODULE, "random", _Random()),
        _patched(engine_module, "monotonic", now),
        _patched(snapshot_module, "threading", _ThreadShim(start_thread)),
        _patched(engine_module, "SyncThread", _sync_thread_class(start_sync)),
        _patched(store_module, "Options", _options_without_background_compaction),
    ):
        yield


# ---- fixes the simulator can take back, to show it finds what each one prevents ----------------

REVERTIBLE_FIXES = {
    "reply-term": "6354a97: a follower's next_node_idx reply carries its term; the leader drops other terms",
    "compact-at-start": "2cf98a9: at start the journal is compacted to a snapshot published before a crash",
    "install-keeps-log": "5964024: a snapshot install keeps the entries after a matching last entry (Raft 7)",
    "chunk-commit": "5964024: a snapshot chunk does not advance the follower's commit index",
    "append-keeps-matches": "5964024: an append deletes entries only from the first conflict",
    "vote-per-voter": "a candidate counts each member's vote once per term (pysyncobj counts vote messages)",
    "leader-synced-commit": "the leader counts itself toward a commit only through its synced index (as etcd)",
    "group-retention": "918dee6: a consumer group behind retention leases from the first kept event, not trimmed ones",
}


SENT_TERM_KEY = "sim_sent_term"  # a reply without its term keeps it here, for the probe (pysyncobj ignores it)


def _without_reply_term(message: Any) -> Any:
    """A reply as pysyncobj sends it: no term the leader could check. The simulator keeps the term under
    another name, only to count what the leader would have dropped (Simulation._probe_reply)."""
    if isinstance(message, dict) and message.get("type") == "next_node_idx" and "term" in message:
        reply = {k: v for k, v in message.items() if k != "term"}
        reply[SENT_TERM_KEY] = message["term"]
        return reply
    return message


def _install_clearing_the_log(install: Callable[..., None]) -> Callable[..., None]:
    """pysyncobj's install, as before 5964024: every verified snapshot is installed, and the journal is
    replaced by its last two entries, whatever this node's log held or had applied after them; the
    reply counts the node at the end of that log."""

    def clearing(engine: Any, node: Any, path: str) -> None:
        try:
            snapshot_module.verify(path)
        except snapshot_module.SnapshotCorrupt:
            return
        engine._snapshots.publish_received(path, engine._snapshot_path)
        engine._SyncObj__loadDumpFile(clearJournal=True)
        engine._SyncObj__sendNextNodeIdx(node, success=True)

    del install
    return clearing


def _chunk_committing(receive: Callable[..., None]) -> Callable[..., None]:
    """pysyncobj's rule on every append, chunks too: commit = min(leader commit, own log end)."""

    def committing(engine: Any, node: Any, message: dict[str, Any]) -> None:
        receive(engine, node, message)
        commit = min(message["commit_index"], engine._SyncObj__raftLog[-1][1])
        if commit > engine._SyncObj__raftCommitIndex:
            engine._SyncObj__raftCommitIndex = commit
            engine._journal.setRaftCommitIndex(commit)

    return committing


def _kept_untrimmed(live_kept: Callable[..., Any]) -> Callable[..., Any]:
    """The consumers as before 918dee6: they knew only a topic's last offset, as if retention had trimmed nothing."""

    def untrimmed(machine: StateMachine, name: str) -> tuple[int, int] | None:
        kept = live_kept(machine, name)
        return None if kept is None else (1, kept[1])

    return untrimmed


@contextmanager
def reverted(fixes: frozenset[str]) -> Iterator[Callable[[Any], Any] | None]:
    """Take the named fixes back while the block runs (the code as it was before each). Yields a
    filter for every message sent (None: none needed)."""
    unknown = fixes - REVERTIBLE_FIXES.keys()
    if unknown:
        raise ValueError(f"no such fix to revert: {sorted(unknown)}; known: {sorted(REVERTIBLE_FIXES)}")
    engine_class = engine_module.RaftEngine
    with contextlib.ExitStack() as stack:
        if "compact-at-start" in fixes:
            stack.enter_context(_patched(journal_module.DurableJournal, "drop_through_snapshot", lambda *_: 0))
        if "install-keeps-log" in fixes:
            clearing = _install_clearing_the_log(engine_class._install_received_snapshot)
            stack.enter_context(_patched(engine_class, "_install_received_snapshot", clearing))
        if "chunk-commit" in fixes:
            committing = _chunk_committing(engine_class._receive_snapshot_chunk)
            stack.enter_context(_patched(engine_class, "_receive_snapshot_chunk", committing))
        if "append-keeps-matches" in fixes:
            stack.enter_context(_patched(engine_class, "_append_keeping_matches", lambda *_: False))
        if "vote-per-voter" in fixes:
            stack.enter_context(_patched(engine_class, "_first_vote_of", lambda *_: True))
        if "leader-synced-commit" in fixes:
            # pysyncobj's rule with the sync off the tick thread: the leader counts every entry it holds.
            unsynced = property(lambda journal: journal.last_index)
            stack.enter_context(_patched(journal_module.DurableJournal, "synced_index", unsynced))
        if "group-retention" in fixes:
            stack.enter_context(_patched(StateMachine, "_live_kept", _kept_untrimmed(StateMachine._live_kept)))
        yield _without_reply_term if "reply-term" in fixes else None
