"""The program sandbox: runs a topic's user program, deterministically, on every node.

A topic may carry a small Python program (see docs/programs.md for the contract programs follow). Every node
compiles it with RestrictedPython plus our own instrumentation and runs its handlers at commit time, in log order;
identical inputs give identical outcomes and identical state bytes in any process. Budgets are counted, never
timed; every failure inside a handler becomes a CallOutcome, never an exception.

    check_program(source)                      cheap pre-check before a create reaches the log
    rt = TopicRuntime.start(source, state)     at create (state=None), or at restart (stored state bytes)
    rt.on_create(ctx, args) / rt.on_put(ctx, key, value) / rt.on_delete(ctx, key)  -> CallOutcome
    rt.on_result(ctx, CallView(...), response, failure) -> CallOutcome   (pipelines: ctx.call's answer)
    rt.state_bytes()                           persist after each batch
    start_program_thread(target, name)         a thread that runs programs itself (else they are handed to one)
    with program_thread_stacks(): ...          threads a library starts in the block may run programs too
"""

from __future__ import annotations

from laminar.node.sandbox._api import (
    STATE_COST_MAX,
    CallContext,
    CallGate,
    CallMade,
    CallOutcome,
    Emitted,
    ProgramRefused,
    call_context,
    call_cost,
    emitted_cost,
    state_cost,
)
from laminar.node.sandbox._calls import CallView
from laminar.node.sandbox._runtime import TopicRuntime, check_program
from laminar.node.sandbox._threads import on_program_thread, program_thread_stacks, start_program_thread

__all__ = [
    "STATE_COST_MAX",
    "CallContext",
    "CallGate",
    "CallMade",
    "CallOutcome",
    "CallView",
    "Emitted",
    "ProgramRefused",
    "TopicRuntime",
    "call_context",
    "call_cost",
    "check_program",
    "emitted_cost",
    "on_program_thread",
    "program_thread_stacks",
    "start_program_thread",
    "state_cost",
]
