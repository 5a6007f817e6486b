"""Client sessions on the leader: read frames, check them, hand them to the proposer, send acks.

Each Session RPC is one coroutine on the server's event loop (the writer) and one task (the reader);
no thread is held by a session, so an idle one costs memory only. Acks never block the apply
thread: outcomes are appended to the session under a lock, and the event loop is woken (once per
batch of news, with `call_soon_threadsafe`) to send whatever has accumulated as one frame.

Bounds: a session that lets too many acks pile up (a client that does not read) is cut with
RESOURCE_EXHAUSTED, as is one whose Acks frame is not taken within the send-stall timeout; a session
with SESSION_UNCOMMITTED_BYTES_MAX offered and not yet committed is not read from until they commit
(flow control: the client is slowed, the shared proposal queue stays open to the others); an idle
session (nothing sent, nothing uncommitted) is closed after the idle timeout.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from laminar import _rules, limits
from laminar._wire import field_spans, only_field_payloads
from laminar.node._entry import encode_run
from laminar.node.config import ServingLimits
from laminar.node.raft import Proposal
from laminar.node.service._api import NodeApi
from laminar.node.service._turns import FrameTurns
from laminar.v1 import laminar_pb2 as pb

if TYPE_CHECKING:
    from laminar.node.state_machine import Outcome

log = logging.getLogger("laminar.session")

SESSION_ACKS_PENDING_MAX = 4 * limits.CLIENT_INFLIGHT_MAX  # outcomes waiting to be sent to one client
SESSION_OFFER_TIMEOUT_S = 30.0  # how long a frame may wait for room in the proposal queue
OFFER_RETRY_S_MIN = 0.0005  # a frame that found the proposal queue full tries again after this,
OFFER_RETRY_S_MAX = 0.02  # doubling up to this (the event loop is never blocked waiting for room)
HELLO_TIMEOUT_S = 10.0  # a client must say hello within this time
# The idle reaper checks every session this many times per session_idle_s: an idle session is closed between
# session_idle_s and (1 + 1/SESSION_IDLE_CHECKS) x session_idle_s after its last frame.
SESSION_IDLE_CHECKS = 4
HELLO_CATCH_UP_WAIT_S = 3.0  # how long a Hello ahead of the applied nonces waits for a read barrier
# What an intention of each kind weighs in flight (limits.INTENTION_COST_*); a kind not named weighs 1, as a put.
_INTENTION_COSTS = {pb.CREATE_TOPIC: limits.INTENTION_COST_TOPIC, pb.DESTROY_TOPIC: limits.INTENTION_COST_TOPIC}
_TOPIC_KINDS = frozenset((pb.CREATE_TOPIC, pb.DESTROY_TOPIC))  # paced in flight by time (raft/_pace.py)


class SessionFailure(Exception):
    """How a session ends: the status to answer with (UNAVAILABLE ones carry the leader hint)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Session:
    """One client's session: what it sent, what is committed, and the acks not yet sent.

    Producers (the tick thread's `received`, the apply thread's `committed`, `fail` from anywhere)
    write under `_lock` and call `_notify`, which wakes the event loop at most once until the
    writer has looked again."""

    def __init__(
        self,
        client_id: bytes,
        next_nonce: int,
        on_latency: Callable[[float], None] | None = None,
        received_acks: bool = True,
    ) -> None:
        self.client_id = client_id
        # False (Hello.commits_only): `received` alone wakes no writer and sends no frame; it rides
        # along with the next Commit. A lone write then costs the leader one event-loop wake-up and
        # the client one gRPC message instead of two of each.
        self.received_acks = received_acks
        # Named in every run this session proposes; outcomes of runs of other sessions (another writer
        # under the same client id, or this client's earlier session) are not this session's to report.
        self.token = secrets.randbits(64) | 1
        self._on_latency = on_latency
        # (last nonce, time offered, payload bytes) of each frame offered and not yet committed
        self._proposed: collections.deque[tuple[int, float, int]] = collections.deque()
        self.uncommitted_bytes = 0
        self.first_nonce = next_nonce
        self.expected_nonce = next_nonce  # raised by the reader before it hands a frame on
        self._committed_through = next_nonce - 1  # every nonce of this session up to it has its Commit queued
        self._lock = threading.Lock()
        self._commits: list[pb.Commit] = []
        self._received_through = 0
        self._received_sent = 0
        self._failure: SessionFailure | None = None
        self.open = True
        self.last_frame_at = time.monotonic()
        self.write_started_at: float | None = None  # the writer's Acks frame not yet taken by gRPC, since
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None  # the writer's: news to send
        self._settled: asyncio.Event | None = None  # the reader's: uncommitted bytes went down
        self._wake_pending = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the event loop before the session is registered: news then wakes it."""
        self._loop = loop
        self._changed = asyncio.Event()
        self._settled = asyncio.Event()

    # ---- producers (reader, proposer, tick and apply threads) ---------------------------------

    def received(self, through_nonce: int) -> None:
        with self._lock:
            wake = False
            if through_nonce > self._received_through:
                self._received_through = through_nonce
                wake = self.received_acks and self._wake_due()
        if wake:
            self._wake_loop()

    def committed(self, outcomes: list[Outcome]) -> None:
        """Queue the outcomes of nonces this session sent, each nonce once, in nonce order.

        After a fail-over the log can hold a nonce twice: in the old leader's entry, and in this
        session's resend, which the dedupe table answers with the same outcome. An older session's
        entries may also apply after this one began, for nonces it has not resent yet, or past a
        gap. Only the outcome that continues what this session reported is reported: this
        session's own entries follow in the log and give every nonce it sent an outcome, in order,
        so whatever is skipped here is reported from them."""
        with self._lock:
            if not self.open:
                return
            wake = self._committed_locked(outcomes)
        if wake:
            self._wake_loop()  # outside the lock: the woken writer's next_acks must not find it held

    def _committed_locked(self, outcomes: list[Outcome]) -> bool:
        """committed(), under the lock; whether to wake the event loop's writer."""
        through = self._committed_through
        for o in outcomes:
            if o.session and o.session != self.token:
                continue  # another session's run: this session's own runs give its nonces their outcomes
            if o.conflict and self.first_nonce <= o.nonce <= through:
                # This session resent the nonce with other contents, and its original outcome
                # was reported already (an old entry applied first): the client must hear of it.
                self._fail(grpc.StatusCode.INVALID_ARGUMENT, o.reason)
                return False  # _fail woke the writer
            if o.nonce > through + 1:
                continue  # past a gap: reported when this session's resend of it applies
            first = through + 1
            end = min(o.nonce + o.count, self.expected_nonce)
            if first >= end:
                continue
            offset = o.intention_offset + (first - o.nonce) if o.intention_offset else 0
            self._commits.append(
                pb.Commit(nonce=first, effect=o.effect, intention_offset=offset, reason=o.reason, count=end - first)  # type: ignore[arg-type]
            )
            through = end - 1
        if through == self._committed_through:
            return False
        self._committed_through = through
        # A committed nonce is in the log: it is received, even if the tick thread has not said so
        # yet (an entry can apply first). A Commit never arrives before its `received`.
        self._received_through = max(self._received_through, through)
        self._settle(through)
        if len(self._commits) > SESSION_ACKS_PENDING_MAX:
            self._fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "client is not reading its acks")
            return False  # _fail woke the writer
        return self._wake_due()

    def uncommitted_intentions(self) -> int:
        """Nonces this session has handed on and not yet seen committed."""
        with self._lock:
            return self.expected_nonce - 1 - self._committed_through

    def proposed(self, last_nonce: int, payload_bytes: int) -> None:
        with self._lock:
            self._proposed.append((last_nonce, time.monotonic(), payload_bytes))
            self.uncommitted_bytes += payload_bytes

    def _settle(self, newest_nonce: int) -> None:
        """Frames whose last nonce is now committed: their bytes leave the session's budget, and
        their commit latency is observed (under the lock)."""
        now = time.monotonic()
        while self._proposed and self._proposed[0][0] <= newest_nonce:
            _, offered_at, payload_bytes = self._proposed.popleft()
            self.uncommitted_bytes -= payload_bytes
            if self._on_latency is not None:
                self._on_latency(now - offered_at)

    def fail(self, code: grpc.StatusCode, message: str) -> None:
        with self._lock:
            self._fail(code, message)

    def _fail(self, code: grpc.StatusCode, message: str) -> None:
        if self._failure is None:
            self._failure = SessionFailure(code, message)
        self.open = False
        self._notify()

    def _notify(self) -> None:
        """Wake the event loop's writer (under the lock); one wake-up in flight at a time."""
        if self._wake_due():
            self._wake_loop()

    def _wake_due(self) -> bool:
        """Under the lock: whether a wake-up must be sent (none is in flight); if so, one now is."""
        if self._loop is None or self._wake_pending:
            return False
        self._wake_pending = True
        return True

    def _wake_loop(self) -> None:
        """Send the wake-up `_wake_due` asked for. Called outside the lock where the caller can: the
        self-pipe write lets the event loop run at once, and a writer that then found the lock still held
        blocked on it and waited for the interpreter again (measured: p90 115 us, p99 400 us per next_acks
        on a leader's sequential writes)."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: the node is stopping
            pass

    def _wake(self) -> None:
        assert self._changed is not None and self._settled is not None
        self._changed.set()
        self._settled.set()

    # ---- the writer and the reader (event loop) ---------------------------------------------

    async def changed(self) -> None:
        """Wait until a producer has news (a failure included: the idle reaper's too). No timer of its own."""
        assert self._changed is not None
        await self._changed.wait()
        self._changed.clear()

    def wake_reader(self) -> None:
        """Event loop: the writer took news (commits among it, maybe): the reader waiting for room looks again. A
        commit that came while a wake-up was pending (the writer busy writing) sent none of its own, and the reader,
        woken by that earlier one while still over its bound, slept to its 1 s re-check."""
        assert self._settled is not None
        self._settled.set()

    async def settled(self, timeout_s: float) -> None:
        """Wait until something commits (or fails), or timeout_s passes: the reader's wait for room."""
        assert self._settled is not None
        self._settled.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._settled.wait()
        except TimeoutError:
            pass

    def ack_untaken_s(self) -> float:
        """How long the writer has waited for gRPC to take its Acks frame (0: it is not waiting)."""
        started = self.write_started_at
        return 0.0 if started is None else time.monotonic() - started

    def idle(self, idle_s: float) -> bool:
        with self._lock:
            nothing_pending = self._committed_through >= self.expected_nonce - 1 and not self._commits
        return nothing_pending and time.monotonic() - self.last_frame_at > idle_s

    def next_acks(self) -> pb.Acks | None:
        """What to send now, if anything; raises the session's failure once everything before it is sent."""
        with self._lock:
            self._wake_pending = False
            if self._commits or (self.received_acks and self._received_through > self._received_sent):
                # Commits with long reasons (a program's, one per message) could outgrow a 4 MiB frame.
                commits = self._commits[: limits.ACKS_FRAME_COMMITS_MAX]
                acks = pb.Acks(received_through=self._received_through, commits=commits)
                del self._commits[: len(commits)]
                self._received_sent = self._received_through
                return acks
            if self._failure is not None:
                raise self._failure
            return None


def _decoded(raw: bytes) -> pb.ClientFrame:
    """Parse a frame ourselves so a malformed or oversized one gets INVALID_ARGUMENT with a reason."""
    if len(raw) > limits.GRPC_MESSAGE_BYTES_MAX:
        raise SessionFailure(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"a frame is {len(raw)} bytes; the limit is {limits.GRPC_MESSAGE_BYTES_MAX} bytes (4 MiB): "
            "send fewer mutations per frame",
        )
    if not raw:
        raise SessionFailure(
            grpc.StatusCode.INVALID_ARGUMENT, "an empty ClientFrame: a frame holds a Hello or mutations"
        )
    try:
        return pb.ClientFrame.FromString(raw)
    except Exception as e:
        raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, f"frame is not a ClientFrame: {e}") from e


async def _read(context: Any) -> pb.ClientFrame | None:
    """The next frame, or None at the end of the client's stream."""
    raw = await context.read()
    if raw is grpc.aio.EOF:
        return None
    return _decoded(raw)


async def send_within(context: Any, message: Any, stall_s: float, what: str) -> None:
    """Write one message; a peer that has not taken it within stall_s (it does not read) is cut.
    (asyncio.timeout, not wait_for: no task per write on the path of every ack.)"""
    try:
        async with asyncio.timeout(stall_s):
            await context.write(message)
    except TimeoutError:
        raise SessionFailure(
            grpc.StatusCode.RESOURCE_EXHAUSTED, f"the client took no {what} for {stall_s:.0f} s: it must read"
        ) from None


def _mutation_frame_bytes(frame: pb.ClientFrame, raw: bytes) -> bytes | memoryview:
    """The frame's MutationFrame serialized: the bytes the client sent (with the principal the auth gate appended),
    not a copy, when the ClientFrame holds nothing but that field (what clients send); else serialized anew.
    Re-serializing cost the event loop ~1 us a mutation, ~1-3 ms for a 3 MiB frame."""
    payloads = only_field_payloads(raw, _CLIENT_FRAME_MUTATIONS)
    if not payloads:
        return frame.mutations.SerializeToString()
    return payloads[0] if len(payloads) == 1 else b"".join(payloads)


_CLIENT_FRAME_MUTATIONS = pb.ClientFrame.DESCRIPTOR.fields_by_name["mutations"].number


def _pieces(
    frame_bytes: bytes | memoryview,
    first_nonce: int,
    weights: list[int],
    topics: list[bool] | None = None,
    topic_run_max: int = 0,
) -> list[tuple[bytes | memoryview, int, int, int, int]]:
    """A serialized MutationFrame as the runs to propose: (frame bytes, first nonce, mutations, weighted
    intentions, topic creates and destroys) each. Usually the frame whole; one over RUN_BYTES_MAX or RUN_INTENTIONS_MAX
    (weighted), or with more than topic_run_max topic creates and destroys (`topics` marks them; the
    proposer's pace, raft/_pace.py), in consecutive pieces within them (a mutation over them alone), so
    that no entry a small writer waits behind holds a whole 4 MiB frame, or more than about half of
    ENTRIES_INFLIGHT_TOPIC_APPLY_MS_MAX of topic ops. A frame's mutations never relied on sharing an entry."""
    flags = topics if topics is not None else [False] * len(weights)  # none paced: topic_run_max is not used
    weighted, topic = sum(weights), sum(flags)
    if (
        len(frame_bytes) <= limits.RUN_BYTES_MAX
        and weighted <= limits.RUN_INTENTIONS_MAX
        and (topics is None or topic <= topic_run_max)
    ):
        return [(frame_bytes, first_nonce, len(weights), weighted, topic)]
    spans = field_spans(frame_bytes)
    mutation_spans = [(start, end) for field, start, end in spans if field == 1]
    # Fields other than the mutations (the principal, when authorization stamped it) go with every piece.
    trailer = b"".join(frame_bytes[start:end] for field, start, end in spans if field != 1)
    assert len(mutation_spans) == len(weights), (len(mutation_spans), len(weights))
    pieces: list[tuple[bytes | memoryview, int, int, int, int]] = []
    begin = size = weighted = topic = 0
    for i, ((start, end), weight, is_topic) in enumerate(zip(mutation_spans, weights, flags, strict=True)):
        if i > begin and (
            size + end - start > limits.RUN_BYTES_MAX
            or weighted + weight > limits.RUN_INTENTIONS_MAX
            or topic + is_topic > topic_run_max
        ):
            run = _joined(frame_bytes, mutation_spans[begin:i], trailer)
            pieces.append((run, first_nonce + begin, i - begin, weighted, topic))
            begin, size, weighted, topic = i, 0, 0, 0
        size += end - start
        weighted += weight
        topic += is_topic
    rest = mutation_spans[begin:]
    pieces.append((_joined(frame_bytes, rest, trailer), first_nonce + begin, len(rest), weighted, topic))
    return pieces


def _joined(frame_bytes: bytes | memoryview, spans: list[tuple[int, int]], trailer: bytes) -> bytes:
    view = memoryview(frame_bytes)  # slices of a view are not copies: the piece's bytes are copied once, by join
    return b"".join([*(view[start:end] for start, end in spans), trailer])


class SessionRouter:
    """Owns every session on this node and routes applied outcomes to them by client id."""

    def __init__(self, node: NodeApi, serving: ServingLimits, offload: Callable[..., Any]) -> None:
        # Bound once: the reader calls offer and is_leader for every frame.
        self._on_commit_latency = node.observe_commit_latency
        self._offer = node.offer
        self._topic_run_max = node.topic_run_max
        self._nonce_max = node.nonce_max
        self._is_leader = node.is_leader
        self._welcome = node.welcome
        # (timeout s) -> True once everything committed before the call is applied here
        self._read_barrier = node.read_barrier
        self._serving = serving
        self._offload = offload  # async (fn, *args) -> fn(*args) on a worker thread
        self._lock = threading.Lock()
        self._sessions: dict[bytes, _Session] = {}
        self._turns = FrameTurns()  # heavy frames one at a time on the event loop
        self._reaper: asyncio.Future[None] | None = None  # closes idle sessions, while any is open (event loop)

    def count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def deliver(self, outcomes: list[Outcome]) -> None:
        by_client: dict[bytes, list[Outcome]] = {}
        for o in outcomes:
            by_client.setdefault(o.client_id, []).append(o)
        with self._lock:
            targets = [(self._sessions.get(cid), group) for cid, group in by_client.items()]
        for session, group in targets:
            if session is not None:
                session.committed(group)

    def close_all(self, code: grpc.StatusCode, message: str) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.fail(code, message)

    async def run(self, context: Any) -> None:
        """Serve one Session RPC until it ends; raises SessionFailure with the status to end it with."""
        hello = await self._hello(context)
        session = _Session(
            bytes(hello.client_id), hello.next_nonce, self._on_commit_latency, received_acks=not hello.commits_only
        )
        session.attach(asyncio.get_running_loop())
        self._register(session)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._reap())
        reader = asyncio.create_task(self._read_frames(session, context))
        try:
            await context.write(pb.ServerFrame(welcome=self._welcome()))
            await self._write_acks(session, context)
        finally:
            reader.cancel()
            session.fail(grpc.StatusCode.CANCELLED, "session ended")
            self._unregister(session)

    async def _write_acks(self, session: _Session, context: Any) -> None:
        serving = self._serving
        while True:
            acks = session.next_acks()  # raises the session's failure once all before it is sent
            if acks is not None:
                session.wake_reader()
                session.write_started_at = time.monotonic()
                try:
                    await send_within(context, pb.ServerFrame(acks=acks), serving.stream_send_stall_s, "Acks frame")
                finally:
                    session.write_started_at = None
                continue
            await session.changed()

    async def _reap(self) -> None:
        """Close every idle session (nothing sent for session_idle_s, nothing uncommitted), checking them all
        SESSION_IDLE_CHECKS times per idle timeout: one task for the node's sessions, where each session's writer
        held a timer of its own and woke on it. Runs while any session is open."""
        idle_s = self._serving.session_idle_s
        while self.count():
            await asyncio.sleep(idle_s / SESSION_IDLE_CHECKS)
            with self._lock:
                sessions = list(self._sessions.values())
            for session in sessions:
                if session.idle(idle_s):
                    session.fail(
                        grpc.StatusCode.UNAVAILABLE,
                        f"session idle for {idle_s:.0f} s with nothing uncommitted: closed; "
                        "open a new one when you have something to send",
                    )

    async def _hello(self, context: Any) -> pb.Hello:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):  # not a task and a wait of its own per session opened
                frame = await _read(context)
        except TimeoutError:
            raise SessionFailure(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"no Hello within {HELLO_TIMEOUT_S:.0f} s of opening the session"
            ) from None
        if frame is None or frame.WhichOneof("body") != "hello":
            raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, "the first frame of a session must be a Hello")
        hello = frame.hello
        if len(hello.client_id) != 16:
            raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, "Hello.client_id must be 16 bytes (a UUID)")
        if hello.next_nonce < 1:
            raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, "Hello.next_nonce must be >= 1")
        if hello.next_nonce > 1:  # a client starting at nonce 1 is never ahead: no store read, no pool hop
            await self._offload(self._check_nonce_not_ahead, hello)
        return hello

    def _check_nonce_not_ahead(self, hello: pb.Hello) -> None:
        """A client may not start past its last applied nonce + 1: those would never apply. A client
        the cluster does not know has applied nothing, so it starts at 1. What this node applied may
        be behind what is committed (a new leader catching up): a read barrier settles it before
        the Hello is refused. (Runs on a worker thread: it reads the store and may wait.)"""
        if hello.next_nonce <= (self._nonce_max(bytes(hello.client_id)) or 0) + 1:
            return
        if not self._read_barrier(HELLO_CATCH_UP_WAIT_S):
            raise SessionFailure(grpc.StatusCode.UNAVAILABLE, "this node could not commit a read barrier")
        known = self._nonce_max(bytes(hello.client_id))
        nonce_max = 0 if known is None else known
        if hello.next_nonce <= nonce_max + 1:
            return
        if known is None:
            raise SessionFailure(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Hello.next_nonce {hello.next_nonce} for a client id the cluster does not know: a new "
                f"client starts at nonce 1 (a client not heard from for "
                f"{limits.DEDUPE_CLIENT_EXPIRY_INTENTIONS:,} intentions is forgotten: take a new client id)",
            )
        raise SessionFailure(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"Hello.next_nonce {hello.next_nonce} is ahead of this client's last applied nonce "
            f"{nonce_max}: resend from {nonce_max + 1}",
        )

    def _register(self, session: _Session) -> None:
        """One live session per client id: a newer one supersedes the older, which ends with ABORTED
        (two writers sharing an id would have each other's nonces applied under their own)."""
        sessions_max = self._serving.sessions_max
        with self._lock:
            if len(self._sessions) >= sessions_max and session.client_id not in self._sessions:
                raise SessionFailure(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this node serves {sessions_max} sessions already (sessions_max): retry later or elsewhere",
                )
            old = self._sessions.get(session.client_id)
            self._sessions[session.client_id] = session
        if old is not None:
            old.fail(
                grpc.StatusCode.ABORTED,
                "another session with this client id opened: a client id belongs to one writer; "
                "this older session is closed (two live clients must never share an id)",
            )

    def _unregister(self, session: _Session) -> None:
        with self._lock:
            if self._sessions.get(session.client_id) is session:
                del self._sessions[session.client_id]

    async def _read_frames(self, session: _Session, context: Any) -> None:
        try:
            while session.open:
                await self._room(session)
                raw = await context.read()
                if raw is grpc.aio.EOF or not session.open:
                    return
                session.last_frame_at = time.monotonic()
                for proposal in await self._taken_in(session, raw):
                    await self._offer_within(proposal)
        except SessionFailure as failure:
            session.fail(failure.code, failure.message)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bad frame must not take the node down
            log.warning("session of client %s failed: %s", session.client_id.hex(), e)
            session.fail(grpc.StatusCode.INTERNAL, f"session failed: {e}")

    async def _room(self, session: _Session) -> None:
        """Flow control: a session reads no next frame while it has SESSION_UNCOMMITTED_BYTES_MAX or
        SESSION_UNCOMMITTED_INTENTIONS_MAX in flight (until some of it commits), nor while its client
        has left an Acks frame untaken for SESSION_ACKS_UNTAKEN_HOLD_S (a client that reads its acks
        slowly writes as slowly). gRPC's window then fills and the client's sends wait."""
        while session.open:
            if (
                session.uncommitted_bytes >= limits.SESSION_UNCOMMITTED_BYTES_MAX
                or session.uncommitted_intentions() >= limits.SESSION_UNCOMMITTED_INTENTIONS_MAX
            ):
                await session.settled(1.0)
            elif session.ack_untaken_s() >= limits.SESSION_ACKS_UNTAKEN_HOLD_S:
                await asyncio.sleep(limits.SESSION_ACKS_UNTAKEN_HOLD_S)
            else:
                return

    async def _taken_in(self, session: _Session, raw: bytes) -> list[Proposal]:
        """A frame decoded and checked, as the proposals to offer. A heavy frame (over FRAME_LIGHT_BYTES_MAX
        or FRAME_LIGHT_MUTATIONS_MAX) is taken in only in its turn (service/_turns.py), so that a light one
        never waits on the event loop for every other session's heavy frame."""
        turns = self._turns
        held = False
        try:
            if len(raw) > limits.FRAME_LIGHT_BYTES_MAX:
                await turns.take()
                held = True
            frame = _decoded(raw)
            count = len(frame.mutations.mutations) if frame.WhichOneof("body") == "mutations" else 0
            if not held and count > limits.FRAME_LIGHT_MUTATIONS_MAX:
                await turns.take()
                held = True
            return self._accept(session, frame, raw)
        finally:
            if held:
                turns.release()

    def _accept(self, session: _Session, frame: pb.ClientFrame, raw: bytes) -> list[Proposal]:
        body = frame.WhichOneof("body")
        if body != "mutations":
            why = "only one Hello per session" if body == "hello" else "a ClientFrame holds a Hello or mutations"
            raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, why)
        mutations = frame.mutations.mutations
        if not mutations:
            return []  # an empty MutationFrame is a no-op (docs/protocol.md)
        if len(mutations) > limits.FRAME_MUTATIONS_MAX:
            raise SessionFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a frame holds {len(mutations)} mutations; the limit is {limits.FRAME_MUTATIONS_MAX}",
            )
        expected = session.expected_nonce
        weights = []  # each mutation's apply cost in intentions (the proposer's fair share and in-flight bound)
        topics = []  # whether it creates or destroys a topic (the proposer bounds those in flight by time too)
        for m in mutations:
            if m.nonce != expected:
                raise SessionFailure(
                    grpc.StatusCode.INVALID_ARGUMENT, f"nonce {m.nonce} out of sequence: expected {expected}"
                )
            problem = _rules.mutation_problem(m)
            if problem:
                raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, f"nonce {m.nonce}: {problem}")
            expected += 1
            kind = m.kind
            weights.append(_INTENTION_COSTS.get(kind, 1))
            topics.append(kind in _TOPIC_KINDS)
        if not self._is_leader():
            raise SessionFailure(grpc.StatusCode.UNAVAILABLE, "this node is no longer the leader")
        first = session.expected_nonce
        session.expected_nonce = expected
        runs = _pieces(_mutation_frame_bytes(frame, raw), first, weights, topics, self._topic_run_max())
        return [
            self._proposal(session, piece, nonce + count - 1, (count, weighted, topic))
            for piece, nonce, count, weighted, topic in runs
        ]

    @staticmethod
    def _proposal(
        session: _Session, frame_bytes: bytes | memoryview, last: int, counts: tuple[int, int, int]
    ) -> Proposal:
        """The proposal of one run of this session's nonces (through `last`), counted as offered; counts: its
        (intentions, weighted intentions, topic creates and destroys)."""
        count, weighted, topic = counts
        run = encode_run(session.client_id, frame_bytes, session.token)
        session.proposed(last, len(run))
        return Proposal(
            run=run,
            intentions=count,
            is_current=lambda: session.open,
            on_received=lambda: session.received(last),
            on_dropped=lambda: session.fail(
                grpc.StatusCode.UNAVAILABLE,
                f"the leader's log did not take nonces through {last}: resend them",
            ),
            session=session,  # sessions share the log by cost: a big sender cannot hold it
            cost_intentions=weighted,
            topic_intentions=topic,
        )

    async def _offer_within(self, proposal: Proposal) -> None:
        """Hand the proposal to the proposer without blocking the event loop: while the shared queue
        is full, try again after a short pause (doubling), up to SESSION_OFFER_TIMEOUT_S."""
        if self._offer(proposal, 0.0):
            return
        deadline = time.monotonic() + SESSION_OFFER_TIMEOUT_S
        pause = OFFER_RETRY_S_MIN
        while time.monotonic() < deadline:
            await asyncio.sleep(pause)
            if self._offer(proposal, 0.0):
                return
            pause = min(pause * 2, OFFER_RETRY_S_MAX)
        raise SessionFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "the leader's proposal queue stayed full")
