"""`ctx`: what a handler call sees of its mutation, and how it emits events, keeps state and rejects."""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Protocol

from laminar.limits import (
    KEY_BYTES_MAX,
    PROGRAM_EMITTED_BYTES_MAX,
    PROGRAM_ENTRY_EMITTED_BYTES_MAX,
    PROGRAM_EVENT_OVERHEAD_BYTES,
    PROGRAM_EVENTS_MAX,
    VALUE_BYTES_MAX,
)
from laminar.node.sandbox._api import CallContext, CallMade, Emitted, call_cost, emitted
from laminar.node.sandbox._builtins import json_loads
from laminar.node.sandbox._calls import make_call
from laminar.node.sandbox._meter import Abort, Rejected, charge_chars, exhausted, fail
from laminar.node.sandbox._methods import register
from laminar.node.sandbox._values import type_name


class StateOwner(Protocol):
    """The runtime, which keeps the state between calls and rolls it back when a call fails."""

    def state_for_call(self) -> dict[str, Any]: ...

    def replace_state(self, value: Any) -> None: ...


class Context:
    """The `ctx` argument of a handler. Programs read its attributes through `_getattr_` (see ATTRIBUTES)."""

    __slots__ = ("_args", "_call", "_calls", "_emitted_bytes", "_entry_cost", "_events", "_open", "_owner")

    def __init__(self, call: CallContext, args: bytes | None, owner: StateOwner) -> None:
        self._call = call
        self._args = args
        self._owner = owner
        self._events: list[Emitted] = []
        self._calls: list[CallMade] = []
        self._emitted_bytes = 0
        self._entry_cost = 0
        self._open = True

    def __repr__(self) -> str:
        return f"<ctx of topic {self._call.topic!r} at offset {self._call.offset}>"

    def close(self) -> tuple[Emitted, ...]:
        self._open = False
        return tuple(self._events)

    def made_calls(self) -> tuple[CallMade, ...]:
        return tuple(self._calls)

    def _check_open(self) -> None:
        if not self._open:
            fail(Abort("ctx used after its handler call ended"))

    def _emit(self, kind: str, key: Any, value: Any) -> None:
        if not self._open:
            self._check_open()
        # bytes within the limit are used as they are; everything else is converted or refused by _as_bytes
        key_bytes = key if type(key) is bytes and len(key) <= KEY_BYTES_MAX else _as_bytes(key, "key", KEY_BYTES_MAX)
        value_bytes = value if type(value) is bytes else _as_bytes(value, "value", VALUE_BYTES_MAX)
        if len(value_bytes) > VALUE_BYTES_MAX:
            _as_bytes(value_bytes, "value", VALUE_BYTES_MAX)  # raises
        events = self._events
        if len(events) >= PROGRAM_EVENTS_MAX:
            exhausted(f"event budget exhausted ({PROGRAM_EVENTS_MAX} events)")
        size = len(key_bytes) + len(value_bytes)
        emitted_bytes = self._emitted_bytes = self._emitted_bytes + size
        if emitted_bytes > PROGRAM_EMITTED_BYTES_MAX:
            exhausted(f"emitted-bytes budget exhausted ({PROGRAM_EMITTED_BYTES_MAX} bytes of keys and values)")
        entry_cost = self._entry_cost = self._entry_cost + size + PROGRAM_EVENT_OVERHEAD_BYTES  # emitted_cost
        if entry_cost > self._call.entry_emit_bytes:
            exhausted(
                f"entry emitted-bytes budget exhausted ({PROGRAM_ENTRY_EMITTED_BYTES_MAX} bytes of events per log "
                "entry, over all its program calls)"
            )
        events.append(emitted(kind, key_bytes, value_bytes))

    def put(self, key: Any, value: Any) -> None:
        """`ctx.put(key, value)`: emit PUT(key, value) in this topic."""
        self._emit("PUT", key, value)

    def delete(self, key: Any) -> None:
        """`ctx.delete(key)`: emit DELETE(key) in this topic."""
        self._emit("DELETE", key, b"")

    def call(self, service: Any, method: Any, request: Any, context: Any = None, timeout_ms: Any = None) -> int:
        """`ctx.call(service, method, request, context=None, timeout_ms=None)`: ask a service (docs/pipelines.md).
        Recorded if this transaction commits; its result comes to on_result in a later one. Returns the call id."""
        self._check_open()
        made = make_call(self._call.calls, self._calls, service, method, request, context, timeout_ms)
        cost = call_cost(made)
        self._emitted_bytes += cost
        if self._emitted_bytes > PROGRAM_EMITTED_BYTES_MAX:
            exhausted(f"emitted-bytes budget exhausted ({PROGRAM_EMITTED_BYTES_MAX} bytes of events and calls)")
        self._entry_cost += cost
        if self._entry_cost > self._call.entry_emit_bytes:
            exhausted(
                f"entry emitted-bytes budget exhausted ({PROGRAM_ENTRY_EMITTED_BYTES_MAX} bytes of events and calls "
                "per log entry, over all its program calls)"
            )
        self._calls.append(made)
        gate = self._call.calls
        assert gate is not None  # make_call refused otherwise
        return gate.first_id + len(self._calls) - 1

    def reject(self, reason: Any = "rejected") -> None:
        """`ctx.reject(reason)`: the mutation's effect is ERROR with `reason`; nothing is emitted or kept."""
        self._check_open()
        if type(reason) is not str:
            raise TypeError(f"ctx.reject() needs a str reason, not {type_name(reason)}")
        fail(Rejected(reason or "rejected"))  # a failed outcome always says something

    def args_json(self) -> Any:
        """`ctx.args_json()`: the creation arguments parsed as JSON (None when there are none)."""
        self._check_open()
        return json_loads(self._args) if self._args else None

    def get_state(self) -> dict[str, Any]:
        self._check_open()
        return self._owner.state_for_call()

    def set_state(self, value: Any) -> None:
        self._check_open()
        self._owner.replace_state(value)


def _as_bytes(value: Any, what: str, limit: int) -> bytes:
    if type(value) is str:
        charge_chars(len(value))
        value = value.encode("utf-8")
    elif type(value) is not bytes:
        raise TypeError(f"ctx.put/ctx.delete: the {what} must be str or bytes, not {type_name(value)}")
    if len(value) > limit:
        raise ValueError(f"ctx.put/ctx.delete: the {what} is {len(value)} bytes; the limit is {limit}")
    return value  # type: ignore[no-any-return]


class _ContextWriter:
    """What `_write_(ctx)` returns: `ctx.state = value` is the only attribute a program may set."""

    __slots__ = ("_ctx",)
    _ctx: Context

    def __init__(self, ctx: Context) -> None:
        object.__setattr__(self, "_ctx", ctx)

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "state":
            raise AttributeError(f"ctx.{name} is read-only (only ctx.state can be assigned)")
        self._ctx.set_state(value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ctx.{name} cannot be deleted")


def context_writer(ctx: Context) -> _ContextWriter:
    return _ContextWriter(ctx)


register(
    Context,
    {
        "topic": attrgetter("_call.topic"),
        "offset": attrgetter("_call.offset"),
        "client_id": attrgetter("_call.client_id"),
        "nonce": attrgetter("_call.nonce"),
        "time_ms": attrgetter("_call.time_ms"),
        "args": attrgetter("_args"),
        "state": Context.get_state,
    },
    natives=("put", "delete", "reject", "args_json", "call"),
)
