"""A Raft journal that is durable before anything is acknowledged (pysyncobj's never syncs).

pysyncobj's FileJournal writes through mmap and never calls fsync, so an operating-system crash on a
majority can lose entries the cluster acknowledged. This journal appends records to a plain file
and syncs in groups: one fsync covers every entry appended since the last one (group commit). A
follower syncs in its tick thread before it acknowledges entries; the leader's sync runs in a
`SyncThread` while the appends travel, and the leader counts its own copy of an entry toward a
commit only once `synced_index` has reached it. Term and vote are written to a small metadata file
with fsync before any vote leaves the node, as Raft requires.

Threads: `add`, truncation and compaction run in the tick thread only; `sync` may run in the tick
thread and in the sync thread at once. `_sync_lock` orders an fsync against truncation and the
file swap of compaction, so `synced_index` never names an entry that was cut and written again
after the fsync began.

Compaction (after a snapshot, pysyncobj drops the entries it covers) writes the entries kept to a new
file and swaps it in. Done whole in the tick thread, that copy and its fsync held every commit up: the
entries kept are the ones appended while the snapshot was built, tens of MiB under load (measured
555-745 ms per compaction, on every node at once: bench/snapshot_stall.py). So the snapshot's builder
thread calls `prepare_compaction` first: it copies the records from the first entry kept to the end
into `<journal>.compact`, syncing every SNAPSHOT_SYNC_STEP_BYTES_MAX, while the tick thread goes on
appending (and maybe truncating: `_cut_low` remembers how far, so bytes copied past it are copied
again). `deleteEntriesTo` then only copies what was appended since, syncs it and swaps the files.

Record layout: >I length of command, >I crc32 of (index, term, command), >Q index, >Q term,
command bytes. At open, a torn or corrupt tail (a crash mid-write) is cut off: it was never
synced, so it was never acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj.journal import Journal

from laminar import limits
from laminar.node._fail_stop import EXIT_JOURNAL_SYNC_FAILED, fail_stop

log = logging.getLogger("laminar.journal")

_HEAD = struct.Struct(">IIQQ")
_INDEX_TERM = struct.Struct(">QQ")
JOURNAL_READ_CHUNK_BYTES = 1 << 20
SYNC_THREAD_JOIN_S = 5.0  # at stop, wait this long for an fsync under way
COMPACT_SUFFIX = ".compact"  # the file prepare_compaction fills, swapped in by deleteEntriesTo
# prepare_compaction copies in passes, each up to the journal's end as it then was, at most this many (a journal
# appended to faster than it copies must not keep the snapshot's thread forever; deleteEntriesTo copies the rest)...
COMPACT_PREPARE_PASSES_MAX = 4
# ... and stops once less than this is left: deleteEntriesTo copies and syncs the rest in the tick thread.
COMPACT_TAIL_BYTES = 256 * 1024
_NO_CUT = 2**63  # _cut_low when nothing was truncated since a preparation began

Entry = tuple[bytes, int, int]  # (command, raft index, term), as pysyncobj keeps them


@dataclass(frozen=True)
class _Prepared:
    """A compaction made ready by `prepare_compaction`: the new file holds, synced, the old file's bytes from
    `start` (the record of the first entry kept, `first`) up to `copied_end`."""

    start: int
    first: tuple[int, int]  # (raft index, term) of the first entry kept
    copied_end: int
    generation: int  # the journal's file generation it was copied from


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_range(source: int, target: int, begin: int, end: int, base: int) -> int:
    """Copy the source's bytes [begin, end) to the target at begin - base, a chunk at most; bytes copied
    (0: the source ends before `begin`)."""
    data = os.pread(source, min(end - begin, JOURNAL_READ_CHUNK_BYTES), begin)
    view = memoryview(data)
    at = begin - base
    while view:
        written = os.pwrite(target, view, at)
        view, at = view[written:], at + written
    return len(data)


class DurableJournal(Journal):  # type: ignore[misc]
    def __init__(self, path: str, sync: bool) -> None:
        self._path = path
        self._meta_path = path + ".meta"
        self._sync_enabled = sync
        self._entries: list[Entry] = []
        self._ends: list[int] = []  # file offset just past each entry's record
        # Every entry up to this Raft index is durable (0: none known). Entries loaded at open count as
        # unsynced: a process crash leaves them in the page cache, not necessarily on disk.
        self._synced_index = 0
        self._sync_lock = threading.Lock()
        self._closed = False
        self._generation = 0  # bumped each time compaction swaps in a new file (under _sync_lock)
        self._prepared: _Prepared | None = None  # set by prepare_compaction, taken by deleteEntriesTo
        # The lowest end offset a truncation left since a preparation began (under _sync_lock): the old
        # file's bytes past it may have changed after they were copied.
        self._cut_low = _NO_CUT
        self._meta = self._load_meta()
        self._meta_dirty = False
        # Orders the saves of the metadata file: the commit hint may be saved from the sync thread while the
        # tick thread saves a new term (each save writes the same temporary file, then renames it).
        self._meta_lock = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._load()
        self.syncs = 0  # fsyncs done, for metrics and tests
        self.appends = 0  # entries added since open: a new one, even at an index cut and written again, counts

    # ---- durability -------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return self._ends[-1] if self._ends else 0

    def size_through(self, raft_index: int) -> tuple[int, int]:
        """(file bytes, entries) of the records up to and including `raft_index`: what a snapshot at it drops."""
        if not self._entries:
            return 0, 0
        count = min(len(self._entries), max(0, raft_index - self._entries[0][1] + 1))
        return (self._ends[count - 1] if count else 0), count

    @property
    def durable(self) -> bool:
        return self._sync_enabled

    @property
    def last_index(self) -> int:
        return self._entries[-1][1] if self._entries else 0

    @property
    def synced_index(self) -> int:
        """Every entry of this log up to this Raft index is durable."""
        return self._synced_index

    @property
    def needs_sync(self) -> bool:
        return self.last_index > self._synced_index

    def sync(self) -> bool:
        """Make every entry appended so far durable (one fsync for all of them); True if that made more
        entries durable than before. Any thread."""
        with self._sync_lock:
            # Read before the fsync: an entry appended meanwhile (its record written before it is
            # listed) may or may not be covered, so it is not counted.
            target = self.last_index
            if self._closed or target <= self._synced_index:
                return False
            if self._sync_enabled:
                os.fdatasync(self._fd)
                self.syncs += 1
            self._synced_index = target
            return True

    # ---- pysyncobj's Journal interface ------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        body = _INDEX_TERM.pack(idx, term) + command
        record = _HEAD.pack(len(command), zlib.crc32(body), idx, term) + command
        end = (self._ends[-1] if self._ends else 0) + len(record)
        os.pwrite(self._fd, record, end - len(record))
        self._entries.append((command, idx, term))
        self._ends.append(end)
        self.appends += 1

    def clear(self) -> None:
        self._truncate_to(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802, N803 - pysyncobj's names
        self._truncate_to(entryFrom)

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802, N803
        """Drop the first `entryTo` entries (after a snapshot): the rest go to a new file, copied ahead of
        time by `prepare_compaction` if it ran for exactly this cut, else rewritten here whole."""
        prepared, self._prepared = self._prepared, None
        if (
            prepared is not None
            and 0 < entryTo < len(self._entries)
            and prepared.generation == self._generation
            and prepared.start == self._ends[entryTo - 1]
            and prepared.first == self._entries[entryTo][1:]
            and self._cut_low >= prepared.start
        ):
            self._swap_in_prepared(prepared, entryTo)
            return
        self._rewrite_from(entryTo)

    def prepare_compaction(self, first_kept_index: int) -> None:
        """Copy the records from entry `first_kept_index` to the end into the compaction file, synced in
        steps, for the next `deleteEntriesTo` to swap in (see the module docstring). Any thread; runs
        beside the tick thread's appends and truncations."""
        with self._sync_lock:
            if self._closed or not self._entries:
                return
            position = first_kept_index - self._entries[0][1]
            if not 0 < position < len(self._entries):
                return
            start = self._ends[position - 1]
            first = self._entries[position][1:]
            generation = self._generation
            self._cut_low = _NO_CUT
            self._prepared = None
        step = limits.SNAPSHOT_SYNC_STEP_BYTES_MAX
        copied = start
        source = os.open(self._path, os.O_RDONLY)  # its own descriptor: the tick thread may swap the file
        target = os.open(self._path + COMPACT_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            passes = 0
            while True:
                with self._sync_lock:
                    if self._closed or generation != self._generation or self._cut_low < start:
                        return
                    copied = min(copied, self._cut_low)
                    end = self.size_bytes
                if passes == COMPACT_PREPARE_PASSES_MAX or (passes and end - copied < COMPACT_TAIL_BYTES):
                    break
                passes += 1
                while copied < end:
                    done = _copy_range(source, target, copied, min(end, copied + step), start)
                    if not done:
                        break  # truncated meanwhile: the next pass starts again from the cut
                    copied += done
                    if self._sync_enabled:
                        os.fdatasync(target)
            with self._sync_lock:
                copied = min(copied, self._cut_low)
                if copied >= start and generation == self._generation and not self._closed:
                    self._prepared = _Prepared(start, first, copied, generation)
        finally:
            os.close(source)
            os.close(target)

    def _swap_in_prepared(self, prepared: _Prepared, entryTo: int) -> None:  # noqa: N803
        """Tick thread: copy what was appended since the preparation, sync it, swap the files."""
        start = prepared.start
        copied = min(prepared.copied_end, self._cut_low)
        end = self.size_bytes
        compact_path = self._path + COMPACT_SUFFIX
        target = os.open(compact_path, os.O_RDWR)
        try:
            os.ftruncate(target, copied - start)
            while copied < end:
                done = _copy_range(self._fd, target, copied, end, start)
                if not done:
                    raise OSError(f"{self._path}: shorter than its records (nothing at offset {copied})")
                copied += done
            if self._sync_enabled:
                os.fsync(target)
            # Cheap checks that the copy is the journal from the first entry kept: a wrong file here
            # would be loaded as the log at the next start.
            assert os.fstat(target).st_size == end - start, (os.fstat(target).st_size, end, start)
            length, _crc, index, term = _HEAD.unpack(os.pread(target, _HEAD.size, 0))
            assert (index, term) == prepared.first and start + _HEAD.size + length == self._ends[entryTo], (
                index,
                term,
                prepared.first,
            )
        finally:
            os.close(target)

        def reindex() -> None:
            del self._entries[:entryTo]
            self._ends = [offset - start for offset in self._ends[entryTo:]]

        self._swap_in(compact_path, reindex)

    def _rewrite_from(self, entryTo: int) -> None:  # noqa: N803
        """Drop the first `entryTo` entries: rewrite the rest to a new file (in the calling thread)."""
        keep = self._entries[entryTo:]
        tmp = self._path + ".tmp"
        with open(tmp, "wb") as f:
            for command, idx, term in keep:
                body = _INDEX_TERM.pack(idx, term) + command
                f.write(_HEAD.pack(len(command), zlib.crc32(body), idx, term) + command)
            f.flush()
            os.fsync(f.fileno())

        def reindex() -> None:
            self._entries, self._ends = [], []
            self._load()

        self._swap_in(tmp, reindex)

    def _swap_in(self, synced_path: str, reindex: Callable[[], None]) -> None:
        """Move the synced file at `synced_path` over the journal and reopen it; `reindex` (under the sync lock)
        makes the in-memory entries and offsets describe the new file."""
        os.replace(synced_path, self._path)
        _fsync_dir(self._path)
        with self._sync_lock:  # the sync thread must not fsync a descriptor being closed
            os.close(self._fd)
            self._fd = os.open(self._path, os.O_RDWR)
            self._generation += 1
            reindex()
            self._synced_index = self.last_index  # the new file was synced whole

    def drop_through_snapshot(self, before: Entry, last: Entry) -> int:
        """Drop the entries a snapshot ending with `before`, `last` covers, as pysyncobj's compaction would
        (it keeps both); how many were dropped. Only if the journal holds those two entries exactly: else it
        does not continue that snapshot's history, and pysyncobj replaces it (see RaftEngine)."""
        if not self._entries:
            return 0
        position = before[1] - self._entries[0][1]
        if position < 0 or position + 1 >= len(self._entries):
            return 0
        if self._entries[position] != tuple(before) or self._entries[position + 1] != tuple(last):
            return 0
        if position:
            self.deleteEntriesTo(position)
        return position

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.sync()
        self._save_meta(sync=self._sync_enabled)
        with self._sync_lock:
            self._closed = True
            os.close(self._fd)

    def flush(self) -> None:
        self.sync()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802, N803
        # A hint for restarts only (entries up to it are applied at start): a lower value is safe,
        # so it is saved lazily, once a second.
        if self._meta.get("commit_index") != raftCommitIndex:
            self._meta["commit_index"] = raftCommitIndex
            self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return int(self._meta.get("commit_index", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802, N803
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._save_meta(sync=self._sync_enabled)  # before any vote or message of this term leaves

    def getCurrentTerm(self) -> int:  # noqa: N802
        return int(self._meta.get("term", 0))

    def getVotedForNodeId(self) -> Any:  # noqa: N802
        return self._meta.get("voted_for")

    def onOneSecondTimer(self) -> None:  # noqa: N802
        """Save the commit hint if it changed. Any thread: the engine has its sync thread call it (a write and
        a rename, 1-1.5 ms at the median and 9-25 ms at worst on the shared test machine, was a stall of the
        tick thread once a second)."""
        if self._meta_dirty:
            self._save_meta(sync=False)

    # ---- files ------------------------------------------------------------------------------

    def _truncate_to(self, count: int) -> None:
        with self._sync_lock:
            del self._entries[count:]
            del self._ends[count:]
            self._cut_low = min(self._cut_low, self.size_bytes)
            os.ftruncate(self._fd, self._ends[-1] if self._ends else 0)
            if self._sync_enabled:
                os.fsync(self._fd)
            # Entries written later at the cut indices are new: they are not synced.
            self._synced_index = min(self._synced_index, self.last_index)

    def _load(self) -> None:
        size = os.fstat(self._fd).st_size
        offset = 0
        data = b""
        data_start = 0
        while offset + _HEAD.size <= size:
            if offset + _HEAD.size > data_start + len(data):
                data = os.pread(self._fd, max(JOURNAL_READ_CHUNK_BYTES, _HEAD.size), offset)
                data_start = offset
            length, crc, idx, term = _HEAD.unpack_from(data, offset - data_start)
            end = offset + _HEAD.size + length
            if end > size:
                break
            if end > data_start + len(data):
                data = os.pread(self._fd, max(JOURNAL_READ_CHUNK_BYTES, end - offset), offset)
                data_start = offset
            command = data[offset - data_start + _HEAD.size : end - data_start]
            if zlib.crc32(_INDEX_TERM.pack(idx, term) + command) != crc:
                break
            self._entries.append((command, idx, term))
            self._ends.append(end)
            offset = end
        if offset != size:
            log.warning("journal %s: cut %d bytes of torn or corrupt tail after a crash", self._path, size - offset)
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)

    def _load_meta(self) -> dict[str, Any]:
        try:
            with open(self._meta_path) as f:
                meta = json.load(f)
                return meta if isinstance(meta, dict) else {}
        except FileNotFoundError:
            return {}

    def _save_meta(self, sync: bool) -> None:
        """Write the metadata as it is when the lock is taken. A save that takes it later writes a copy
        taken later, so the file ends with the newest term and vote whichever thread saves last."""
        tmp = self._meta_path + ".tmp"
        with self._meta_lock:
            meta = dict(self._meta)
            self._meta_dirty = False
            with open(tmp, "w") as f:
                json.dump(meta, f)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, self._meta_path)
            if sync:
                _fsync_dir(self._meta_path)


class SyncThread:
    """Syncs the leader's journal outside its tick thread, so the fsync runs while the appends are on
    their way to the followers (Raft allows it; etcd does it) instead of before the tick that counts
    their replies. `request()` from the tick thread, after the sends; `on_synced` runs in this thread
    after each fsync that made entries durable (it wakes the tick thread, which may now count the leader
    toward a commit). It also saves the commit hint when asked (`request_hint_save`).

    An fsync that fails stops the process: after an I/O error the kernel may have dropped the dirty
    pages, and a retried fsync can then succeed without them ("fsyncgate"); the restart reloads the
    journal from what the disk holds."""

    def __init__(self, journal: DurableJournal, on_synced: Callable[[], None]) -> None:
        self._journal = journal
        self._on_synced = on_synced
        self._wanted = threading.Event()
        self._stopping = False
        self._hint_wanted = False
        self._thread = threading.Thread(target=self._run, name="laminar-journal-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def request_hint_save(self) -> None:
        """Save the journal's commit hint (`onOneSecondTimer`) here, after any sync asked for, not in the tick
        thread."""
        self._hint_wanted = True
        self._wanted.set()

    def stop(self) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join(timeout=SYNC_THREAD_JOIN_S)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                synced = self._journal.sync()
            except OSError:
                fail_stop("fsync of the Raft journal failed", EXIT_JOURNAL_SYNC_FAILED, log)
                synced = False
            if synced:
                # Only then: a wake-up with nothing newly synced was an empty tick of the leader.
                self._on_synced()
            if self._hint_wanted:
                self._hint_wanted = False
                self._save_hint()

    def _save_hint(self) -> None:
        try:
            self._journal.onOneSecondTimer()
        except OSError:
            # Only a hint for restarts (a lower one is safe): the next change saves it again.
            log.exception("saving the journal's commit hint failed")
