"""Snapshot building and installing without processes: a real store checkpoint in a temp dir."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pysyncobj.config import SERIALIZER_STATE

from laminar.node.raft._snapshot import SnapshotHooks, Snapshotter
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
