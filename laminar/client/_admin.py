"""Cluster administration: every node's status and digest, and membership changes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from laminar.client._connect import TLS, Nodes, call_leader, map_error
from laminar.client._types import ConsumerInfo, Retention, TopicInfo
from laminar.errors import Unavailable
from laminar.v1 import laminar_pb2 as pb

STATUS_TIMEOUT_S = 2.0


def cluster_status(
    addresses: Sequence[str] | str | None = None,
    timeout_s: float = STATUS_TIMEOUT_S,
    tls: TLS | None = None,
    *,
    discover: bool = False,
    token: str | None = None,
) -> list[dict[str, Any]]:
    """One dict per node: its status, or {"address", "error"} if it did not answer. `token`: as for
    `Client` (default $LAMINAR_TOKEN), for a cluster with authorization on.

    Without `discover`, one per given address, in that order. With it, the members the cluster
    itself names (each answering node's `peers`) in node-id order, then any other given address
    that answered; a given address that neither answers nor is a member is left out (once some
    node answers), so a 1-node cluster shows one node whatever addresses were given."""
    nodes = Nodes(addresses, tls, token)
    try:
        results = _statuses(nodes, nodes.addresses, timeout_s)
        if discover:
            results = _with_members(nodes, results, timeout_s)
    finally:
        nodes.close()
    _add_lag_and_health(results)
    return results


def _statuses(nodes: Nodes, addresses: list[str], timeout_s: float) -> list[dict[str, Any]]:
    """Status of each address, asked in parallel, in the order given."""
    calls = []
    for address in addresses:
        method = nodes.channel(address).unary_unary(
            "/laminar.v1.Laminar/Status",
            request_serializer=pb.StatusRequest.SerializeToString,
            response_deserializer=pb.StatusResponse.FromString,
        )
        calls.append((address, method.future(pb.StatusRequest(), timeout=timeout_s)))
    results: list[dict[str, Any]] = []
    for address, call in calls:
        try:
            response = call.result()
        except grpc.RpcError as error:
            results.append({"address": address, "error": error.details() or str(error.code())})  # type: ignore[attr-defined]
            continue
        status = MessageToDict(response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        status["address"] = address
        results.append(status)
    return results


def _with_members(nodes: Nodes, results: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """The members named by the answering nodes (the leader's view first), each with its status."""
    answered = [s for s in results if "error" not in s]
    if not answered:
        return results
    answered.sort(key=lambda s: s.get("role") != "leader")
    members: dict[str, str] = {}  # client address -> node id
    for status in answered:
        for peer in status.get("peers", []):
            if peer.get("client_address"):
                members.setdefault(peer["client_address"], str(peer.get("node_id", "")))
    by_address = {s["address"]: s for s in results}
    missing = [a for a in members if a not in by_address]
    for status in _statuses(nodes, missing, timeout_s):
        by_address[status["address"]] = status
    ordered = sorted(members, key=lambda a: (_numeric(members[a]), a))
    for address in ordered:
        if "error" in by_address[address]:
            by_address[address].setdefault("node_id", members[address])
    others = [s["address"] for s in answered if s["address"] not in members]
    return [by_address[a] for a in ordered + others]


def _numeric(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


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


def describe_topic(
    addresses: Sequence[str] | str | None,
    topic: str,
    timeout_s: float = STATUS_TIMEOUT_S,
    tls: TLS | None = None,
    token: str | None = None,
) -> TopicInfo:
    """A topic's program, offsets and size, from the first node (in the order given) that answers.
    Any node answers from what it has applied, so a follower may be a little behind the leader."""
    nodes = Nodes(addresses, tls, token)
    deadline = time.monotonic() + timeout_s
    errors = []
    try:
        for address in nodes.addresses:
            method = nodes.channel(address).unary_unary(
                "/laminar.v1.Laminar/DescribeTopic",
                request_serializer=pb.DescribeTopicRequest.SerializeToString,
                response_deserializer=pb.DescribeTopicResponse.FromString,
            )
            try:
                r = method(pb.DescribeTopicRequest(topic=topic), timeout=max(0.05, deadline - time.monotonic()))
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):  # type: ignore[attr-defined]
                    raise map_error(error) from None
                errors.append(f"{address}: {error.details()}")  # type: ignore[attr-defined]
                continue
            return TopicInfo(
                topic,
                r.exists,
                r.program,
                r.args,
                r.created_at,
                r.last_offset,
                r.keys,
                r.value_bytes,
                r.keys_capped,
                r.intention_offset,
                tuple(ConsumerInfo.from_wire(c) for c in r.consumers),
                Retention.from_wire(r.retention),
                r.first_offset or 1,
                r.retained_bytes,
            )
    finally:
        nodes.close()
    raise Unavailable(f"no node described {topic!r} within {timeout_s} s: " + "; ".join(errors))


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
    try:
        result = call_leader(
            nodes,
            "ChangeMembership",
            request,
            pb.MembershipResult,
            timeout_s,
            "membership change not done",
            MEMBERSHIP_RETRY_S,
            redirect_wait_s=MEMBERSHIP_RETRY_S,
        )
    finally:
        nodes.close()
    return [MessageToDict(p, preserving_proto_field_name=True) for p in result.peers]
