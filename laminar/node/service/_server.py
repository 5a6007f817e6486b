"""The gRPC surface of a node: one servicer method per RPC, on one asyncio gRPC server.

The server runs on its own event-loop thread (`Server`), so a stream costs memory, not a thread:
sessions and listeners are coroutines. The node's other threads hand it news with
`loop.call_soon_threadsafe` (see _sessions.py and _listen.py). Nothing that may block runs on the
loop: unary calls that read the store or wait for the log run on a small pool (`UNARY_THREADS`,
past `UNARY_CALLS_WAITING_MAX` waiting: RESOURCE_EXHAUSTED with a retry hint), Digest on its own
thread, one at a time, at most half the time.

Listen frames are spliced from events as stored (they are serialized `Event`s already), so the
Listen handler writes bytes and its serializer is the identity.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from laminar import _rules, limits
from laminar.node.config import ServingLimits
from laminar.node.service._api import NodeApi
from laminar.node.service._calls import work_problem, work_step
from laminar.node.service._consumers import member_step
from laminar.node.service._consumers import request_problem as consumer_request_problem
from laminar.node.service._listen import EventFeed, ListenService
from laminar.node.service._sessions import SessionFailure, SessionRouter
from laminar.node.store import StoreClosed, StoreReplaced
from laminar.v1 import laminar_pb2 as pb

log = logging.getLogger("laminar.server")

LEADER_METADATA_KEY = "laminar-leader"
# On RESOURCE_EXHAUSTED from a bound of this server: how long to wait before retrying, in ms.
RETRY_AFTER_METADATA_KEY = "laminar-retry-after-ms"
SERVICE_NAME = "laminar.v1.Laminar"
GET_BARRIER_TIMEOUT_S = 5.0  # a linearizable read waits this long at most for its barrier to commit
SERVER_START_TIMEOUT_S = 10.0
SESSION_RETRY_AFTER_MS = 1000  # the retry hint of a session or listener refused by a bound
LISTEN_FROM_OFFSET_MAX = 2**63 - 1  # offsets are stored as u64; past this `offset + 1` would not fit
T = TypeVar("T")


class Exhausted(Exception):
    """A bound of this server refused a call: RESOURCE_EXHAUSTED, with a retry hint."""

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_ms = max(limits.RETRY_HINT_MS_MIN, retry_after_ms)


class Offload:
    """Runs blocking node calls on a bounded pool: past `waiting_max` calls running or waiting, a
    call is refused at once (Exhausted) rather than queued without end."""

    def __init__(self, name: str, threads: int, waiting_max: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._name = name
        self._taken_max = threads + waiting_max
        self._taken = 0  # touched on the event loop only

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if self._taken >= self._taken_max:
            raise Exhausted(f"this node has {self._taken} {self._name} calls running or waiting: retry later", 200)
        self._taken += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._taken -= 1

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class DutyGate:
    """One expensive call at a time, and the next may start only after a pause DIGEST_PAUSE_FACTOR
    times as long as the last one took: it uses at most 1 / (1 + factor) of one thread's time,
    whatever the callers do."""

    def __init__(self, name: str) -> None:
        self._offload = Offload(name, limits.DIGEST_CALLS_CONCURRENT_MAX, 0)
        self._name = name
        self._next_start = 0.0
        self._running = False

    async def __call__(self, fn: Callable[[], T]) -> T:
        if self._running:
            raise Exhausted(f"a {self._name} is running on this node: retry in a moment", 1000)
        wait_ms = int((self._next_start - time.monotonic()) * 1000)
        if wait_ms > 0:
            raise Exhausted(f"{self._name} is rate limited on this node: retry in {wait_ms} ms", wait_ms)
        started = time.monotonic()
        self._running = True
        try:
            return await self._offload(fn)
        finally:
            self._running = False
            ended = time.monotonic()
            self._next_start = ended + limits.DIGEST_PAUSE_FACTOR * (ended - started)

    def stop(self) -> None:
        self._offload.stop()


class RateGate:
    """At most `per_s` calls a second on average, `per_s` at once in a burst (a token bucket on the
    event loop); past it, Exhausted with the wait until the next token as the hint."""

    def __init__(self, name: str, per_s: int) -> None:
        self._name = name
        self._per_s = per_s
        self._tokens = float(per_s)
        self._at = time.monotonic()

    def take(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(self._per_s), self._tokens + (now - self._at) * self._per_s)
        self._at = now
        if self._tokens < 1.0:
            wait_ms = int((1.0 - self._tokens) / self._per_s * 1000) + 1
            raise Exhausted(f"{self._name} is rate limited on this node ({self._per_s}/s): retry later", wait_ms)
        self._tokens -= 1.0


class LaminarServicer:
    def __init__(self, sessions: SessionRouter, listens: ListenService, node: NodeApi, calls: Offload) -> None:
        self._sessions = sessions
        self._listens = listens
        self._node = node
        self._calls = calls
        self._digests = DutyGate("Digest")
        self._statuses = RateGate("Status", limits.STATUS_CALLS_PER_S_MAX)
        self._describes = RateGate("DescribeTopic", limits.DESCRIBE_TOPIC_CALLS_PER_S_MAX)
        self._call_describes = RateGate("DescribeCalls", limits.DESCRIBE_CALLS_CALLS_PER_S_MAX)

    def stop(self) -> None:
        self._calls.stop()
        self._digests.stop()
        self._listens.stop()

    async def Session(self, requests: Any, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        is_leader, _ = self._node.leader_hint()
        if not is_leader:
            await self._redirect(context, "this node is not the leader")
        try:
            await self._sessions.run(context)
        except Exhausted as refused:  # the pool that checks a Hello against the store is full
            await _exhausted(context, refused)
        except _STORE_GONE as gone:
            await _store_gone(context, gone)
        except SessionFailure as failure:
            self._node.session_failed(failure.code, failure.message)
            if failure.code == grpc.StatusCode.UNAVAILABLE:
                await self._redirect(context, failure.message)
            if failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                await _exhausted(context, Exhausted(failure.message, SESSION_RETRY_AFTER_MS))
            await context.abort(failure.code, failure.message)

    async def Listen(self, request: pb.ListenRequest, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        problem = _rules.topic_problem(request.topic) or consumer_request_problem(request)
        if not problem and request.from_offset > LISTEN_FROM_OFFSET_MAX:
            problem = f"from_offset {request.from_offset} is beyond any consequence offset (at most 2^63 - 1)"
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        refused = self._listens.admit()
        if refused:
            await _exhausted(context, Exhausted(refused, SESSION_RETRY_AFTER_MS))
        try:
            await self._listens.run(request, context, member_step if request.member else None)
        except SessionFailure as failure:
            await self._end_listen(context, failure)
        except _STORE_GONE as gone:  # a snapshot install: the client's Listener resumes (a snapshot starts over)
            await _store_gone(context, gone)

    async def Work(self, request: pb.WorkRequest, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        """A worker's stream of the calls leased to it (pipelines); counts as a listener."""
        problem = work_problem(request)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        refused = self._listens.admit()
        if refused:
            await _exhausted(context, Exhausted(refused, SESSION_RETRY_AFTER_MS))
        try:
            await self._listens.run_work(request, context, work_step)
        except SessionFailure as failure:
            await self._end_listen(context, failure)
        except _STORE_GONE as gone:
            await _store_gone(context, gone)

    async def DescribeCalls(  # noqa: N802
        self, request: pb.DescribeCallsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DescribeCallsResponse:
        problem = _rules.topic_problem(request.topic)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return await self._call(context, self._node.describe_calls, request, gate=self._call_describes)

    async def _end_listen(self, context: grpc.aio.ServicerContext, failure: SessionFailure) -> NoReturn:
        """End a listener's stream with `failure`; one cut for not reading (stream_send_stall_s) carries a
        retry hint, as every RESOURCE_EXHAUSTED does: its client reconnects after it and resumes."""
        if failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            await _exhausted(context, Exhausted(failure.message, SESSION_RETRY_AFTER_MS))
        await context.abort(failure.code, failure.message)
        raise AssertionError("abort raises")

    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext) -> pb.GetResponse:  # noqa: N802
        problem = _rules.topic_problem(request.topic)
        if not problem and len(request.key) > limits.KEY_BYTES_MAX:
            problem = f"key is {len(request.key)} bytes; the limit is {limits.KEY_BYTES_MAX}"
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if not request.stale_ok and not self._node.leader_hint()[0]:
            await self._redirect(context, "linearizable reads go to the leader (or set stale_ok)")
        remaining = context.time_remaining()
        timeout_s = GET_BARRIER_TIMEOUT_S if remaining is None else min(GET_BARRIER_TIMEOUT_S, max(0.0, remaining))
        response = await self._call(context, self._node.get, request, timeout_s)
        if response is None:
            await self._redirect(context, "the read barrier did not commit in time (leadership may have changed)")
        return response

    async def Status(self, request: pb.StatusRequest, context: grpc.aio.ServicerContext) -> pb.StatusResponse:  # noqa: N802
        return await self._call(context, self._node.status, gate=self._statuses)

    async def DescribeTopic(  # noqa: N802
        self, request: pb.DescribeTopicRequest, context: grpc.aio.ServicerContext
    ) -> pb.DescribeTopicResponse:
        problem = _rules.topic_problem(request.topic)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return await self._call(context, self._node.describe_topic, request.topic, gate=self._describes)

    async def Digest(self, request: pb.DigestRequest, context: grpc.aio.ServicerContext) -> pb.DigestResponse:  # noqa: N802
        try:
            return await self._digests(self._node.digest)
        except Exhausted as refused:
            await _exhausted(context, refused)
        except _STORE_GONE as gone:
            await _store_gone(context, gone)

    async def ChangeMembership(  # noqa: N802
        self, request: pb.MembershipChange, context: grpc.aio.ServicerContext
    ) -> pb.MembershipResult:
        is_leader, _ = self._node.leader_hint()
        if not is_leader:
            await self._redirect(context, "membership changes go to the leader")
        code, message, peers = await self._call(context, self._node.change_membership, request)
        if code == "unavailable":
            await self._redirect(context, message)
        if code:
            await context.abort(grpc.StatusCode[code.upper()], message)
        return pb.MembershipResult(peers=peers)

    async def InjectFault(self, request: pb.FaultRequest, context: grpc.aio.ServicerContext) -> pb.FaultResponse:  # noqa: N802
        if not self._node.inject_fault(request):
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "fault injection is off (start the node with --fault-injection)"
            )
        return pb.FaultResponse()

    async def _call(
        self, context: grpc.aio.ServicerContext, fn: Callable[..., T], *args: Any, gate: RateGate | None = None
    ) -> T:
        try:
            if gate is not None:
                gate.take()
            return await self._calls(fn, *args)
        except Exhausted as refused:
            await _exhausted(context, refused)
        except _STORE_GONE as gone:
            await _store_gone(context, gone)

    async def _redirect(self, context: grpc.aio.ServicerContext, why: str) -> NoReturn:
        _, leader = self._node.leader_hint()
        context.set_trailing_metadata(((LEADER_METADATA_KEY, leader),))
        where = f"; the leader is at {leader}" if leader else "; no leader is known yet"
        await context.abort(grpc.StatusCode.UNAVAILABLE, why + where)
        raise AssertionError("abort raises")


# A read that a snapshot install cut short (StoreReplaced), or a store that is closed (StoreClosed: the node is
# stopping): UNAVAILABLE, which every client retries (elsewhere, or here once the new store answers).
_STORE_GONE = (StoreReplaced, StoreClosed)


async def _store_gone(context: grpc.aio.ServicerContext, gone: Exception) -> NoReturn:
    await context.abort(grpc.StatusCode.UNAVAILABLE, f"{gone}: retry")
    raise AssertionError("abort raises")


async def _exhausted(context: grpc.aio.ServicerContext, refused: Exhausted) -> NoReturn:
    context.set_trailing_metadata(((RETRY_AFTER_METADATA_KEY, str(refused.retry_after_ms)),))
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused.message)
    raise AssertionError("abort raises")


def _parsing(
    message: Any, handler: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
    """Parse the request ourselves: a malformed one gets INVALID_ARGUMENT with a reason, where
    gRPC's own deserializer failure would be an opaque INTERNAL."""

    async def parse_then_handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            request = message.FromString(raw)
        except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, and others on odd input
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request is not a {message.__name__}: {e}")
        return await handler(request, context)

    return parse_then_handle


def _identity(data: bytes) -> bytes:
    return data


class ConnectionGate:
    """Connections with a call open, by peer address (each TCP connection has its own port): past
    connections_max, a call on another connection is answered RESOURCE_EXHAUSTED with a retry hint
    (gRPC itself accepts an eighth more connections, so that their calls are answered, not closed).
    Event loop only. A connection that holds no call costs a descriptor and is bounded by gRPC's
    handshake and idle timeouts, and its cap on accepted connections."""

    def __init__(self, connections_max: int) -> None:
        self.connections_max = connections_max
        self._calls: dict[str, int] = {}  # peer -> calls open on its connection

    def enter(self, peer: str) -> bool:
        """Count a call in; False when it comes on a connection past connections_max."""
        open_calls = self._calls.get(peer)
        if open_calls is None and len(self._calls) >= self.connections_max:
            return False
        self._calls[peer] = (open_calls or 0) + 1
        return True

    def leave(self, peer: str) -> None:
        left = self._calls[peer] - 1
        if left:
            self._calls[peer] = left
        else:
            del self._calls[peer]


def _gated(gate: ConnectionGate, handler: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def call_within_connections_max(request: Any, context: grpc.aio.ServicerContext) -> Any:
        peer = context.peer()
        if not gate.enter(peer):
            why = (
                f"this node serves calls on {gate.connections_max} connections already (connections_max): "
                "retry later or elsewhere"
            )
            await _exhausted(context, Exhausted(why, limits.CONNECTION_RETRY_AFTER_MS))
        try:
            return await handler(request, context)
        finally:
            gate.leave(peer)

    return call_within_connections_max


def _handlers(servicer: LaminarServicer, gate: ConnectionGate) -> grpc.GenericRpcHandler:
    unary: dict[str, tuple[Any, Any, Any]] = {
        "Get": (pb.GetRequest, servicer.Get, pb.GetResponse),
        "Status": (pb.StatusRequest, servicer.Status, pb.StatusResponse),
        "DescribeTopic": (pb.DescribeTopicRequest, servicer.DescribeTopic, pb.DescribeTopicResponse),
        "DescribeCalls": (pb.DescribeCallsRequest, servicer.DescribeCalls, pb.DescribeCallsResponse),
        "Digest": (pb.DigestRequest, servicer.Digest, pb.DigestResponse),
        "ChangeMembership": (pb.MembershipChange, servicer.ChangeMembership, pb.MembershipResult),
        "InjectFault": (pb.FaultRequest, servicer.InjectFault, pb.FaultResponse),
    }
    handlers: dict[str, Any] = {
        name: grpc.unary_unary_rpc_method_handler(
            _gated(gate, _parsing(request, method)),
            request_deserializer=_identity,
            response_serializer=response.SerializeToString,
        )
        for name, (request, method, response) in unary.items()
    }
    handlers["Session"] = grpc.stream_stream_rpc_method_handler(
        _gated(gate, servicer.Session),
        request_deserializer=_identity,
        response_serializer=pb.ServerFrame.SerializeToString,
    )
    handlers["Listen"] = grpc.unary_stream_rpc_method_handler(
        _gated(gate, _parsing(pb.ListenRequest, servicer.Listen)),
        request_deserializer=_identity,
        response_serializer=_identity,
    )
    handlers["Work"] = grpc.unary_stream_rpc_method_handler(
        _gated(gate, _parsing(pb.WorkRequest, servicer.Work)),
        request_deserializer=_identity,
        response_serializer=_identity,
    )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


class Health:
    """The standard grpc.health.v1 service; the node sets SERVING / NOT_SERVING from any thread."""

    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._publish()

    def set(self, serving: bool) -> None:
        self._serving = serving
        self._publish()

    def _publish(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # attach publishes the latest
        serving = self._serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

        async def publish() -> None:
            for name in ("", SERVICE_NAME):  # "" is the whole server, as generic checkers ask
                await self.servicer.set(name, status)

        try:
            asyncio.run_coroutine_threadsafe(publish(), loop)
        except RuntimeError:  # the loop is closing: the node is stopping
            pass


def server_options(serving: ServingLimits, connections_accepted_max: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", limits.GRPC_RECEIVE_BYTES_MAX),
        ("grpc.max_send_message_length", limits.GRPC_MESSAGE_BYTES_MAX),
        ("grpc.so_reuseport", 0),
        # Past this many TCP connections gRPC closes new ones as it accepts them (the node lives on); below it,
        # calls on connections past connections_max are answered RESOURCE_EXHAUSTED (ConnectionGate).
        ("grpc.max_allowed_incoming_connections", connections_accepted_max),
        # A socket that connects and never speaks HTTP/2 holds a descriptor only this long.
        ("grpc.server_handshake_timeout_ms", limits.CONNECTION_HANDSHAKE_TIMEOUT_MS),
        ("grpc.max_connection_idle_ms", limits.CONNECTION_IDLE_MS),
        # Dead or silent peers: ping every connection (calls or not), close it when a ping goes unanswered.
        ("grpc.keepalive_time_ms", limits.CONNECTION_KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", limits.CONNECTION_KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


class Server:
    """A grpc.aio server on its own event-loop thread. `start` binds (OSError if it cannot) and
    serves; `stop` ends every call after a grace period and stops the loop."""

    def __init__(
        self,
        servicer: LaminarServicer,
        address: str,
        health_: Health,
        feed: EventFeed,
        serving: ServingLimits,
        connections: tuple[int, int],  # (connections served, connections accepted): see _fds.connection_limits
        credentials: grpc.ServerCredentials | None = None,
        interceptors: tuple[grpc.aio.ServerInterceptor, ...] = (),  # authorization (laminar/node/auth)
    ) -> None:
        self._interceptors = interceptors
        self._servicer = servicer
        self._address = address
        self._health = health_
        self._feed = feed
        self._gate = ConnectionGate(connections[0])
        self._options = server_options(serving, connections[1])
        # Every call at once, whatever its kind (health watches and reflection included): past it gRPC
        # itself answers RESOURCE_EXHAUSTED. Sessions and listeners are refused by their own bounds first.
        self._calls_max = (
            serving.sessions_max
            + serving.listeners_max
            + limits.UNARY_THREADS
            + limits.UNARY_CALLS_WAITING_MAX
            + limits.OTHER_CALLS_MAX
        )
        self._credentials = credentials
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop", daemon=True)
        self._server: grpc.aio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(SERVER_START_TIMEOUT_S)

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._feed.attach(loop)
        self._health.attach(loop)
        server = grpc.aio.server(
            handlers=[_handlers(self._servicer, self._gate)],
            options=self._options,
            maximum_concurrent_rpcs=self._calls_max,
            interceptors=self._interceptors,
        )
        names = [SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME]
        health_pb2_grpc.add_HealthServicer_to_server(self._health.servicer, server)
        # Reflection serves the descriptors of the default pool, where laminar_pb2 registered itself.
        reflection.enable_server_reflection(names, server)
        if self._credentials is not None:
            bound = server.add_secure_port(self._address, self._credentials)
        else:
            bound = server.add_insecure_port(self._address)
        if bound == 0:
            raise OSError(f"cannot bind the client port {self._address}")
        await server.start()
        self._server = server

    def stop(self, grace_s: float) -> None:
        if self._server is not None:
            future = asyncio.run_coroutine_threadsafe(self._server.stop(grace_s), self._loop)
            try:
                future.result(grace_s + SERVER_START_TIMEOUT_S)
            except (concurrent.futures.TimeoutError, RuntimeError) as e:
                log.warning("the gRPC server did not stop cleanly: %s", e)
        self._servicer.stop()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(SERVER_START_TIMEOUT_S)
