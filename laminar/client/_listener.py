"""The Listener: committed events of one topic, in order, from any node, resuming after failures.

A background thread reads frames from a node into a bounded buffer; iteration takes from the
buffer. When the buffer is full the thread stops reading, gRPC flow control stops the node, and
nothing grows. After a disconnect it resumes from the last offset it delivered, trying the next
node. A topic that does not exist yet is simply waited for.

With `snapshot=True` the listener starts from the topic's current state: it first yields every
live key with its current value (events with `snapshot=True`, in key order), then the events after
the offset the snapshot reflects, with no gap. The snapshot is held (bounded: `snapshot_bytes_max`)
until its last frame has come, and only then delivered: if the connection breaks before that, what
came is dropped and the next node sends a fresh snapshot, which may be at another offset. So the
user sees exactly one snapshot, the state at one offset, never part of one and all of another.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from laminar import limits
from laminar.client._connect import TLS, Nodes, map_error, retry_after_s
from laminar.client._consumer import Acks
from laminar.client._types import Event, GroupSettings, Kind
from laminar.errors import InvalidRequest, LaminarError, OffsetTrimmed, SnapshotTooLarge, Timeout
from laminar.v1 import laminar_pb2 as pb

LISTENER_BUFFER_FRAMES_MAX = 64  # frames read ahead of the consumer
LISTENER_RETRY_S = 0.2
_END = object()


# A listener does not retry these: another node would answer the same (a bad request, or authorization).
_FINAL = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


class Listener:
    def __init__(
        self,
        addresses: Sequence[str] | str | None,
        topic: str,
        from_offset: int = 0,
        *,
        snapshot: bool = False,
        consumer: str | None = None,
        group: str | None = None,
        member: str | None = None,
        unacked_max: int = 0,
        group_settings: GroupSettings | None = None,
        tls: TLS | None = None,
        on_retry: Callable[[str, str], None] | None = None,
        token: str | None = None,
        snapshot_bytes_max: int = limits.LISTENER_SNAPSHOT_BYTES_MAX,
    ) -> None:
        """`on_retry(address, why)`, if given, is called (from the listener's thread) each time a
        stream from `address` breaks or cannot start and the listener is about to try again.

        `snapshot=True`: first every live key with its current value (events with `.snapshot` set), then
        the events after `snapshot_offset`. The snapshot is delivered only once it is complete: it is held
        until its last frame, so that a stream cut mid-snapshot (the listener then asks another node for a
        fresh one, maybe at another offset) never shows part of one snapshot and then another. Iteration
        therefore yields the first snapshot event only when `snapshot_offset` is already set. The held
        frames may take `snapshot_bytes_max` bytes (as on the wire); past that the listener ends with
        SnapshotTooLarge, having delivered none of it.

        `consumer="billing"`: a durable consumer (docs/consumers.md). The listener starts after the
        position the cluster keeps for it (the first event for a new one) and `ack(offset)` moves
        that position; acks are batched. `group="workers"`: a member (named `member`, or a random
        name) of a consumer group: each event comes to one member at a time, under a lease, and
        `ack(offset)` acknowledges that one event. A group is created by its first member's join,
        with `group_settings`; `unacked_max` bounds the events leased to this member at once."""
        if from_offset < 0:
            raise InvalidRequest(f"from_offset must be >= 0, got {from_offset}")
        if (consumer or group) and (from_offset or snapshot):
            raise InvalidRequest("a consumer or group member starts where the cluster says: no from_offset or snapshot")
        if consumer and group:
            raise InvalidRequest("a listener is a durable consumer or a group member, not both")
        if snapshot_bytes_max < 1:
            raise InvalidRequest(f"snapshot_bytes_max must be >= 1, got {snapshot_bytes_max}")
        self.topic = topic
        self.consumer = consumer
        self.group = group
        self.member = (member or uuid.uuid4().hex[:12]) if group else None
        # A durable consumer learns its start from the first event, and so does a listener from offset 0
        # (the oldest event a topic with retention still keeps may be past 1).
        self._positioned = not consumer and (from_offset > 0 or snapshot)
        self._acks: Acks | None = None
        if consumer:
            self._acks = Acks(addresses, tls, topic, consumer, token=token)
        elif group:
            join = pb.ConsumerOp(name=group, member=self.member, unacked_max=unacked_max)
            if group_settings is not None:
                join.settings.CopyFrom(group_settings.to_wire())
            self._acks = Acks(addresses, tls, topic, group, self.member, join, token=token)
        self._snapshot_pending = snapshot  # until a snapshot_end frame arrives
        self._snapshot_held = _HeldSnapshot(topic, snapshot_bytes_max)  # its frames so far, from this stream
        self.snapshot_offset: int | None = None  # the offset the snapshot reflected, once complete
        self._nodes = Nodes(addresses, tls, token)
        self._after = from_offset  # last offset handed to the buffer
        self._buffer: queue.Queue[Any] = queue.Queue(maxsize=LISTENER_BUFFER_FRAMES_MAX)
        self._pending: list[Event] = []
        self._closed = threading.Event()
        self._call: Any = None
        self._error: LaminarError | None = None
        self._on_retry = on_retry
        self._thread = threading.Thread(target=self._run, name=f"laminar-listen-{topic}", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[Event]:
        while True:
            yield self.next_event()

    def next_event(self, timeout: float | None = None) -> Event:
        """The next event; raises Timeout if none arrives within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._buffer.get(timeout=remaining)
            except queue.Empty:
                raise Timeout(f"no event on {self.topic!r} within {timeout} s") from None
            if item is _END:
                self._buffer.put(_END)
                raise self._error or LaminarError("listener closed")
            self._pending = item
        return self._pending.pop(0)

    def take(self, count: int, timeout: float | None = None) -> list[Event]:
        """The next `count` events, or Timeout if they do not all arrive within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = []
        for _ in range(count):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            events.append(self.next_event(remaining))
        return events

    def ack(self, offset: int | Event) -> None:
        """Acknowledge: a durable consumer, every event through `offset`; a group member, the event
        at `offset`. Batched: see flush()."""
        if isinstance(offset, Event):
            offset = offset.consequence_offset
        if self._acks is None:
            raise InvalidRequest("ack() needs a listener made with consumer= or group=")
        if self._acks.member is None:
            self._acks.ack_through(offset)
        else:
            self._acks.ack_one(offset)

    def flush(self, timeout: float | None = None) -> None:
        """Send the acks gathered so far and wait until the cluster has committed them."""
        if self._acks is not None:
            self._acks.flush(timeout)

    @property
    def stale_acks(self) -> int:
        """Group members: acks the cluster ignored because the event's lease had moved on."""
        return 0 if self._acks is None else self._acks.stale_acks

    def close(self) -> None:
        """Stop listening; a consumer's acks are flushed first, and a group member leaves its group."""
        self._closed.set()
        call = self._call
        if call is not None:
            call.cancel()
        self._thread.join(timeout=5)
        try:
            if self._acks is not None:
                self._acks.close()
        finally:
            self._nodes.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                address = self._nodes.pick()
                try:
                    self._stream(address)
                except SnapshotTooLarge as error:
                    self._error = error
                    if self._call is not None:
                        self._call.cancel()
                    return
                except grpc.RpcError as error:
                    if error.code() in _FINAL:  # type: ignore[attr-defined]
                        self._error = map_error(error)
                        return
                    if error.code() == grpc.StatusCode.OUT_OF_RANGE:  # type: ignore[attr-defined]
                        self._error = OffsetTrimmed.from_message(error.details() or "")  # type: ignore[attr-defined]
                        return
                    if self._on_retry is not None and not self._closed.is_set():
                        self._on_retry(address, error.details() or str(error.code()))  # type: ignore[attr-defined]
                    # A node at listeners_max, or one that cut this stream for not reading (stream_send_stall_s),
                    # says when to come back; the stream resumes after the last event delivered.
                    self._closed.wait(max(LISTENER_RETRY_S, retry_after_s(error) or 0.0))
                    self._nodes.refresh()  # the membership may have changed
        finally:
            self._put(_END, force=True)

    def _stream(self, address: str) -> None:
        method = self._nodes.channel(address).unary_stream(
            "/laminar.v1.Laminar/Listen",
            request_serializer=pb.ListenRequest.SerializeToString,
            response_deserializer=pb.ListenFrame.FromString,
        )
        request = pb.ListenRequest(topic=self.topic, from_offset=self._after, snapshot=self._snapshot_pending)
        if self.consumer:
            request.consumer = self.consumer
        elif self.group:
            request.consumer, request.member, request.from_offset = self.group, self.member or "", 0
        self._snapshot_held.clear()  # a snapshot is never continued from another stream: it starts afresh
        self._call = method(request)
        for frame in self._call:
            if self.group:
                leased = [self._event(e) for e in frame.events]
                if leased and not self._put(leased):
                    return
                continue
            if not self._positioned and frame.events:
                self._after = frame.events[0].consequence_offset - 1  # where the consumer's position was
                self._positioned = True
            if self._snapshot_pending:
                self._snapshot_held.add(frame)
                if not frame.snapshot_end:
                    continue
                self._after = frame.snapshot_offset
                self.snapshot_offset = frame.snapshot_offset
                self._snapshot_pending = False
                for held in self._snapshot_held.take():
                    if held and not self._put(held):
                        return
            events = []
            for e in frame.events:
                if e.consequence_offset <= self._after:
                    continue  # never deliver twice, whatever a node sends
                if e.consequence_offset != self._after + 1:
                    raise LaminarError(f"gap in {self.topic!r}: {self._after} then {e.consequence_offset}")
                self._after = e.consequence_offset
                events.append(self._event(e))
            if events and not self._put(events):
                return

    def _event(self, e: pb.Event) -> Event:
        return Event(
            self.topic,
            Kind.from_wire(e.kind),
            e.key,
            e.value,
            e.intention_offset,
            e.consequence_offset,
            time_ms=e.time_ms,
        )

    def _put(self, item: Any, force: bool = False) -> bool:
        while not self._closed.is_set() or force:
            try:
                self._buffer.put(item, timeout=LISTENER_RETRY_S)
                return True
            except queue.Full:
                if force:
                    return False
        return False


class _HeldSnapshot:
    """A snapshot's frames as they come, until its last one: then they are taken whole, as events.
    Bounded by `bytes_max` (serialized frame bytes); past it, SnapshotTooLarge."""

    def __init__(self, topic: str, bytes_max: int) -> None:
        self._topic = topic
        self._bytes_max = bytes_max
        self._frames: list[pb.ListenFrame] = []
        self.bytes = 0

    def add(self, frame: pb.ListenFrame) -> None:
        self.bytes += frame.ByteSize()
        if self.bytes > self._bytes_max:
            self.clear()
            raise SnapshotTooLarge(
                f"the snapshot of {self._topic!r} is larger than this listener may hold "
                f"(snapshot_bytes_max = {self._bytes_max} bytes): give it a larger snapshot_bytes_max, "
                "or listen from offset 0 instead (the history, streamed)"
            )
        self._frames.append(frame)

    @property
    def frames(self) -> int:
        return len(self._frames)

    def clear(self) -> None:
        self._frames, self.bytes = [], 0

    def take(self) -> Iterator[list[Event]]:
        """The snapshot's events, a list per frame (not one long list: the consumer pops from its front)."""
        frames = self._frames
        self.clear()
        for frame in frames:
            yield [
                Event(self._topic, Kind.PUT, e.key, e.value, e.intention_offset, e.consequence_offset, snapshot=True)
                for e in frame.snapshot
            ]
