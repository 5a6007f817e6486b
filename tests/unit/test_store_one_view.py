"""Reads that combine several records answer from one point in time, whatever the apply thread commits between them.

Real RocksDB in temp dirs, no processes. Each test commits an entry between two of a read's own reads (a hook on a
key helper the read calls there), deterministically: no race. The first two failed before their fix (see the commit
that added them); the last shows a combination tolerated by design, by the re-check that makes it so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from store_hooks import commit_on_first_call

from laminar.node._backend import NodeBackend
from laminar.node.config import ServingLimits
from laminar.node.service._calls import work_step
from laminar.node.service._listen import EventFeed, ListenService
from laminar.node.service._sessions import SessionFailure
from laminar.node.store import (
    DURABLE,
    AppliedMark,
    CallKeys,
    CallLease,
    ConsumerRecord,
    Keys,
    Store,
    TopicRecord,
    WriteSet,
)
from laminar.node.store._keys import u64
from laminar.v1 import laminar_pb2 as pb


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(str(tmp_path / "store"))
    yield opened
    opened.close()


def _lease(worker: str, grant: int, deliveries: int) -> bytes:
    return CallLease("t", worker, grant, 1_000 * grant, deliveries).encode()


def test_a_workers_frame_holds_each_call_with_the_lease_it_was_sent_for(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """work_step reads a worker's grant index, the call and its lease from one view: a re-lease of the call to another
    worker committed between the call's read and its lease's read is not in the frame. Read live one by one (before),
    worker w1's frame held w2's lease: worker "w2", deliveries 2, w2's deadline."""
    first = WriteSet()
    call = pb.Call(id=1, topic="t", service="svc", method="m", request=b"r")
    first.put(CallKeys.call("t", 1), call.SerializeToString())
    first.put(CallKeys.lease("svc", 1), _lease("w1", 1, 1))
    first.put(CallKeys.grant("svc", "w1", 1), u64(1) + b"t")
    store.commit(first, AppliedMark(1, 1))
    relet = WriteSet()  # w1's lease expired; the call went to w2 (grant 2, its second delivery)
    relet.put(CallKeys.lease("svc", 1), _lease("w2", 2, 2))
    relet.delete(CallKeys.grant("svc", "w1", 1))
    relet.put(CallKeys.grant("svc", "w2", 2), u64(1) + b"t")
    committed = commit_on_first_call(
        monkeypatch, CallKeys, "lease", store, relet, AppliedMark(9, 9)
    )  # after the call's read
    frame_data, sent = work_step(store, pb.WorkRequest(service="svc", worker="w1"), 0)
    assert committed == [True] and frame_data is not None and sent == 1
    [sent_call] = pb.WorkFrame.FromString(frame_data).calls
    assert (sent_call.id, sent_call.worker, sent_call.deliveries, sent_call.lease_deadline_ms) == (1, "w1", 1, 1_000)
    assert work_step(store, pb.WorkRequest(service="svc", worker="w1"), 0) == (None, 0)  # w1 holds nothing now
    frame_data, sent = work_step(store, pb.WorkRequest(service="svc", worker="w2"), 0)
    assert frame_data is not None and sent == 2
    [sent_call] = pb.WorkFrame.FromString(frame_data).calls
    assert (sent_call.worker, sent_call.deliveries) == ("w2", 2)


def test_describe_topic_reads_its_consumers_with_its_record(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """DescribeTopic's consumers come from the view its record, keys and intention offset come from: a put and a
    consumer's ack of it committed meanwhile are in neither. From a second view (before), the answer had the consumer
    acked at offset 3 in a topic whose last offset was 2 (and a topic destroyed meanwhile had no consumers)."""
    first = WriteSet()
    first.put(Keys.topic("t"), TopicRecord(True, 3, 1, "", b"").encode())
    first.put(Keys.consumer("t", "c"), ConsumerRecord(DURABLE, 2, 2).encode())
    store.commit(first, AppliedMark(2, 2))
    later = WriteSet()  # a put (offset 3) and the consumer's ack of it
    later.put(Keys.topic("t"), TopicRecord(True, 4, 1, "", b"").encode())
    later.put(Keys.consumer("t", "c"), ConsumerRecord(DURABLE, 3, 4).encode())
    node = NodeBackend(None, store, None, None)  # type: ignore[arg-type]  # describe_topic reads the store only
    committed = commit_on_first_call(
        monkeypatch, Keys, "views_of", store, later, AppliedMark(9, 9)
    )  # after the record's read
    answer = node.describe_topic("t")
    assert committed == [True]
    assert (answer.last_offset, answer.intention_offset) == (2, 2)
    assert [(c.name, c.acked_offset) for c in answer.consumers] == [("c", 2)]
    answer = node.describe_topic("t")
    assert (answer.last_offset, answer.intention_offset) == (3, 9)
    assert [(c.name, c.acked_offset) for c in answer.consumers] == [("c", 3)]


class _Frames:
    """A Listen call's context: keeps what the listener writes."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def write(self, frame: bytes) -> None:
        self.frames.append(frame)


def test_a_trim_after_a_listeners_first_kept_check_ends_it_out_of_range_at_the_new_first(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener checks the topic's first kept offset, then reads events at another moment: a trim committed between
    the two (events 1-3 of 5) is caught by the re-check on the events read (the first one is not the one asked for),
    and the listener ends OUT_OF_RANGE naming the first offset kept after the trim (4), having sent nothing."""
    writes = WriteSet()
    writes.put(Keys.topic("t"), TopicRecord(True, 6, 1, "", b"").encode())
    for offset in range(1, 6):
        writes.put(
            Keys.event("t", offset), pb.Event(kind=pb.PUT, key=b"k", consequence_offset=offset).SerializeToString()
        )
    store.commit(writes, AppliedMark(1, 1))
    trim = WriteSet()
    trim.put(Keys.topic("t"), TopicRecord(True, 6, 1, "", b"", first_offset=4).encode())
    for offset in range(1, 4):
        trim.delete(Keys.event("t", offset))
    service = ListenService(store, EventFeed(), ServingLimits())
    original = ListenService._first_kept
    checked: list[int] = []

    def first_kept_then_trim(self: ListenService, topic: str) -> int:
        checked.append(original(self, topic))
        store.commit(trim, AppliedMark(2, 2))
        return checked[-1]

    monkeypatch.setattr(ListenService, "_first_kept", first_kept_then_trim)
    context = _Frames()

    async def listen() -> None:
        assert service.admit() == ""
        async with asyncio.timeout(10):
            await service.run(pb.ListenRequest(topic="t", from_offset=1), context)

    try:
        with pytest.raises(SessionFailure) as ended:
            asyncio.run(listen())
    finally:
        service.stop()
    assert checked == [1] and context.frames == []
    assert ended.value.code == grpc.StatusCode.OUT_OF_RANGE
    assert "event 2 of topic 't' was trimmed" in ended.value.message
    assert "the first available offset is 4" in ended.value.message
