"""The sandbox's public types: what the state machine passes to a program and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass


class ProgramRefused(Exception):
    """A program cannot run. Raised only by `check_program` and `TopicRuntime.start`, never by a handler call."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CallContext:
    """What a handler call knows about the mutation it handles (`ctx.topic`, `ctx.offset`, ...)."""

    topic: str
    offset: int  # the intention's global offset
    client_id: str  # UUID string
    nonce: int


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
