"""The Auth RPC from the client side: users, roles and enabling authorization (docs/security.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict

from laminar.client._connect import TLS, Nodes, call_leader
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
    try:
        result = call_leader(
            nodes, "Auth", request, pb.AuthResponse, timeout_s, "auth request not answered", AUTH_RETRY_S
        )
    finally:
        nodes.close()
    return MessageToDict(result, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
