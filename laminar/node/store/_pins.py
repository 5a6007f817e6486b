"""Pins: RocksDB snapshots that reads hold outside the store's read lock, and what ends them.

A rocksdict snapshot, or an iterator, keeps its database open after `Rdict.close()`, and with it the
database's LOCK file, held by this process: reopening the same path then fails ("lock hold by current
process"). So a snapshot install, which closes the store and opens the one from the leader at the same
path, first releases every pin: it drops the pin's snapshot and every iterator read from it, and the old
database really closes. A later read of a released pin raises StoreReplaced (the caller retries: the new
store answers). Reads hold the pin's own lock for one bounded step (STORE_PIN_STEP_ENTRIES_MAX entries,
STORE_PIN_STEP_BYTES_MAX bytes), so a release waits for one step at most, never for a whole digest or a
slow snapshot listener.

Only a pin holds a raw snapshot or iterator: callers see bytes, never a rocksdict object that could
outlive a release.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any

from laminar import limits


class StoreReplaced(Exception):
    """A read that began before a snapshot install replaced the store: the view it read is gone. Retry it."""


class StoreClosed(Exception):
    """The store is closed: the node is stopping, or a snapshot install could not open the new store."""


class ClosedDb:
    """Stands in for the RocksDB handle once the store is closed: every use raises StoreClosed (a read of a
    closed store must fail, never answer from nothing); close() is a no-op."""

    def __init__(self, why: str) -> None:
        self.why = why

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise StoreClosed(self.why)


class _Cursor:
    """One iterator read from a pin's snapshot; `raw` is its only reference (None once released)."""

    __slots__ = ("__weakref__", "raw")

    def __init__(self, raw: Any) -> None:
        self.raw: Any = raw


class Pin:
    """A RocksDB snapshot of the store, read outside the store's read lock; owned by the store's Pins."""

    def __init__(self, snapshot: Any) -> None:
        self._lock = threading.Lock()
        self._snapshot: Any = snapshot
        self._cursors: weakref.WeakSet[_Cursor] = weakref.WeakSet()

    def release(self) -> None:
        """Drop the snapshot and every iterator read from it (they keep the database open); later reads raise."""
        with self._lock:
            self._snapshot = None
            for cursor in list(self._cursors):
                cursor.raw = None

    def _live(self) -> Any:
        if self._snapshot is None:
            raise StoreReplaced("a snapshot install replaced the store during this read")
        return self._snapshot

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return _get(self._live(), key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with `prefix`, from `start` on, in key order, read in bounded steps."""
        with self._lock:
            cursor = _Cursor(_seek(self._live(), start if start is not None else prefix))
            self._cursors.add(cursor)
        while True:
            with self._lock:
                if cursor.raw is None:
                    raise StoreReplaced("a snapshot install replaced the store during this read")
                items, more = _step(cursor.raw, prefix)
                if not more:
                    cursor.raw = None
            yield from items
            if not more:
                return


class Pins:
    """The pins alive, by weak reference (a pin no read holds any more is gone, with its snapshot)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pins: weakref.WeakSet[Pin] = weakref.WeakSet()

    def add(self, snapshot: Any) -> Pin:
        pin = Pin(snapshot)
        with self._lock:
            self._pins.add(pin)
        return pin

    def release_all(self) -> int:
        """Release every pin alive; returns how many there were."""
        with self._lock:
            pins = list(self._pins)
            self._pins = weakref.WeakSet()
        for pin in pins:
            pin.release()
        return len(pins)


# Raw rocksdict calls, made under a pin's lock; their frames (the only other references to a raw
# iterator) end before the lock is let go.


def _seek(snapshot: Any, key: bytes) -> Any:
    it = snapshot.iter()
    it.seek(key)
    return it


def _get(snapshot: Any, key: bytes) -> bytes | None:
    it = _seek(snapshot, key)
    if it.valid() and it.key() == key:
        value = it.value()
        assert isinstance(value, bytes)
        return value
    return None


def _step(it: Any, prefix: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Up to one step's entries from `it` (at least one, if any is left), and whether more may follow."""
    items: list[tuple[bytes, bytes]] = []
    size = 0
    while it.valid():
        if len(items) >= limits.STORE_PIN_STEP_ENTRIES_MAX or size >= limits.STORE_PIN_STEP_BYTES_MAX:
            return items, True
        key = it.key()
        if not key.startswith(prefix):
            return items, False
        value = it.value()
        items.append((key, value))
        size += len(key) + len(value)
        it.next()
    return items, False
