"""The durable Raft journal: reopens exactly, cuts torn tails, syncs in groups. No processes."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from laminar import limits
from laminar.node.raft._journal import COMPACT_SUFFIX, DurableJournal


def entries(n: int, start: int = 1) -> list[tuple[bytes, int, int]]:
    return [(b"cmd-%d" % i * (i % 7 + 1), i, 1 + i // 10) for i in range(start, start + n)]


@pytest.mark.parametrize("sync", [True, False])
def test_reopen_returns_the_same_entries_and_metadata(tmp_path: Path, sync: bool) -> None:
    """Entries, term, vote and commit index survive close and reopen."""
    path = str(tmp_path / "j")
    j = DurableJournal(path, sync=sync)
    for e in entries(50):
        j.add(*e)
    j.setCurrentTerm(7, "127.0.0.1:7202")
    j.setRaftCommitIndex(42)
    j._destroy()
    again = DurableJournal(path, sync=sync)
    assert list(again[:]) == entries(50)
    assert (again.getCurrentTerm(), again.getVotedForNodeId(), again.getRaftCommitIndex()) == (7, "127.0.0.1:7202", 42)


def test_one_sync_covers_every_entry_appended_since_the_last(tmp_path: Path) -> None:
    """Group commit: many appends, one fsync; no fsync when nothing was appended."""
    j = DurableJournal(str(tmp_path / "j"), sync=True)
    for e in entries(100):
        j.add(*e)
    j.sync()
    j.sync()
    assert j.syncs == 1
    j.add(b"x", 101, 9)
    j.sync()
    assert j.syncs == 2


@pytest.mark.parametrize("cut", [1, 5, 23])
def test_a_torn_tail_is_cut_at_open(tmp_path: Path, cut: int) -> None:
    """A crash mid-append leaves a partial record: reopening keeps every whole entry before it."""
    path = str(tmp_path / "j")
    j = DurableJournal(path, sync=True)
    for e in entries(10):
        j.add(*e)
    j._destroy()
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - cut)
    again = DurableJournal(path, sync=True)
    assert list(again[:]) == entries(9)
    again.add(*entries(1, start=10)[0])
    again._destroy()
    assert list(DurableJournal(path, sync=True)[:]) == entries(10)


def test_a_corrupt_record_ends_the_log(tmp_path: Path) -> None:
    """A record whose checksum fails is not trusted, nor anything after it."""
    path = str(tmp_path / "j")
    j = DurableJournal(path, sync=True)
    for e in entries(10):
        j.add(*e)
    j._destroy()
    with open(path, "r+b") as f:
        f.seek(j._ends[4] + 30)
        f.write(b"\xff")
    assert list(DurableJournal(path, sync=True)[:]) == entries(5)


def test_delete_from_and_to(tmp_path: Path) -> None:
    """Truncating the tail (conflict) and the head (compaction) persist across reopen."""
    path = str(tmp_path / "j")
    j = DurableJournal(path, sync=True)
    for e in entries(30):
        j.add(*e)
    j.deleteEntriesFrom(20)
    j.deleteEntriesTo(5)
    assert list(j[:]) == entries(15, start=6)
    j.add(b"new", 21, 5)
    j._destroy()
    assert list(DurableJournal(path, sync=True)[:]) == [*entries(15, start=6), (b"new", 21, 5)]
    j2 = DurableJournal(path, sync=True)
    j2.clear()
    j2._destroy()
    assert len(DurableJournal(path, sync=True)) == 0


def _big(n: int, start: int = 1, size: int = 64 * 1024) -> list[tuple[bytes, int, int]]:
    return [(b"%d:" % i + b"x" * size, i, 1) for i in range(start, start + n)]


def _spy_compact_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls through os.fsync and os.fdatasync, noting the size of the compaction file at each of its syncs."""
    sizes: list[int] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def spy(fd: int, real: Callable[[int], None] = real) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(COMPACT_SUFFIX):
                sizes.append(os.fstat(fd).st_size)
            real(fd)

        monkeypatch.setattr(os, name, spy)
    return sizes


def test_compaction_prepared_ahead_leaves_the_tick_only_the_tail_to_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a snapshot the entries kept are copied to the new file and synced in steps by the snapshot's thread
    (prepare_compaction), so deleteEntriesTo, in the tick thread, syncs only what was appended since: done whole
    there it held every commit up for 555-745 ms on each node (bench/snapshot_stall.py). The journal reopens with
    exactly the entries kept."""
    step = 256 * 1024
    monkeypatch.setattr(limits, "SNAPSHOT_SYNC_STEP_BYTES_MAX", step)
    path = str(tmp_path / "j")
    j = DurableJournal(path, sync=True)
    written = _big(60)
    for e in written:
        j.add(*e)
    sizes = _spy_compact_syncs(monkeypatch)
    j.prepare_compaction(19)  # a snapshot through index 20: pysyncobj keeps entries from 19 (its last two)
    prepared = list(sizes)
    assert len(prepared) >= 10 and max(b - a for a, b in zip([0, *prepared], prepared, strict=False)) <= step
    tail = _big(3, start=61)
    for e in tail:
        j.add(*e)
    j.deleteEntriesTo(18)
    assert len(sizes) == len(prepared) + 1  # one sync in the tick thread...
    assert sizes[-1] - prepared[-1] <= step + sum(len(e[0]) + 24 for e in tail)  # ...of the rest only
    assert not os.path.exists(path + COMPACT_SUFFIX)
    assert list(j[:]) == (written + tail)[18:]
    j.add(b"after", 64, 2)
    j._destroy()
    assert list(DurableJournal(path, sync=True)[:]) == [*(written + tail)[18:], (b"after", 64, 2)]


def test_a_truncation_after_the_preparation_is_not_undone_by_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower may cut entries it had appended (a new leader's log differs) after they were copied ahead of a
    compaction, and append others at the same offsets: the compacted journal holds the new ones, not the bytes
    copied before the cut."""
    monkeypatch.setattr(limits, "SNAPSHOT_SYNC_STEP_BYTES_MAX", 128 * 1024)
    path = str(tmp_path / "j")
    j = DurableJournal(path, sync=True)
    for e in _big(40):
        j.add(*e)
    j.prepare_compaction(9)
    j.deleteEntriesFrom(30)  # entries 31..40 cut
    replaced = [(b"term-2 entry %d" % i + b"y" * 65536, i, 2) for i in range(31, 36)]
    for e in replaced:
        j.add(*e)
    j.deleteEntriesTo(8)
    expected = _big(40)[8:30] + replaced
    assert list(j[:]) == expected
    j._destroy()
    assert list(DurableJournal(path, sync=True)[:]) == expected


def test_compaction_prepared_while_the_tick_thread_appends_and_cuts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare_compaction runs in the snapshot's thread beside the tick thread's appends and truncations; whatever
    the interleaving, the compacted journal reopens with exactly the entries the journal holds in memory."""
    monkeypatch.setattr(limits, "SNAPSHOT_SYNC_STEP_BYTES_MAX", 16 * 1024)  # many small passes and steps
    path = str(tmp_path / "j")
    j = DurableJournal(path, sync=False)
    for e in _big(50, size=8192):
        j.add(*e)
    done = threading.Event()
    preparer = threading.Thread(target=lambda: (j.prepare_compaction(9), done.set()))
    preparer.start()
    index, rounds = 51, 0
    while (not done.is_set() or rounds < 100) and rounds < 100_000:
        rounds += 1
        if rounds % 17 == 0:
            j.deleteEntriesFrom(len(j) - 3)
            index -= 3
        j.add(b"%d:" % index + b"z" * 8192, index, 1 + rounds // 17)
        index += 1
    preparer.join()
    j.deleteEntriesTo(8)
    held = list(j[:])
    assert held[0][1] == 9 and [e[1] for e in held] == list(range(9, 9 + len(held)))
    j._destroy()
    assert list(DurableJournal(path, sync=False)[:]) == held
