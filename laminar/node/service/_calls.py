"""Pipelines on the read side (docs/pipelines.md): a worker's stream of the calls leased to it, and what
DescribeCalls says about a topic's calls.

A worker's stream (ListenService runs one `work_step` at a time, on a read thread, like a group member's stream)
reads, after each applied entry that may have changed leases, the calls leased to this worker by grants after the
last one it sent (an index by worker and grant, written at apply: no scan of the service's calls), in grant order.
Nothing is buffered per worker: the leases are the queue, bounded by CALLS_IN_FLIGHT_PER_SERVICE_MAX, and a
reconnecting worker is sent every call it still holds.
"""

from __future__ import annotations

from laminar import _rules, limits
from laminar.node.store import CallLease, Store
from laminar.v1 import laminar_pb2 as pb


def work_problem(request: pb.WorkRequest) -> str | None:
    """Why a Work stream is refused, or None."""
    problem = _rules.topic_problem(request.service)
    if problem:
        return problem.replace("topic name", "service name")
    return _rules.worker_problem(pb.WorkerOp(worker=request.worker))


def work_step(store: Store, request: pb.WorkRequest, sent_grant: int) -> tuple[bytes | None, int]:
    """One step of a worker's stream (on a read thread): a WorkFrame of the calls newly leased to the worker since
    grant `sent_grant`, in grant order, or None; and the last grant sent after it."""
    rows = store.worker_calls(request.service, request.worker, sent_grant, limits.WORK_FRAME_CALLS_MAX)
    if not rows:
        return None, sent_grant
    frame = pb.WorkFrame()
    for _, call_data, lease_data in rows:
        call = frame.calls.add()
        call.MergeFromString(call_data)
        _with_lease(call, None if lease_data is None else CallLease.decode(lease_data))
    return frame.SerializeToString(), rows[-1][0]


def _with_lease(call: pb.Call, lease: CallLease | None) -> None:
    if lease is not None:
        call.deliveries = lease.deliveries
        call.worker = lease.worker
        call.lease_deadline_ms = lease.lease_deadline_ms


def describe_calls(store: Store, request: pb.DescribeCallsRequest) -> pb.DescribeCallsResponse:
    """The calls in flight of a topic and its counters, as this node has applied them."""
    limit = min(request.limit or limits.CALLS_LISTED_MAX, limits.CALLS_LISTED_MAX)
    after = request.after_id
    if request.call_id:
        after, limit = request.call_id - 1, 1
    record, stats, rows, mark = store.calls_page(request.topic, after, limit)
    answer = pb.DescribeCallsResponse(
        topic_exists=record is not None and record.live,
        intention_offset=mark.intention_offset,
        log_time_ms=mark.time_ms,
    )
    if not answer.topic_exists:
        return answer
    if stats is not None:
        answer.stats.MergeFromString(stats)
    for call_data, lease_data in rows:
        call = answer.calls.add()
        call.MergeFromString(call_data)
        _with_lease(call, None if lease_data is None else CallLease.decode(lease_data))
    if request.call_id:
        kept = [c for c in answer.calls if c.id == request.call_id]
        del answer.calls[:]
        answer.calls.extend(kept)
    return answer


__all__ = ["describe_calls", "work_problem", "work_step"]
