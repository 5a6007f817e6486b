"""TopicRuntime: one loaded program and its state; runs handler calls and turns every failure into an outcome.

The state between calls. After each successful call that changed ctx.state, the state is encoded (which checks
its bounds, deterministically), now or when state_bytes() is asked for (see TopicRuntime), and those bytes are
what a failed call rolls back to. The live objects are kept too, so the next call need not decode them, but
only when nothing can tell them apart from a fresh decoding of the bytes, which is what every node that
restarted holds: the call stored no container, no NaN and no tuple of those anywhere (so no object is reachable
twice, see _values.stored) and did not replace ctx.state; `is` refuses to compare the values whose identity
could differ (_ops.is_). Otherwise the next call decodes the bytes again. A failed call rolls back the same way,
by dropping the live objects, unless it changed no list or dict at all (see Meter.mutated): then they are intact.

Determinism of Python's own recursion limit: a RecursionError raised by a deep structure (comparing, printing or
pickling one nested a thousand levels) depends on how deep the *caller* already is, which differs between nodes.
So every sandbox entry point pins the limit at (current depth + _HEADROOM) for its duration: inside the sandbox the
same program always has the same headroom. Pinning is process-wide, hence the lock (which also makes the active
meter a plain global); the headroom keeps the limit at or above Python's default for every other thread.
The interpreter counts C-level calls against the limit too (a caller reached through a comparison calling __eq__,
or a sort key, is deeper than its Python frames say), so the headroom is not exact: instead no RecursionError can
decide a call. Program functions nest at most PROGRAM_RECURSION_DEPTH_MAX deep (our own count), and every native
recursion over a program's data is bounded first by our own count too (_values.DATA_DEPTH_MAX for comparing,
printing and json.dumps, which measure the data before; the state's census, 500 levels, before it is kept; JSON
text nested deeper than that is parsed under a limit pinned at the exact depth, _meter.recursion_depth): together
they stay hundreds of levels below the headroom, whatever the caller's C-level calls (a few) take of it.

Other interpreter settings a program could observe are set here too, whatever the node's environment says: the
int<->str conversion limit (PYTHONINTMAXSTRDIGITS; programs' ints stay below its floor anyway) at every entry, and
the stack, which must hold _HEADROOM levels of native recursion: every entry point runs on a program thread, whose
stack is PROGRAM_THREAD_STACK_BYTES whatever `ulimit -s` says (see _threads.py). The hash seed is not observable:
programs cannot hash, sets are refused, dicts keep insertion order.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable
from types import CodeType, TracebackType
from typing import Any, TypeVar

from laminar.limits import (
    PROGRAM_ENTRY_STATE_BYTES_MAX,
    PROGRAM_STATE_BYTES_MAX,
    PROGRAM_STATE_OBJECTS_MAX,
    PROGRAM_STEPS_MAX,
)
from laminar.node.sandbox._api import CallContext, CallOutcome, ProgramRefused, emitted, outcome, state_cost
from laminar.node.sandbox._calls import CallView
from laminar.node.sandbox._compile import FILENAME, build_program, load_module, parse_program, remember
from laminar.node.sandbox._context import Context
from laminar.node.sandbox._meter import Abort, Meter, activate, deactivate, mark_aliased
from laminar.node.sandbox._state import EMPTY_STATE, StateProblem, dump_bounded, encode_state, load_state
from laminar.node.sandbox._threads import on_program_thread, run_on_program_thread
from laminar.node.sandbox._values import clip, exception_message

_HEADROOM = 1000
# TopicRuntime._call measures the depth one frame closer to the handler than pinned(_run) did: the same headroom.
_CALL_HEADROOM = _HEADROOM - 1
_DEFERRED_CALLS_MAX = 256  # calls remembered at most (to run again after a rollback) before encoding anyway
# Encoding first tries with this many levels of recursion fewer than a call has: a state that encodes then is less
# than ~200 levels deep (the pickler takes about two a level), inside _state's 300 however the caller's C-level
# calls took from the headroom, and stays so with a level more. A state that does not is counted first (census).
_SHALLOW_SLACK = 600
_Pending = tuple[Callable[..., Any], CallContext, "bytes | None", tuple[Any, ...]]
_NOTHING = CallOutcome(True, "", ())  # a missing on_create: immutable, so one will do
_LOCK = threading.Lock()
_T = TypeVar("_T")


def _frame_depth() -> int:
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


def _set_interpreter() -> None:
    """The settings a program could observe, made the node's own (see the module docstring)."""
    if sys.get_int_max_str_digits() != _INT_MAX_STR_DIGITS:
        sys.set_int_max_str_digits(_INT_MAX_STR_DIGITS)


_INT_MAX_STR_DIGITS = 4300  # CPython's default


def pinned(fn: Callable[..., _T], *args: Any) -> _T:
    """Run `fn(*args)` alone, with the recursion limit pinned relative to the current depth.

    The cyclic garbage collector is paused meanwhile: a call or a state load that creates many containers would
    otherwise trigger collections over the whole process heap, which can cost more than the call itself. Budgets
    bound what a call allocates; the collector catches up after. On a program thread (see _threads.py).
    """
    if not on_program_thread():
        return run_on_program_thread(pinned, fn, *args)
    with _LOCK:
        saved = sys.getrecursionlimit()
        collecting = gc.isenabled()
        sys.setrecursionlimit(_frame_depth() + _HEADROOM)
        _set_interpreter()
        gc.disable()
        try:
            return fn(*args)
        finally:
            if collecting:
                gc.enable()
            sys.setrecursionlimit(saved)


def _over_entry(state: bytes, limit: int) -> str | None:
    """Why a call's state cannot be kept under its log entry's limit (see PROGRAM_ENTRY_STATE_BYTES_MAX), or None."""
    if state_cost(len(state)) <= limit:
        return None
    return (
        f"entry state budget exhausted ({PROGRAM_ENTRY_STATE_BYTES_MAX} bytes of program state per log entry, over "
        "all its topics)"
    )


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


def _run_module(code: CodeType) -> tuple[dict[str, Callable[..., Any]], int]:
    """Run a program's module body under a fresh meter; its handlers and module bytes, or ProgramRefused."""
    meter = Meter(PROGRAM_STEPS_MAX)
    activate(meter)
    try:
        module = load_module(code)
        if meter.abort is not None:
            raise meter.abort
        return module
    except ProgramRefused:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 -- any failure of the module body refuses the program
        raise ProgramRefused(f"the module body failed: {describe(exc)}") from None
    finally:
        deactivate()


def _start(source: str) -> tuple[dict[str, Callable[..., Any]], int]:
    return _run_module(_compiled(source))


def check_program(source: str) -> None:
    """Raise ProgramRefused if `source` cannot run: what a node checks before a create reaches the log.

    Called from request threads, so it holds the sandbox lock (which handler calls need) only to parse and to
    run the module body, not for the slower passes in between; those cannot depend on the recursion limit. All of it
    on a program thread: compiling recurses natively too (see _threads.py).
    """
    if not on_program_thread():
        return run_on_program_thread(check_program, source)
    parsed = pinned(_refusing, parse_program, source)
    if isinstance(parsed, CodeType):
        code = parsed
    else:
        code = _refusing(build_program, parsed)
        pinned(remember, source, code)
    pinned(_run_module, code)


class TopicRuntime:
    """One programmable topic: its loaded program and its state, kept in memory by the state machine.

    Encoding the state is deferred when it is safe to: a successful call that changed the state only by storing
    atoms and flat tuples of them (see _values.stored) cannot make it unencodable, if the bytes and objects it can
    add keep the state within its budgets (`_bound`, `_objects`: what it had when last encoded, plus what the
    calls since stored) and the state was found shallow when last encoded (new leaves add at most two levels
    under containers that were there then; no container can have been added). Such a
    call is remembered in `_pending` instead of being encoded; state_bytes() encodes once for all of them (once
    per log entry, in the state machine). Should a later call fail after changing the state, the live objects
    are dropped as always, and `_restore` rebuilds the state from the last bytes by running the pending calls
    again (deterministic: same program, same inputs, same state, same recursion headroom). Whether a call is
    deferred never changes an outcome or the bytes: it is a matter of when they are computed.
    """

    __slots__ = (
        "_bound",
        "_handlers",
        "_objects",
        "_pending",
        "_shallow",
        "_state",
        "_state_bytes",
        "_touched",
        "module_bytes",
    )

    def __init__(
        self, handlers: dict[str, Callable[..., Any]], state_bytes: bytes, state: Any = None, module_bytes: int = 0
    ) -> None:
        self._handlers = handlers
        self.module_bytes = module_bytes  # what its module-level values hold, as PROGRAM_MODULE_BYTES_MAX counts it
        self._state_bytes = state_bytes  # the state after the last call that was encoded
        # The live objects: None, or exactly what load_state(_state_bytes) gives, after the _pending calls (see
        # the module docstring). None: to be loaded when a call first reads ctx.state, after _restore.
        self._state = state
        self._pending: list[_Pending] = []  # successful calls since _state_bytes, not encoded yet
        self._bound = len(state_bytes)  # at least the size of the current state's encoding
        self._objects = len(state_bytes)  # at least its objects, as encode_state counts them (each costs a byte)
        self._shallow = False  # the state encoded with _SHALLOW_SLACK levels of recursion fewer (see _encode)
        self._touched = False

    @classmethod
    def start(cls, source: str, state: bytes | None) -> TopicRuntime:
        """Compile `source` and run its module body (ProgramRefused if either fails), with `state` (None: {})."""
        handlers, module_bytes = pinned(_start, source)
        if state is None:
            return cls(handlers, EMPTY_STATE, None, module_bytes)
        try:
            loaded = pinned(load_state, state)
        except Exception as exc:  # noqa: BLE001 -- any unreadable state refuses the start the same way
            raise ProgramRefused(f"the stored state cannot be loaded: {type(exc).__name__}: {exc}") from None
        return cls(handlers, bytes(state), loaded, module_bytes)

    def state_bytes(self) -> bytes:
        """The canonical serialization of the current state: equal states give equal bytes on every node."""
        if not on_program_thread():
            return run_on_program_thread(self.state_bytes)
        if self._pending:
            self._restore()
            self._flush()
        return self._state_bytes

    def handles(self, put: bool) -> bool:
        """Whether the program has on_put (put=True) or on_delete: without it a write cannot change the state."""
        return ("on_put" if put else "on_delete") in self._handlers

    def on_create(self, ctx: CallContext, args: bytes) -> CallOutcome:
        handler = self._handlers.get("on_create")
        if handler is None:
            return _NOTHING
        return self._call(handler, ctx, args, ())

    def on_put(self, ctx: CallContext, key: bytes, value: bytes) -> CallOutcome:
        handler = self._handlers.get("on_put")
        if handler is None:
            return outcome(True, "", (emitted("PUT", key, value),))
        return self._call(handler, ctx, None, (key, value))

    def handles_results(self) -> bool:
        """Whether the program has on_result: without it ctx.call is refused (a result would have nowhere to go)."""
        return "on_result" in self._handlers

    def on_result(self, ctx: CallContext, call: CallView, response: bytes | None, failure: str | None) -> CallOutcome:
        """A call's result (exactly one of response and failure is None); its own transaction."""
        handler = self._handlers.get("on_result")
        if handler is None:
            return _NOTHING
        return self._call(handler, ctx, None, (call, response, failure))

    def on_delete(self, ctx: CallContext, key: bytes) -> CallOutcome:
        handler = self._handlers.get("on_delete")
        if handler is None:
            return outcome(True, "", (emitted("DELETE", key, b""),))
        return self._call(handler, ctx, None, (key,))

    # --- StateOwner, for ctx.state --------------------------------------------------------------------------

    def state_for_call(self) -> Any:
        if self._state is None:
            self._state = load_state(self._state_bytes)
        self._touched = True
        return self._state

    def replace_state(self, value: Any) -> None:
        mark_aliased()  # the new state may share objects with anything, and the old one must come back on failure
        self._state = value
        self._touched = True

    # --- Calls ----------------------------------------------------------------------------------------------

    def _restore(self) -> None:
        """After a rollback while calls were pending: the state they made, from the last bytes and the calls."""
        if self._state is not None:
            return
        pending, self._pending = self._pending, []
        for done, (handler, call, args, params) in enumerate(pending):
            try:
                redone = self._call(handler, call, args, params)
            except BaseException:  # the node is being stopped: what is left to run again stays pending
                self._state = None
                self._pending.extend(pending[done:])
                raise
            assert redone.ok, f"a call that succeeded failed when run again: {redone.reason}"
        self._flush()  # now: a rollback then costs each call at most one run again

    def _flush(self) -> None:
        """Encode the state the pending calls made. Within the budgets they were checked against, this cannot fail
        (see the class docstring), given the recursion headroom: a caller deep in the stack may not have it, so it
        takes `pinned` then."""
        if not self._pending:
            return
        try:
            self._state_bytes = dump_bounded(self._state)
        except StateProblem:
            self._state_bytes = pinned(dump_bounded, self._state)
        self._bound = len(self._state_bytes)
        self._objects = min(self._objects, self._bound)  # (every object costs a byte)
        self._pending.clear()

    def _call(
        self, handler: Callable[..., Any], call: CallContext, args: bytes | None, params: tuple[Any, ...]
    ) -> CallOutcome:
        """Run one handler call: what `pinned` does (written out here, it runs for every mutation), under a fresh
        meter; every failure becomes the outcome. On a program thread (see _threads.py)."""
        if not on_program_thread():
            return run_on_program_thread(self._call, handler, call, args, params)
        if self._pending and self._state is None:
            self._restore()
        ctx = Context(call, args, self)
        meter = Meter(PROGRAM_STEPS_MAX)
        _LOCK.acquire()
        try:
            saved = sys.getrecursionlimit()
            collecting = gc.isenabled()
            sys.setrecursionlimit(_frame_depth() + _CALL_HEADROOM)
            _set_interpreter()
            gc.disable()
            self._touched = False
            activate(meter)
            try:
                failure = self._invoke(handler, ctx, params, meter)
                entry_limit = call.entry_state_cost_max
                if failure is None and self._touched and meter.mutated:
                    failure = self._keep(meter, (handler, call, args, params), entry_limit)
                elif failure is None and entry_limit is not None:
                    failure = _over_entry(self.state_bytes_now(), entry_limit)
            except BaseException:
                self._state = None  # the node is being stopped mid-call: drop whatever the call changed
                raise
            finally:
                deactivate()
                if collecting:
                    gc.enable()
                sys.setrecursionlimit(saved)
        finally:
            _LOCK.release()
        events = ctx.close()
        if failure is not None:
            if self._touched and meter.mutated:
                self._state = None  # roll back: to the last bytes, and the pending calls (see _restore)
            return outcome(False, failure, ())
        return outcome(True, "", events, ctx.made_calls())

    def _invoke(self, handler: Callable[..., Any], ctx: Context, params: tuple[Any, ...], meter: Meter) -> str | None:
        """Run the handler; the reason it failed, or None."""
        try:
            handler(ctx, *params)
        except (KeyboardInterrupt, SystemExit):
            raise  # the node is being stopped: not an outcome of this call
        except BaseException as exc:  # noqa: BLE001 -- every failure of program code becomes the call's outcome
            return describe(meter.abort or exc)
        if meter.abort is not None:  # a `finally: return` swallowed an abort
            return describe(meter.abort)
        return None

    def state_bytes_now(self) -> bytes:
        """state_bytes() for the running call (which holds the lock): the pending calls' state is live."""
        if self._pending:
            self._flush()
        return self._state_bytes

    def _keep(self, meter: Meter, redo: _Pending, entry_limit: int | None = None) -> str | None:
        """Keep the state a successful call changed: encode it now or later (see the class docstring); the reason
        it cannot be kept, or None. Under an entry limit (see CallContext.entry_state_cost_max) it is encoded now,
        and kept only if its cost is within the limit."""
        if (
            entry_limit is None
            and not meter.aliased
            and self._shallow
            and len(self._pending) < _DEFERRED_CALLS_MAX
            and self._bound + meter.grown <= PROGRAM_STATE_BYTES_MAX
            and self._objects + meter.added <= PROGRAM_STATE_OBJECTS_MAX
        ):
            self._pending.append(redo)
            self._bound += meter.grown
            self._objects += meter.added
            return None
        try:
            encoded = self._encoded()
        except StateProblem as problem:
            return problem.reason
        except Exception as exc:  # noqa: BLE001 -- a handler call never raises; this is deterministic too
            return f"ctx.state cannot be kept: {type(exc).__name__}"
        if entry_limit is not None:
            over = _over_entry(encoded[0], entry_limit)
            if over is not None:
                return over  # the last bytes stay: the call rolls back to them
        self._state_bytes, self._objects, self._shallow = encoded
        self._bound = len(self._state_bytes)
        self._pending.clear()
        if meter.aliased:
            self._state = None  # the next call reads fresh objects: what a restarted node would load
        return None

    def _encoded(self) -> tuple[bytes, int, bool]:
        """The state encoded now (StateProblem if it cannot be kept), its objects, and whether it is shallow: a first
        try has _SHALLOW_SLACK fewer levels of recursion; if that is not enough, the verdict is the full limit's."""
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(limit - _SHALLOW_SLACK)
        try:
            encoded: tuple[bytes, int] | None = encode_state(self._state)
        except StateProblem:
            encoded = None
        finally:
            sys.setrecursionlimit(limit)
        shallow = encoded is not None
        if encoded is None:
            encoded = encode_state(self._state, counted=True)  # not shallow: the census decides its depth
        return encoded[0], encoded[1], shallow
