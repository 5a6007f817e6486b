"""A Raft journal that is durable before anything is acknowledged (pysyncobj's never syncs).

pysyncobj's FileJournal writes through mmap and never calls fsync, so an operating-system crash on a
majority can lose entries the cluster acknowledged. This journal appends records to a plain file
and syncs in groups: the engine calls `sync()` once before the leader counts its own entries
toward a commit and before a follower acknowledges entries, so one fsync covers every entry
appended since the last one (group commit). Term and vote are written to a small metadata file
with fsync before any vote leaves the node, as Raft requires.

Record layout: >I length of command, >I crc32 of (index, term, command), >Q index, >Q term,
command bytes. At open, a torn or corrupt tail (a crash mid-write) is cut off: it was never
synced, so it was never acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from typing import Any

from pysyncobj.journal import Journal

log = logging.getLogger("laminar.journal")

_HEAD = struct.Struct(">IIQQ")
_INDEX_TERM = struct.Struct(">QQ")
JOURNAL_READ_CHUNK_BYTES = 1 << 20

Entry = tuple[bytes, int, int]  # (command, raft index, term), as pysyncobj keeps them


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableJournal(Journal):  # type: ignore[misc]
    def __init__(self, path: str, sync: bool) -> None:
        self._path = path
        self._meta_path = path + ".meta"
        self._sync_enabled = sync
        self._entries: list[Entry] = []
        self._ends: list[int] = []  # file offset just past each entry's record
        self._dirty = False
        self._meta = self._load_meta()
        self._meta_dirty = False
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._load()
        self.syncs = 0  # fsyncs done, for metrics and tests

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

    def sync(self) -> None:
        """Make every appended entry durable (one fsync for all of them)."""
        if self._dirty:
            if self._sync_enabled:
                os.fdatasync(self._fd)
                self.syncs += 1
            self._dirty = False

    # ---- pysyncobj's Journal interface ------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        body = _INDEX_TERM.pack(idx, term) + command
        record = _HEAD.pack(len(command), zlib.crc32(body), idx, term) + command
        end = (self._ends[-1] if self._ends else 0) + len(record)
        os.pwrite(self._fd, record, end - len(record))
        self._entries.append((command, idx, term))
        self._ends.append(end)
        self._dirty = True

    def clear(self) -> None:
        self._truncate_to(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802, N803 - pysyncobj's names
        self._truncate_to(entryFrom)

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802, N803
        """Drop the first `entryTo` entries (after a snapshot): rewrite the rest to a new file."""
        keep = self._entries[entryTo:]
        tmp = self._path + ".tmp"
        with open(tmp, "wb") as f:
            for command, idx, term in keep:
                body = _INDEX_TERM.pack(idx, term) + command
                f.write(_HEAD.pack(len(command), zlib.crc32(body), idx, term) + command)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
        _fsync_dir(self._path)
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR)
        self._entries, self._ends, self._dirty = [], [], False
        self._load()

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
        if self._meta_dirty:
            self._save_meta(sync=False)

    # ---- files ------------------------------------------------------------------------------

    def _truncate_to(self, count: int) -> None:
        del self._entries[count:]
        del self._ends[count:]
        os.ftruncate(self._fd, self._ends[-1] if self._ends else 0)
        if self._sync_enabled:
            os.fsync(self._fd)

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
        tmp = self._meta_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self._meta, f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self._meta_path)
        if sync:
            _fsync_dir(self._meta_path)
        self._meta_dirty = False
