"""TopicRuntime: one loaded program and its state; runs handler calls and turns every failure into an outcome.

Determinism of Python's own recursion limit: a RecursionError raised by a deep structure (comparing, printing or
pickling one nested a thousand levels) depends on how deep the *caller* already is, which differs between nodes.
So every sandbox entry point pins the limit at (current depth + _HEADROOM) for its duration: inside the sandbox the
same program always has the same headroom. Pinning is process-wide, hence the lock (which also makes the active
meter a plain global); the headroom keeps the limit at or above Python's default for every other thread.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable
from types import CodeType, TracebackType
from typing import Any, TypeVar

from laminar.limits import PROGRAM_STEPS_MAX
from laminar.node.sandbox._api import CallContext, CallOutcome, Emitted, ProgramRefused
from laminar.node.sandbox._compile import FILENAME, build_program, load_module, parse_program, remember
from laminar.node.sandbox._context import Context
from laminar.node.sandbox._meter import Abort, Meter, activate, deactivate
from laminar.node.sandbox._state import EMPTY_STATE, StateProblem, dump_state, load_state
from laminar.node.sandbox._values import clip, exception_message

_HEADROOM = 1000
_LOCK = threading.Lock()
_T = TypeVar("_T")


def _frame_depth() -> int:
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


def pinned(fn: Callable[..., _T], *args: Any) -> _T:
    """Run `fn(*args)` alone, with the recursion limit pinned relative to the current depth.

    The cyclic garbage collector is paused meanwhile: a call or a state load that creates many containers would
    otherwise trigger collections over the whole process heap, which can cost more than the call itself. Budgets
    bound what a call allocates; the collector catches up after.
    """
    with _LOCK:
        saved = sys.getrecursionlimit()
        collecting = gc.isenabled()
        sys.setrecursionlimit(_frame_depth() + _HEADROOM)
        gc.disable()
        try:
            return fn(*args)
        finally:
            if collecting:
                gc.enable()
            sys.setrecursionlimit(saved)


def _program_line(tb: TracebackType | None) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def describe(exc: BaseException) -> str:
    """The reason of a failed call: a budget or reject reason as is, else "Type: message (line n)"."""
    if isinstance(exc, Abort):
        return clip(exc.reason)
    try:
        message = exception_message(exc)
        line = _program_line(exc.__traceback__)
    except Exception:  # noqa: BLE001 -- describing a failure must not fail; the type name is enough
        message, line = "", None
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return clip(text + (f" (line {line})" if line else ""))


def _refusing(step: Callable[..., _T], *args: Any) -> _T:
    """Run a compile step; whatever goes wrong becomes ProgramRefused (start() raises nothing else)."""
    try:
        return step(*args)
    except ProgramRefused:
        raise
    except (RecursionError, MemoryError) as exc:
        raise ProgramRefused(f"the program is too complex to compile: {type(exc).__name__}") from None
    except Exception as exc:  # noqa: BLE001 -- compiling is deterministic, so refusing is too
        raise ProgramRefused(f"the program cannot be compiled: {type(exc).__name__}: {exc}") from None


def _compiled(source: str) -> CodeType:
    """The code of `source`, all of it under the pinned limit (the caller holds it)."""
    parsed = _refusing(parse_program, source)
    if isinstance(parsed, CodeType):
        return parsed
    code = _refusing(build_program, parsed)
    remember(source, code)
    return code


def _run_module(code: CodeType) -> dict[str, Callable[..., Any]]:
    """Run a program's module body under a fresh meter; its handlers, or ProgramRefused."""
    meter = Meter(PROGRAM_STEPS_MAX)
    activate(meter)
    try:
        handlers = load_module(code)
        if meter.abort is not None:
            raise meter.abort
        return handlers
    except ProgramRefused:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 -- any failure of the module body refuses the program
        raise ProgramRefused(f"the module body failed: {describe(exc)}") from None
    finally:
        deactivate()


def _start(source: str) -> dict[str, Callable[..., Any]]:
    return _run_module(_compiled(source))


def check_program(source: str) -> None:
    """Raise ProgramRefused if `source` cannot run: what a node checks before a create reaches the log.

    Called from request threads, so it holds the sandbox lock (which handler calls need) only to parse and to
    run the module body, not for the slower passes in between; those cannot depend on the recursion limit.
    """
    parsed = pinned(_refusing, parse_program, source)
    if isinstance(parsed, CodeType):
        code = parsed
    else:
        code = _refusing(build_program, parsed)
        pinned(remember, source, code)
    pinned(_run_module, code)


class TopicRuntime:
    """One programmable topic: its loaded program and its state, kept in memory by the state machine."""

    __slots__ = ("_handlers", "_state", "_state_bytes", "_touched")

    def __init__(self, handlers: dict[str, Callable[..., Any]], state_bytes: bytes, state: Any = None) -> None:
        self._handlers = handlers
        self._state_bytes = state_bytes
        self._state = state  # None: to be loaded from _state_bytes when a call first reads ctx.state
        self._touched = False

    @classmethod
    def start(cls, source: str, state: bytes | None) -> TopicRuntime:
        """Compile `source` and run its module body (ProgramRefused if either fails), with `state` (None: {})."""
        handlers = pinned(_start, source)
        if state is None:
            return cls(handlers, EMPTY_STATE)
        try:
            loaded = pinned(load_state, state)
        except Exception as exc:  # noqa: BLE001 -- any unreadable state refuses the start the same way
            raise ProgramRefused(f"the stored state cannot be loaded: {type(exc).__name__}: {exc}") from None
        return cls(handlers, bytes(state), loaded)

    def state_bytes(self) -> bytes:
        """The canonical serialization of the current state: equal states give equal bytes on every node."""
        return self._state_bytes

    def on_create(self, ctx: CallContext, args: bytes) -> CallOutcome:
        return self._call("on_create", ctx, args, (), ())

    def on_put(self, ctx: CallContext, key: bytes, value: bytes) -> CallOutcome:
        return self._call("on_put", ctx, None, (key, value), (Emitted("PUT", key, value),))

    def on_delete(self, ctx: CallContext, key: bytes) -> CallOutcome:
        return self._call("on_delete", ctx, None, (key,), (Emitted("DELETE", key, b""),))

    # --- StateOwner, for ctx.state --------------------------------------------------------------------------

    def state_for_call(self) -> Any:
        if self._state is None:
            self._state = load_state(self._state_bytes)
        self._touched = True
        return self._state

    def replace_state(self, value: Any) -> None:
        self._state = value
        self._touched = True

    # --- Calls ----------------------------------------------------------------------------------------------

    def _call(
        self, name: str, call: CallContext, args: bytes | None, params: tuple[bytes, ...], default: tuple[Emitted, ...]
    ) -> CallOutcome:
        handler = self._handlers.get(name)
        if handler is None:
            return CallOutcome(True, "", default)
        return pinned(self._run, handler, Context(call, args, self), params)

    def _run(self, handler: Callable[..., Any], ctx: Context, params: tuple[bytes, ...]) -> CallOutcome:
        meter = Meter(PROGRAM_STEPS_MAX)
        self._touched = False
        activate(meter)
        try:
            failure = self._invoke(handler, ctx, params, meter)
        except BaseException:
            self._state = None  # the node is being stopped mid-call: drop whatever the call changed
            raise
        finally:
            deactivate()
            events = ctx.close()
        if failure is not None:
            if self._touched:
                self._state = None  # roll back: the next read loads the bytes of the last good state
            return CallOutcome(False, failure, ())
        return CallOutcome(True, "", events)

    def _invoke(self, handler: Callable[..., Any], ctx: Context, params: tuple[bytes, ...], meter: Meter) -> str | None:
        """Run the handler and keep its state; the reason it failed, or None."""
        try:
            handler(ctx, *params)
        except (KeyboardInterrupt, SystemExit):
            raise  # the node is being stopped: not an outcome of this call
        except BaseException as exc:  # noqa: BLE001 -- every failure of program code becomes the call's outcome
            return describe(meter.abort or exc)
        if meter.abort is not None:  # a `finally: return` swallowed an abort
            return describe(meter.abort)
        if not self._touched:
            return None
        try:
            self._state_bytes = dump_state(self._state)
        except StateProblem as problem:
            return problem.reason
        except Exception as exc:  # noqa: BLE001 -- a handler call never raises; this is deterministic too
            return f"ctx.state cannot be kept: {type(exc).__name__}"
        self._state = None  # the next call reads fresh objects: what a restarted node would load
        return None
