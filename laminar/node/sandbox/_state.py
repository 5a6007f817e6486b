"""ctx.state on disk: a canonical, bounded encoding of plain data.

The encoding is pickle protocol 4 in "fast" mode (no memo), refusing every type but None, bool, int, float,
str, bytes, list, tuple and dict. Without a memo the bytes depend only on the values and the dicts' insertion
order, never on object identity, refcounts or the hash seed; insertion order is kept (not sorted) because a
program can observe it, so a node that reloads the state must iterate it exactly as the others do. The writer
aborts as soon as the output passes PROGRAM_STATE_BYTES_MAX, so a state shared a million times over (`[s] * n`)
costs no more than the limit. Only bytes this module wrote are ever loaded, through an unpickler that resolves
no globals.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from laminar.limits import PROGRAM_STATE_BYTES_MAX

_PROTOCOL = 4


class StateProblem(Exception):
    """ctx.state cannot be kept; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _TooBig(Exception):
    pass


class _Writer:
    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > PROGRAM_STATE_BYTES_MAX:
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


def dump_state(state: Any) -> bytes:
    """The canonical bytes of `state`, or StateProblem."""
    if type(state) is not dict:
        raise StateProblem(f"ctx.state must be a dict, not {type(state).__name__}")
    writer = _Writer()
    pickler = _PlainPickler(writer, protocol=_PROTOCOL)
    pickler.fast = True  # no memo: the bytes must not depend on which objects happen to be shared
    try:
        pickler.dump(state)
    except _TooBig:
        raise StateProblem(f"state budget exhausted (more than {PROGRAM_STATE_BYTES_MAX} bytes)") from None
    except TypeError as exc:
        raise StateProblem(str(exc)) from None
    except ValueError:  # fast mode's cycle detection
        raise StateProblem("ctx.state contains a cycle") from None
    except RecursionError:
        raise StateProblem("ctx.state is nested too deeply") from None
    return b"".join(writer.parts)


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
