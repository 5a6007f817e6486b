"""Deterministic budgets. Every handler call runs against a Meter; instrumented code and guards charge it.

A *step* is the unit of work: a loop iteration or a call costs one step per operation in the body it runs (at
least one), and a builtin operation on a big value costs extra steps in proportion to the bytes or elements it
touches. The rates below are calibrated so that a step costs well under a microsecond on the slowest path, which
bounds a whole call (PROGRAM_STEPS_MAX steps) to a few tens of milliseconds. They are part of the replicated
contract, like the limits: every node must charge the same, so they are constants.

Only one handler call runs at a time (the runtime holds a lock), so the active meter is a module global.
"""

from __future__ import annotations

import sys
from typing import NoReturn, TypeVar

from laminar.limits import PROGRAM_RECURSION_DEPTH_MAX, PROGRAM_STEPS_MAX

BYTES_PER_STEP = 1024  # characters or bytes copied per step (memcpy-like work)
CHARS_PER_STEP = 64  # characters or bytes examined one by one per step (case mapping, search, parsing)
ITEMS_PER_STEP = 64  # references copied per step (list copies, concatenation, repetition)
COMPARES_PER_STEP = 16  # element comparisons per step
OBJECTS_PER_STEP = 4  # new objects (ints, strs, tuples) created per step, or elements walked in Python
ENTRIES_PER_STEP = 16  # dict entries hashed and inserted per step (a dict built from or merged with a dict)

# CPython 3.11's substring search (Objects/stringlib/fastsearch.h), in the worst case of its input sizes. A forward
# search (find, index, count, partition, split, replace, `in`) uses its simple loop, O(n*m), when the haystack is
# short, the needle tiny, or both small; otherwise the two-way algorithm, O(n + m). A reverse search (rfind, rindex,
# rpartition, rsplit) always uses the simple loop: O(n*m). Charged before the native call, from the sizes alone.
_SIMPLE_FIND_HAYSTACK_MAX = 2500
_SIMPLE_FIND_NEEDLE_MAX = 100
_SIMPLE_FIND_MEDIUM_HAYSTACK_MAX = 30000
_TINY_NEEDLE_MAX = 6
_TWO_WAY_FACTOR = 4  # two-way compares each character at most a few times (and preprocesses the needle)

_T = TypeVar("_T")

# The cost model: every operation a program can reach, and what it is charged, in steps, from the sizes of its inputs
# known before the native call runs (n, m: lengths; k: items; b, c: bit lengths; S(n, m): search_compares). The
# rates are the constants above; docs/programs.md ("Cost model") explains them, and bench/sandbox_fuzz.py measures
# each row's CPU time per charged step. Sizes are checked against the budgets before the value is built.
COST_MODEL: dict[str, str] = {
    "loop, comprehension iteration, call of a program function": "w = operations in the body + syntax nodes/8 (>= 1)",
    "str/bytes +, *, slice, f-string, str()": "1 + bytes/BYTES_PER_STEP (a non-ASCII str: 4 bytes a character)",
    "list/tuple +, *, slice, copy, extend, list(), tuple(), *x": "1 + k/ITEMS_PER_STEP",
    "in, find, index, count, partition, split(sep) on str/bytes": "1 + S(n, m)/CHARS_PER_STEP",
    "replace": "1 + n/CHARS_PER_STEP + 2 S(n, m)/CHARS_PER_STEP + result bytes/BYTES_PER_STEP",
    "rfind, rindex, rpartition, rsplit(sep)": "1 + (n - m + 1) m/CHARS_PER_STEP (CPython's reverse search)",
    "strip, lstrip, rstrip (chars)": "1 + n max(m, 1)/CHARS_PER_STEP",
    "upper, lower, title, is*, startswith, encode, decode, hex, ...": "1 + (n + arguments' lengths)/CHARS_PER_STEP",
    "split(), splitlines()": "1 + n/CHARS_PER_STEP + pieces/OBJECTS_PER_STEP",
    "join": "1 + k/ITEMS_PER_STEP + k/OBJECTS_PER_STEP + result bytes/BYTES_PER_STEP",
    "center, ljust, rjust, zfill; expandtabs": "1 + width/BYTES_PER_STEP; 1 + (n + result)/CHARS_PER_STEP",
    "% formatting": "1 + n/CHARS + 2 (%s + )s) + text(args) + bound/CHARS, bound = n + widths + args + 330/conv",
    "f-string {x:spec}": "1 + (len(spec) + widths)/CHARS_PER_STEP, then text(x)",
    "repr/str/json.dumps of containers (text(x))": "walk + bound/BYTES_PER_STEP + bound/8/OBJECTS_PER_STEP",
    "walk of nested data (text, ==, <, in, sort keys)": "8 + k/8 per container + flat elements by size",
    "int <-> decimal text (str, repr, f-string, %, json, int())": "1 + b^2/2^INT_TEXT_COST_SHIFT when b > 128",
    "bin, oct, hex": "1 + b/2/CHARS_PER_STEP",
    "int *, //, %, divmod": "1 + (b + c)/2^10 + b c/2^17 (result size checked first: PROGRAM_INT_BITS_MAX)",
    "int **, <<": "1 + bits(c) 2048^2/2^21; result size checked first",
    "int.from_bytes, int.to_bytes, bytes(n)": "as bytes(); at most PROGRAM_INT_BITS_MAX bits, checked first",
    "==, <, ... of str/bytes": "1 + min(n, m)/BYTES_PER_STEP (literals of <= 256 characters: native, O(1))",
    "x in list/tuple, index, count, remove": "1 + k/COMPARES_PER_STEP (times the item's walk if it nests)",
    "sort, sorted": "1 + k/ITEMS_PER_STEP + walk(keys) log2(k)/COMPARES_PER_STEP",
    "min, max": "2 + walk(keys)/COMPARES_PER_STEP",
    "dict(), update, |, |=, {**d}, copy of a dict": "1 + entries/ENTRIES_PER_STEP",
    "dict(pairs), sum": "1 + k/OBJECTS_PER_STEP (and the copy)",
    "isinstance(x, tuple of k types)": "1 + k",
    "json.loads": "1 + n/CHARS_PER_STEP + (count of , : [ {)/4",
    "zip, map, enumerate, filter, reversed, any, all (lazy)": "1 per item (per iterable)",
    "ctx.put, ctx.delete": "events, emitted bytes per call and per log entry (limits.py), not steps",
    "keeping ctx.state": "its bytes and objects per call, and per log entry over its topics (limits.py), not steps",
    "compile and module body (create, restart)": "refused over PROGRAM_SYNTAX_NODES_MAX / PROGRAM_MODULE_BYTES_MAX",
}


class Abort(BaseException):
    """Ends a handler call with `reason`.

    It is a BaseException so `except Exception` in a program does not catch it, and the compiler makes every
    except clause re-raise it first thing, so a bare `except:` cannot swallow it either.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Rejected(Abort):
    """The program called ctx.reject(reason)."""


class Exhausted(Abort):
    """A budget ran out; the reason names it."""


class Meter:
    """The budget of one handler call (or of one module body run at start).

    `mutated` becomes True when the call changed a list or dict, any (every guard and method that can change one
    says so before it does); a call that fails without having changed any cannot have changed the state, so the
    runtime need not roll it back. `aliased` becomes True when the call stored into a container a value that
    could make the state differ from a fresh load of its bytes (see `_values.stored`): the runtime then reloads
    the state instead of keeping the call's objects for the next call. `grown` and `added` bound how many bytes
    and objects the values the call stored can add to the state's encoding (see TopicRuntime).
    """

    __slots__ = ("abort", "added", "aliased", "depth", "grown", "left", "mutated")

    def __init__(self, steps: int = PROGRAM_STEPS_MAX) -> None:
        self.left = steps
        self.depth = 0
        self.abort: Abort | None = None
        self.aliased = False
        self.mutated = False
        self.grown = 0
        self.added = 0


def _idle_meter() -> Meter:
    # Active between calls: program code that somehow ran then would fail at its first step.
    meter = Meter(-1)
    meter.abort = Abort("program code ran outside a handler call")
    return meter


_IDLE = _idle_meter()
_active = _IDLE


def activate(meter: Meter) -> None:
    global _active
    _active = meter


def deactivate() -> None:
    global _active
    _active = _IDLE


def mark_aliased() -> None:
    """The running call stored something the state must not keep as a live object (see Meter)."""
    _active.aliased = True
    _active.mutated = True


def mutating() -> None:
    """The running call is about to change a list or a dict (see Meter)."""
    _active.mutated = True


def fail(abort: Abort) -> NoReturn:
    """Abort the call. Sticky: the first abort wins, and every later step or guard raises it again."""
    meter = _active
    if meter.abort is None:
        meter.abort = abort
    meter.left = -1
    raise meter.abort


def exhausted(reason: str) -> NoReturn:
    fail(Exhausted(reason))


def _out_of_steps(meter: Meter) -> NoReturn:
    if meter.abort is None:
        meter.abort = Exhausted(f"step budget exhausted ({PROGRAM_STEPS_MAX} steps)")
    raise meter.abort


def charge(steps: int) -> None:
    meter = _active
    meter.left -= steps
    if meter.left < 0:
        _out_of_steps(meter)


# charge(1 + n // RATE), each written out: they run for most operations, and a call less is a good part of them.


def charge_bytes(n: int) -> None:
    meter = _active
    meter.left -= 1 + n // BYTES_PER_STEP
    if meter.left < 0:
        _out_of_steps(meter)


def charge_chars(n: int) -> None:
    meter = _active
    meter.left -= 1 + n // CHARS_PER_STEP
    if meter.left < 0:
        _out_of_steps(meter)


def charge_items(n: int) -> None:
    meter = _active
    meter.left -= 1 + n // ITEMS_PER_STEP
    if meter.left < 0:
        _out_of_steps(meter)


def charge_objects(n: int) -> None:
    meter = _active
    meter.left -= 1 + n // OBJECTS_PER_STEP
    if meter.left < 0:
        _out_of_steps(meter)


def charge_compares(n: int) -> None:
    meter = _active
    meter.left -= 1 + n // COMPARES_PER_STEP
    if meter.left < 0:
        _out_of_steps(meter)


# int <-> decimal text is quadratic in CPython (below its int_max_str_digits floor, which programs' ints stay under):
# a step per 2**INT_TEXT_COST_SHIFT of the squared bit length, about 0.1 us of work (2048 bits: 64 steps).
INT_TEXT_COST_SHIFT = 16


def charge_int_text(bits: int) -> None:
    """Charge converting an int of `bits` bits to decimal text or back."""
    charge(1 + ((bits * bits) >> INT_TEXT_COST_SHIFT))


def charge_entries(n: int) -> None:
    charge(1 + n // ENTRIES_PER_STEP)


def search_compares(n: int, m: int, reverse: bool = False) -> int:
    """Character comparisons a search for a needle of length m in a haystack of length n may make, at worst."""
    if m > n:
        return 1  # answered from the lengths
    if m <= 1:
        return n + 1  # one character: memchr or a plain scan
    positions = n - m + 1
    if reverse:
        return positions * m
    if (
        n < _SIMPLE_FIND_HAYSTACK_MAX
        or m < _TINY_NEEDLE_MAX
        or (m < _SIMPLE_FIND_NEEDLE_MAX and n < _SIMPLE_FIND_MEDIUM_HAYSTACK_MAX)
    ):
        return positions * m
    return _TWO_WAY_FACTOR * (n + m)


def charge_search(n: int, m: int, reverse: bool = False) -> None:
    """Charge a substring search (see search_compares) at CHARS_PER_STEP comparisons a step."""
    charge(1 + search_compares(n, m, reverse) // CHARS_PER_STEP)


_DEPTH_IN_MESSAGE = "at the recursion depth "


def recursion_depth() -> int | None:
    """The interpreter's exact recursion depth, as CPython 3.11 counts it against the limit (Python frames and
    C-level calls alike): sys.setrecursionlimit refuses a limit below it and says what it is. None if it does not.
    ~3 us, so only for the rare operation whose native recursion our own counts cannot bound first."""
    try:
        sys.setrecursionlimit(1)
    except RecursionError as exc:
        message = exc.args[0] if exc.args else ""
        start = message.find(_DEPTH_IN_MESSAGE) + len(_DEPTH_IN_MESSAGE)
        end = message.find(":", start)
        digits = message[start:end] if start >= len(_DEPTH_IN_MESSAGE) and end > start else ""
        return int(digits) if digits.isdigit() else None
    return None  # never: the depth is at least 1 here


# --- Hooks the compiler inserts into program code (see _transform.py) -------------------------------------


def step(weight: int) -> bool:
    """`_step_(w)`: first statement of every loop body and first condition of every comprehension."""
    meter = _active
    meter.left -= weight
    if meter.left < 0:
        _out_of_steps(meter)
    return True


def enter(weight: int) -> int:
    """`_enter_(w)`: first statement of every function and lambda. Returns the new depth (see `caught`)."""
    meter = _active
    meter.left -= weight
    if meter.left < 0:
        _out_of_steps(meter)
    depth = meter.depth + 1
    if depth > PROGRAM_RECURSION_DEPTH_MAX:
        exhausted(f"recursion budget exhausted (depth {PROGRAM_RECURSION_DEPTH_MAX})")
    meter.depth = depth
    return depth


def leave() -> None:
    """`_leave_()`: in the `finally` wrapped around every function body."""
    _active.depth -= 1


def leave_with(depth: int, value: _T) -> _T:
    """`_lam_(_enter_(w), body)`: a lambda's body. An exception skips the decrement; `caught` repairs it."""
    _active.depth -= 1
    return value


def caught(depth: int) -> None:
    """`_exc_(d)`: first statement of every except clause; `d` is the depth of the enclosing function.

    Re-raises an abort (a program cannot swallow a budget or a reject), turns RecursionError and MemoryError
    into aborts (a program cannot recover from them meaningfully), and resets the depth, which a lambda that
    raised left one too high.
    """
    meter = _active
    if meter.abort is not None:
        raise meter.abort
    exc = sys.exc_info()[1]
    if isinstance(exc, RecursionError):
        exhausted("recursion budget exhausted (data nested too deeply)")
    if isinstance(exc, MemoryError):
        fail(Abort("MemoryError"))
    meter.depth = depth
