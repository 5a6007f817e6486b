"""What survives a power loss: the bytes each Raft file held when it was last made durable.

The simulator replaces `os.fsync` and `os.fdatasync` (no real sync: the simulated disk is what counts,
and the run stays fast) and records, per tracked file, its content at the moment it became durable:
- an fsync of the file itself makes its current content durable (ext4 also persists the name of a
  newly created file on its first fsync);
- an fsync of a directory makes the current content of every tracked file in it durable (a rename
  is durable once its directory is synced; as ext4 does on a rename over an existing file, the
  renamed file's data is written before the rename).
Tracked files are a node's Raft journal, its metadata (term, vote, commit hint) and its snapshot.

At a power loss each tracked file goes back to its durable content, except the journal, which keeps
a random part of its unsynced tail and may end in a torn record (garbage bytes): what a crash in the
middle of the kernel's writeback leaves. Untracked files next to them (temporary files, a snapshot
being packed or received) are removed. The store (RocksDB) is modelled by the node, see _wiring.py.
"""

from __future__ import annotations

import os
import random
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Disk:
    def __init__(self) -> None:
        self._durable: dict[str, bytes | None] = {}  # tracked path -> durable content (None: absent)
        self._journals: set[str] = set()
        self.syncs = 0

    def track(self, path: str, journal: bool = False) -> None:
        path = os.path.abspath(path)
        self._durable.setdefault(path, None)
        if journal:
            self._journals.add(path)

    def forget(self, directory: str) -> None:
        """The directory was wiped (a node removed from the cluster): nothing in it is durable."""
        directory = os.path.abspath(directory)
        for path in self._durable:
            if os.path.dirname(path) == directory:
                self._durable[path] = None

    def durable_bytes(self, path: str) -> int:
        """How many bytes of a tracked file a power loss would keep for sure."""
        durable = self._durable.get(os.path.abspath(path))
        return 0 if durable is None else len(durable)

    def fsync(self, fd: int) -> None:
        self.syncs += 1
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            for tracked in self._durable:
                if os.path.dirname(tracked) == path:
                    self._durable[tracked] = _read(tracked)
        elif path in self._durable:
            self._durable[path] = _read(path)

    def durable_size(self, path: str) -> int:
        """Bytes of the file that are durable. Of a journal, they are a prefix of what it holds: only
        appends go unsynced (truncation and compaction sync at once), as power_loss assumes too."""
        durable = self._durable.get(os.path.abspath(path))
        return 0 if durable is None else len(durable)

    def power_loss(self, directory: str, rng: random.Random, keep_unsynced: bool = True) -> list[str]:
        """Put every file under `directory` back to what survives; what changed, for the trace. A journal
        keeps a random part of its unsynced tail, or (keep_unsynced False: nothing had been written back
        yet) none of it."""
        directory = os.path.abspath(directory)
        notes = []
        for path, durable in self._durable.items():
            if os.path.dirname(path) != directory:
                continue
            current = _read(path)
            survived = durable
            unsynced_tail = (
                path in self._journals
                and current is not None
                and durable is not None
                and len(current) > len(durable)
                and current.startswith(durable)
            )
            if unsynced_tail and keep_unsynced:
                assert current is not None and durable is not None
                kept = rng.randrange(len(current) - len(durable) + 1)
                survived = current[: len(durable) + kept]
                if rng.random() < 0.3:
                    survived += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            if survived != current:
                notes.append(f"{os.path.basename(path)}: {_size(current)} -> {_size(survived)} bytes")
            if survived is None:
                if current is not None:
                    os.unlink(path)
            else:
                with open(path, "wb") as f:
                    f.write(survived)
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and path not in self._durable and (".tmp" in name or ".building" in name):
                os.unlink(path)
                notes.append(f"{name}: removed")
        return notes

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Route os.fsync and os.fdatasync here while the simulation runs."""
        saved: tuple[Callable[[int], None], Callable[[int], None]] = (os.fsync, os.fdatasync)
        os.fsync = os.fdatasync = self.fsync
        try:
            yield
        finally:
            os.fsync, os.fdatasync = saved


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _size(content: bytes | None) -> str:
    return "absent" if content is None else str(len(content))
