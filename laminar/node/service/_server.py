"""The gRPC surface of a node: one servicer method per RPC, wired with explicit serializers.

Listen frames are spliced from events as stored (they are serialized `Event`s already), so the
Listen handler yields bytes and its serializer is the identity.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from laminar import _rules, limits
from laminar.node.service._api import NodeApi
from laminar.node.service._consumers import member_stream
from laminar.node.service._consumers import request_problem as consumer_request_problem
from laminar.node.service._listen import ListenService
from laminar.node.service._sessions import SessionFailure, SessionRouter
from laminar.v1 import laminar_pb2 as pb

LEADER_METADATA_KEY = "laminar-leader"
SERVICE_NAME = "laminar.v1.Laminar"
GET_BARRIER_TIMEOUT_S = 5.0  # a linearizable read waits this long at most for its barrier to commit


class LaminarServicer:
    def __init__(self, sessions: SessionRouter, listens: ListenService, node: NodeApi) -> None:
        self._sessions = sessions
        self._listens = listens
        self._node = node

    def Session(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[pb.ServerFrame]:  # noqa: N802
        is_leader, _ = self._node.leader_hint()
        if not is_leader:
            self._redirect(context, "this node is not the leader")
        try:
            yield from self._sessions.run(requests, context)
        except SessionFailure as failure:
            self._node.session_failed(failure.code, failure.message)
            if failure.code == grpc.StatusCode.UNAVAILABLE:
                self._redirect(context, failure.message)
            context.abort(failure.code, failure.message)

    def Listen(self, request: pb.ListenRequest, context: grpc.ServicerContext) -> Iterator[bytes]:  # noqa: N802
        problem = consumer_request_problem(request)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        body = None
        if request.member:
            body = functools.partial(member_stream, request=request, context=context)
        yield from self._listens.run(
            request.topic, request.from_offset, context, request.snapshot, request.consumer, body
        )

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.GetResponse:  # noqa: N802
        problem = _rules.topic_problem(request.topic)
        if not problem and len(request.key) > limits.KEY_BYTES_MAX:
            problem = f"key is {len(request.key)} bytes; the limit is {limits.KEY_BYTES_MAX}"
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if not request.stale_ok and not self._node.leader_hint()[0]:
            self._redirect(context, "linearizable reads go to the leader (or set stale_ok)")
        remaining = context.time_remaining()
        timeout_s = GET_BARRIER_TIMEOUT_S if remaining is None else min(GET_BARRIER_TIMEOUT_S, max(0.0, remaining))
        response = self._node.get(request, timeout_s)
        if response is None:
            self._redirect(context, "the read barrier did not commit in time (leadership may have changed)")
            raise AssertionError("abort raises")
        return response

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:  # noqa: N802
        return self._node.status()

    def DescribeTopic(  # noqa: N802
        self, request: pb.DescribeTopicRequest, context: grpc.ServicerContext
    ) -> pb.DescribeTopicResponse:
        problem = _rules.topic_problem(request.topic)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return self._node.describe_topic(request.topic)

    def Digest(self, request: pb.DigestRequest, context: grpc.ServicerContext) -> pb.DigestResponse:  # noqa: N802
        return self._node.digest()

    def ChangeMembership(self, request: pb.MembershipChange, context: grpc.ServicerContext) -> pb.MembershipResult:  # noqa: N802
        is_leader, _ = self._node.leader_hint()
        if not is_leader:
            self._redirect(context, "membership changes go to the leader")
        code, message, peers = self._node.change_membership(request)
        if code == "unavailable":
            self._redirect(context, message)
        if code:
            context.abort(grpc.StatusCode[code.upper()], message)
        return pb.MembershipResult(peers=peers)

    def InjectFault(self, request: pb.FaultRequest, context: grpc.ServicerContext) -> pb.FaultResponse:  # noqa: N802
        if not self._node.inject_fault(request):
            context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "fault injection is off (start the node with --fault-injection)"
            )
            raise AssertionError("abort raises")
        return pb.FaultResponse()

    def _redirect(self, context: grpc.ServicerContext, why: str) -> None:
        _, leader = self._node.leader_hint()
        context.set_trailing_metadata(((LEADER_METADATA_KEY, leader),))
        where = f"; the leader is at {leader}" if leader else "; no leader is known yet"
        context.abort(grpc.StatusCode.UNAVAILABLE, why + where)


def _parsing(
    message: Any, handler: Callable[[Any, grpc.ServicerContext], Any]
) -> Callable[[bytes, grpc.ServicerContext], Any]:
    """Parse the request ourselves: a malformed one gets INVALID_ARGUMENT with a reason, where
    gRPC's own deserializer failure would be an opaque INTERNAL."""

    def parse_then_handle(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            request = message.FromString(raw)
        except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, and others on odd input
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request is not a {message.__name__}: {e}")
        return handler(request, context)

    return parse_then_handle


def _identity(data: bytes) -> bytes:
    return data


def build_health() -> health.HealthServicer:
    """The standard grpc.health.v1 service; the node sets SERVING / NOT_SERVING as it learns."""
    servicer = health.HealthServicer(experimental_non_blocking=True)
    set_health(servicer, False)
    return servicer


def set_health(servicer: health.HealthServicer, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):  # "" is the whole server, as generic checkers ask
        servicer.set(name, status)


def build_server(
    servicer: LaminarServicer,
    address: str,
    health_servicer: health.HealthServicer | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> grpc.Server:
    handlers: dict[str, Any] = {
        "Session": grpc.stream_stream_rpc_method_handler(
            servicer.Session,
            request_deserializer=_identity,
            response_serializer=pb.ServerFrame.SerializeToString,
        ),
        "Listen": grpc.unary_stream_rpc_method_handler(
            _parsing(pb.ListenRequest, servicer.Listen), request_deserializer=_identity, response_serializer=_identity
        ),
        "Get": grpc.unary_unary_rpc_method_handler(
            _parsing(pb.GetRequest, servicer.Get),
            request_deserializer=_identity,
            response_serializer=pb.GetResponse.SerializeToString,
        ),
        "Status": grpc.unary_unary_rpc_method_handler(
            _parsing(pb.StatusRequest, servicer.Status),
            request_deserializer=_identity,
            response_serializer=pb.StatusResponse.SerializeToString,
        ),
        "DescribeTopic": grpc.unary_unary_rpc_method_handler(
            _parsing(pb.DescribeTopicRequest, servicer.DescribeTopic),
            request_deserializer=_identity,
            response_serializer=pb.DescribeTopicResponse.SerializeToString,
        ),
        "Digest": grpc.unary_unary_rpc_method_handler(
            _parsing(pb.DigestRequest, servicer.Digest),
            request_deserializer=_identity,
            response_serializer=pb.DigestResponse.SerializeToString,
        ),
        "ChangeMembership": grpc.unary_unary_rpc_method_handler(
            _parsing(pb.MembershipChange, servicer.ChangeMembership),
            request_deserializer=_identity,
            response_serializer=pb.MembershipResult.SerializeToString,
        ),
        "InjectFault": grpc.unary_unary_rpc_method_handler(
            _parsing(pb.FaultRequest, servicer.InjectFault),
            request_deserializer=_identity,
            response_serializer=pb.FaultResponse.SerializeToString,
        ),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.GRPC_WORKER_THREADS_MAX, thread_name_prefix="grpc"),
        handlers=[grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)],
        maximum_concurrent_rpcs=limits.SESSIONS_MAX + limits.LISTENERS_MAX + 8,
        options=[
            ("grpc.max_receive_message_length", limits.GRPC_RECEIVE_BYTES_MAX),
            ("grpc.max_send_message_length", limits.GRPC_MESSAGE_BYTES_MAX),
            ("grpc.so_reuseport", 0),
        ],
    )
    names = [SERVICE_NAME, reflection.SERVICE_NAME]
    if health_servicer is not None:
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names.append(health.SERVICE_NAME)
    # Reflection serves the descriptors of the default pool, where laminar_pb2 registered itself.
    reflection.enable_server_reflection(names, server)
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind the client port {address}")
    return server
