"""The rules a mutation must follow before it may reach the log. Shared by client and node.

The client checks them before sending (so a user gets a clear error at once); the node checks them
again before proposing (a client in another language may not).
"""

from __future__ import annotations

import functools
import re

from laminar import limits
from laminar.v1 import laminar_pb2 as pb

_TOPIC_NAME = re.compile(limits.TOPIC_NAME_PATTERN)
TOPIC_NAMES_CACHED_MAX = 1024  # verdicts on topic names kept: a client writes to few topics, many times


def topic_problem(topic: str) -> str | None:
    if not isinstance(topic, str):
        return f"a topic name is a str, not {type(topic).__name__}"
    return _topic_name_problem(topic)


@functools.lru_cache(maxsize=TOPIC_NAMES_CACHED_MAX)
def _topic_name_problem(topic: str) -> str | None:
    if not _TOPIC_NAME.fullmatch(topic):
        return f"topic name {topic[:64]!r} must match {limits.TOPIC_NAME_PATTERN}"
    return None


_WRITE_KINDS = frozenset({pb.CREATE_TOPIC, pb.DESTROY_TOPIC, pb.PUT, pb.DELETE, pb.CONFIGURE_TOPIC})


def mutation_problem(m: pb.Mutation) -> str | None:
    """Why `m` may not be proposed, or None. Nonces are checked by the session, not here.

    The leader's event loop runs this for every mutation of every session (tens of thousands a second under
    load), so each field is read once and what is unset is not built: reading an unset Retention field by field
    was the dearest part of the check (a 1 KiB put: 2.2-3.0 us before, 1.4-1.6 after, alternated in one process)."""
    problem = _topic_name_problem(m.topic)
    if problem:
        return problem
    kind = m.kind
    if kind in _CONSUMER_KINDS:
        return consumer_problem(kind, m.consumer)
    if kind in CALL_KINDS:
        return call_problem(m)
    if kind not in _WRITE_KINDS:
        return f"unknown mutation kind {kind}"
    problem = write_problem(m.key, m.value) or _program_problem(m)
    if problem or not m.HasField("retention"):
        return problem
    return retention_problem(m.retention)


def retention_problem(retention: pb.Retention) -> str | None:
    """Why a topic's retention setting is refused, or None (checked before the log and again at apply)."""
    for name, value, bound in (
        ("max_events", retention.max_events, limits.RETENTION_EVENTS_MAX),
        ("max_bytes", retention.max_bytes, limits.RETENTION_BYTES_MAX),
        ("max_age_ms", retention.max_age_ms, limits.RETENTION_AGE_MS_MAX),
    ):
        if value > bound:
            return f"retention {name} is {value}; the limit is {bound} (0 means no limit)"
    return None


_CONSUMER_KINDS = frozenset(
    {pb.CONSUMER_ACK, pb.CONSUMER_RESET, pb.CONSUMER_DELETE, pb.GROUP_JOIN, pb.GROUP_ACK, pb.GROUP_LEAVE}
)
_GROUP_KINDS = frozenset({pb.GROUP_JOIN, pb.GROUP_ACK, pb.GROUP_LEAVE})


def consumer_problem(kind: int, op: pb.ConsumerOp) -> str | None:
    """Why a consumer intention may not be proposed, or None (docs/consumers.md)."""
    if not _TOPIC_NAME.fullmatch(op.name):
        return f"consumer name {op.name[:64]!r} must match {limits.TOPIC_NAME_PATTERN}"
    if kind in _GROUP_KINDS and not _TOPIC_NAME.fullmatch(op.member):
        return f"member name {op.member[:64]!r} must match {limits.TOPIC_NAME_PATTERN}"
    if len(op.offsets) > limits.GROUP_ACK_OFFSETS_MAX:
        return f"{len(op.offsets)} offsets in one ack; the limit is {limits.GROUP_ACK_OFFSETS_MAX}"
    if op.unacked_max > limits.GROUP_MEMBER_UNACKED_MAX or op.settings.unacked_max > limits.GROUP_MEMBER_UNACKED_MAX:
        return f"unacked_max is over the limit of {limits.GROUP_MEMBER_UNACKED_MAX}"
    lease_ms = op.settings.lease_ms
    if lease_ms and not limits.GROUP_LEASE_MS_MIN <= lease_ms <= limits.GROUP_LEASE_MS_MAX:
        return f"lease_ms {lease_ms} is outside {limits.GROUP_LEASE_MS_MIN}..{limits.GROUP_LEASE_MS_MAX}"
    if op.settings.deliveries_max > limits.GROUP_DELIVERIES_MAX:
        return f"deliveries_max {op.settings.deliveries_max} is over the limit of {limits.GROUP_DELIVERIES_MAX}"
    dead = op.settings.dead_letter_topic
    if dead and not _TOPIC_NAME.fullmatch(dead):
        return f"dead_letter_topic {dead[:64]!r} must match {limits.TOPIC_NAME_PATTERN}"
    return None


CALL_KINDS = frozenset({pb.CALL_COMPLETE, pb.CALL_FAIL, pb.WORKER_JOIN, pb.WORKER_LEAVE})


def call_problem(m: pb.Mutation) -> str | None:
    """Why a pipeline intention may not be proposed, or None (docs/pipelines.md); checked again at apply.
    `m.topic` is the calling topic of a result, the service of a worker intention (checked by the caller)."""
    if m.kind in (pb.WORKER_JOIN, pb.WORKER_LEAVE):
        return worker_problem(m.worker)
    result = m.result
    if not result.call_id:
        return "a call result names its call (call_id >= 1)"
    if result.worker and not _TOPIC_NAME.fullmatch(result.worker):
        return f"worker name {result.worker[:64]!r} must match {limits.TOPIC_NAME_PATTERN}"
    if m.kind == pb.CALL_COMPLETE:
        if len(result.response) > limits.CALL_RESPONSE_BYTES_MAX:
            return f"response is {len(result.response)} bytes; the limit is {limits.CALL_RESPONSE_BYTES_MAX}"
        return None
    if not result.failure:
        return "a failed call says why (failure must not be empty)"
    size = len(result.failure.encode(errors="replace"))
    if size > limits.CALL_FAILURE_BYTES_MAX:
        return f"failure is {size} bytes; the limit is {limits.CALL_FAILURE_BYTES_MAX}"
    return None


def worker_problem(op: pb.WorkerOp) -> str | None:
    """Why a worker's join or leave is refused, or None."""
    if not _TOPIC_NAME.fullmatch(op.worker):
        return f"worker name {op.worker[:64]!r} must match {limits.TOPIC_NAME_PATTERN}"
    if op.method and not _TOPIC_NAME.fullmatch(op.method):
        return f"method name {op.method[:64]!r} must match {limits.TOPIC_NAME_PATTERN}"
    if op.calls_max > limits.WORKER_CALLS_MAX:
        return f"calls_max {op.calls_max} is over the limit of {limits.WORKER_CALLS_MAX}"
    if op.lease_ms and not limits.WORKER_LEASE_MS_MIN <= op.lease_ms <= limits.WORKER_LEASE_MS_MAX:
        return f"lease_ms {op.lease_ms} is outside {limits.WORKER_LEASE_MS_MIN}..{limits.WORKER_LEASE_MS_MAX}"
    return None


def write_problem(key: bytes, value: bytes) -> str | None:
    """Why a key and value may not be written, or None (the topic is checked separately)."""
    if len(key) > limits.KEY_BYTES_MAX:
        return f"key is {len(key)} bytes; the limit is {limits.KEY_BYTES_MAX}"
    if len(value) > limits.VALUE_BYTES_MAX:
        return f"value is {len(value)} bytes; the limit is {limits.VALUE_BYTES_MAX}"
    return None


def _program_problem(m: pb.Mutation) -> str | None:
    program = m.program
    # UTF-8 takes at most 4 bytes a character: a program this short is within the bound without encoding it.
    program_bytes = len(program) if len(program) * 4 <= limits.PROGRAM_SOURCE_BYTES_MAX else len(program.encode())
    if program_bytes > limits.PROGRAM_SOURCE_BYTES_MAX:
        return f"program is {program_bytes} bytes; the limit is {limits.PROGRAM_SOURCE_BYTES_MAX}"
    if len(m.args) > limits.PROGRAM_ARGS_BYTES_MAX:
        return f"program args are {len(m.args)} bytes; the limit is {limits.PROGRAM_ARGS_BYTES_MAX}"
    return None
