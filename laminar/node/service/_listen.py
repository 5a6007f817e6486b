"""Listener streams: committed events of one topic, from any consequence offset, in frames.

Listeners read from the store, not from an in-memory fan-out, so a slow listener costs a coroutine
and its frames in flight (the one being written, the last one written: _Outbox), nothing else: the
next frame is read only when the previous one was taken by gRPC, and one the client has not taken
within the send-stall timeout ends the stream with RESOURCE_EXHAUSTED (and a retry hint). Every
listener's frames share a rate and a memory budget (Delivery). Store reads run on a small pool of
their own (never on the event loop), in batches (_reads.py). The apply thread publishes to the feed;
a caught-up listener waits there for its topic's events.

A snapshot listen first sends the topic's live keys from one RocksDB snapshot (which also gives
the consequence offset N it reflects), then streams events after N from the store as usual: no
gap, since the snapshot and the events are cut at the same offset.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from laminar import limits
from laminar._wire import length_delimited
from laminar.node.config import ServingLimits
from laminar.node.service._reads import StoreReads
from laminar.node.service._sessions import SessionFailure, send_within
from laminar.node.store import DURABLE, ConsumerRecord, Keys, Store, TopicRecord, ViewRecord
from laminar.v1 import laminar_pb2 as pb

LISTEN_WAIT_S = 1.0  # a group member's or worker's stream re-runs its step this often without news (leases expire)
# A listener caught up on its topic re-reads it this often without news, as a safety net only: every entry applied
# on its topic's bucket and every snapshot install wake it, and a call that ends cancels it. At 1 s, 2,000 caught-up
# listeners of a quiet topic cost the leader ~0.1 core of store reads and loop turns (measured: 0.22-0.32 cores
# against 0.11-0.15 with none).
LISTEN_CAUGHT_UP_WAIT_S = 30.0
# What the applier publishes when the whole store changed (a snapshot install): every topic's listeners wake.
EVERY_TOPIC = "*"
T = TypeVar("T")
# One step of a group member's stream (service/_consumers.py): (store, request, last grant sent) ->
# (a frame of newly leased events or None, the last grant sent after it). Runs on a read thread.
MemberStep = Callable[[Store, pb.ListenRequest, int], tuple[bytes | None, int]]
# One step of a worker's stream of calls (service/_calls.py), the same way.
WorkStep = Callable[[Store, pb.WorkRequest, int], tuple[bytes | None, int]]


def encode_listen_frame(events: list[bytes]) -> bytes:
    """A serialized ListenFrame from serialized Events (field 1), without decoding them."""
    return b"".join(length_delimited(b"\x0a", e) for e in events)


class EventFeed:
    """A version bumped by the apply thread whenever a topic got events; listeners on the event loop
    wait for it to move. The loop is woken at most once per wake-up it has not yet run, and only while
    a listener waits: with none (no listener, or all of them busy reading), a wake-up would cost the
    apply thread a write to the loop's self-pipe and the loop a turn for nothing, on every entry (on
    a sequential write that turn competed with the session writer's, which carries the ack).

    A listener of one topic waits on its topic's bucket (one of LISTEN_FEED_BUCKETS, by the name's
    hash), not on every topic: 2,000 listeners caught up on quiet topics are not all woken, each to read
    the store for nothing, by every entry applied on any topic (a group member's or a worker's stream,
    which may get work from any entry, waits on every topic)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._bucket_versions = [0] * limits.LISTEN_FEED_BUCKETS  # the version of each bucket's last events
        self._loop: asyncio.AbstractEventLoop | None = None
        self._moved: asyncio.Event | None = None
        # The listeners waiting on each bucket (event loop only): a dict as an ordered set, so that one that stops
        # waiting (timeout, cancel) leaves in O(1), where asyncio.Event's waiters leave a deque in O(n) each.
        self._bucket_waiters: list[dict[asyncio.Future[None], None]] = [{} for _ in range(limits.LISTEN_FEED_BUCKETS)]
        self._waking: collections.deque[asyncio.Future[None]] = collections.deque()  # woken, in turns (_wake_some)
        self._wake_some_due = False
        self._pending_buckets: set[int] = set()  # buckets moved since the loop last woke
        self._wake_pending = False
        self._waiting = 0  # listeners in wait_newer (counted under the lock, before they check the version)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the event loop when the server starts."""
        self._moved = asyncio.Event()
        self._loop = loop

    def publish(self, topic_offsets: dict[str, int]) -> None:
        if not topic_offsets:
            return
        with self._lock:
            self._version += 1
            for topic in topic_offsets:
                buckets = range(limits.LISTEN_FEED_BUCKETS) if topic == EVERY_TOPIC else (_bucket(topic),)
                for bucket in buckets:
                    self._bucket_versions[bucket] = self._version
                    self._pending_buckets.add(bucket)
            if self._loop is None or self._wake_pending or not self._waiting:
                return  # a listener that begins to wait after this sees the version moved first
            self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: the node is stopping
            pass

    def _wake(self) -> None:
        assert self._moved is not None
        with self._lock:
            self._wake_pending = False
            buckets, self._pending_buckets = self._pending_buckets, set()
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        for bucket in buckets:
            waiters = self._bucket_waiters[bucket]
            self._waking.extend(waiters)
            waiters.clear()
        if not self._wake_some_due:
            self._wake_some()

    def _wake_some(self) -> None:
        """Wake at most LISTEN_WAKES_PER_TURN_MAX of the listeners due, and the rest in the next turns of the loop:
        the first event appended to a topic that 2,000 listeners had caught up on woke them all in one turn, each
        a task step (and most of them only to queue for the listener rate), while a session's reads and acks
        waited behind them for that turn."""
        assert self._loop is not None
        self._wake_some_due = False
        woken = 0
        while self._waking and woken < limits.LISTEN_WAKES_PER_TURN_MAX:
            waiter = self._waking.popleft()
            if not waiter.done():  # one that timed out or was cancelled meanwhile is skipped
                waiter.set_result(None)
                woken += 1
        if self._waking:
            self._wake_some_due = True
            self._loop.call_soon(self._wake_some)

    def version(self) -> int:
        with self._lock:
            return self._version

    async def wait_newer(self, version: int, timeout_s: float, topic: str | None = None) -> None:
        """Return once events newer than `version` were published (of `topic`, if given), or after timeout_s."""
        bucket = None if topic is None else _bucket(topic)
        with self._lock:  # counted as waiting before the check: a publish after it wakes the loop
            if self._loop is None or self._moved is None:
                return
            if (self._version if bucket is None else self._bucket_versions[bucket]) > version:
                return
            self._waiting += 1
        # Registered before any await: a publish from here on wakes it (a bucket's waiter, or the every-topic Event's).
        waiter = self._loop.create_future() if bucket is not None else None
        if waiter is not None:
            assert bucket is not None
            self._bucket_waiters[bucket][waiter] = None
        try:
            async with asyncio.timeout(timeout_s):
                await (self._moved.wait() if waiter is None else waiter)
        except TimeoutError:
            pass
        finally:
            if waiter is not None:
                assert bucket is not None
                self._bucket_waiters[bucket].pop(waiter, None)  # gone already if it was woken
            with self._lock:
                self._waiting -= 1


def _bucket(topic: str) -> int:
    return hash(topic) % limits.LISTEN_FEED_BUCKETS


class Delivery:
    """What every listener's frames share, on the event loop: memory, and the node's time.

    Memory: each listener may always have its frames in flight (see _Outbox: the one being written
    and the last one written) of LISTEN_FRAME_BYTES_MIN, so a listener never waits for another's frame
    to be taken; a larger frame takes the rest of its reservation from LISTEN_BUFFERED_BYTES_MAX
    shared by all, and frames shrink as that runs out. Listener frames hold at most listeners_max x 2
    x the minimum plus the shared bytes (plus, for a frame of one event larger than its reservation,
    that event).

    Time: listeners' frames together go out at most at `bytes_per_s` (a token bucket of
    LISTEN_BYTES_BURST_MAX), granted in the order listeners asked. A client's transport can take in
    all it is sent whether or not the application reads (its window is the client's to choose), so
    2,000 listeners that "never read" are 2,000 fast readers to the node: sending them all it could
    took the node's cores from the log, and the well-behaved client's commit p99 went to 4 s.
    Reservations are charged what the frame turned out to hold, so a listener of small events pays
    for its small frames, not its reservation."""

    def __init__(self, bytes_per_s: float) -> None:
        self.shared_bytes = 0  # of LISTEN_BUFFERED_BYTES_MAX, taken by frames in flight
        self._bytes_per_s = bytes_per_s
        self._tokens = float(limits.LISTEN_BYTES_BURST_MAX)  # bytes that may go out now
        self._tokens_at = time.monotonic()
        # Listeners waiting for the rate, oldest first: those at their topic's head (their last frame was
        # small) before those reading history, so a listener that follows its topic is not queued behind
        # thousands of catching-up frames (a pass of them at the rate could take a minute).
        self._waiting_at_head: collections.deque[asyncio.Future[int]] = collections.deque()
        self._waiting: collections.deque[asyncio.Future[int]] = collections.deque()
        self._wake: asyncio.TimerHandle | None = None
        # Listeners whose next event is larger than their reservation, waiting for shared room and the rate:
        # (waiter, shared bytes, bytes charged to the rate when granted)
        self._waiting_room: collections.deque[tuple[asyncio.Future[None], int, int]] = collections.deque()
        self._room_due: asyncio.TimerHandle | None = None  # serves room freed by ending listeners (release, ended)

    async def reserve(self, at_head: bool = False) -> int:
        """Bytes the next frame may hold (give them back with `release`), once the rate allows it.
        `at_head`: the listener's last frame was small (it follows its topic's head): it goes first."""
        if not self._waiting_at_head and (at_head or not self._waiting) and self._refill() > 0:
            return self._grant(at_head)
        waiter = asyncio.get_running_loop().create_future()
        (self._waiting_at_head if at_head else self._waiting).append(waiter)
        self._wake_later()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.unread(waiter.result(), ended=True)  # granted as the call was ended
            raise

    def resize(self, reserved: int, frame_bytes: int) -> None:
        """The frame read under `reserved` holds `frame_bytes`: one event larger than it counts whole,
        and what a smaller frame did not use goes back to the rate."""
        self.shared_bytes += _excess(frame_bytes) - _excess(reserved)
        self._tokens += reserved - frame_bytes

    def release(self, frame_bytes: int, ended: bool = False) -> None:
        """A frame (or a reservation that read nothing) is no longer in flight. `ended`: its listener's call ended
        (cancelled, cut, refused): the room goes to the listeners waiting for it LISTEN_ENDED_ROOM_DELAY_S later,
        not at once. 2,000 never-reading listeners cancelled at once end one by one over a few hundred ms, and the
        room each one freed went to the next waiters, which read and wrote a frame each (at the listener rate) to
        streams whose own cancel was on its way: a third of the leader's loop during the cancels (py-spy), while a
        good client's put waited for it. Room that a frame taken by gRPC frees goes on at once."""
        self.shared_bytes -= _excess(frame_bytes)
        assert self.shared_bytes >= 0, "listener frames released more than they reserved"
        if not ended:
            self._serve_room()
        elif self._room_due is None and self._waiting_room:
            self._room_due = asyncio.get_running_loop().call_later(limits.LISTEN_ENDED_ROOM_DELAY_S, self._room_later)

    def _room_later(self) -> None:
        self._room_due = None
        self._serve_room()

    def _serve_room(self) -> bool:
        """Give the listeners waiting for room what the shared bytes and the rate allow, oldest first.

        The rate too, not the room alone: when 2,000 never-reading listeners are cancelled at once, gRPC tells
        us of the cancels one by one over a second or more, and the room each one freed went at once to the
        next waiters, which read and wrote a frame each to streams about to be cancelled as well (measured:
        ~1,000 store reads and ~1,400 frames in the 1.3 s after the first 163 cancels, at 4x the rate, while
        a good client's put waited 1-2.5 s for the event loop). True: some wait for the rate (a wake is set)."""
        while self._waiting_room:
            waiter, extra, charge = self._waiting_room[0]
            if not waiter.done():
                if self.shared_bytes + extra > limits.LISTEN_BUFFERED_BYTES_MAX:
                    return False  # the next release serves them
                if self._refill() <= 0:
                    self._wake_later()
                    return True
                self.shared_bytes += extra
                self._tokens -= charge
                waiter.set_result(None)
            self._waiting_room.popleft()
        return False

    def grow_now(self, reserved: int, frame_bytes: int) -> bool:
        """A reservation too small for the next event grown to `frame_bytes` at once, if the shared bytes have
        room now and nobody waits for it (True): the caller keeps what it read, instead of reading it again."""
        extra = _excess(frame_bytes) - _excess(reserved)
        if self._waiting_room or self.shared_bytes + extra > limits.LISTEN_BUFFERED_BYTES_MAX:
            return False
        self.shared_bytes += extra
        self._tokens -= frame_bytes - reserved  # charged to the rate as granted, like a reservation
        return True

    async def grow(self, reserved: int, frame_bytes: int) -> int:
        """A reservation too small for the next event (it must go whole): wait until the shared bytes
        have room for `frame_bytes`, oldest first; returns the new reservation. The caller has let go of
        what it read, so a listener waiting here holds nothing (events of 64 KiB pinned 2,000 x 64 KiB)."""
        if self.grow_now(reserved, frame_bytes):
            return frame_bytes
        extra = _excess(frame_bytes) - _excess(reserved)
        charge = frame_bytes - reserved  # to the rate, when granted (so that waiting does not bank it)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting_room.append((waiter, extra, charge))
        self._serve_room()  # room and rate may both be there (another listener waited first)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.shared_bytes -= extra
            raise
        return frame_bytes

    def unread(self, reserved: int, ended: bool = False) -> None:
        """A reservation that read nothing: its bytes go back, to the memory and to the rate (`ended`: see release)."""
        self.release(reserved, ended)
        self._tokens += reserved

    def _refill(self) -> float:
        now = time.monotonic()
        burst = float(limits.LISTEN_BYTES_BURST_MAX)
        self._tokens = min(burst, self._tokens + (now - self._tokens_at) * self._bytes_per_s)
        self._tokens_at = now
        return self._tokens

    def _grant(self, at_head: bool) -> int:
        """A reservation: the minimum for a listener at its topic's head (it goes first, so it may read
        one small frame first), else more as the shared bytes allow."""
        room = limits.LISTEN_BUFFERED_BYTES_MAX - self.shared_bytes
        extra_max = 0 if at_head else limits.LISTEN_FRAME_BYTES_MAX - limits.LISTEN_FRAME_BYTES_MIN
        extra = max(0, min(extra_max, room // 16))
        self.shared_bytes += extra
        reserved = limits.LISTEN_FRAME_BYTES_MIN + extra
        self._tokens -= reserved
        return reserved

    def _wake_later(self) -> None:
        if self._wake is None:
            delay_s = max(0.0, -self._refill()) / self._bytes_per_s
            self._wake = asyncio.get_running_loop().call_later(delay_s, self._serve_waiting)

    def _serve_waiting(self) -> None:
        """Grant the waiting listeners what the rate allows now, oldest first; wake again for the rest."""
        self._wake = None
        for at_head, waiting in ((True, self._waiting_at_head), (False, self._waiting)):
            if not at_head and self._serve_room():  # they hold a grant already: before those waiting for their first
                return  # the rate is spent; _serve_room set the next wake
            while waiting and self._refill() > 0:
                waiter = waiting.popleft()
                if not waiter.done():  # a cancelled one left
                    waiter.set_result(self._grant(at_head))
        if self._waiting_at_head or self._waiting:
            self._wake_later()


class _Outbox:
    """One listener's frames in flight: the one being written, and the last one written. gRPC completes a
    write as it takes the frame in, and keeps it until it has sent it (a stream takes its next frame only
    then), so a written frame still costs its bytes until the next write completes or the stream ends:
    counted otherwise, 2,000 never-reading listeners each hid a MiB in gRPC (a node grew by 64 MiB/s)."""

    def __init__(self, delivery: Delivery, context: Any, stall_s: float) -> None:
        self._delivery = delivery
        self._context = context
        self._stall_s = stall_s
        self._held_bytes = 0  # the last frame written, which gRPC may still hold

    async def send(self, frame: bytes, reserved: int) -> None:
        """Write a frame read under `reserved` (0: none made); a client that takes none for the send-stall
        timeout ends the stream (SessionFailure)."""
        self._delivery.resize(reserved, len(frame))
        try:
            await send_within(self._context, frame, self._stall_s, "Listen frame")
        except BaseException:
            self._delivery.release(len(frame), ended=True)
            raise
        self._delivery.release(self._held_bytes)  # gRPC took this frame: it has sent the one before
        self._held_bytes = len(frame)

    def close(self) -> None:
        self._delivery.release(self._held_bytes, ended=True)
        self._held_bytes = 0


def _excess(frame_bytes: int) -> int:
    """What a frame takes from the shared bytes: what it holds beyond a listener's own minimum."""
    return max(0, frame_bytes - limits.LISTEN_FRAME_BYTES_MIN)


class ListenService:
    def __init__(self, store: Store, feed: EventFeed, serving: ServingLimits) -> None:
        self._store = store
        self._feed = feed
        self._serving = serving
        self._reads = StoreReads(limits.LISTEN_READ_THREADS, limits.LISTEN_READ_BATCH_MAX)
        self._lock = threading.Lock()
        self._active = 0
        # Every listener's frames share its memory and its rate (event loop only).
        self._delivery = Delivery(serving.listen_bytes_per_s)
        self._positions: dict[int, tuple[str, int]] = {}  # stream id -> (topic, last offset sent), for lag

    def positions(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._positions.values())

    def count(self) -> int:
        with self._lock:
            return self._active

    def stop(self) -> None:
        self._reads.stop()

    def admit(self) -> str:
        """Count a new listener in; a reason (RESOURCE_EXHAUSTED) when the node has too many."""
        listeners_max = self._serving.listeners_max
        with self._lock:
            if self._active >= listeners_max:
                return f"this node serves {listeners_max} listeners already (listeners_max): retry later or elsewhere"
            self._active += 1
        return ""

    async def run(self, request: pb.ListenRequest, context: Any, member_step: MemberStep | None = None) -> None:
        """Serve one admitted listener until its call ends; raises SessionFailure to end it.
        `request.consumer`: a durable consumer; from offset 0, start after its acknowledged position.
        `member_step`: a group member's stream, sent instead of the topic's events."""
        stream_id = id(context)
        out = _Outbox(self._delivery, context, self._serving.stream_send_stall_s)
        try:
            if member_step is not None:
                await self._member(request, out, member_step)
                return
            from_offset = request.from_offset
            if request.consumer and not from_offset:
                from_offset = await self._read(self._position, request.topic, request.consumer)
            if request.snapshot:
                from_offset = await self._snapshot(request.topic, out)
            # From offset 0 (or a consumer's position) a listener starts at the oldest event kept;
            # one that asked for a trimmed offset is told where the topic starts (see _trimmed).
            earliest = not request.from_offset and not request.snapshot
            await self._stream(request.topic, from_offset, out, stream_id, earliest)
        finally:
            out.close()
            with self._lock:
                self._active -= 1
                self._positions.pop(stream_id, None)

    async def run_work(self, request: pb.WorkRequest, context: Any, step: WorkStep) -> None:
        """Serve one admitted worker's stream of calls (pipelines) until its call ends; like a group member's."""
        out = _Outbox(self._delivery, context, self._serving.stream_send_stall_s)
        try:
            await self._member(request, out, step)  # type: ignore[arg-type]
        finally:
            out.close()
            with self._lock:
                self._active -= 1

    def _first_kept(self, topic: str) -> int:
        data = self._store.get(Keys.topic(topic))
        return 1 if data is None else TopicRecord.decode(data).first_offset

    def _position(self, topic: str, consumer: str) -> int:
        data = self._store.consumer_record(topic, consumer)
        record = None if data is None else ConsumerRecord.decode(data)
        return record.acked_offset if record is not None and record.kind == DURABLE else 0

    async def _member(self, request: pb.ListenRequest, out: _Outbox, step: MemberStep) -> None:
        sent_grant = 0
        while True:
            version = self._feed.version()
            frame, sent_grant = await self._read(step, self._store, request, sent_grant)
            if frame is not None:
                await out.send(frame, 0)
            else:
                await self._feed.wait_newer(version, LISTEN_WAIT_S)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._reads(fn, *args)

    async def _snapshot(self, topic: str, out: _Outbox) -> int:
        """Frames of live keys; the last one says which offset they reflect. Returns that offset."""
        through, items = await self._read(self._store.view_snapshot, topic)
        frames = _SnapshotFrames(items)
        while True:
            reserved = await self._delivery.reserve()
            try:
                frame, more = await self._read(frames.next, reserved)
            except BaseException:
                self._delivery.unread(reserved, ended=True)
                raise
            if not more:
                frame.snapshot_offset = through
                frame.snapshot_end = True
            await out.send(frame.SerializeToString(), reserved)
            if not more:
                return through

    def _events_after(self, topic: str, after: int, bytes_max: int, check_trimmed: bool) -> list[bytes]:
        """On a read thread: the events after `after` within `bytes_max` (one larger event whole); with
        `check_trimmed` (a listener's first read, from an offset it chose), first SessionFailure (OUT_OF_RANGE)
        when its next event was trimmed. One read, not two: a listener's open cost the event loop a hand-off to
        the read threads and back for its first kept offset, then another for its first frame."""
        if check_trimmed:
            first_kept = self._first_kept(topic)
            if after + 1 < first_kept:
                raise _trimmed(topic, after, first_kept)
        return self._store.read_events(topic, after, limits.LISTEN_FRAME_EVENTS_MAX, bytes_max)

    async def _read_frame(
        self, topic: str, after: int, reserved: int, check_trimmed: bool = False
    ) -> tuple[list[bytes], int]:
        """The events after `after` that fit `reserved` bytes, and the reservation they hold: when the next
        event alone is larger, it is let go, the reservation grows (waiting for room) and it is read again."""
        events = await self._read(self._events_after, topic, after, reserved, check_trimmed)
        size = sum(len(e) for e in events)
        if size <= reserved:
            return events, reserved
        if self._delivery.grow_now(reserved, size):  # room for it now: kept, not read a second time
            return events, size
        del events  # one event larger than the reservation: not held while waiting for room
        grown = await self._delivery.grow(reserved, size)
        try:
            events = await self._read(self._store.read_events, topic, after, limits.LISTEN_FRAME_EVENTS_MAX, grown)
        except BaseException:
            self._delivery.resize(grown, reserved)  # back to what the caller will let go of
            raise
        return events, grown

    async def _stream(self, topic: str, after: int, out: _Outbox, stream_id: int, earliest: bool = False) -> None:
        at_head = False  # until a read shows it: its last frame was small, or there was nothing to read
        check_trimmed = not earliest  # the first read: an offset the listener chose may have been trimmed
        while True:
            with self._lock:
                self._positions[stream_id] = (topic, after)
            version = self._feed.version()
            reserved = await self._delivery.reserve(at_head)
            try:
                events, reserved = await self._read_frame(topic, after, reserved, check_trimmed)
            except BaseException:
                self._delivery.unread(reserved, ended=True)
                raise
            check_trimmed = False  # later reads see a trim in the first offset they get (below)
            if events:
                first = pb.Event.FromString(events[0]).consequence_offset
                if first != after + 1:  # retention trimmed what this listener was to read next
                    if not earliest:
                        self._delivery.unread(reserved, ended=True)
                        raise _trimmed(topic, after, first)
                    after = first - 1
                earliest = False
                after += len(events)  # consequence offsets are gapless per topic from the first kept
                frame = encode_listen_frame(events)
                at_head = len(frame) < limits.LISTEN_FRAME_BYTES_MIN
                await out.send(frame, reserved)
            else:
                at_head = True
                self._delivery.unread(reserved)
                await self._feed.wait_newer(version, LISTEN_CAUGHT_UP_WAIT_S, topic)


def _trimmed(topic: str, after: int, first: int) -> SessionFailure:
    """OUT_OF_RANGE for a listener whose next event was trimmed; the phrase "the first available
    offset is N" is part of the protocol (docs/protocol.md, "Retention"): clients parse N from it."""
    return SessionFailure(
        grpc.StatusCode.OUT_OF_RANGE,
        f"event {after + 1} of topic {topic!r} was trimmed by the topic's retention: the first available offset is "
        f"{first} (listen from offset {first - 1} for it, or from 0 for the oldest event kept)",
    )


class _SnapshotFrames:
    """Cuts a snapshot's live keys into frames of at most LISTEN_FRAME_EVENTS_MAX events and
    `bytes_max` bytes (one key always fits); `next` runs on a read thread."""

    def __init__(self, items: Iterator[tuple[bytes, ViewRecord]]) -> None:
        self._items = items
        self._held: tuple[bytes, ViewRecord] | None = None  # read, and did not fit the last frame

    def next(self, bytes_max: int) -> tuple[pb.ListenFrame, bool]:
        """The next frame, and whether more keys follow it."""
        frame = pb.ListenFrame()
        size = 0
        while True:
            item = self._held if self._held is not None else next(self._items, None)
            self._held = None
            if item is None:
                return frame, False
            key, record = item
            if frame.snapshot and (
                len(frame.snapshot) >= limits.LISTEN_FRAME_EVENTS_MAX or size + len(record.value) > bytes_max
            ):
                self._held = item
                return frame, True
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
