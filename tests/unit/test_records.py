"""TopicRecord.with_counters is dataclasses.replace of the three counters an entry moves, for every field."""

from __future__ import annotations

import dataclasses

from laminar.node.store._records import Retention, TopicRecord


def test_with_counters_equals_replace_field_by_field() -> None:
    """with_counters builds its record by position: it must give what dataclasses.replace gives, and a field added to
    TopicRecord must fail this test until with_counters passes it on."""
    record = TopicRecord(True, 7, 3, "def on_put(ctx, k, v): pass", b"args", Retention(5, 6, 7), 2, 99)
    fast = record.with_counters(next_offset=8, first_offset=4, retained_bytes=120)
    slow = dataclasses.replace(record, next_offset=8, first_offset=4, retained_bytes=120)
    assert fast == slow
    assert [f.name for f in dataclasses.fields(TopicRecord)] == [
        "live",
        "next_offset",
        "created_at",
        "program",
        "args",
        "retention",
        "first_offset",
        "retained_bytes",
    ]
    assert fast.encode() == slow.encode()
