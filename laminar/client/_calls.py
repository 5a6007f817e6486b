"""A topic's calls in flight and its call counters (docs/pipelines.md), as one node has applied them."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from laminar import limits
from laminar.client._admin import STATUS_TIMEOUT_S
from laminar.client._connect import TLS, Nodes, map_error
from laminar.errors import Unavailable
from laminar.v1 import laminar_pb2 as pb

# Pages one listing reads at most: every call a topic may have in flight, with room to spare.
LIST_PAGES_MAX = limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX // limits.CALLS_LISTED_MAX + 2


@dataclass(frozen=True)
class CallInfo:
    """One call in flight. `worker` is "" while the call waits for one; times are log time (ms since the epoch)."""

    id: int
    topic: str
    service: str
    method: str
    request: bytes
    context: Any  # the caller's context (parsed JSON)
    issued_ms: int
    deadline_ms: int
    intention_offset: int
    deliveries: int
    worker: str
    lease_deadline_ms: int

    @staticmethod
    def from_wire(c: pb.Call) -> CallInfo:
        context = json.loads(c.context) if c.context else None
        return CallInfo(
            c.id,
            c.topic,
            c.service,
            c.method,
            c.request,
            context,
            c.issued_ms,
            c.deadline_ms,
            c.intention_offset,
            c.deliveries,
            c.worker,
            c.lease_deadline_ms,
        )


@dataclass(frozen=True)
class CallStats:
    """Counters of a topic's calls since it was created. Every call issued ends in exactly one of completed,
    failed, timed_out and gave_up, or is still in flight."""

    in_flight: int = 0
    issued: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    redeliveries: int = 0
    gave_up: int = 0
    on_result_errors: int = 0

    @staticmethod
    def from_wire(s: pb.CallStats) -> CallStats:
        return CallStats(
            s.in_flight, s.issued, s.completed, s.failed, s.timed_out, s.redeliveries, s.gave_up, s.on_result_errors
        )


@dataclass(frozen=True)
class CallsInfo:
    topic: str
    exists: bool
    intention_offset: int  # the answer reflects every intention through this one
    log_time_ms: int
    stats: CallStats
    calls: tuple[CallInfo, ...]  # in flight, by id


def describe_calls(
    addresses: Sequence[str] | str | None,
    topic: str,
    call_id: int = 0,
    timeout_s: float = STATUS_TIMEOUT_S,
    tls: TLS | None = None,
    token: str | None = None,
) -> CallsInfo:
    """The topic's counters and every call it has in flight (or only `call_id`), from the first node that
    answers, in the order given. All pages come from that one node, so they describe one moment or later."""
    nodes = Nodes(addresses, tls, token)
    deadline = time.monotonic() + timeout_s
    errors: list[str] = []
    try:
        for address in nodes.addresses:
            try:
                return _from_node(nodes, address, topic, call_id, deadline)
            except grpc.RpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):  # type: ignore[attr-defined]
                    raise map_error(error) from None
                errors.append(f"{address}: {error.details()}")  # type: ignore[attr-defined]
    finally:
        nodes.close()
    raise Unavailable(f"no node described the calls of {topic!r} within {timeout_s} s: " + "; ".join(errors))


def _from_node(nodes: Nodes, address: str, topic: str, call_id: int, deadline: float) -> CallsInfo:
    method = nodes.channel(address).unary_unary(
        "/laminar.v1.Laminar/DescribeCalls",
        request_serializer=pb.DescribeCallsRequest.SerializeToString,
        response_deserializer=pb.DescribeCallsResponse.FromString,
    )
    calls: list[CallInfo] = []
    after_id = 0
    for _ in range(LIST_PAGES_MAX):
        request = pb.DescribeCallsRequest(topic=topic, after_id=after_id, call_id=call_id)
        r = method(request, timeout=max(0.05, deadline - time.monotonic()))
        calls.extend(CallInfo.from_wire(c) for c in r.calls)
        if call_id or len(r.calls) < limits.CALLS_LISTED_MAX or not r.calls:
            break
        after_id = r.calls[-1].id
    return CallsInfo(
        topic, r.topic_exists, r.intention_offset, r.log_time_ms, CallStats.from_wire(r.stats), tuple(calls)
    )
