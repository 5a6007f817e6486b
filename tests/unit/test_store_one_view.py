"""Reads that combine several records answer from one point in time, whatever the apply thread commits between them.

Real RocksDB in temp dirs, no processes. Each test commits an entry between two of a read's own reads (a hook on a
key helper the read calls there), deterministically: no race. Every test here failed before its fix (see the
commit that added it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from laminar.node._backend import NodeBackend
from laminar.node.service._calls import work_step
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


def _commit_on_first_call(
    monkeypatch: pytest.MonkeyPatch, owner: type, name: str, store: Store, writes: WriteSet
) -> list[bool]:
    """Replace the static method owner.name by a wrapper whose first call commits `writes` (as the apply thread
    would, between two reads of the caller). Returns a list that holds True once committed."""
    original = getattr(owner, name)
    committed: list[bool] = []

    def hooked(*args: Any) -> Any:
        if not committed:
            store.commit(writes, AppliedMark(9, 9))
            committed.append(True)
        return original(*args)

    monkeypatch.setattr(owner, name, staticmethod(hooked))
    return committed


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
    committed = _commit_on_first_call(monkeypatch, CallKeys, "lease", store, relet)  # after the call's read
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
    committed = _commit_on_first_call(monkeypatch, Keys, "views_of", store, later)  # after the record's read
    answer = node.describe_topic("t")
    assert committed == [True]
    assert (answer.last_offset, answer.intention_offset) == (2, 2)
    assert [(c.name, c.acked_offset) for c in answer.consumers] == [("c", 2)]
    answer = node.describe_topic("t")
    assert (answer.last_offset, answer.intention_offset) == (3, 9)
    assert [(c.name, c.acked_offset) for c in answer.consumers] == [("c", 3)]
