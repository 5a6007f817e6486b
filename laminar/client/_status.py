"""Ask every node for its status (what `laminar status` shows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from laminar.client._connect import Nodes
from laminar.v1 import laminar_pb2 as pb

STATUS_TIMEOUT_S = 2.0


def cluster_status(
    addresses: Sequence[str] | str | None = None, timeout_s: float = STATUS_TIMEOUT_S
) -> list[dict[str, Any]]:
    """One dict per address: the node's status, or {"address", "error"} if it did not answer."""
    nodes = Nodes(addresses)
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
    return results


def cluster_digests(addresses: Sequence[str] | str | None = None, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Each node's replicated-state digest: {"address", "intention_offset", "sha256", "keys"}."""
    nodes = Nodes(addresses)
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
