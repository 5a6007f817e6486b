"""The parts that keep never-reading listeners and too many connections from costing the node its other clients: store
reads that share their lock, the listeners' delivery budget (laminar/node/service/_listen.py), the connection gate."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from laminar import limits
from laminar.node.service import connection_limits
from laminar.node.service._listen import Delivery, _Outbox
from laminar.node.service._server import ConnectionGate
from laminar.node.store import Store
from laminar.node.store._store import SharedLock

WAIT_S = 2.0


def _in_thread(fn) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_a_store_read_does_not_wait_for_another_threads_long_read(tmp_path: Path) -> None:
    """While one thread is inside a read (a listener scanning a MiB of events), another thread's get (the apply
    thread's client lookup, a Hello's check) completes at once instead of queueing on one exclusive lock."""
    store = Store(str(tmp_path / "store"))
    inside, leave = threading.Event(), threading.Event()

    def long_read() -> None:
        with store._lock.reading:
            inside.set()
            leave.wait(WAIT_S * 2)

    reader = _in_thread(long_read)
    assert inside.wait(WAIT_S)
    getter = _in_thread(lambda: store.get(b"some key"))
    getter.join(WAIT_S)
    finished = not getter.is_alive()
    leave.set()
    reader.join(WAIT_S)
    store.close()
    assert finished, "a get waited for another thread's read"


def test_a_writer_waits_for_readers_and_keeps_new_ones_out() -> None:
    """The writer side (a snapshot install closing the database) waits until every read in progress has left,
    and no read starts while it waits or holds it: a reader never sees a closed handle."""
    lock = SharedLock()
    order: list[str] = []
    lock.reading.__enter__()
    writer = _in_thread(lambda: (lock.writing.__enter__(), order.append("write"), lock.writing.__exit__()))
    writer.join(0.2)
    assert writer.is_alive(), "the writer did not wait for the read in progress"
    late = _in_thread(lambda: (lock.reading.__enter__(), order.append("late read"), lock.reading.__exit__()))
    late.join(0.2)
    assert late.is_alive() and not order, "a new read started while a writer waited"
    lock.reading.__exit__()
    writer.join(WAIT_S)
    late.join(WAIT_S)
    assert order == ["write", "late read"]


def _full_frames(delivery: Delivery, seconds: float, at_head: bool = False) -> int:
    """Bytes of full frames 8 listeners got through `delivery` in `seconds` (each frame taken at once)."""
    sent = [0]

    async def listener() -> None:
        while True:
            reserved = await delivery.reserve(at_head)
            delivery.resize(reserved, reserved)
            sent[0] += reserved
            delivery.release(reserved)
            await asyncio.sleep(0)

    async def run() -> None:
        tasks = [asyncio.create_task(listener()) for _ in range(8)]
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    return sent[0]


def test_listeners_frames_together_go_out_at_the_nodes_listener_rate() -> None:
    """Listeners whose clients take every frame at once (never-reading clients whose transports absorb it all) get
    no more than the rate plus one burst between them: they cannot take the node's cores from the log."""
    rate = 4 * limits.MIB
    sent = _full_frames(Delivery(bytes_per_s=rate), 0.5)
    assert sent <= rate * 0.5 + limits.LISTEN_BYTES_BURST_MAX + 8 * limits.LISTEN_FRAME_BYTES_MAX, sent
    assert sent >= rate * 0.25, f"the rate was not used: {sent}"


def test_a_listener_at_its_topics_head_is_served_before_those_reading_history() -> None:
    """With the rate spent and 50 listeners reading history waiting, one that follows its topic's head (its last frame
    was small) is granted first, and only the minimum frame: it is not queued behind the catching-up frames."""
    order: list[str] = []

    async def run() -> None:
        delivery = Delivery(bytes_per_s=limits.MIB)
        while delivery._refill() > 0:  # spend the burst
            delivery.resize(delivery._grant(False), limits.LISTEN_FRAME_BYTES_MAX)

        async def one(name: str, at_head: bool) -> None:
            reserved = await delivery.reserve(at_head)
            order.append(name)
            if at_head:
                assert reserved == limits.LISTEN_FRAME_BYTES_MIN

        behind = [asyncio.create_task(one(f"history-{n}", False)) for n in range(50)]
        await asyncio.sleep(0)
        head = asyncio.create_task(one("head", True))
        await asyncio.wait_for(head, 5)
        for t in behind:
            t.cancel()

    asyncio.run(run())
    assert order and order[0] == "head", order[:5]


def test_a_listener_always_has_its_minimum_frame_when_the_shared_bytes_are_taken() -> None:
    """With every shared byte held by frames their clients never take, another listener still gets a frame of
    LISTEN_FRAME_BYTES_MIN at once: no listener waits for another's frame to be taken."""

    async def run() -> int:
        delivery = Delivery(bytes_per_s=limits.LISTEN_BUFFERED_BYTES_MAX * 10.0)
        delivery.shared_bytes = limits.LISTEN_BUFFERED_BYTES_MAX
        return await asyncio.wait_for(delivery.reserve(), 1.0)

    assert asyncio.run(run()) == limits.LISTEN_FRAME_BYTES_MIN


class _TakesAll:
    """A Listen call whose transport takes every frame at once (as gRPC does, keeping it until it is sent)."""

    async def write(self, frame: bytes) -> None:
        pass


def test_a_frame_grpc_took_still_counts_until_the_next_one_is_taken() -> None:
    """gRPC completes a write as it takes the frame in and keeps it until it is sent: the frame's bytes stay counted
    until the listener's next frame is taken (or its stream ends), so never-reading listeners cannot hide a MiB each
    in gRPC beyond the budget."""
    frame_bytes = limits.LISTEN_FRAME_BYTES_MAX

    async def run() -> list[int]:
        delivery = Delivery(bytes_per_s=1e12)
        out = _Outbox(delivery, _TakesAll(), stall_s=1.0)
        seen = []
        for _ in range(2):
            reserved = await delivery.reserve()
            await out.send(b"x" * frame_bytes, reserved)
            seen.append(delivery.shared_bytes)
        out.close()
        seen.append(delivery.shared_bytes)
        return seen

    excess = frame_bytes - limits.LISTEN_FRAME_BYTES_MIN
    assert asyncio.run(run()) == [excess, excess, 0]


def test_a_listener_whose_next_event_does_not_fit_waits_for_room_holding_nothing() -> None:
    """A listener whose next event is larger than its reservation while the shared bytes are taken waits for room
    (its read let go of), and goes on once a frame is released: 2,000 listeners of 64 KiB events cannot each pin one
    over the budget."""

    async def run() -> tuple[bool, int]:
        delivery = Delivery(bytes_per_s=1e12)
        delivery.shared_bytes = limits.LISTEN_BUFFERED_BYTES_MAX
        grow = asyncio.create_task(delivery.grow(limits.LISTEN_FRAME_BYTES_MIN, 64 * limits.KIB))
        await asyncio.sleep(0.05)
        waited = not grow.done()
        delivery.release(limits.LISTEN_FRAME_BYTES_MAX)  # a frame its client took
        return waited, await asyncio.wait_for(grow, 1.0)

    waited, reserved = asyncio.run(run())
    assert waited, "the larger event was read with the shared bytes all taken"
    assert reserved == 64 * limits.KIB


def test_room_freed_at_once_goes_to_waiting_listeners_no_faster_than_the_rate() -> None:
    """When 2,000 never-reading listeners are cancelled, gRPC reports the cancels one by one and each frees room: the
    listeners waiting for room get it at the listener rate (plus one burst), not all at once, so the waiters whose
    own cancel is still on its way do not each read and write a frame for nothing while a good client's put waits
    for the event loop (before: every waiter that fitted was granted at once, 1,000 reads in 0.2 s)."""
    event_bytes = 64 * limits.KIB
    rate = 16 * limits.MIB  # bytes per second
    waiters = 200

    async def run() -> tuple[int, int]:
        delivery = Delivery(bytes_per_s=rate)
        delivery.shared_bytes = limits.LISTEN_BUFFERED_BYTES_MAX
        grows = [asyncio.create_task(delivery.grow(limits.LISTEN_FRAME_BYTES_MIN, event_bytes)) for _ in range(waiters)]
        await asyncio.sleep(0.05)  # they all wait for room; the rate refills meanwhile (to one burst at most)
        delivery.release(limits.LISTEN_BUFFERED_BYTES_MAX)  # every frame in flight let go of at once
        await asyncio.sleep(0)
        at_once = sum(g.done() for g in grows)
        await asyncio.wait_for(asyncio.gather(*grows), 10.0)
        return at_once, sum(g.done() for g in grows)

    at_once, finally_granted = asyncio.run(run())
    charge = event_bytes - limits.LISTEN_FRAME_BYTES_MIN
    assert at_once <= limits.LISTEN_BYTES_BURST_MAX // charge + 1, at_once
    assert finally_granted == waiters  # all of them, at the rate: (200 x 48 KiB - 1 MiB) / 16 MiB/s ~ 0.5 s


def test_calls_on_a_connection_past_connections_max_are_refused_and_its_own_go_on() -> None:
    """The connection gate counts connections with a call open: a call on a new connection past connections_max is
    refused, another call on a connection already counted is not, and a connection whose calls all ended frees room;
    gRPC accepts an eighth more connections (at least 16) so their calls are answered."""
    gate = ConnectionGate(2)
    assert gate.enter("ipv4:127.0.0.1:1") and gate.enter("ipv4:127.0.0.1:2")
    assert not gate.enter("ipv4:127.0.0.1:3")
    assert gate.enter("ipv4:127.0.0.1:1")  # a second call on a counted connection
    gate.leave("ipv4:127.0.0.1:2")
    assert gate.enter("ipv4:127.0.0.1:3")
    assert connection_limits(8192, 65536) == (8192, 8192 + 1024)
    assert connection_limits(6, 65536) == (6, 6 + limits.CONNECTIONS_OVER_MAX_ANSWERED_MIN)
    served, accepted = connection_limits(8192, 10_000)  # the descriptor limit caps both, keeping the answered margin
    assert accepted == 10_000 - limits.CONNECTION_FDS_RESERVED and served == accepted - 1024


def test_a_hello_at_nonce_one_opens_a_session_even_with_the_unary_pool_full() -> None:
    """A new client (Hello at nonce 1) can never be ahead of its applied nonces, so its Hello is not checked on the
    unary pool: thousands of new or idle sessions cost the pool nothing, and a full pool (a Get flood) does not keep
    a new client out."""
    from types import SimpleNamespace

    from laminar.node.config import ServingLimits
    from laminar.node.service._server import Exhausted
    from laminar.node.service._sessions import SessionRouter
    from laminar.v1 import laminar_pb2 as pb

    async def full_pool(fn, *args):  # type: ignore[no-untyped-def]
        raise Exhausted("this node has 260 unary calls running or waiting: retry later", 200)

    node = SimpleNamespace(
        observe_commit_latency=None,
        offer=None,
        topic_run_max=None,
        nonce_max=None,
        is_leader=None,
        welcome=None,
        read_barrier=None,
    )
    router = SessionRouter(node, ServingLimits(), full_pool)  # type: ignore[arg-type]
    hello = pb.ClientFrame(hello=pb.Hello(client_id=bytes(16), next_nonce=1)).SerializeToString()

    class Context:
        async def read(self) -> bytes:
            return hello

    assert asyncio.run(router._hello(Context())).next_nonce == 1


def test_a_listener_caught_up_on_its_topic_is_not_woken_by_events_of_other_topics() -> None:
    """A caught-up listener waits on its topic's bucket: events applied on a topic of another bucket do not wake it
    (2,000 such listeners each read the store on every entry of any topic), events of its own topic do at once."""
    from laminar.node.service._listen import EventFeed, _bucket

    other = next(f"other-{n}" for n in range(1000) if _bucket(f"other-{n}") != _bucket("mine"))

    async def run() -> tuple[bool, bool]:
        feed = EventFeed()
        feed.attach(asyncio.get_running_loop())
        version = feed.version()
        waiting = asyncio.create_task(feed.wait_newer(version, 5.0, "mine"))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(feed.publish, {other: 1})  # the apply thread, another topic
        await asyncio.sleep(0.2)
        woken_by_other = waiting.done()
        await asyncio.to_thread(feed.publish, {"mine": 1})
        await asyncio.wait_for(waiting, 1.0)
        return woken_by_other, waiting.done()

    woken_by_other, woken_by_mine = asyncio.run(run())
    assert not woken_by_other and woken_by_mine


def test_the_feed_wakes_the_event_loop_only_while_a_listener_waits() -> None:
    """Events applied while no listener waits cost the event loop no wake-up (each one competed with the
    session writer carrying the ack of a sequential write); a listener that then waits with the old version
    returns at once, and one that waits for newer events is woken by the next publish."""
    from laminar.node.service._listen import EventFeed

    async def run() -> tuple[int, bool, bool]:
        loop = asyncio.get_running_loop()
        wakes = []
        feed = EventFeed()
        feed.attach(loop)
        original = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any) -> Any:
            if callback == feed._wake:  # not asyncio.to_thread's own hand-backs
                wakes.append(callback)
            return original(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        version = feed.version()
        for _ in range(3):
            await asyncio.to_thread(feed.publish, {"mine": 1})  # the apply thread, nobody waiting
        wakes_unwaited = len(wakes)
        stale = asyncio.create_task(feed.wait_newer(version, 5.0, "mine"))
        await asyncio.sleep(0.05)
        returned_at_once = stale.done()
        waiting = asyncio.create_task(feed.wait_newer(feed.version(), 5.0))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(feed.publish, {"mine": 1})
        await asyncio.wait_for(waiting, 1.0)
        return wakes_unwaited, returned_at_once, waiting.done()

    wakes_unwaited, returned_at_once, woken = asyncio.run(run())
    assert wakes_unwaited == 0
    assert returned_at_once and woken


def test_listeners_store_reads_of_one_loop_turn_cost_the_loop_a_few_wake_ups_not_one_each(tmp_path: Path) -> None:
    """2,000 listeners cancelled at once each woke to read a frame: a read per `run_in_executor` cost the event loop a
    hand-off (and a lock shared with the read thread) per read, 39% of the loop while the good client's acks waited.
    200 reads asked in one turn of the loop now wake it at most once per batch of LISTEN_READ_BATCH_MAX (counted, not
    timed); each caller gets its own result or error, and a read whose stream ended before its batch left is not run."""
    from laminar.node.config import ServingLimits
    from laminar.node.service._listen import EventFeed, ListenService

    store = Store(str(tmp_path / "store"))
    service = ListenService(store, EventFeed(), ServingLimits())
    ran: list[int] = []

    def read(n: int) -> int:
        ran.append(n)
        if n == 7:
            raise LookupError("seven")
        return n * 2

    async def run() -> tuple[int, list[Any]]:
        loop = asyncio.get_running_loop()
        wakes = [0]
        original = loop.call_soon_threadsafe

        def counted(callback: Any, *args: Any) -> Any:
            wakes[0] += 1
            return original(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        tasks = [asyncio.ensure_future(service._read(read, n)) for n in range(200)]
        tasks[9].cancel()  # its stream ended in the same turn
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return wakes[0], results

    try:
        wakes, results = asyncio.run(run())
    finally:
        service.stop()
        store.close()
    batches_max = -(-200 // limits.LISTEN_READ_BATCH_MAX) + limits.LISTEN_READ_THREADS
    assert wakes <= batches_max, f"{wakes} wake-ups of the loop for 200 reads of one turn"
    assert [r for n, r in enumerate(results) if n not in (7, 9)] == [n * 2 for n in range(200) if n not in (7, 9)]
    assert isinstance(results[7], LookupError) and isinstance(results[9], asyncio.CancelledError)
    assert 9 not in ran and len(ran) == 199


def test_a_snapshot_install_wakes_the_listeners_of_every_topic() -> None:
    """The applier publishes EVERY_TOPIC when a snapshot install replaced the store: listeners waiting on any bucket
    wake and re-read (they no longer poll every second, so nothing else would tell them of the new store's events)."""
    from laminar.node.service._listen import EVERY_TOPIC, EventFeed, _bucket

    topics = {_bucket(f"t-{n}"): f"t-{n}" for n in range(2000)}  # one topic per bucket it reaches

    async def run() -> int:
        feed = EventFeed()
        feed.attach(asyncio.get_running_loop())
        version = feed.version()
        waiting = [asyncio.create_task(feed.wait_newer(version, 30.0, topic)) for topic in topics.values()]
        await asyncio.sleep(0.05)
        await asyncio.to_thread(feed.publish, {EVERY_TOPIC: 0})  # the apply thread, after an install
        done, _ = await asyncio.wait(waiting, timeout=2.0)
        for task in waiting:
            task.cancel()
        return len(done)

    assert len(topics) > 200
    assert asyncio.run(run()) == len(topics)


def test_a_listener_caught_up_on_a_quiet_topic_waits_for_news_not_for_a_poll_every_second(tmp_path: Path) -> None:
    """A caught-up listener of a topic without news waits LISTEN_CAUGHT_UP_WAIT_S for it, not 1 s: 2,000 of them
    polling every second cost the leader ~0.1 core of store reads and loop turns for nothing (publishes and
    installs wake it; a call that ends cancels it)."""
    from laminar.node.config import ServingLimits
    from laminar.node.service._listen import LISTEN_CAUGHT_UP_WAIT_S, EventFeed, ListenService
    from laminar.v1 import laminar_pb2 as pb

    store = Store(str(tmp_path / "store"))
    feed = EventFeed()
    service = ListenService(store, feed, ServingLimits())
    waits: list[float] = []
    original = feed.wait_newer

    async def recorded(version: int, timeout_s: float, topic: str | None = None) -> None:
        waits.append(timeout_s)
        await original(version, timeout_s, topic)

    feed.wait_newer = recorded  # type: ignore[method-assign]

    async def run() -> None:
        feed.attach(asyncio.get_running_loop())
        assert not service.admit()
        listener = asyncio.create_task(service.run(pb.ListenRequest(topic="quiet"), object()))
        while not waits:
            await asyncio.sleep(0.01)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)

    try:
        asyncio.run(asyncio.wait_for(run(), 10.0))
    finally:
        service.stop()
        store.close()
    assert waits == [LISTEN_CAUGHT_UP_WAIT_S] and LISTEN_CAUGHT_UP_WAIT_S >= 10.0


def _reads_until_waiting(tmp_path: Path, request: Any, first_kept: int = 1) -> tuple[list[str], BaseException | None]:
    """The store reads (by function name) a listener makes from its open until it waits for news or ends, and how
    it ended (None: it waits)."""
    from laminar.node.config import ServingLimits
    from laminar.node.service._listen import EventFeed, ListenService
    from laminar.node.store import AppliedMark, Keys, TopicRecord, WriteSet

    store = Store(str(tmp_path / "store"))
    if first_kept > 1:  # retention trimmed the topic's events before first_kept
        writes = WriteSet()
        record = TopicRecord(True, first_kept, 1, "", b"", first_offset=first_kept)
        writes.put(Keys.topic(request.topic), record.encode())
        store.commit(writes, AppliedMark(1, 1))
    feed = EventFeed()
    service = ListenService(store, feed, ServingLimits())
    reads: list[str] = []
    waiting = threading.Event()
    original_read, original_wait = service._read, feed.wait_newer

    async def counted_read(fn: Any, *args: Any) -> Any:
        reads.append(fn.__name__)
        return await original_read(fn, *args)

    async def noted_wait(version: int, timeout_s: float, topic: str | None = None) -> None:
        waiting.set()
        await original_wait(version, timeout_s, topic)

    service._read = counted_read  # type: ignore[method-assign]
    feed.wait_newer = noted_wait  # type: ignore[method-assign]

    async def run() -> BaseException | None:
        feed.attach(asyncio.get_running_loop())
        assert not service.admit()
        listener = asyncio.create_task(service.run(request, object()))
        while not waiting.is_set() and not listener.done():
            await asyncio.sleep(0.01)
        ended = listener.exception() if listener.done() else None
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        return ended

    try:
        ended = asyncio.run(asyncio.wait_for(run(), 10.0))
    finally:
        service.stop()
        store.close()
    return reads, ended


def test_a_listener_opens_with_one_store_read(tmp_path: Path) -> None:
    """A listener's open reads the store once (its first frame, and for an offset it chose, whether that was trimmed,
    in the same read), not twice: each read is a hand-off to the read threads and a wake-up of the event loop, and
    2,000 listeners opened at once took the leader's loop ~0.75 s. A trimmed offset is still refused at once."""
    from laminar.node.service._sessions import SessionFailure
    from laminar.v1 import laminar_pb2 as pb

    for request in (pb.ListenRequest(topic="quiet"), pb.ListenRequest(topic="quiet", from_offset=5)):
        reads, ended = _reads_until_waiting(tmp_path / str(request.from_offset), request)
        assert ended is None and len(reads) == 1, f"{request}: {reads}"
    reads, ended = _reads_until_waiting(tmp_path / "trimmed", pb.ListenRequest(topic="t", from_offset=5), 10)
    assert isinstance(ended, SessionFailure) and "the first available offset is 10" in str(ended), ended
    assert len(reads) == 1


def test_a_listener_whose_next_event_is_larger_than_its_reservation_reads_it_once_when_there_is_room(
    tmp_path: Path,
) -> None:
    """An event larger than a listener's reservation (a 64 KiB event, 16 KiB reserved at its topic's head) that fits
    the shared bytes now is kept and sent: one store read, not a read, a let-go and the same read again (a hand-off
    to the read threads and a loop wake-up more per frame). Its reservation grows to the event's size."""
    from laminar.node.config import ServingLimits
    from laminar.node.service._listen import EventFeed, ListenService

    store = Store(str(tmp_path / "store"))
    service = ListenService(store, EventFeed(), ServingLimits())
    big = b"x" * (64 * limits.KIB)
    reads: list[int] = []

    def read_events(topic: str, after: int, count_max: int, bytes_max: int) -> list[bytes]:
        reads.append(bytes_max)
        return [big]

    store.read_events = read_events  # type: ignore[method-assign]

    async def run() -> tuple[list[bytes], int]:
        return await service._read_frame("t", 0, limits.LISTEN_FRAME_BYTES_MIN)

    try:
        events, reserved = asyncio.run(asyncio.wait_for(run(), 10.0))
    finally:
        service.stop()
        store.close()
    assert events == [big] and reserved == len(big)
    assert reads == [limits.LISTEN_FRAME_BYTES_MIN], reads
    assert service._delivery.shared_bytes == len(big) - limits.LISTEN_FRAME_BYTES_MIN


def test_news_wakes_a_buckets_listeners_a_few_per_turn_of_the_loop_not_all_at_once() -> None:
    """2,000 listeners caught up on one topic and woken by its first event resume at most LISTEN_WAKES_PER_TURN_MAX
    per turn of the event loop (counted by a task that steps once per turn), all of them in the end: woken in one
    turn, they held a session's reads and acks for 2,000 task steps. A listener that stopped waiting is skipped."""
    from laminar.node.service._listen import EventFeed

    listeners = 2000

    async def run() -> tuple[int, int]:
        feed = EventFeed()
        feed.attach(asyncio.get_running_loop())
        resumed = [0]

        async def listener() -> None:
            await feed.wait_newer(0, 30.0, "bulk")
            resumed[0] += 1

        async def turns() -> int:
            """The most listeners resumed between two of its steps (one a turn), until all have."""
            per_turn = last = 0
            while last < listeners - 1:
                await asyncio.sleep(0)
                per_turn, last = max(per_turn, resumed[0] - last), resumed[0]
            return per_turn

        tasks = [asyncio.create_task(listener()) for _ in range(listeners)]
        await asyncio.sleep(0.05)
        tasks[0].cancel()  # its stream ended before the news
        counting = asyncio.create_task(turns())
        await asyncio.to_thread(feed.publish, {"bulk": 1})
        per_turn = await counting
        await asyncio.gather(*tasks, return_exceptions=True)
        return per_turn, resumed[0]

    per_turn, resumed = asyncio.run(asyncio.wait_for(run(), 10.0))
    assert resumed == listeners - 1
    assert per_turn <= limits.LISTEN_WAKES_PER_TURN_MAX, f"{per_turn} listeners resumed in one turn of the loop"


def test_room_freed_by_ending_listeners_goes_to_waiters_after_the_cancels_around_it_came_in() -> None:
    """When never-reading listeners are cancelled at once, gRPC reports the cancels one by one: the room of each that
    ends goes to the listeners waiting for room LISTEN_ENDED_ROOM_DELAY_S later, so a waiter whose own cancel comes
    within that time writes no frame for nothing (before: the room of the first went at once to as many waiters as the
    rate's burst allowed, each reading and writing a frame). A waiter that stays gets the room then."""
    event_bytes = 64 * limits.KIB
    waiters = 100

    async def run() -> tuple[int, float]:
        delivery = Delivery(bytes_per_s=16 * limits.MIB)
        delivery.shared_bytes = limits.LISTEN_BUFFERED_BYTES_MAX
        wrote: list[int] = []

        async def listener(n: int) -> None:
            await delivery.grow(limits.LISTEN_FRAME_BYTES_MIN, event_bytes)
            wrote.append(n)  # it would now write a frame

        doomed = [asyncio.create_task(listener(n)) for n in range(waiters)]
        stays = asyncio.create_task(listener(-1))
        await asyncio.sleep(0.05)  # all wait for room
        started = time.monotonic()
        for n in range(waiters):  # the cancels as gRPC reports them: a listener holding a frame ends, then a waiter
            delivery.release(event_bytes, ended=True)
            doomed[n].cancel()
            await asyncio.sleep(0.001)
        await asyncio.wait_for(stays, 5.0)
        await asyncio.gather(*doomed, return_exceptions=True)
        return len([n for n in wrote if n >= 0]), time.monotonic() - started

    for_nothing, waited_s = asyncio.run(run())
    assert for_nothing == 0, f"{for_nothing} waiters cancelled right after were given room and wrote a frame"
    assert waited_s < limits.LISTEN_ENDED_ROOM_DELAY_S + 2.0
