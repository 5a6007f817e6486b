"""Retention: which of a topic's oldest events to trim, decided at apply, the same on every node.

A topic may keep at most `max_events` events, `max_bytes` bytes of serialized events and events at
most `max_age_ms` old by log time (state_machine/_time.py). After each entry the state machine asks
`trim_point` where each topic over a limit now starts, deletes the events before it (one RocksDB
range delete) and records the new first offset in the topic record. Offsets are never reused: the
next event keeps the next offset; listeners asking for a trimmed one are told where the topic starts.

Everything decided here is a function of replicated state (the topic record, the stored events, the
entry's log time): which topics are checked (over a count or byte limit, or due for an age check:
once per RETENTION_AGE_CHECK_MS of log time) and how far (RETENTION_TRIM_EVENTS_PER_ENTRY_MAX events
read per entry, over all topics, so one entry's work is bounded; a topic left over its limit goes on
in the next entries, and an idle leader's time ticks supply those).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from laminar import limits
from laminar.node.store import Retention, Store, from_u64, u64
from laminar.v1 import laminar_pb2 as pb

# (consequence offset, serialized size, the serialized event or None when its time is known) of the
# events of a topic from its first kept one, in offset order.
EventSizes = Iterator[tuple[int, int, bytes | None]]


@dataclass(frozen=True)
class Kept:
    """Where a topic's kept events are before trimming: first offset, next offset, their bytes."""

    first_offset: int
    next_offset: int
    retained_bytes: int


def over_limit(kept: Kept, retention: Retention, age_check_due: bool) -> bool:
    """Whether a topic must be walked for trimming now (cheap: no store read)."""
    if not retention:
        return False
    if retention.max_events and kept.next_offset - kept.first_offset > retention.max_events:
        return True
    if retention.max_bytes and kept.retained_bytes > retention.max_bytes:
        return True
    return bool(retention.max_age_ms and age_check_due and kept.next_offset > kept.first_offset)


def age_check_due(previous_time_ms: int, time_ms: int) -> bool:
    """Whether this entry's log time crossed a RETENTION_AGE_CHECK_MS boundary (a function of the log)."""
    step = limits.RETENTION_AGE_CHECK_MS
    return previous_time_ms // step != time_ms // step


def trim_point(
    kept: Kept, retention: Retention, time_ms: int, events: EventSizes, budget: int, entry_time_ms: int
) -> tuple[int, int, int]:
    """(new first offset, bytes trimmed, events read) for one topic: walk its oldest events while
    one of its limits is exceeded, reading at most `budget` of them. `events` yields what the walk
    reads; an event whose serialized form is None was appended by this entry (its time is
    `entry_time_ms`)."""
    count_floor = kept.next_offset - retention.max_events if retention.max_events else 0
    age_floor_ms = time_ms - retention.max_age_ms if retention.max_age_ms else None
    first, trimmed, read = kept.first_offset, 0, 0
    for offset, size, data in events:
        if read >= budget:
            break
        over_bytes = retention.max_bytes and kept.retained_bytes - trimmed > retention.max_bytes
        if not (offset < count_floor or over_bytes or _too_old(data, entry_time_ms, age_floor_ms)):
            break
        read += 1
        first, trimmed = offset + 1, trimmed + size
    return first, trimmed, read


def _too_old(data: bytes | None, entry_time_ms: int, age_floor_ms: int | None) -> bool:
    """An event is too old when its log time is below the age floor (an event of age exactly
    max_age_ms is kept). Events from before log time (time 0) are as old as can be."""
    if age_floor_ms is None:
        return False
    time_ms = entry_time_ms if data is None else pb.Event.FromString(data).time_ms
    return time_ms < age_floor_ms


def retention_from_wire(retention: pb.Retention) -> Retention:
    return Retention(retention.max_events, retention.max_bytes, retention.max_age_ms)


def kept_events(store: Store, events_prefix: bytes, kept: Kept, entry_sizes: list[int]) -> EventSizes:
    """The kept events of a topic from its first, for trim_point: those in the store (read lazily),
    then the `entry_sizes` ones this entry appended (which the store does not hold yet)."""
    entry_first = kept.next_offset - len(entry_sizes)
    for key, value in store.scan(events_prefix, start=events_prefix + u64(kept.first_offset)):
        offset = from_u64(key[len(events_prefix) :])
        if offset >= entry_first:
            break
        yield offset, len(value), value
    for index, size in enumerate(entry_sizes):
        if entry_first + index >= kept.first_offset:
            yield entry_first + index, size, None
