"""Pins: consistent views of the store that reads hold outside the store's read lock, and what ends them.

A pin is one RocksDB iterator, made when the pin is: every read through the pin (a get, a scan) seeks that
iterator, and an iterator reads the store as it was when it was created (RocksDB's implicit snapshot), so all
of a pin's reads agree with each other. Not a rocksdict `Snapshot`: its `iter()` (rocksdict 0.3.29) sets the
snapshot on read options it then does not use, so every read of one saw the live store. A snapshot listener's
offset (read from the topic record) and its live keys (a scan) then came from two points in time: the keys could
hold events past the offset, which the listener then received again, live (tests/unit/test_store_pins.py).

An iterator keeps its database open after `Rdict.close()`, and with it the database's LOCK file, held by this
process: reopening the same path then fails ("lock hold by current process"). So a snapshot install, which
closes the store and opens the one from the leader at the same path, first releases every pin: it drops the
pin's iterator, and the old database really closes. A later read of a released pin raises StoreReplaced (the
caller retries: the new store answers). Reads hold the pin's own lock for one bounded step
(STORE_PIN_STEP_ENTRIES_MAX entries, STORE_PIN_STEP_BYTES_MAX bytes), so a release waits for one step at most,
never for a whole digest or a slow snapshot listener. A scan seeks again at each step (after the last key it
gave): scans and gets of one pin may interleave (a topic's consumer rows read each group's members inside its scan).

Only a pin holds a raw iterator: callers see bytes, never a rocksdict object that could outlive a release.
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


class Pin:
    """A consistent view of the store (one RocksDB iterator), read outside the store's read lock; owned by
    the store's Pins."""

    def __init__(self, view: Any) -> None:
        self._lock = threading.Lock()
        self._view: Any = view  # the raw iterator; None once released

    def release(self) -> None:
        """Drop the iterator (it keeps the database open); later reads raise."""
        with self._lock:
            self._view = None

    def _live(self) -> Any:
        if self._view is None:
            raise StoreReplaced("a snapshot install replaced the store during this read")
        return self._view

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return _get(self._live(), key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with `prefix`, from `start` on, in key order, read in bounded steps."""
        resume, after = (start if start is not None else prefix), False  # after: skip `resume` itself
        while True:
            with self._lock:
                items, more = _step(self._live(), resume, after, prefix)
            yield from items
            if not more:
                return
            resume, after = items[-1][0], True


class Pins:
    """The pins alive, by weak reference (a pin no read holds any more is gone, with its snapshot)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pins: weakref.WeakSet[Pin] = weakref.WeakSet()

    def add(self, view: Any) -> Pin:
        pin = Pin(view)
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


# Raw rocksdict calls, made under a pin's lock; their frames (the only other references to the raw
# iterator) end before the lock is let go.


def _get(view: Any, key: bytes) -> bytes | None:
    view.seek(key)
    if view.valid() and view.key() == key:
        value = view.value()
        assert isinstance(value, bytes)
        return value
    return None


def _step(view: Any, resume: bytes, after: bool, prefix: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Up to one step's entries from `resume` on (past it, if `after`), at least one if any is left, and
    whether more may follow."""
    view.seek(resume)
    if after and view.valid() and view.key() == resume:
        view.next()
    items: list[tuple[bytes, bytes]] = []
    size = 0
    while view.valid():
        if len(items) >= limits.STORE_PIN_STEP_ENTRIES_MAX or size >= limits.STORE_PIN_STEP_BYTES_MAX:
            return items, True
        key = view.key()
        if not key.startswith(prefix):
            return items, False
        value = view.value()
        items.append((key, value))
        size += len(key) + len(value)
        view.next()
    return items, False
