"""The store's background flush ahead of a snapshot (Store.flush_start / Store.flushing, SnapshotHooks)."""

from __future__ import annotations

import time
from pathlib import Path

from laminar.node.store import Store, WriteSet
from laminar.node.store._records import AppliedMark


def test_flush_start_returns_at_once_and_empties_the_memtable_in_the_background(tmp_path: Path) -> None:
    """flush_start hands the memtable to RocksDB's flush thread and returns; flushing() says when it is done, and
    then the memtable is empty, so a checkpoint (in the Raft tick thread, with the GIL held) has nothing to flush."""
    store = Store(str(tmp_path / "store"))
    try:
        writes = WriteSet()
        for i in range(64):
            writes.put(b"t/%03d" % i, b"v" * 16384)
        store.commit(writes, AppliedMark(1, 1))
        store.flush_start()
        deadline = time.monotonic() + 10
        while store.flushing():
            assert time.monotonic() < deadline, "the flush did not end"
            time.sleep(0.005)
        db = store._db
        assert db.property_int_value("rocksdb.num-entries-active-mem-table") == 0  # type: ignore[union-attr]
        assert store.get(b"t/063") == b"v" * 16384
        store.checkpoint(str(tmp_path / "checkpoint"))
    finally:
        store.close()
    assert not store.flushing()  # closed: nothing runs, and no error
    store.flush_start()
