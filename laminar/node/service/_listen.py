"""Listener streams: committed events of one topic, from any consequence offset, in frames.

Listeners read from the store, not from an in-memory fan-out, so a slow listener costs a thread
and nothing else: gRPC asks for the next frame only when the previous one is sent, and the node
never buffers events for it. The apply thread publishes each topic's newest offset to the feed;
a caught-up listener waits there.

A snapshot listen first sends the topic's live keys from one RocksDB snapshot (which also gives
the consequence offset N it reflects), then streams events after N from the store as usual: no
gap, since the snapshot and the events are cut at the same offset.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator

import grpc

from laminar import _rules, limits
from laminar._wire import length_delimited
from laminar.node.store import DURABLE, ConsumerRecord, Store
from laminar.v1 import laminar_pb2 as pb

LISTEN_WAIT_S = 1.0  # a waiting listener re-checks that its RPC is alive this often


def encode_listen_frame(events: list[bytes]) -> bytes:
    """A serialized ListenFrame from serialized Events (field 1), without decoding them."""
    return b"".join(length_delimited(b"\x0a", e) for e in events)


class EventFeed:
    """Newest consequence offset per topic, published by the apply thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0

    def publish(self, topic_offsets: dict[str, int]) -> None:
        if topic_offsets:
            with self._cond:
                self._version += 1
                self._cond.notify_all()

    def version(self) -> int:
        with self._cond:
            return self._version

    def wait_newer(self, version: int, timeout_s: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout_s)


class ListenService:
    def __init__(self, store: Store, feed: EventFeed) -> None:
        self._store = store
        self._feed = feed
        self._lock = threading.Lock()
        self._active = 0
        self._positions: dict[int, tuple[str, int]] = {}  # stream id -> (topic, last offset sent), for lag

    def positions(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._positions.values())

    def count(self) -> int:
        with self._lock:
            return self._active

    def run(
        self,
        topic: str,
        from_offset: int,
        context: grpc.ServicerContext,
        snapshot: bool = False,
        consumer: str = "",
        member_body: Callable[[Store, EventFeed], Iterator[bytes]] | None = None,
    ) -> Iterator[bytes]:
        """`consumer`: a durable consumer; from offset 0, start after its acknowledged position.
        `member_body`: a group member's stream, sent instead of the topic's events."""
        problem = _rules.topic_problem(topic)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        with self._lock:
            if self._active >= limits.LISTENERS_MAX:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"too many listeners ({limits.LISTENERS_MAX})")
            self._active += 1
        stream_id = id(context)
        try:
            if member_body is not None:
                yield from member_body(self._store, self._feed)
                return
            if consumer and not from_offset:
                from_offset = self._position(topic, consumer)
            if snapshot:
                from_offset = yield from self._snapshot(topic, context)
            yield from self._stream(topic, from_offset, context, stream_id)
        finally:
            with self._lock:
                self._active -= 1
                self._positions.pop(stream_id, None)

    def _position(self, topic: str, consumer: str) -> int:
        data = self._store.consumer_record(topic, consumer)
        record = None if data is None else ConsumerRecord.decode(data)
        return record.acked_offset if record is not None and record.kind == DURABLE else 0

    def _snapshot(self, topic: str, context: grpc.ServicerContext) -> Generator[bytes, None, int]:
        """Frames of live keys; the last one says which offset they reflect. Returns that offset."""
        through, items = self._store.view_snapshot(topic)
        frame = pb.ListenFrame()
        size = 0
        for key, record in items:
            if not context.is_active():
                break
            if frame.snapshot and (
                len(frame.snapshot) >= limits.LISTEN_FRAME_EVENTS_MAX
                or size + len(record.value) > limits.LISTEN_FRAME_BYTES_MAX
            ):
                yield frame.SerializeToString()
                frame, size = pb.ListenFrame(), 0
            frame.snapshot.append(
                pb.Event(
                    kind=pb.PUT,
                    key=key,
                    value=record.value,
                    intention_offset=record.intention_offset,
                    consequence_offset=record.consequence_offset,
                )
            )
            size += len(key) + len(record.value)
        frame.snapshot_offset = through
        frame.snapshot_end = True
        yield frame.SerializeToString()
        return through

    def _stream(self, topic: str, after: int, context: grpc.ServicerContext, stream_id: int) -> Iterator[bytes]:
        while context.is_active():
            with self._lock:
                self._positions[stream_id] = (topic, after)
            version = self._feed.version()
            events = self._store.read_events(
                topic, after, limits.LISTEN_FRAME_EVENTS_MAX, limits.LISTEN_FRAME_BYTES_MAX
            )
            if events:
                after += len(events)  # consequence offsets are gapless per topic
                yield encode_listen_frame(events)
            else:
                self._feed.wait_newer(version, LISTEN_WAIT_S)
