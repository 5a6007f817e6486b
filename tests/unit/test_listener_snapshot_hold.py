"""The client's hold of a snapshot listener's frames (laminar/client/_listener.py, _HeldSnapshot)."""

from __future__ import annotations

import pytest

from laminar.client._listener import _HeldSnapshot
from laminar.errors import SnapshotTooLarge
from laminar.v1 import laminar_pb2 as pb


def _frame(*keys: str, end: bool = False) -> pb.ListenFrame:
    frame = pb.ListenFrame(snapshot=[pb.Event(kind=pb.PUT, key=k.encode(), value=b"v" * 100) for k in keys])
    if end:
        frame.snapshot_end, frame.snapshot_offset = True, 9
    return frame


def test_held_frames_come_out_whole_in_order_and_the_hold_empties() -> None:
    """Frames held are taken as one list of snapshot events per frame, in the order they came; then nothing is held."""
    held = _HeldSnapshot("t", 10_000)
    held.add(_frame("a", "b"))
    held.add(_frame("c", end=True))
    assert held.frames == 2 and held.bytes > 300
    taken = list(held.take())
    assert [[e.key for e in events] for events in taken] == [[b"a", b"b"], [b"c"]]
    assert all(e.snapshot and e.kind == "PUT" and e.topic == "t" for events in taken for e in events)
    assert held.frames == 0 and held.bytes == 0


def test_a_cleared_hold_keeps_nothing_of_the_broken_stream() -> None:
    """A new stream clears the hold: none of the previous stream's frames are delivered with the next snapshot."""
    held = _HeldSnapshot("t", 10_000)
    held.add(_frame("a", "b"))
    held.clear()
    held.add(_frame("b", end=True))
    assert [[e.key for e in events] for events in held.take()] == [[b"b"]]


def test_a_snapshot_over_the_bound_is_refused_and_nothing_is_kept() -> None:
    """Past bytes_max the hold raises SnapshotTooLarge, naming the bound, and lets go of what it held."""
    held = _HeldSnapshot("t", 250)
    held.add(_frame("a", "b"))
    with pytest.raises(SnapshotTooLarge, match="snapshot_bytes_max = 250 bytes"):
        held.add(_frame("c"))
    assert held.frames == 0 and held.bytes == 0
