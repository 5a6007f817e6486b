"""The gRPC surface of a node: one servicer method per RPC, wired with explicit serializers.

Listen frames are spliced from events as stored (they are serialized `Event`s already), so the
Listen handler yields bytes and its serializer is the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

from laminar import limits
from laminar.node.service._listen import ListenService
from laminar.node.service._sessions import SessionFailure, SessionRouter
from laminar.v1 import laminar_pb2 as pb

LEADER_METADATA_KEY = "laminar-leader"
SERVICE_NAME = "laminar.v1.Laminar"


class LaminarServicer:
    def __init__(
        self,
        sessions: SessionRouter,
        listens: ListenService,
        status: Callable[[], pb.StatusResponse],
        digest: Callable[[], pb.DigestResponse],
        change_membership: Callable[[pb.MembershipChange], tuple[str, str, list[pb.Peer]]],
        leader_hint: Callable[[], tuple[bool, str]],
    ) -> None:
        self._sessions = sessions
        self._listens = listens
        self._status = status
        self._digest = digest
        self._change_membership = change_membership
        self._leader_hint = leader_hint  # (this node leads, client address of the leader or "")

    def Session(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[pb.ServerFrame]:  # noqa: N802
        is_leader, _ = self._leader_hint()
        if not is_leader:
            self._redirect(context, "this node is not the leader")
        try:
            yield from self._sessions.run(requests, context)
        except SessionFailure as failure:
            if failure.code == grpc.StatusCode.UNAVAILABLE:
                self._redirect(context, failure.message)
            context.abort(failure.code, failure.message)

    def Listen(self, request: pb.ListenRequest, context: grpc.ServicerContext) -> Iterator[bytes]:  # noqa: N802
        yield from self._listens.run(request.topic, request.from_offset, context)

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:  # noqa: N802
        return self._status()

    def Digest(self, request: pb.DigestRequest, context: grpc.ServicerContext) -> pb.DigestResponse:  # noqa: N802
        return self._digest()

    def ChangeMembership(self, request: pb.MembershipChange, context: grpc.ServicerContext) -> pb.MembershipResult:  # noqa: N802
        is_leader, _ = self._leader_hint()
        if not is_leader:
            self._redirect(context, "membership changes go to the leader")
        code, message, peers = self._change_membership(request)
        if code == "unavailable":
            self._redirect(context, message)
        if code:
            context.abort(grpc.StatusCode[code.upper()], message)
        return pb.MembershipResult(peers=peers)

    def _redirect(self, context: grpc.ServicerContext, why: str) -> None:
        _, leader = self._leader_hint()
        context.set_trailing_metadata(((LEADER_METADATA_KEY, leader),))
        where = f"; the leader is at {leader}" if leader else "; no leader is known yet"
        context.abort(grpc.StatusCode.UNAVAILABLE, why + where)


def _identity(data: bytes) -> bytes:
    return data


def build_server(servicer: LaminarServicer, address: str) -> grpc.Server:
    handlers: dict[str, Any] = {
        "Session": grpc.stream_stream_rpc_method_handler(
            servicer.Session,
            request_deserializer=_identity,
            response_serializer=pb.ServerFrame.SerializeToString,
        ),
        "Listen": grpc.unary_stream_rpc_method_handler(
            servicer.Listen, request_deserializer=pb.ListenRequest.FromString, response_serializer=_identity
        ),
        "Status": grpc.unary_unary_rpc_method_handler(
            servicer.Status,
            request_deserializer=pb.StatusRequest.FromString,
            response_serializer=pb.StatusResponse.SerializeToString,
        ),
        "Digest": grpc.unary_unary_rpc_method_handler(
            servicer.Digest,
            request_deserializer=pb.DigestRequest.FromString,
            response_serializer=pb.DigestResponse.SerializeToString,
        ),
        "ChangeMembership": grpc.unary_unary_rpc_method_handler(
            servicer.ChangeMembership,
            request_deserializer=pb.MembershipChange.FromString,
            response_serializer=pb.MembershipResult.SerializeToString,
        ),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.GRPC_WORKER_THREADS_MAX, thread_name_prefix="grpc"),
        handlers=[grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)],
        maximum_concurrent_rpcs=limits.SESSIONS_MAX + limits.LISTENERS_MAX + 8,
        options=[
            ("grpc.max_receive_message_length", limits.GRPC_MESSAGE_BYTES_MAX),
            ("grpc.max_send_message_length", limits.GRPC_MESSAGE_BYTES_MAX),
            ("grpc.so_reuseport", 0),
        ],
    )
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot bind the client port {address}")
    return server
