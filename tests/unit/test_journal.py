"""The durable Raft journal: reopens exactly, cuts torn tails, syncs in groups. No processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from laminar.node.raft._journal import DurableJournal


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
