"""`ctx.call` and the `call` argument of `on_result` (docs/pipelines.md): a program's calls to services.

A call is made in one transaction and answered in another: `ctx.call` only records what to ask (the state
machine keeps it if the transaction commits) and returns the id the call will have. Bounds on calls in flight
are decided from replicated state (the CallGate the state machine hands in) and abort the handler call: the
transaction fails, deterministically, and records nothing. Wrong types and sizes raise TypeError or ValueError,
as ctx.put does.
"""

from __future__ import annotations

import re
from operator import attrgetter
from typing import Any

from laminar.limits import (
    CALL_CONTEXT_BYTES_MAX,
    CALL_REQUEST_BYTES_MAX,
    CALL_TIMEOUT_MS_DEFAULT,
    CALL_TIMEOUT_MS_MAX,
    CALL_TIMEOUT_MS_MIN,
    CALLS_PER_HANDLER_MAX,
    TOPIC_NAME_PATTERN,
)
from laminar.node.sandbox._api import CallGate, CallMade
from laminar.node.sandbox._builtins import json_dumps, json_loads
from laminar.node.sandbox._meter import Abort, charge_chars, exhausted, fail
from laminar.node.sandbox._methods import register
from laminar.node.sandbox._values import type_name

_NAME = re.compile(TOPIC_NAME_PATTERN)


def make_call(
    gate: CallGate | None,
    made: list[CallMade],
    service: Any,
    method: Any,
    request: Any,
    context: Any,
    timeout_ms: Any,
) -> CallMade:
    """The call `ctx.call(service, method, request, context=, timeout_ms=)` asks for, or the handler call fails."""
    if gate is None:
        fail(Abort("ctx.call is not available in on_create (the topic does not exist until it returns)"))
    if gate.refusal:
        fail(Abort(gate.refusal))
    name_of_service = _name(service, "service")
    name_of_method = _name(method, "method")
    body = _request(request)
    text = b"null" if context is None else json_dumps(context).encode()
    if len(text) > CALL_CONTEXT_BYTES_MAX:
        raise ValueError(f"ctx.call: the context is {len(text)} bytes of JSON; the limit is {CALL_CONTEXT_BYTES_MAX}")
    timeout = _timeout(timeout_ms)
    _check_room(gate, made, name_of_service)
    return CallMade(name_of_service, name_of_method, body, text, timeout)


def _name(value: Any, what: str) -> str:
    if type(value) is not str:
        raise TypeError(f"ctx.call: the {what} must be a str, not {type_name(value)}")
    charge_chars(len(value))
    if not _NAME.fullmatch(value):
        raise ValueError(f"ctx.call: {what} name {value[:64]!r} must match {TOPIC_NAME_PATTERN}")
    return value


def _request(value: Any) -> bytes:
    if type(value) is str:
        charge_chars(len(value))
        value = value.encode("utf-8")
    elif type(value) is not bytes:
        raise TypeError(f"ctx.call: the request must be str or bytes, not {type_name(value)}")
    if len(value) > CALL_REQUEST_BYTES_MAX:
        raise ValueError(f"ctx.call: the request is {len(value)} bytes; the limit is {CALL_REQUEST_BYTES_MAX}")
    return value  # type: ignore[no-any-return]


def _timeout(value: Any) -> int:
    if value is None:
        return CALL_TIMEOUT_MS_DEFAULT
    if type(value) is not int:
        raise TypeError(f"ctx.call: timeout_ms must be an int, not {type_name(value)}")
    if not CALL_TIMEOUT_MS_MIN <= value <= CALL_TIMEOUT_MS_MAX:
        raise ValueError(f"ctx.call: timeout_ms {value} is outside {CALL_TIMEOUT_MS_MIN}..{CALL_TIMEOUT_MS_MAX}")
    return value  # type: ignore[no-any-return]


def _check_room(gate: CallGate, made: list[CallMade], service: str) -> None:
    """Abort the handler call if one more call would pass a bound (the transaction then fails)."""
    count = len(made) + 1
    if count > CALLS_PER_HANDLER_MAX:
        exhausted(
            f"call budget exhausted: {CALLS_PER_HANDLER_MAX} ctx.call in one handler call (CALLS_PER_HANDLER_MAX)"
        )
    if count > gate.topic_room:
        exhausted(
            "call budget exhausted: the topic would have more calls in flight than CALLS_IN_FLIGHT_PER_TOPIC_MAX "
            f"({count - 1} made in this call, room for {gate.topic_room})"
        )
    if count > gate.total_room:
        exhausted(
            "call budget exhausted: the cluster would have more calls in flight than CALLS_IN_FLIGHT_MAX "
            f"({count - 1} made in this call, room for {gate.total_room})"
        )
    same = 1 + sum(1 for m in made if m.service == service)
    room = gate.service_room(service)
    if same > room:
        exhausted(
            f"call budget exhausted: service {service!r} would have more calls in flight than "
            f"CALLS_IN_FLIGHT_PER_SERVICE_MAX ({same - 1} made in this call, room for {room})"
        )


class CallView:
    """The `call` argument of on_result: what the call asked for. Read-only; `context` is parsed at each read."""

    __slots__ = ("_context", "deliveries", "id", "issued_ms", "method", "request", "service", "topic")

    def __init__(
        self,
        call_id: int,
        topic: str,
        service: str,
        method: str,
        request: bytes,
        context: bytes,
        deliveries: int,
        issued_ms: int,
    ) -> None:
        self.id = call_id
        self.topic = topic
        self.service = service
        self.method = method
        self.request = request
        self._context = context
        self.deliveries = deliveries
        self.issued_ms = issued_ms

    def __repr__(self) -> str:
        return f"<call {self.id} {self.service}.{self.method} of topic {self.topic!r}>"

    def context_value(self) -> Any:
        return json_loads(self._context) if self._context else None


register(
    CallView,
    {
        "id": attrgetter("id"),
        "topic": attrgetter("topic"),
        "service": attrgetter("service"),
        "method": attrgetter("method"),
        "request": attrgetter("request"),
        "deliveries": attrgetter("deliveries"),
        "issued_ms": attrgetter("issued_ms"),
        "context": CallView.context_value,
    },
)
