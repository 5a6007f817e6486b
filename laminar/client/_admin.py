"""Cluster administration: every node's status and digest, and membership changes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from laminar.client._connect import TLS, Nodes, leader_hint, map_error
from laminar.errors import Unavailable
from laminar.v1 import laminar_pb2 as pb

STATUS_TIMEOUT_S = 2.0


def cluster_status(
    addresses: Sequence[str] | str | None = None, timeout_s: float = STATUS_TIMEOUT_S, tls: TLS | None = None
) -> list[dict[str, Any]]:
    """One dict per address: the node's status, or {"address", "error"} if it did not answer."""
    nodes = Nodes(addresses, tls)
    results: list[dict[str, Any]] = []
    try:
        for address in nodes.addresses:
            method = nodes.channel(address).unary_unary(
                "/laminar.v1.Laminar/Status",
                request_serializer=pb.StatusRequest.SerializeToString,
                response_deserializer=pb.StatusResponse.FromString,
            )
            try:
                response = method(pb.StatusRequest(), timeout=timeout_s)
            except grpc.RpcError as error:
                results.append({"address": address, "error": error.details() or str(error.code())})  # type: ignore[attr-defined]
                continue
            status = MessageToDict(
                response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            status["address"] = address
            results.append(status)
    finally:
        nodes.close()
    _add_lag_and_health(results)
    return results


def _add_lag_and_health(statuses: list[dict[str, Any]]) -> None:
    """lag: the leader's commit index minus this node's applied index (None when no leader
    answered); health: "serving" when the node knows a leader (the rule of its grpc.health.v1
    service), else "not_serving"; "unreachable" for a node that did not answer."""
    leaders = [s for s in statuses if "error" not in s and s.get("role") == "leader"]
    leader_commit = max((int(s.get("commit_index", 0)) for s in leaders), default=None)
    for s in statuses:
        if "error" in s:
            s["health"] = "unreachable"
            continue
        applied = int(s.get("applied_index", 0))
        s["lag"] = None if leader_commit is None else max(0, leader_commit - applied)
        s["health"] = "serving" if s.get("leader_id") else "not_serving"


def cluster_digests(
    addresses: Sequence[str] | str | None = None, timeout_s: float = 30.0, tls: TLS | None = None
) -> list[dict[str, Any]]:
    """Each node's replicated-state digest: {"address", "intention_offset", "sha256", "keys"}."""
    nodes = Nodes(addresses, tls)
    results: list[dict[str, Any]] = []
    try:
        for address in nodes.addresses:
            method = nodes.channel(address).unary_unary(
                "/laminar.v1.Laminar/Digest",
                request_serializer=pb.DigestRequest.SerializeToString,
                response_deserializer=pb.DigestResponse.FromString,
            )
            try:
                response = method(pb.DigestRequest(), timeout=timeout_s)
            except grpc.RpcError as error:
                results.append({"address": address, "error": error.details() or str(error.code())})  # type: ignore[attr-defined]
                continue
            results.append(
                {
                    "address": address,
                    "intention_offset": response.intention_offset,
                    "sha256": response.sha256,
                    "keys": response.keys,
                }
            )
    finally:
        nodes.close()
    return results


MEMBERSHIP_TIMEOUT_S = 60.0
MEMBERSHIP_RETRY_S = 0.3


def change_membership(
    addresses: Sequence[str] | str | None,
    action: str,
    node_id: str,
    raft_address: str = "",
    client_address: str = "",
    timeout_s: float = MEMBERSHIP_TIMEOUT_S,
    tls: TLS | None = None,
) -> list[dict[str, Any]]:
    """Add or remove one node ("add" / "remove"), following the leader. Returns the new members."""
    request = pb.MembershipChange(
        action=pb.MembershipChange.ADD if action == "add" else pb.MembershipChange.REMOVE,
        node_id=node_id,
        raft_address=raft_address,
        client_address=client_address,
    )
    nodes = Nodes(addresses, tls)
    deadline = time.monotonic() + timeout_s
    hint: str | None = None
    last_error = "no node answered"
    try:
        while time.monotonic() < deadline:
            address = nodes.pick(hint)
            method = nodes.channel(address).unary_unary(
                "/laminar.v1.Laminar/ChangeMembership",
                request_serializer=pb.MembershipChange.SerializeToString,
                response_deserializer=pb.MembershipResult.FromString,
            )
            try:
                result = method(request, timeout=max(0.1, deadline - time.monotonic()))
                return [MessageToDict(p, preserving_proto_field_name=True) for p in result.peers]
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                    raise map_error(error) from None
                hint = leader_hint(error)
                last_error = error.details() or "unavailable"  # type: ignore[attr-defined]
                time.sleep(MEMBERSHIP_RETRY_S)
    finally:
        nodes.close()
    raise Unavailable(f"membership change not done within {timeout_s} s: {last_error}")
