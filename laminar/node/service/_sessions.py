"""Client sessions on the leader: read frames, check them, hand them to the proposer, send acks.

Each Session RPC has two threads: gRPC's handler thread writes acks; a reader thread takes
frames from the client. Acks never block the apply thread: outcomes are appended to the session
under a lock and the writer sends whatever has accumulated as one frame. A session that lets too
many acks pile up (a client that does not read) is cut with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import grpc

from laminar import _rules, limits
from laminar.node._entry import encode_run
from laminar.node.raft import Proposal
from laminar.node.service._api import NodeApi
from laminar.v1 import laminar_pb2 as pb

if TYPE_CHECKING:
    from laminar.node.state_machine import Outcome

log = logging.getLogger("laminar.session")

SESSION_ACKS_PENDING_MAX = 4 * limits.CLIENT_INFLIGHT_MAX  # outcomes waiting to be sent to one client
SESSION_OFFER_TIMEOUT_S = 30.0  # how long a frame may wait for room in the proposal queue
SESSION_WRITER_POLL_S = 1.0  # the writer re-checks that the RPC is alive this often
HELLO_TIMEOUT_S = 10.0  # a client must say hello within this time
HELLO_CATCH_UP_WAIT_S = 3.0  # how long a Hello ahead of the applied nonces waits for a read barrier


class SessionFailure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Session:
    def __init__(self, client_id: bytes, next_nonce: int, on_latency: Callable[[float], None] | None = None) -> None:
        self.client_id = client_id
        self._on_latency = on_latency
        self._proposed: collections.deque[tuple[int, float]] = collections.deque()  # (last nonce, time)
        self.first_nonce = next_nonce
        self.expected_nonce = next_nonce  # raised by the reader before it hands a frame on
        self._committed_through = next_nonce - 1  # every nonce of this session up to it has its Commit queued
        self._lock = threading.Condition()
        self._commits: list[pb.Commit] = []
        self._received_through = 0
        self._received_sent = 0
        self._failure: SessionFailure | None = None
        self.open = True

    # ---- producers (reader, proposer and apply threads) -------------------------------------

    def received(self, through_nonce: int) -> None:
        with self._lock:
            if through_nonce > self._received_through:
                self._received_through = through_nonce
                self._lock.notify_all()

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
            through = self._committed_through
            for o in outcomes:
                if o.conflict and self.first_nonce <= o.nonce <= through:
                    # This session resent the nonce with other contents, and its original outcome
                    # was reported already (an old entry applied first): the client must hear of it.
                    self._fail(grpc.StatusCode.INVALID_ARGUMENT, o.reason)
                    return
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
                return
            self._committed_through = through
            # A committed nonce is in the log: it is received, even if the tick thread has not said so
            # yet (an entry can apply first). A Commit never arrives before its `received`.
            self._received_through = max(self._received_through, through)
            self._observe_latency(through)
            if len(self._commits) > SESSION_ACKS_PENDING_MAX:
                self._fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "client is not reading its acks")
            self._lock.notify_all()

    def proposed(self, last_nonce: int) -> None:
        if self._on_latency is not None:
            with self._lock:
                self._proposed.append((last_nonce, time.monotonic()))

    def _observe_latency(self, newest_nonce: int) -> None:
        """Commit latency of each frame whose last nonce is now applied (under the lock)."""
        if self._on_latency is None:
            return
        now = time.monotonic()
        while self._proposed and self._proposed[0][0] <= newest_nonce:
            self._on_latency(now - self._proposed.popleft()[1])

    def fail(self, code: grpc.StatusCode, message: str) -> None:
        with self._lock:
            self._fail(code, message)

    def _fail(self, code: grpc.StatusCode, message: str) -> None:
        if self._failure is None:
            self._failure = SessionFailure(code, message)
        self.open = False
        self._lock.notify_all()

    # ---- the writer (gRPC handler thread) ---------------------------------------------------

    def next_acks(self) -> pb.Acks | None:
        """Block until there is something to send; None to poll liveness again."""
        with self._lock:
            self._lock.wait_for(
                lambda: self._commits or self._received_through > self._received_sent or self._failure,
                SESSION_WRITER_POLL_S,
            )
            if self._commits or self._received_through > self._received_sent:
                # Commits with long reasons (a program's, one per message) could outgrow a 4 MiB frame.
                commits = self._commits[: limits.ACKS_FRAME_COMMITS_MAX]
                acks = pb.Acks(received_through=self._received_through, commits=commits)
                del self._commits[: len(commits)]
                self._received_sent = self._received_through
                return acks
            if self._failure is not None:
                raise self._failure
            return None


def _decoded(raw_frames: Iterator[bytes]) -> Iterator[pb.ClientFrame]:
    """Parse frames ourselves so a malformed or oversized one gets INVALID_ARGUMENT with a reason."""
    for raw in raw_frames:
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
            yield pb.ClientFrame.FromString(raw)
        except Exception as e:
            raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, f"frame is not a ClientFrame: {e}") from e


def _first_frame(requests: Iterator[pb.ClientFrame]) -> pb.ClientFrame | None:
    """The first frame, or DEADLINE_EXCEEDED after HELLO_TIMEOUT_S: a client that connects and says
    nothing must not hold a handler thread forever. A helper thread waits for it (it ends with
    the RPC at the latest); the reader thread takes the iterator over afterwards."""
    box: queue.Queue[tuple[pb.ClientFrame | None, BaseException | None]] = queue.Queue(maxsize=1)

    def pull() -> None:
        try:
            box.put((next(requests, None), None))
        except BaseException as e:  # noqa: BLE001 - handed to the handler thread
            box.put((None, e))

    threading.Thread(target=pull, name="session-hello", daemon=True).start()
    try:
        frame, error = box.get(timeout=HELLO_TIMEOUT_S)
    except queue.Empty:
        raise SessionFailure(
            grpc.StatusCode.DEADLINE_EXCEEDED, f"no Hello within {HELLO_TIMEOUT_S:.0f} s of opening the session"
        ) from None
    if isinstance(error, SessionFailure):
        raise error
    if error is not None:
        raise SessionFailure(grpc.StatusCode.CANCELLED, f"client went away before its Hello: {error}")
    return frame


class SessionRouter:
    """Owns every session on this node and routes applied outcomes to them by client id."""

    def __init__(self, node: NodeApi) -> None:
        # Bound once: the reader thread calls offer and is_leader for every frame.
        self._on_commit_latency = node.observe_commit_latency
        self._offer = node.offer
        self._nonce_max = node.nonce_max
        self._is_leader = node.is_leader
        self._welcome = node.welcome
        # (timeout s) -> True once everything committed before the call is applied here
        self._read_barrier = node.read_barrier
        self._lock = threading.Lock()
        self._sessions: dict[bytes, _Session] = {}

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

    def run(self, raw_requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[pb.ServerFrame]:
        requests = _decoded(raw_requests)
        hello = self._hello(requests)
        session = self._register(hello)
        reader = threading.Thread(target=self._read, args=(session, requests), name="session-reader", daemon=True)
        reader.start()
        try:
            yield pb.ServerFrame(welcome=self._welcome())
            while context.is_active():
                acks = session.next_acks()
                if acks is not None:
                    yield pb.ServerFrame(acks=acks)
        finally:
            session.fail(grpc.StatusCode.CANCELLED, "session ended")
            self._unregister(session)

    def _hello(self, requests: Iterator[pb.ClientFrame]) -> pb.Hello:
        frame = _first_frame(requests)
        if frame is None or frame.WhichOneof("body") != "hello":
            raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, "the first frame of a session must be a Hello")
        hello = frame.hello
        if len(hello.client_id) != 16:
            raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, "Hello.client_id must be 16 bytes (a UUID)")
        if hello.next_nonce < 1:
            raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, "Hello.next_nonce must be >= 1")
        self._check_nonce_not_ahead(hello)
        return hello

    def _check_nonce_not_ahead(self, hello: pb.Hello) -> None:
        """A client may not start past its last applied nonce + 1: those would never apply. A client
        the cluster does not know has applied nothing, so it starts at 1. What this node applied may
        be behind what is committed (a new leader catching up): a read barrier settles it before
        the Hello is refused."""
        if hello.next_nonce <= self._applied_nonce_max(hello) + 1:
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

    def _applied_nonce_max(self, hello: pb.Hello) -> int:
        return self._nonce_max(bytes(hello.client_id)) or 0

    def _register(self, hello: pb.Hello) -> _Session:
        session = _Session(bytes(hello.client_id), hello.next_nonce, self._on_commit_latency)
        with self._lock:
            if len(self._sessions) >= limits.SESSIONS_MAX and session.client_id not in self._sessions:
                raise SessionFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, f"too many sessions ({limits.SESSIONS_MAX})")
            old = self._sessions.get(session.client_id)
            self._sessions[session.client_id] = session
        if old is not None:
            old.fail(grpc.StatusCode.ABORTED, "superseded by a newer session of the same client")
        return session

    def _unregister(self, session: _Session) -> None:
        with self._lock:
            if self._sessions.get(session.client_id) is session:
                del self._sessions[session.client_id]

    def _read(self, session: _Session, requests: Iterator[pb.ClientFrame]) -> None:
        try:
            for frame in requests:
                if not session.open:
                    return
                self._accept(session, frame)
        except SessionFailure as failure:
            session.fail(failure.code, failure.message)
        except grpc.RpcError:
            session.fail(grpc.StatusCode.CANCELLED, "client went away")
        except Exception as e:  # noqa: BLE001 - a bad frame must not take the node down
            log.warning("session of client %s failed: %s", session.client_id.hex(), e)
            session.fail(grpc.StatusCode.INTERNAL, f"session failed: {e}")

    def _accept(self, session: _Session, frame: pb.ClientFrame) -> None:
        body = frame.WhichOneof("body")
        if body != "mutations":
            why = "only one Hello per session" if body == "hello" else "a ClientFrame holds a Hello or mutations"
            raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, why)
        mutations = frame.mutations.mutations
        if not mutations:
            return  # an empty MutationFrame is a no-op (docs/protocol.md)
        if len(mutations) > limits.FRAME_MUTATIONS_MAX:
            raise SessionFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a frame holds {len(mutations)} mutations; the limit is {limits.FRAME_MUTATIONS_MAX}",
            )
        expected = session.expected_nonce
        for m in mutations:
            if m.nonce != expected:
                raise SessionFailure(
                    grpc.StatusCode.INVALID_ARGUMENT, f"nonce {m.nonce} out of sequence: expected {expected}"
                )
            problem = _rules.mutation_problem(m)
            if problem:
                raise SessionFailure(grpc.StatusCode.INVALID_ARGUMENT, f"nonce {m.nonce}: {problem}")
            expected += 1
        if not self._is_leader():
            raise SessionFailure(grpc.StatusCode.UNAVAILABLE, "this node is no longer the leader")
        session.expected_nonce = expected
        last = expected - 1
        session.proposed(last)
        proposal = Proposal(
            run=encode_run(session.client_id, frame.mutations.SerializeToString()),
            intentions=len(mutations),
            is_current=lambda: session.open,
            on_received=lambda: session.received(last),
            on_dropped=lambda: session.fail(
                grpc.StatusCode.UNAVAILABLE, f"the leader's log did not take nonces through {last}: resend them"
            ),
        )
        if not self._offer(proposal, SESSION_OFFER_TIMEOUT_S):
            raise SessionFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "the leader's proposal queue stayed full")
