"""The Client: one long-lived session with the leader, pipelined sends, received/committed acks.

Every mutation gets the next nonce and stays in `_unacked` until its Commit arrives. A background
thread keeps a session open with the leader: it sends a Hello with the oldest uncommitted nonce,
then every unacked mutation in nonce order, then new ones as they come, packed into frames. When
the session breaks (leader died, redirect, no progress), it reconnects, following the redirect
hint or trying the next address, and resends from the oldest uncommitted nonce; the cluster
recognises what it already applied and answers with the original outcome, so each mutation takes
effect exactly once. Commits for one client arrive in nonce order, so `_unacked` is always the
contiguous range [_oldest, _next_nonce).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from laminar import _rules, limits
from laminar._wire import length_delimited
from laminar.client._connect import TLS, Nodes, is_fatal, leader_hint, map_error, retry_after_s
from laminar.client._types import Commit, Effect, Retention, Value
from laminar.errors import ClientClosed, InvalidRequest, LaminarError, Timeout, Unacknowledged, Unavailable
from laminar.v1 import laminar_pb2 as pb

log = logging.getLogger("laminar.client")

CLIENT_PROGRESS_TIMEOUT_S = 5.0  # no ack for this long while messages wait: try another node
CLIENT_CONNECT_BACKOFF_S_MIN = 0.05
CLIENT_CONNECT_BACKOFF_S_MAX = limits.CLIENT_RECONNECT_BACKOFF_MS_MAX / 1000
CLIENT_SENDER_POLL_S = 0.5
CLIENT_GET_TIMEOUT_S = 10.0
CLIENT_GET_RETRY_S = 0.1
# close() waits this long by default for what is in flight to commit: long enough for a fail-over
# (an election and a resend of a full window), short enough that a lost cluster is reported.
CLIENT_CLOSE_TIMEOUT_S = 30.0
_FRAME_MUTATION_TAG = b"\x0a"  # MutationFrame.mutations, field 1, length-delimited
_CLIENT_FRAME_MUTATIONS_TAG = b"\x12"  # ClientFrame.mutations, field 2, length-delimited
_EFFECTS: dict[int, Effect] = {pb.VALID: Effect.VALID, pb.INVALID: Effect.INVALID, pb.ERROR: Effect.ERROR}


class _Default:
    """The type of a parameter left out, where None has a meaning of its own (no limit)."""


_DEFAULT = _Default()


def _identity(data: bytes) -> bytes:
    return data


def _as_bytes(value: bytes | str, what: str) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidRequest(f"{what} must be bytes or str, not {type(value).__name__}")


class Pending:
    """A mutation on its way: wait for `received()` (the leader has it) or `committed()`."""

    __slots__ = ("_client", "_error", "_outcome", "nonce")

    def __init__(self, client: Client, nonce: int) -> None:
        self._client = client
        self.nonce = nonce
        # (effect, intention offset, reason) from the wire; the Commit is built when asked for,
        # so a pipelined burst that nobody inspects costs no object per message.
        self._outcome: tuple[int, int, str] | None = None
        self._error: LaminarError | None = None

    def done(self) -> bool:
        return self._outcome is not None or self._error is not None

    def received(self, timeout: float | None = None) -> None:
        """Block until the leader has accepted this mutation into its log (or it committed)."""
        client = self._client
        with client._cond:
            client._received_waiters += 1
        client._want_received_acks()
        try:
            client._wait(lambda: self.done() or client._received_through >= self.nonce, timeout, self)
        finally:
            with client._cond:
                client._received_waiters -= 1
        if self._error is not None:
            raise self._error

    def committed(self, timeout: float | None = None) -> Commit:
        """Block until this mutation is applied and durable; its Commit says what it did."""
        self._client._wait(self.done, timeout, self)
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        effect, intention_offset, reason = self._outcome
        return Commit(_EFFECTS[effect], intention_offset, reason)


class _Connection:
    """One Session RPC. The sender generator runs in a gRPC thread; responses in ours.

    At most CLIENT_FRAMES_INFLIGHT_MAX frames are sent and not yet acknowledged (received or
    committed) on it. Without that bound a client offering writes one at a time sends one frame per
    write however far behind the leader is, the frames queue in the transport, and each costs the
    leader a frame's work: 3,000 writes/s in 5,000 frames had commits 0.6-1.4 s late on 3 nodes and
    2 cores. With it, writes offered while the window is full wait in the client and go out together
    in the next frame, so the leader's work per write shrinks as the load grows, and a lone write
    still goes out at once."""

    def __init__(self, client: Client, hello: pb.Hello) -> None:
        self.client = client
        self.hello = hello
        self.closed = False
        self.call: Any = None
        self.frame_ends: collections.deque[int] = collections.deque()  # last nonce of each frame in flight
        self.received_through = 0  # the highest `received_through` this session's leader has sent

    def window_open(self, acked_through: int) -> bool:
        """Whether another frame may go out, once every nonce through acked_through is acknowledged."""
        ends = self.frame_ends
        while ends and ends[0] <= acked_through:
            ends.popleft()
        return len(ends) < limits.CLIENT_FRAMES_INFLIGHT_MAX

    def requests(self) -> Iterator[bytes]:
        yield pb.ClientFrame(hello=self.hello).SerializeToString()
        while True:
            frame = self.client._next_frame(self)
            if frame is None:
                return
            yield frame


class Client:
    """A connection to a Laminar cluster that finds the leader and follows it."""

    def __init__(
        self,
        addresses: Sequence[str] | str | None = None,
        *,
        client_id: uuid.UUID | None = None,
        inflight_max: int = limits.CLIENT_INFLIGHT_MAX,
        tls: TLS | None = None,
        close_timeout: float | None = CLIENT_CLOSE_TIMEOUT_S,
        token: str | None = None,
    ) -> None:
        """`close_timeout`: how long close() and leaving `with` wait for what is in flight to commit
        (None: no limit) before they raise `Unacknowledged`. `token`: `<user>:<secret>` for a cluster
        with authorization on (default $LAMINAR_TOKEN; docs/security.md)."""
        if not 1 <= inflight_max <= limits.CLIENT_INFLIGHT_MAX:
            raise InvalidRequest(f"inflight_max must be in 1..{limits.CLIENT_INFLIGHT_MAX}")
        self.client_id = client_id or uuid.uuid4()
        self._nodes = Nodes(addresses, tls, token)
        self._inflight_max = inflight_max
        self._close_timeout = close_timeout
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # acks, errors, closing: what callers wait for
        self._sendable = threading.Condition(lock)  # new mutations: what the sender waits for
        # A session ending or the client closing: what the watchdog waits for. Not _cond, which every
        # ack notifies: a watchdog woken twice per commit competes with the threads that matter.
        self._ended = threading.Condition(lock)
        self._send_waiters = 0  # threads waiting on _sendable: put() notifies only when there are
        self._received_waiters = 0  # threads in Pending.received(): a `received` ack wakes waiters only then
        # Whether sessions ask the leader for `received` acks (Hello.commits_only false): only once the
        # code using this client has called Pending.received(), the one way it can see them. Until then
        # each write is acknowledged once, at its commit: a frame and a wake-up less on each side.
        self._received_acks = False
        self._reopen = False  # the session was cancelled here to be opened again with received acks
        self._next_nonce = 1
        self._oldest = 1  # oldest uncommitted nonce
        self._sent_through = 0  # on the current connection
        self._received_through = 0
        self._unacked: dict[int, tuple[bytes, Pending]] = {}  # nonce -> (serialized Mutation, its Pending)
        self._closed = False
        self._closing = False  # close() has begun: no new mutations, the session runs on until _closed
        self._fatal: LaminarError | None = None
        self._connection: _Connection | None = None
        self._last_progress = time.monotonic()
        self.leader: str | None = None  # address of the node the session is with
        self._thread = threading.Thread(target=self._run, name="laminar-client", daemon=True)
        self._thread.start()

    # ---- public API ---------------------------------------------------------------------------

    def create_topic(
        self, topic: str, program: str | None = None, args: bytes | str = b"", *, retention: Retention | None = None
    ) -> Pending:
        """Create a topic; `retention` bounds how much of its stream is kept (default: everything)."""
        mutation = pb.Mutation(kind=pb.CREATE_TOPIC, topic=topic, program=program or "", args=_as_bytes(args, "args"))
        if retention is not None:
            mutation.retention.CopyFrom(retention.to_wire())
        return self._send(mutation)

    def configure_topic(self, topic: str, retention: Retention) -> Pending:
        """Change a live topic's retention (Retention() keeps everything from now on). Events the new
        limits exclude are trimmed as the next entries apply; an ERROR commit if the topic is not live."""
        return self._send(pb.Mutation(kind=pb.CONFIGURE_TOPIC, topic=topic, retention=retention.to_wire()))

    def destroy_topic(self, topic: str) -> Pending:
        return self._send(pb.Mutation(kind=pb.DESTROY_TOPIC, topic=topic))

    def put(self, topic: str, key: bytes | str, value: bytes | str) -> Pending:
        key, value = _as_bytes(key, "key"), _as_bytes(value, "value")
        problem = _rules.topic_problem(topic) or _rules.write_problem(key, value)
        if problem:
            raise InvalidRequest(problem)
        return self._send(pb.Mutation(kind=pb.PUT, topic=topic, key=key, value=value), checked=True)

    def delete(self, topic: str, key: bytes | str) -> Pending:
        return self._send(pb.Mutation(kind=pb.DELETE, topic=topic, key=_as_bytes(key, "key")))

    # ---- consumers (docs/consumers.md) --------------------------------------------------------------

    def ack(self, topic: str, consumer: str, offset: int) -> Pending:
        """Acknowledge every event of `topic` through `offset` for the durable consumer `consumer`
        (created by its first ack). An ack older than the position changes nothing. A Listener with
        `consumer=` batches its acks into these; call it directly only to move a position yourself."""
        return self.consumer_op(pb.CONSUMER_ACK, topic, pb.ConsumerOp(name=consumer, offset=_offset(offset)))

    def reset_consumer(self, topic: str, consumer: str, offset: int) -> Pending:
        """Set a durable consumer's position to `offset` (back or forth; created if missing): its
        next Listener starts after it."""
        return self.consumer_op(pb.CONSUMER_RESET, topic, pb.ConsumerOp(name=consumer, offset=_offset(offset)))

    def delete_consumer(self, topic: str, consumer: str) -> Pending:
        """Forget a durable consumer or a group (its members' leases with it)."""
        return self.consumer_op(pb.CONSUMER_DELETE, topic, pb.ConsumerOp(name=consumer))

    def consumer_op(self, kind: int, topic: str, op: pb.ConsumerOp) -> Pending:
        """Send one consumer intention (a `laminar.v1.Kind` CONSUMER_* or GROUP_* value)."""
        return self._send(pb.Mutation(kind=kind, topic=topic, consumer=op))  # type: ignore[arg-type]

    # ---- pipelines (docs/pipelines.md; a Worker sends these) ------------------------------------------------

    def worker_op(self, kind: int, service: str, op: pb.WorkerOp) -> Pending:
        """Send one worker intention (WORKER_JOIN or WORKER_LEAVE) for `service`."""
        return self._send(pb.Mutation(kind=kind, topic=service, worker=op))  # type: ignore[arg-type]

    def call_result(self, kind: int, topic: str, result: pb.CallResult) -> Pending:
        """Send a call's result (CALL_COMPLETE or CALL_FAIL) to its calling `topic`."""
        return self._send(pb.Mutation(kind=kind, topic=topic, result=result))  # type: ignore[arg-type]

    def get(
        self, topic: str, key: bytes | str, *, stale_ok: bool = False, timeout: float = CLIENT_GET_TIMEOUT_S
    ) -> Value:
        """The current value of `key` in `topic`.

        Linearizable by default: the leader answers after a read barrier through the log, so the
        value reflects every mutation committed before this call began (it follows the leader
        like a session does). With `stale_ok=True` any node answers at once from what it has
        applied, which may be behind the leader."""
        request = pb.GetRequest(topic=topic, key=_as_bytes(key, "key"), stale_ok=stale_ok)
        deadline = time.monotonic() + timeout
        hint: str | None = None if stale_ok else self.leader
        last_error = "no node answered"
        while time.monotonic() < deadline:
            address = self._nodes.pick(hint)
            method = self._nodes.channel(address).unary_unary(
                "/laminar.v1.Laminar/Get",
                request_serializer=pb.GetRequest.SerializeToString,
                response_deserializer=pb.GetResponse.FromString,
            )
            try:
                r = method(request, timeout=max(0.05, deadline - time.monotonic()))
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else None
                wait_s = retry_after_s(error)
                if wait_s is not None:  # a bound of the node's: wait as it asks, while time is left
                    last_error = error.details() or "resource exhausted"  # type: ignore[attr-defined]
                    time.sleep(max(0.0, min(wait_s, deadline - time.monotonic())))
                    continue
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise map_error(error) from None
                hint = leader_hint(error)
                last_error = error.details() or "unavailable"  # type: ignore[attr-defined]
                if hint is None:
                    time.sleep(CLIENT_GET_RETRY_S)
                continue
            return Value(
                topic, request.key, r.found, r.value, r.value_offset, r.topic_offset, r.intention_offset, r.topic_exists
            )
        raise Unavailable(f"get {topic!r} not answered within {timeout:.1f} s: {last_error}")

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything sent so far is committed. Raises at once the error that ended the session for
        good (PermissionDenied, InvalidRequest, ...): what was in flight then will not commit through this client."""
        with self._cond:
            last = self._next_nonce - 1
        self._wait(lambda: self._oldest > last or self._fatal is not None, timeout, None)
        if self._oldest <= last and self._fatal is not None:
            raise self._fatal

    @property
    def failure(self) -> LaminarError | None:
        """The error that ended this client's session for good (every mutation after it fails with it), or None."""
        return self._fatal

    def close(self, timeout: float | _Default | None = _DEFAULT) -> None:
        """Wait up to `timeout` seconds (default: the client's `close_timeout`; None: no limit) for
        every mutation sent so far to commit,
        then end the session. New mutations are refused from the moment close() begins.

        Raises `Unacknowledged`, naming the nonces, when some never committed: a write is never
        dropped silently. `close(timeout=0)` gives up on whatever is in flight at once (and still
        says what it gave up on)."""
        if isinstance(timeout, _Default):
            timeout = self._close_timeout
        with self._cond:
            if self._closed or self._closing:
                return
            self._closing = True
            last = self._next_nonce - 1
            self._cond.wait_for(lambda: self._oldest > last or self._fatal is not None, timeout)
            unacked = sorted(self._unacked)
            self._closed = True
            connection = self._connection
            for _, pending in self._unacked.values():
                if not pending.done():
                    pending._error = ClientClosed("the client was closed before this mutation committed")
            self._cond.notify_all()
            self._sendable.notify_all()
            self._ended.notify_all()
        if connection is not None and connection.call is not None:
            connection.call.cancel()
        self._thread.join(timeout=5)
        self._nodes.close()
        if unacked:
            raise self._unacknowledged(unacked, timeout)

    def _unacknowledged(self, nonces: list[int], timeout: float | None) -> Unacknowledged:
        why = f"failed: {self._fatal}" if self._fatal is not None else f"not committed within {timeout} s"
        tried = ", ".join(self._nodes.addresses)
        where = f"session with {self.leader}" if self.leader else f"no node reached of {tried}"
        return Unacknowledged(
            f"close(): {len(nonces)} mutation(s) {why} ({where}); they may or may not take effect: "
            f"nonces {_ranges(nonces)}",
            nonces,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        """Leaving `with` closes the client, waiting for what is in flight. When the block raised,
        its exception is what propagates; mutations left unacknowledged are logged as a warning."""
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Unacknowledged as error:
            log.warning("%s", error)

    # ---- sending ------------------------------------------------------------------------------

    def _send(self, mutation: pb.Mutation, checked: bool = False) -> Pending:
        """Queue `mutation` for the sender (checked: the caller has applied the rules already)."""
        problem = None if checked else _rules.mutation_problem(mutation)
        if problem:
            raise InvalidRequest(problem)
        with self._cond:
            if len(self._unacked) >= self._inflight_max:
                self._cond.wait_for(lambda: self._closed or self._fatal or len(self._unacked) < self._inflight_max)
            if self._closed or self._closing:
                raise ClientClosed("the client is closed")
            if self._fatal:
                raise self._fatal
            nonce = self._next_nonce
            self._next_nonce += 1
            mutation.nonce = nonce
            pending = Pending(self, nonce)
            if not self._unacked:
                self._last_progress = time.monotonic()
            # Serialized once: a resend after a fail-over sends the same bytes.
            self._unacked[nonce] = (mutation.SerializeToString(), pending)
            if self._send_waiters and self._sender_may_go():
                self._sendable.notify_all()
            return pending

    def _sender_may_go(self) -> bool:
        """Under the lock: whether a waiting sender could act on a new mutation. Not while the session's window of
        frames is shut: the ack that opens it wakes the sender (_on_frame). Woken by every put meanwhile, it only
        looked and slept again: in the open loop at 3,000 puts/s, 8,000 wake-ups for 700 frames, each a switch
        to the sender thread and the interpreter's lock taken from the threads that were doing the work."""
        connection = self._connection
        return connection is None or connection.closed or self._can_send(connection)

    def _next_frame(self, connection: _Connection) -> bytes | None:
        """The next serialized ClientFrame of unsent mutations, blocking until there is one; None
        ends the stream. Frames are spliced from the serialized mutations, never re-encoded."""
        with self._cond:
            while True:
                if connection.closed or self._closed:
                    return None
                if self._can_send(connection):
                    break
                self._wait_sendable(lambda: self._can_send(connection) or connection.closed)
            parts: list[bytes] = []
            size = 0
            nonce = max(self._sent_through + 1, self._oldest)
            unacked = self._unacked
            while nonce < self._next_nonce and len(parts) < limits.FRAME_MUTATIONS_MAX:
                entry = unacked.get(nonce)
                if entry is None:
                    nonce += 1
                    continue
                part = length_delimited(_FRAME_MUTATION_TAG, entry[0])
                size += len(part)
                if parts and size > limits.FRAME_BYTES_MAX:
                    break
                parts.append(part)
                nonce += 1
            self._sent_through = nonce - 1
            connection.frame_ends.append(self._sent_through)
            return length_delimited(_CLIENT_FRAME_MUTATIONS_TAG, b"".join(parts))

    def _can_send(self, connection: _Connection) -> bool:
        """Unsent mutations wait, and the connection's window of frames in flight has room (under the lock)."""
        if self._sent_through + 1 >= self._next_nonce:
            return False
        return connection.window_open(max(connection.received_through, self._oldest - 1))

    # ---- the session loop ---------------------------------------------------------------------

    def _run(self) -> None:
        hint: str | None = None
        backoff = CLIENT_CONNECT_BACKOFF_S_MIN
        while True:
            with self._cond:
                while not (self._closed or self._unacked):
                    self._wait_sendable(lambda: self._closed or bool(self._unacked))
                if self._closed or self._fatal:
                    return
            address = self._nodes.pick(hint)
            hint = None
            try:
                self._session(address)
                backoff = CLIENT_CONNECT_BACKOFF_S_MIN
                self._reopen = False
            except grpc.RpcError as error:
                hint = leader_hint(error)
                if is_fatal(error):
                    self._fail_all(map_error(error))
                    return
                if self._reopen:  # ended here to ask for received acks: open it again at once, same node
                    self._reopen = False
                    hint = hint or address
                    continue
                wait_s = retry_after_s(error)  # the node is full (sessions_max): it says when to come back
                if wait_s is not None:
                    time.sleep(max(wait_s, backoff))
                    backoff = min(backoff * 2, CLIENT_CONNECT_BACKOFF_S_MAX)
                elif hint is None:
                    time.sleep(backoff)
                    backoff = min(backoff * 2, CLIENT_CONNECT_BACKOFF_S_MAX)

    def _session(self, address: str) -> None:
        with self._cond:
            hello = pb.Hello(
                client_id=self.client_id.bytes, next_nonce=self._oldest, commits_only=not self._received_acks
            )
            self._sent_through = self._oldest - 1
            connection = _Connection(self, hello)
            self._connection = connection
            self._last_progress = time.monotonic()
        stub_call = self._nodes.channel(address).stream_stream(
            "/laminar.v1.Laminar/Session",
            request_serializer=_identity,
            response_deserializer=pb.ServerFrame.FromString,
        )
        watchdog = threading.Thread(target=self._watch, args=(connection,), name="laminar-watchdog", daemon=True)
        try:
            connection.call = stub_call(connection.requests())
            with self._cond:
                # Pending.received() was first called while this Hello was being made: ask again.
                stale = self._received_acks and connection.hello.commits_only and not self._reopen
                self._reopen = self._reopen or stale
            if stale:
                connection.call.cancel()
            watchdog.start()
            for frame in connection.call:
                self._on_frame(address, connection, frame)
        finally:
            with self._cond:
                connection.closed = True
                self._cond.notify_all()
                self._sendable.notify_all()
                self._ended.notify_all()
            connection.call.cancel() if connection.call is not None else None

    def _watch(self, connection: _Connection) -> None:
        """Cancel a session that makes no progress (a partitioned or stuck leader)."""
        while True:
            with self._cond:
                self._ended.wait(CLIENT_SENDER_POLL_S)
                if connection.closed or self._closed:
                    return
                stalled = self._unacked and time.monotonic() - self._last_progress > CLIENT_PROGRESS_TIMEOUT_S
            if stalled:
                log.info("no progress from %s for %.1f s; reconnecting", self.leader, CLIENT_PROGRESS_TIMEOUT_S)
                connection.call.cancel()
                return

    def _want_received_acks(self) -> None:
        """From now on sessions ask for `received` acks. A session open without them is ended and
        opened again (as after a lost connection: what is in flight is resent and answered once), so
        the caller's wait ends at `received`, not at the commit. Once per client."""
        with self._cond:
            if self._received_acks:
                return
            self._received_acks = True
            connection = self._connection
            call = None if connection is None or connection.closed else connection.call
            self._reopen = call is not None
        if call is not None:
            call.cancel()

    def _on_frame(self, address: str, connection: _Connection, frame: pb.ServerFrame) -> None:
        with self._cond:
            self._last_progress = time.monotonic()
            if frame.HasField("welcome"):
                self.leader = address
                self._nodes.learn([p.client_address for p in frame.welcome.peers])
                return
            acks = frame.acks
            wake = bool(acks.commits)
            if acks.received_through > connection.received_through:
                connection.received_through = acks.received_through
            if acks.received_through > self._received_through:
                self._received_through = acks.received_through
                wake = wake or self._received_waiters > 0
            if self._send_waiters and self._sent_through + 1 < self._next_nonce:
                # Writes wait for room in the window, which this ack may have made. Without writes
                # waiting, the sender sleeps on: waking it for every ack cost a lone write a thread's wake-up.
                self._sendable.notify_all()
            if not wake:
                return  # nobody waits for what this frame says: waking them would only cost the others time
            unacked = self._unacked
            for c in acks.commits:
                effect, offset, reason = c.effect, c.intention_offset, c.reason
                for i in range(max(1, c.count)):
                    entry = unacked.pop(c.nonce + i, None)
                    if entry is not None:
                        entry[1]._outcome = (effect, offset + i if offset else 0, reason)
            while self._oldest < self._next_nonce and self._oldest not in unacked:
                self._oldest += 1
            self._cond.notify_all()

    def _fail_all(self, error: LaminarError) -> None:
        with self._cond:
            self._fatal = error
            for _, pending in self._unacked.values():
                pending._error = error
            self._cond.notify_all()

    def _wait_sendable(self, predicate: Any) -> None:
        """Wait (holding the lock) until `predicate` holds or a poll interval passes."""
        self._send_waiters += 1
        try:
            self._sendable.wait_for(lambda: predicate() or self._closed, CLIENT_SENDER_POLL_S)
        finally:
            self._send_waiters -= 1

    def _wait(self, predicate: Any, timeout: float | None, pending: Pending | None) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                what = f"mutation {pending.nonce}" if pending is not None else "flush"
                raise Timeout(f"{what} not acknowledged within {timeout} s (session with {self.leader or 'no node'})")


def _offset(offset: int) -> int:
    if type(offset) is not int or not 0 <= offset < 2**63:
        raise InvalidRequest(f"an offset is an int >= 0, got {offset!r}")
    return offset


def _ranges(nonces: list[int]) -> str:
    """`[1, 2, 3, 7]` as `1-3, 7`: a window of thousands stays one readable line."""
    runs: list[str] = []
    start = previous = nonces[0]
    for nonce in [*nonces[1:], 0]:
        if nonce != previous + 1:
            runs.append(f"{start}-{previous}" if previous > start else str(start))
            start = nonce
        previous = nonce
    return ", ".join(runs)


__all__ = ["Client", "Pending", "Unavailable"]
