"""The Worker: the calls of one service that topic programs made, run here, their results posted back.

    for call in laminar.Worker(addresses, service="payments", method="charge"):
        call.complete(charge_card(call.request))        # or call.fail("card declined")

A worker joins its service through the log (a WORKER_JOIN intention, sent by an ordinary Client, so it
follows the leader and takes effect once), then reads the calls the cluster leases to it from a Work
stream of one node: the leader's first, since it applies first; any node will do (docs/pipelines.md).
A result is a CALL_COMPLETE or CALL_FAIL intention through the same Client: resent across fail-overs,
applied once; the first result of a call runs the topic's on_result, a later one is INVALID.

Bounds: the cluster leases at most `concurrency` calls to this worker at once (the join's calls_max), and
the worker never hands out more than `concurrency` calls that are neither completed nor failed, so a slow
application holds at most that many. `rate_per_s` caps how many calls per second it hands out; such a worker
asks for fewer calls (leased_calls_max): no more than it can start within half a lease at that rate, so the
calls it holds do not lapse while they wait for the rate.

What it renews: leases run in log time and any result counts as the worker's heartbeat, so a busy worker
sends nothing but its results. Only a worker that posted nothing for a third of its lease sends a
WORKER_JOIN to say it is alive: one intention per lease/3 while idle.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from laminar import limits
from laminar.client._client import Client, Pending, _as_bytes
from laminar.client._connect import TLS, Nodes, map_error, retry_after_s
from laminar.client._ratelimit import RateLimit
from laminar.errors import ClientClosed, InvalidRequest, LaminarError, Timeout, Unacknowledged
from laminar.v1 import laminar_pb2 as pb

JOIN_TIMEOUT_S = 30.0  # the first join waits this long to commit (an election may be under way)
CLOSE_TIMEOUT_S = 30.0  # close() waits this long for results in flight and the leave to commit
HEARTBEATS_PER_LEASE = 3  # an idle worker says it is alive this many times per lease
WORK_RETRY_S = 0.2  # a broken Work stream is opened again (on another node) after this long
POLL_S = 0.2  # how often waiting threads look at whether the worker closed
# A worker does not retry these: another node would answer the same (a bad request, authorization, an old node).
_FINAL = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.UNIMPLEMENTED,
)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_worker_name() -> str:
    """host-pid-random: unique per process, readable in `laminar calls list`."""
    host = _NAME_UNSAFE.sub("-", socket.gethostname())[:64] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def leased_calls_max(concurrency: int, rate_per_s: float | None, lease_ms: int) -> int:
    """Calls a worker asks the cluster to lease it at once: `concurrency`, or for a rate-limited worker no more
    than it can start within WORKER_RATE_WAIT_LEASE_SHARE of a lease (at least 1): a call leased beyond that
    would wait in the worker for the rate while its lease ran out, and go to another worker."""
    if rate_per_s is None:
        return concurrency
    startable = int(rate_per_s * lease_ms / 1000 * limits.WORKER_RATE_WAIT_LEASE_SHARE)
    return max(1, min(concurrency, startable))


@dataclass
class WorkerStats:
    """What a worker did so far. Results are counted once their commit arrives."""

    received: int = 0  # calls handed to the application
    completed: int = 0  # complete() results the cluster applied (VALID)
    failed: int = 0  # fail() results the cluster applied (VALID)
    stale: int = 0  # results the cluster ignored (INVALID): another worker's result, or the call's timeout, came first
    errors: int = 0  # results refused (ERROR): on_result failed (the call is finished anyway), or a result over a bound
    duplicates: int = 0  # calls a node sent again that this worker held or had finished (skipped)
    heartbeats: int = 0  # WORKER_JOINs sent after the first (idle periods)


class CallBook:
    """Which calls a worker has, by id: received and not handed out (queued), handed out and not finished (held),
    and the last `finished_max` finished here. A node sends a call again when a worker's stream opens again, and a
    lagging node may not have applied its result yet: receive() says whether a call is new. Not thread-safe: the
    Worker holds its lock around every use."""

    def __init__(self, finished_max: int) -> None:
        assert finished_max >= 1
        self._finished_max = finished_max
        self._queued: set[int] = set()
        self._held: set[int] = set()
        self._finished: collections.OrderedDict[int, None] = collections.OrderedDict()

    @property
    def held(self) -> int:
        return len(self._held)

    def receive(self, call_id: int) -> bool:
        """Note a call a node sent; False if this worker has it already (queued, held or finished recently)."""
        if call_id in self._queued or call_id in self._held or call_id in self._finished:
            return False
        self._queued.add(call_id)
        return True

    def hand_out(self, call_id: int) -> None:
        assert call_id in self._queued, call_id
        self._queued.remove(call_id)
        self._held.add(call_id)

    def finish(self, call_id: int) -> None:
        self._held.discard(call_id)
        self._finished[call_id] = None
        if len(self._finished) > self._finished_max:
            self._finished.popitem(last=False)


class Call:
    """One call leased to this worker. `request` (bytes) and `context` (the caller's JSON value) are what the
    program passed to ctx.call; `id` is the call's stable id, the same on every delivery: use it as an
    idempotency key in the service. Finish it with complete(response) or fail(reason), once."""

    __slots__ = (
        "_done",
        "_worker",
        "context",
        "deadline_ms",
        "deliveries",
        "id",
        "issued_ms",
        "method",
        "request",
        "service",
        "topic",
    )

    def __init__(self, worker: Worker, wire: pb.Call) -> None:
        self._worker = worker
        self._done = False
        self.id: int = wire.id
        self.topic: str = wire.topic
        self.service: str = wire.service
        self.method: str = wire.method
        self.request: bytes = wire.request
        self.context: Any = _parsed(wire.context)
        self.deliveries: int = wire.deliveries
        self.issued_ms: int = wire.issued_ms
        self.deadline_ms: int = wire.deadline_ms

    def complete(self, response: bytes | str = b"") -> Pending:
        """Post the response (at most CALL_RESPONSE_BYTES_MAX bytes). Returns at once; the Pending's
        committed() says whether it won (VALID) or came after another result (INVALID)."""
        data = _as_bytes(response, "response")
        if len(data) > limits.CALL_RESPONSE_BYTES_MAX:
            raise InvalidRequest(f"response is {len(data)} bytes; the limit is {limits.CALL_RESPONSE_BYTES_MAX}")
        return self._worker._post(self, pb.CALL_COMPLETE, pb.CallResult(call_id=self.id, response=data))

    def fail(self, reason: str) -> Pending:
        """Post a failure: on_result runs with `failure=reason` (non-empty, at most CALL_FAILURE_BYTES_MAX bytes)."""
        if not isinstance(reason, str) or not reason:
            raise InvalidRequest("a failure says why: reason must be a non-empty str")
        size = len(reason.encode(errors="replace"))
        if size > limits.CALL_FAILURE_BYTES_MAX:
            raise InvalidRequest(f"failure is {size} bytes; the limit is {limits.CALL_FAILURE_BYTES_MAX}")
        return self._worker._post(self, pb.CALL_FAIL, pb.CallResult(call_id=self.id, failure=reason))

    @property
    def done(self) -> bool:
        return self._done

    def __repr__(self) -> str:
        return f"Call(id={self.id}, topic={self.topic!r}, {self.service}.{self.method}, deliveries={self.deliveries})"


class Worker:
    """Iterate to get calls of `service` (and `method`, if given) leased to this worker; see the module doc."""

    def __init__(
        self,
        addresses: Sequence[str] | str | None,
        *,
        service: str,
        method: str = "",
        name: str | None = None,
        concurrency: int = limits.WORKER_CALLS_DEFAULT,
        rate_per_s: float | None = None,
        lease_ms: int = limits.WORKER_LEASE_MS_DEFAULT,
        tls: TLS | None = None,
        token: str | None = None,
    ) -> None:
        """`concurrency`: calls in hand at once (1..WORKER_CALLS_MAX). `rate_per_s`: calls handed out per
        second at most (None: no limit), with bursts of WORKER_RATE_BURST_MS worth. `lease_ms`: how long
        (log time) a call stays leased to this worker, and how long the cluster waits for a silent worker."""
        if not 1 <= concurrency <= limits.WORKER_CALLS_MAX:
            raise InvalidRequest(f"concurrency must be in 1..{limits.WORKER_CALLS_MAX}, got {concurrency}")
        if not limits.WORKER_LEASE_MS_MIN <= lease_ms <= limits.WORKER_LEASE_MS_MAX:
            raise InvalidRequest(f"lease_ms must be in {limits.WORKER_LEASE_MS_MIN}..{limits.WORKER_LEASE_MS_MAX}")
        self.service, self.method = service, method
        self.name = name or default_worker_name()
        self.concurrency = concurrency
        self._rate = RateLimit(rate_per_s, limits.WORKER_RATE_BURST_MS) if rate_per_s is not None else None
        self.calls_max = leased_calls_max(concurrency, rate_per_s, lease_ms)  # what the cluster leases it at once
        self._join_op = pb.WorkerOp(worker=self.name, method=method, calls_max=self.calls_max, lease_ms=lease_ms)
        self._heartbeat_s = lease_ms / 1000 / HEARTBEATS_PER_LEASE
        self.stats = WorkerStats()
        self._lock = threading.Condition()
        self._book = CallBook(limits.WORKER_FINISHED_IDS_MAX)
        self._results: collections.deque[tuple[int, Pending]] = collections.deque()  # (kind, pending) not settled
        self._buffer: queue.Queue[Call] = queue.Queue(maxsize=limits.WORKER_CALLS_MAX)
        self._closed = threading.Event()
        self._error: LaminarError | None = None
        self._stream: Any = None
        self._last_sent = time.monotonic()
        self._client = Client(addresses, tls=tls, token=token)
        self._nodes = Nodes(addresses, tls, token)
        try:
            self._join(JOIN_TIMEOUT_S)
        except BaseException:
            self._abandon()
            raise
        self._threads = [
            threading.Thread(target=self._read, name=f"laminar-work-{service}", daemon=True),
            threading.Thread(target=self._beat, name=f"laminar-beat-{service}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # ---- the application's side -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Call]:
        """Calls until the worker is closed (iteration then ends)."""
        while True:
            try:
                yield self.next_call()
            except ClientClosed:
                return

    def next_call(self, timeout: float | None = None) -> Call:
        """The next call leased to this worker. Waits while `concurrency` calls are in hand, and for the rate
        limit. Raises Timeout after `timeout` s, ClientClosed once closed, or the stream's error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._settle()
        with self._lock:
            while self._book.held >= self.concurrency:
                self._check_open()
                if not self._lock.wait(_left(deadline, POLL_S)) and _expired(deadline):
                    raise Timeout(f"{self._book.held} calls in hand (concurrency {self.concurrency}) for {timeout} s")
        if self._rate is not None:
            self._wait_for_rate(deadline, timeout)
        while True:
            self._check_open()
            try:
                call = self._buffer.get(timeout=_left(deadline, POLL_S))
            except queue.Empty:
                if _expired(deadline):
                    raise Timeout(f"no call of {self.service!r} within {timeout} s") from None
                continue
            with self._lock:
                self._book.hand_out(call.id)
                self.stats.received += 1
            return call

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every result posted so far is committed; their outcomes are then in `stats`."""
        self._client.flush(timeout)
        self._settle()

    @property
    def in_hand(self) -> int:
        """Calls handed out and neither completed nor failed."""
        with self._lock:
            return self._book.held

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop: wait for the results posted so far, then leave the service (calls still in hand go to other
        workers, or to this one's successor) and end the stream."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            self._lock.notify_all()
        stream = self._stream
        if stream is not None:
            stream.cancel()
        for thread in self._threads:
            thread.join(timeout=5)
        try:
            self._client.flush(timeout)
            self._settle()
            self._client.worker_op(pb.WORKER_LEAVE, self.service, pb.WorkerOp(worker=self.name)).committed(timeout)
        except LaminarError:
            if self._client.failure is None:
                raise
            # The session ended for good (a result refused, e.g. PermissionDenied): each result in flight has that
            # error on its Pending and in stats.errors, and the leave cannot be sent: the leases lapse instead.
            self._settle()
        finally:
            failed = self._client.failure is not None
            try:
                self._client.close(timeout=0 if failed else timeout)
            except Unacknowledged:
                if not failed:
                    raise
            finally:
                self._nodes.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- results ----------------------------------------------------------------------------------------

    def _post(self, call: Call, kind: int, result: pb.CallResult) -> Pending:
        with self._lock:
            if call._done:
                raise InvalidRequest(f"call {call.id} was already completed or failed by this worker")
            if self._closed.is_set():
                raise ClientClosed("the worker is closed")
            call._done = True
        result.worker = self.name
        # Outside the lock: a full client window makes this wait, and the stream thread must not wait with it.
        try:
            pending = self._client.call_result(kind, call.topic, result)
        except BaseException:
            call._done = False  # nothing was sent: the call is still this worker's to finish
            raise
        with self._lock:
            self._last_sent = time.monotonic()  # a result is a heartbeat
            self._results.append((kind, pending))
            self._book.finish(call.id)
            self._lock.notify_all()
        return pending

    def _settle(self) -> None:
        """Count the outcomes of results that committed (they commit in the order they were sent)."""
        with self._lock:
            while self._results and self._results[0][1].done():
                kind, pending = self._results.popleft()
                try:
                    effect = pending.committed(0).effect
                except LaminarError:
                    self.stats.errors += 1
                    continue
                if effect == "VALID":
                    if kind == pb.CALL_COMPLETE:
                        self.stats.completed += 1
                    else:
                        self.stats.failed += 1
                elif effect == "INVALID":
                    self.stats.stale += 1
                    self._last_sent = 0.0  # an ignored result is no heartbeat: say it with a join soon
                else:
                    self.stats.errors += 1

    # ---- joining and heartbeats -------------------------------------------------------------------------

    def _join(self, timeout: float) -> None:
        commit = self._client.worker_op(pb.WORKER_JOIN, self.service, self._join_op).committed(timeout)
        if not commit.ok:
            raise LaminarError(f"worker {self.name!r} could not join service {self.service!r}: {commit.reason}")
        self._last_sent = time.monotonic()

    def _beat(self) -> None:
        """Say the worker is alive when it has sent nothing for a third of its lease."""
        while not self._closed.wait(min(POLL_S, self._heartbeat_s)):
            with self._lock:
                if time.monotonic() - self._last_sent < self._heartbeat_s:
                    continue
                self._last_sent = time.monotonic()
            try:
                self._client.worker_op(pb.WORKER_JOIN, self.service, self._join_op)
                self.stats.heartbeats += 1
            except LaminarError as error:  # the client failed for good: next_call() reports it
                self._error = self._error or error
                return

    def _abandon(self) -> None:
        try:
            self._client.close(timeout=0)
        except LaminarError:
            pass
        self._nodes.close()

    # ---- the Work stream --------------------------------------------------------------------------------

    def _read(self) -> None:
        hint = self._client.leader
        while not self._closed.is_set():
            address = self._nodes.pick(hint)
            hint = None
            wait_s = WORK_RETRY_S
            try:
                self._stream_from(address)
            except grpc.RpcError as error:
                if error.code() in _FINAL:  # type: ignore[attr-defined]
                    self._error = map_error(error)
                    with self._lock:
                        self._lock.notify_all()
                    return
                wait_s = max(WORK_RETRY_S, retry_after_s(error) or 0.0)  # a full node says when to come back
            if self._closed.wait(wait_s):
                return
            hint = self._client.leader

    def _stream_from(self, address: str) -> None:
        method = self._nodes.channel(address).unary_stream(
            "/laminar.v1.Laminar/Work",
            request_serializer=pb.WorkRequest.SerializeToString,
            response_deserializer=pb.WorkFrame.FromString,
        )
        self._stream = method(pb.WorkRequest(service=self.service, worker=self.name))
        for frame in self._stream:
            for wire in frame.calls:
                if not self._offer(wire):
                    return

    def _offer(self, wire: pb.Call) -> bool:
        """Buffer a leased call unless this worker has it already (a node re-sends what a worker holds when
        its stream opens again). False once the worker closed."""
        with self._lock:
            if not self._book.receive(wire.id):
                self.stats.duplicates += 1
                return True
        call = Call(self, wire)
        while not self._closed.is_set():
            try:
                self._buffer.put(call, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._client.failure is not None:  # a result or heartbeat was refused for good: no result could be posted
            raise self._client.failure
        if self._closed.is_set():
            raise ClientClosed("the worker is closed")

    def _wait_for_rate(self, deadline: float | None, timeout: float | None) -> None:
        assert self._rate is not None
        while True:
            self._check_open()
            wait_s = self._rate.take(time.monotonic())
            if wait_s <= 0:
                return
            if deadline is not None and time.monotonic() + wait_s > deadline:
                raise Timeout(f"rate limit ({self._rate.rate_per_s}/s): no call within {timeout} s")
            self._closed.wait(wait_s)


def _parsed(context: bytes) -> Any:
    """The caller's context: JSON text the sandbox wrote ("null" when none). Anything else is handed over as is."""
    try:
        return json.loads(context) if context else None
    except ValueError:
        return context


def _left(deadline: float | None, cap_s: float) -> float:
    if deadline is None:
        return cap_s
    return max(0.0, min(cap_s, deadline - time.monotonic()))


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
