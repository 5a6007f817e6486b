"""Snapshot building and installing without processes: a real store checkpoint in a temp dir."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pysyncobj.config import SERIALIZER_STATE

from laminar import limits
from laminar.node.raft import SnapshotHooks
from laminar.node.raft._journal import DurableJournal
from laminar.node.raft._snapshot import SnapshotReceiver, Snapshotter, snapshot_entries, verify
from laminar.node.store import Store, WriteSet
from laminar.node.store._records import AppliedMark

WAIT_S = 10.0


def _meta(index: int) -> tuple:
    # pysyncobj's data: (None, last applied entry, the one before it, the cluster)
    return (None, (b"", index, 1), (b"", index - 1, 1), set())


def _wait_done(snapshotter: Snapshotter) -> int:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        state = snapshotter.check()
        if state != SERIALIZER_STATE.SERIALIZING:
            return state
        time.sleep(0.01)
    raise AssertionError("the snapshot never finished")


def _snapshotter(store: Store, tmp_path: Path) -> Snapshotter:
    """A snapshotter over `store`, which has applied through Raft index 10."""
    hooks = SnapshotHooks(
        checkpoint=lambda directory, _index: store.checkpoint(directory),
        applied_index=lambda: 10,
        install=lambda _directory: None,
    )
    return Snapshotter(str(tmp_path / "work"), hooks)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(str(tmp_path / "store"))
    writes = WriteSet()
    writes.put(b"k", b"v")
    store.commit(writes, AppliedMark(10, 10))
    return store


def test_a_local_snapshot_superseded_by_an_installed_one_is_dropped(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot from the leader arriving while a local one is packed wins: the local one neither
    replaces the received file nor reports SUCCESS (which would make pysyncobj cut its journal)."""
    gate = threading.Event()
    snapshotter = _snapshotter(store, tmp_path)
    final = tmp_path / "snapshot"
    original_publish = snapshotter._publish

    def held_publish(*args: object) -> int:
        gate.wait(WAIT_S)  # the leader's snapshot arrives while this one is being packed
        return original_publish(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshotter, "_publish", held_publish)
    snapshotter.serialize(str(final) + ".tmp", _meta(10)[1:])
    assert snapshotter.check() == SERIALIZER_STATE.SERIALIZING
    final.write_bytes(b"the snapshot received from the leader")
    snapshotter.supersede()
    gate.set()
    assert _wait_done(snapshotter) == SERIALIZER_STATE.FAILED
    assert final.read_bytes() == b"the snapshot received from the leader"
    assert snapshotter.snapshots_built == 0


def test_a_local_snapshot_is_published_and_reads_back(store: Store, tmp_path: Path) -> None:
    """Without an install in between, the packed snapshot replaces the file and reports SUCCESS."""
    snapshotter = _snapshotter(store, tmp_path)
    final = tmp_path / "snapshot"
    snapshotter.serialize(str(final) + ".tmp", _meta(10)[1:])
    assert _wait_done(snapshotter) == SERIALIZER_STATE.SUCCESS
    assert snapshotter.snapshots_built == 1
    meta = snapshotter.deserialize(str(final))  # the store is at the snapshot: only meta is read
    assert meta[0][1] == 10


def test_a_crash_between_publishing_a_snapshot_and_compacting_the_journal_loses_no_entry(
    store: Store, tmp_path: Path
) -> None:
    """Killed after the snapshot file is in place but before pysyncobj cut the journal, a node restarts with
    a journal that begins before the snapshot. pysyncobj keeps a journal only if it begins with the
    snapshot's last two entries, and clears it otherwise: every entry after the snapshot, acknowledged ones
    included, would be gone. The engine first drops what the snapshot covers, as compaction would have."""
    entries = [(b"cmd-%d" % i, i, 1) for i in range(1, 31)]
    journal = DurableJournal(str(tmp_path / "journal"), sync=True)
    for entry in entries:
        journal.add(*entry)
    snapshotter = _snapshotter(store, tmp_path)
    final = tmp_path / "snapshot"
    snapshotter.serialize(str(final) + ".tmp", (entries[9], entries[8], set()))  # applied through index 10
    assert _wait_done(snapshotter) == SERIALIZER_STATE.SUCCESS
    # ... and the process is killed here: the journal still begins at index 1.

    before, last = snapshot_entries(str(final)) or (None, None)
    assert (before, last) == (entries[8], entries[9])
    assert journal.drop_through_snapshot(before, last) == 8
    assert list(journal[:2]) == [entries[8], entries[9]]  # what pysyncobj checks before keeping the journal
    journal._destroy()
    assert list(DurableJournal(str(tmp_path / "journal"), sync=True)[:]) == entries[8:]  # nothing after lost


def test_a_journal_that_does_not_continue_the_snapshot_is_left_to_pysyncobj(tmp_path: Path) -> None:
    """Entries of another history (another term at the snapshot's index), or a journal entirely before
    the snapshot, are not touched: pysyncobj replaces such a journal with the snapshot's entries."""
    journal = DurableJournal(str(tmp_path / "journal"), sync=True)
    for i in range(1, 11):
        journal.add(b"cmd-%d" % i, i, 1)
    assert journal.drop_through_snapshot((b"cmd-5", 5, 2), (b"cmd-6", 6, 2)) == 0  # another term
    assert journal.drop_through_snapshot((b"cmd-20", 20, 1), (b"cmd-21", 21, 1)) == 0  # past the journal
    assert journal.drop_through_snapshot((b"cmd-10", 10, 1), (b"cmd-11", 11, 1)) == 0  # last one missing
    assert len(journal) == 10
    assert snapshot_entries(str(tmp_path / "no-such-snapshot")) is None


def _spy_syncs(monkeypatch: pytest.MonkeyPatch, suffix: str) -> list[int]:
    """Calls through os.fsync and os.fdatasync, noting the size of each file whose name ends in `suffix` when
    it was synced (that is when its written bytes stop being dirty in the page cache)."""
    sizes: list[int] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def spy(fd: int, real: Callable[[int], None] = real) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(suffix):
                sizes.append(os.fstat(fd).st_size)
            real(fd)

        monkeypatch.setattr(os, name, spy)
    return sizes


def _largest_unsynced(sizes: list[int], final_size: int) -> int:
    assert sizes and sizes[-1] == final_size, (sizes, final_size)  # the whole file was synced at the end
    return max(b - a for a, b in zip([0, *sizes], sizes, strict=False))


def test_a_snapshot_is_written_back_in_steps_never_leaving_more_than_the_bound_dirty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packing syncs the tar every SNAPSHOT_SYNC_STEP_BYTES_MAX, so no more than that is ever dirty: one fsync of
    a whole multi-hundred-MiB tar made every journal fsync on the disk wait 250-380 ms behind it for over a
    second (bench/snapshot_stall.py). The checksum computed while writing verifies."""
    step = 256 * 1024
    monkeypatch.setattr(limits, "SNAPSHOT_SYNC_STEP_BYTES_MAX", step)
    store = Store(str(tmp_path / "store"))
    writes = WriteSet()
    for i in range(48):
        writes.put(b"k%d" % i, os.urandom(64 * 1024))  # 3 MiB that no compression shrinks
    store.commit(writes, AppliedMark(10, 10))
    snapshotter = _snapshotter(store, tmp_path)
    final = tmp_path / "snapshot"
    sizes = _spy_syncs(monkeypatch, ".building")
    snapshotter.serialize(str(final) + ".tmp", _meta(10)[1:])
    assert _wait_done(snapshotter) == SERIALIZER_STATE.SUCCESS
    assert final.stat().st_size > 3 * 2**20
    assert _largest_unsynced(sizes, final.stat().st_size) <= step
    assert verify(str(final))[0][1] == 10


def test_a_received_snapshot_is_written_back_in_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower receiving the leader's snapshot syncs it in the same steps as it arrives, not once whole."""
    step = 256 * 1024
    monkeypatch.setattr(limits, "SNAPSHOT_SYNC_STEP_BYTES_MAX", step)
    source = tmp_path / "leader.snapshot"
    store = Store(str(tmp_path / "store"))
    writes = WriteSet()
    writes.put(b"k", os.urandom(2 * 2**20))
    store.commit(writes, AppliedMark(10, 10))
    snapshotter = _snapshotter(store, tmp_path)
    snapshotter.serialize(str(source) + ".tmp", _meta(10)[1:])
    assert _wait_done(snapshotter) == SERIALIZER_STATE.SUCCESS
    data = source.read_bytes()
    receiver = SnapshotReceiver(str(tmp_path / "incoming"))
    sizes = _spy_syncs(monkeypatch, "incoming")
    chunk = 100_000
    path = None
    for offset in range(0, len(data), chunk):
        piece = data[offset : offset + chunk]
        path = receiver.take("leader", 3, offset, (piece, offset == 0, offset + chunk >= len(data)))
    assert path is not None
    assert _largest_unsynced(sizes, len(data)) <= step
