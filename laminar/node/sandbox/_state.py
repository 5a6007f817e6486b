"""ctx.state on disk: a canonical, bounded encoding of plain data.

The encoding is pickle protocol 4 in "fast" mode (no memo), refusing every type but None, bool, int, float,
str, bytes, list, tuple and dict. Without a memo the bytes depend only on the values and the dicts' insertion
order, never on object identity, refcounts or the hash seed; insertion order is kept (not sorted) because a
program can observe it, so a node that reloads the state must iterate it exactly as the others do. The writer
aborts as soon as the output passes its cap, and big states are counted before they are encoded (see
dump_state), so a state shared a million times over (`[s] * n`) costs no more than the limits. Only bytes this
module wrote are ever loaded, through an unpickler that resolves no globals.
"""

from __future__ import annotations

import gc
import io
import pickle
from typing import Any

from laminar.limits import PROGRAM_STATE_BYTES_MAX, PROGRAM_STATE_DEPTH_MAX, PROGRAM_STATE_OBJECTS_MAX

_PROTOCOL = 4


class StateProblem(Exception):
    """ctx.state cannot be kept; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _TooBig(Exception):
    pass


class _TooDeep(Exception):
    """The pickler ran out of recursion: whether it does depends on the caller's depth, so only _census decides."""


class _Writer:
    __slots__ = ("cap", "parts", "size")

    def __init__(self) -> None:
        self.cap = 0
        self.parts: list[bytes] = []
        self.size = 0

    def reset(self, cap: int) -> None:
        self.cap = cap
        self.parts = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.cap:
            raise _TooBig
        self.parts.append(data)
        return len(data)


class _PlainPickler(pickle.Pickler):
    # The C pickler handles None, bool, int, float, str, bytes, list, tuple and dict itself; everything else
    # reaches this hook, which refuses it.
    def reducer_override(self, obj: Any) -> Any:
        raise TypeError(
            f"ctx.state cannot hold a {type(obj).__name__}: only None, bool, int, float, str, bytes, "
            "list, tuple and dict are kept"
        )


_PLAIN = frozenset({type(None), bool, int, float, str, bytes, list, tuple, dict})
_DEPTH_MAX = PROGRAM_STATE_DEPTH_MAX  # see limits.py: this count decides, never a RecursionError


def _census(state: dict[str, Any]) -> tuple[str | None, int]:
    """Why `state` cannot be kept (a type, too many objects, too deep), or None; and its objects. Walks level by
    level at C speed and counts a shared object once per use, as the memo-less encoding writes it; stops as soon
    as a limit is passed, so neither a cycle nor a million references to one list costs more than the limits."""
    count, depth = 1, 0
    level: list[Any] = [state]
    while level:
        types = set(map(type, level))
        if not types <= _PLAIN:
            bad = min(t.__name__ for t in types - _PLAIN)
            return (
                f"ctx.state cannot hold a {bad}: only None, bool, int, float, str, bytes, list, tuple and dict",
                count,
            )
        depth += 1
        if depth > _DEPTH_MAX:
            return f"ctx.state is nested more than {_DEPTH_MAX} levels deep (or contains a cycle)", count
        level = gc.get_referents(*level)  # elements of lists and tuples, keys and values of dicts; none of scalars
        count += len(level)
        if count > PROGRAM_STATE_OBJECTS_MAX:
            return f"state budget exhausted (more than {PROGRAM_STATE_OBJECTS_MAX} objects)", count
    return None, count


# Picklers ready for reuse (building one costs more than encoding a small state). Only one that finished a dump
# cleanly goes back: one that raised may keep a half-counted nesting level and ids of dead objects in its cycle
# check, which could then refuse a state that is fine. A list: pop() and append() are atomic.
_IDLE_PICKLERS: list[tuple[_PlainPickler, _Writer]] = []


def _pickler() -> tuple[_PlainPickler, _Writer]:
    try:
        return _IDLE_PICKLERS.pop()
    except IndexError:
        writer = _Writer()
        pickler = _PlainPickler(writer, protocol=_PROTOCOL)
        pickler.fast = True  # no memo: the bytes must not depend on which objects happen to be shared
        return pickler, writer


def _encode(state: dict[str, Any], cap: int) -> bytes | None:
    """The canonical bytes of `state`, None if they would pass `cap`, or StateProblem."""
    pickler, writer = _pickler()
    writer.reset(cap)
    try:
        pickler.dump(state)
    except _TooBig:
        return None
    except TypeError as exc:  # from reducer_override: a type that is not plain data
        raise StateProblem(str(exc)) from None
    except ValueError:  # fast mode's cycle detection
        raise StateProblem("ctx.state contains a cycle") from None
    except RecursionError:
        raise _TooDeep from None
    data = b"".join(writer.parts)
    writer.reset(0)
    _IDLE_PICKLERS.append((pickler, writer))
    return data


def encode_state(state: Any, counted: bool = False) -> tuple[bytes, int]:
    """The canonical bytes of `state` and how many objects they encode at most (as _census counts them), or
    StateProblem.

    Every object costs at least one byte, so bytes within PROGRAM_STATE_OBJECTS_MAX prove the object bound: the
    common, small state is encoded once. `counted`: count first (the census decides the depth too): for a state
    that may be deeper than _DEPTH_MAX, which the pickler alone might or might not encode, depending on the
    caller's recursion headroom. A bigger one is counted first (cheaply, stopping at the limit), so a
    state of a million tiny objects is refused without encoding them all.
    """
    if type(state) is not dict:
        raise StateProblem(f"ctx.state must be a dict, not {type(state).__name__}")
    data = None
    if not counted:
        try:
            data = _encode(state, PROGRAM_STATE_OBJECTS_MAX)
        except _TooDeep:
            data = None
    if data is not None:
        return data, len(data)
    problem, objects = _census(state)
    if problem:
        raise StateProblem(problem)
    try:
        data = _encode(state, PROGRAM_STATE_BYTES_MAX)
    except _TooDeep:  # never within _DEPTH_MAX and the call's headroom; say so rather than crash
        raise StateProblem("ctx.state is nested too deeply") from None
    if data is None:
        raise StateProblem(f"state budget exhausted (more than {PROGRAM_STATE_BYTES_MAX} bytes)")
    return data, objects


def dump_state(state: Any) -> bytes:
    """The canonical bytes of `state`, or StateProblem (see encode_state)."""
    return encode_state(state)[0]


def dump_bounded(state: dict[str, Any]) -> bytes:
    """dump_state(state) for a state known to be within every bound (see TopicRuntime): the same bytes, without
    counting its objects first. A StateProblem here means the state was not."""
    try:
        data = _encode(state, PROGRAM_STATE_BYTES_MAX)
    except _TooDeep:
        raise StateProblem("ctx.state is nested too deeply") from None
    if data is None:
        raise StateProblem(f"state budget exhausted (more than {PROGRAM_STATE_BYTES_MAX} bytes)")
    return data


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"state bytes refer to {module}.{name}")


def load_state(data: bytes) -> dict[str, Any]:
    """The state `data` (from dump_state) stands for: fresh objects, none shared."""
    state = _NoGlobals(io.BytesIO(data)).load()
    if type(state) is not dict:
        raise pickle.UnpicklingError(f"state bytes hold a {type(state).__name__}, not a dict")
    return state


EMPTY_STATE = dump_state({})
