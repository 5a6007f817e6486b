"""The Auth RPC from the client side: users, roles and enabling authorization (docs/security.md)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from laminar.client._connect import TLS, Nodes, leader_hint, map_error
from laminar.errors import Unavailable
from laminar.v1 import laminar_pb2 as pb

AUTH_TIMEOUT_S = 10.0
AUTH_RETRY_S = 0.2
PERMISSIONS = {"read": pb.PERMISSION_READ, "write": pb.PERMISSION_WRITE, "admin": pb.PERMISSION_ADMIN}
Action = pb.AuthRequest.Action


def grant(permission: str, pattern: str = "", cluster: bool = False) -> pb.Grant:
    """A grant of `permission` ("read", "write", "admin") on a topic pattern (`orders`, `orders.*`,
    `*`), or on the cluster."""
    return pb.Grant(permission=PERMISSIONS[permission], pattern="" if cluster else pattern, cluster=cluster)


def auth_request(
    addresses: Sequence[str] | str | None,
    request: pb.AuthRequest,
    timeout_s: float = AUTH_TIMEOUT_S,
    tls: TLS | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Send one AuthRequest, following the leader; the auth state after it (no secrets), as a dict."""
    nodes = Nodes(addresses, tls, token)
    deadline = time.monotonic() + timeout_s
    hint: str | None = None
    last_error = "no node answered"
    try:
        while time.monotonic() < deadline:
            address = nodes.pick(hint)
            method = nodes.channel(address).unary_unary(
                "/laminar.v1.Laminar/Auth",
                request_serializer=pb.AuthRequest.SerializeToString,
                response_deserializer=pb.AuthResponse.FromString,
            )
            try:
                result = method(request, timeout=max(0.1, deadline - time.monotonic()))
                return MessageToDict(
                    result, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                )
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                    raise map_error(error) from None
                hint = leader_hint(error)
                last_error = error.details() or "unavailable"  # type: ignore[attr-defined]
                if hint is None:  # no leader named: give an election a moment
                    time.sleep(AUTH_RETRY_S)
    finally:
        nodes.close()
    raise Unavailable(f"auth request not answered within {timeout_s} s: {last_error}")


def _public(state: dict[str, Any]) -> dict[str, Any]:
    for user in state.get("users", []):
        user.pop("token_salt", None)
        user.pop("token_hash", None)
    return state
