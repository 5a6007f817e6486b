"""The sandbox's public types: what the state machine passes to a program and what it gets back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from laminar.limits import (
    CALL_OVERHEAD_BYTES,
    PROGRAM_ENTRY_EMITTED_BYTES_MAX,
    PROGRAM_EVENT_OVERHEAD_BYTES,
    PROGRAM_STATE_BYTES_MAX,
    PROGRAM_STATE_OBJECT_OVERHEAD_BYTES,
    PROGRAM_STATE_OBJECTS_MAX,
)


class ProgramRefused(Exception):
    """A program cannot run. Raised only by `check_program` and `TopicRuntime.start`, never by a handler call."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CallGate:
    """What `ctx.call` may do in one handler call (docs/pipelines.md), from replicated state only: the same on
    every node. The calls a handler makes count toward these rooms at once, so a scatter is all or nothing."""

    first_id: int  # the id the handler's first call gets if its transaction commits
    topic_room: int  # calls the topic may still put in flight
    total_room: int  # calls the cluster may still put in flight
    service_room: Callable[[str], int]  # calls a service may still have put in flight
    refusal: str = ""  # non-empty: ctx.call is not available in this call, and this says why


@dataclass(frozen=True)
class CallMade:
    """One `ctx.call` of a handler call that succeeded: recorded if its transaction commits."""

    service: str
    method: str
    request: bytes
    context: bytes  # JSON text
    timeout_ms: int


@dataclass(frozen=True)
class CallContext:
    """What a handler call knows about the mutation it handles (`ctx.topic`, `ctx.offset`, ...)."""

    topic: str
    offset: int  # the intention's global offset
    client_id: str  # UUID string
    nonce: int
    # What the calls of the log entry may still emit (see PROGRAM_ENTRY_EMITTED_BYTES_MAX and emitted_cost).
    entry_emit_bytes: int = PROGRAM_ENTRY_EMITTED_BYTES_MAX
    # The most the topic's state may cost (state_cost) after this call, from what the log entry's other topics left
    # of PROGRAM_ENTRY_STATE_BYTES_MAX; None while no topic's state could reach it (then it is not checked).
    entry_state_cost_max: int | None = None
    time_ms: int = 0  # `ctx.time_ms`: log time of the entry, the same on every node (state_machine/_time.py)
    calls: CallGate | None = None  # what ctx.call may do (None: ctx.call is refused, as in on_create)


@dataclass(frozen=True)
class Emitted:
    """One event a handler emitted into its topic."""

    kind: str  # "PUT" or "DELETE"
    key: bytes
    value: bytes  # b"" for DELETE


@dataclass(frozen=True)
class CallOutcome:
    """The result of one handler call. `ok=False` means the mutation's effect is ERROR with `reason`."""

    ok: bool
    reason: str  # "" when ok
    events: tuple[Emitted, ...]  # empty when not ok
    calls: tuple[CallMade, ...] = ()  # ctx.call calls made, in order; empty when not ok


_new = object.__new__


def call_context(
    topic: str,
    offset: int,
    client_id: str,
    nonce: int,
    entry_emit_bytes: int = PROGRAM_ENTRY_EMITTED_BYTES_MAX,
    entry_state_cost_max: int | None = None,
    time_ms: int = 0,
    calls: CallGate | None = None,
) -> CallContext:
    """CallContext(...), built like `emitted` below: once per program call."""
    call = _new(CallContext)
    fields = call.__dict__
    fields["topic"] = topic
    fields["offset"] = offset
    fields["client_id"] = client_id
    fields["nonce"] = nonce
    fields["entry_emit_bytes"] = entry_emit_bytes
    fields["entry_state_cost_max"] = entry_state_cost_max
    fields["time_ms"] = time_ms
    fields["calls"] = calls
    return call


def emitted_cost(key: bytes, value: bytes) -> int:
    """What one emitted event costs against the entry's budget (see PROGRAM_ENTRY_EMITTED_BYTES_MAX)."""
    return len(key) + len(value) + PROGRAM_EVENT_OVERHEAD_BYTES


def state_cost(state_bytes: int) -> int:
    """What a topic's state of `state_bytes` encoded bytes costs a node applying a log entry that changed it (see
    PROGRAM_ENTRY_STATE_BYTES_MAX): the bytes, written with the entry, and its live objects, PROGRAM_STATE_OBJECT_
    OVERHEAD_BYTES each; every object takes at least a byte of the encoding."""
    return state_bytes + PROGRAM_STATE_OBJECT_OVERHEAD_BYTES * min(state_bytes, PROGRAM_STATE_OBJECTS_MAX)


STATE_COST_MAX = state_cost(PROGRAM_STATE_BYTES_MAX)  # the most one topic's state can cost


def emitted(kind: str, key: bytes, value: bytes) -> Emitted:
    """Emitted(kind, key, value), built the way its (frozen) __init__ would, in half the time: once per event."""
    event = _new(Emitted)
    fields = event.__dict__
    fields["kind"] = kind
    fields["key"] = key
    fields["value"] = value
    return event


def outcome(ok: bool, reason: str, events: tuple[Emitted, ...], calls: tuple[CallMade, ...] = ()) -> CallOutcome:
    """CallOutcome(ok, reason, events, calls), built like `emitted`: once per call."""
    result = _new(CallOutcome)
    fields = result.__dict__
    fields["ok"] = ok
    fields["reason"] = reason
    fields["events"] = events
    fields["calls"] = calls
    return result


def call_cost(made: CallMade) -> int:
    """What one ctx.call costs against the entry's emitted budget (see PROGRAM_ENTRY_EMITTED_BYTES_MAX)."""
    return len(made.request) + len(made.context) + CALL_OVERHEAD_BYTES
