"""The values programs handle: their types, their sizes, and their text.

Programs only ever hold plain data (None, bool, int, float, str, bytes, list, tuple, dict with str keys), a few
read-only objects (ctx, json, builtins), their own functions, and iterators over those. Sizes are bounded by
PROGRAM_VALUE_BYTES_MAX (a str counts characters, bytes count bytes, a list, tuple or dict counts elements) and
ints by PROGRAM_INT_BITS_MAX.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, NoReturn

from laminar.limits import PROGRAM_INT_BITS_MAX, PROGRAM_VALUE_BYTES_MAX, REASON_BYTES_MAX
from laminar.node.sandbox._meter import charge_bytes, charge_objects, exhausted

NoneType = type(None)
MappingProxy = MappingProxyType
DictKeys = type({}.keys())
DictValues = type({}.values())
DictItems = type({}.items())

INTS = frozenset({int, bool})
NUMBERS = frozenset({int, bool, float})
CHEAP = frozenset({NoneType, bool, int, float})  # compared in O(1): ints are bounded
SEQUENCES = frozenset({str, bytes, list, tuple})
MAPPINGS = frozenset({dict, MappingProxy})
VIEWS = frozenset({DictKeys, DictValues, DictItems})
TEXT_FLOAT_MAX = 330  # characters of the longest float text ("%f" of 1e308)

VALUE_MAX = PROGRAM_VALUE_BYTES_MAX
INT_BITS_MAX = PROGRAM_INT_BITS_MAX


def type_name(x: object) -> str:
    return type(x).__name__


def int_exhausted(bits: int) -> NoReturn:
    exhausted(f"int budget exhausted (an int of {bits} bits; the limit is {INT_BITS_MAX})")


def check_int(n: Any) -> Any:
    """Pass `n` through, aborting if it is an int over the int budget."""
    if type(n) is int and n.bit_length() > INT_BITS_MAX:
        int_exhausted(n.bit_length())
    return n


def size_exhausted(n: int, what: str) -> NoReturn:
    exhausted(f"value budget exhausted (a {what} of {n} elements; the limit is {VALUE_MAX})")


def check_size(n: int, what: str) -> None:
    if n > VALUE_MAX:
        size_exhausted(n, what)


def check_sized(value: Any) -> Any:
    """Pass `value` through, aborting if it is a str, bytes or container over the value budget."""
    if type(value) in SEQUENCES or type(value) is dict:
        check_size(len(value), type_name(value))
    return value


def check_key(key: object) -> str:
    """Dict keys are str everywhere: one rule, and no hashing of (possibly very deep) tuples."""
    if type(key) is not str:
        raise TypeError(f"dict keys must be str, not {type_name(key)}")
    return key


def measure(x: object, scalar: Callable[[Any], int], limit: int) -> int:
    """An upper bound of what `x` stands for (its text length, or the work of comparing it).

    Walks containers iteratively, charging one step per OBJECTS_PER_STEP elements before pushing them, so a
    huge, shared or cyclic structure exhausts the step budget instead of hanging. Stops past `limit`.
    """
    total = 0
    stack = [x]
    while stack:
        obj = stack.pop()
        t = type(obj)
        if t is list or t is tuple:
            charge_objects(len(obj))
            total += 2 + 2 * len(obj)
            stack.extend(obj)
        elif t is dict or t is MappingProxy:
            charge_objects(2 * len(obj))
            total += 16 + 4 * len(obj)
            stack.extend(obj.keys())
            stack.extend(obj.values())
        else:
            total += scalar(obj)
        if total > limit:
            break
    return total


def text_size(x: Any) -> int:
    """Upper bound of len(repr(x)) for a plain scalar; TypeError for anything else."""
    t = type(x)
    if t is str:
        charge_bytes(len(x))
        return 2 * len(x) + 2 if x.isprintable() else 10 * len(x) + 2
    if t is bytes:
        return 4 * len(x) + 3
    if t is int:
        return x.bit_length() * 30103 // 100000 + 2
    if t is float:
        return 32
    if t is bool or t is NoneType:
        return 5
    raise TypeError(f"cannot convert a {type_name(x)} to text")


def compare_work(x: Any) -> int:
    """Charges the work of a native comparison or repr walking `x` (str and bytes by length)."""
    t = type(x)
    if t is str or t is bytes:
        charge_bytes(len(x))
    return 1


def charge_compare(x: object) -> None:
    """Charge for comparing `x` (and everything nested in it) against something of its size."""
    if type(x) in CHEAP:
        return
    measure(x, compare_work, 1 << 62)


def to_text(x: Any, as_repr: bool = False) -> str:
    """str(x) or repr(x) for plain data, refusing objects whose text would leak an address or be too big."""
    t = type(x)
    if t is str and not as_repr:
        return x
    if isinstance(x, BaseException):
        text = exception_message(x)
        return f"{type_name(x)}({text!r})" if as_repr else text
    bound = measure(x, text_size, VALUE_MAX)
    if bound > VALUE_MAX and t is not str and t is not bytes:
        exhausted(f"value budget exhausted (the text of a {type_name(x)} could exceed {VALUE_MAX} characters)")
    charge_bytes(bound)
    text = repr(x) if as_repr else str(x)
    check_size(len(text), "str")
    return text


# --- Exception text: host side, bounded, deterministic -----------------------------------------------------

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SIMPLE_ARGS = frozenset({str, bytes, int, float, bool, NoneType})


def brief(x: object, limit: int = 200) -> str:
    """A short deterministic rendering of anything, for messages: never walks more than `limit` characters."""
    t = type(x)
    if t in CHEAP:
        return f"<int of {x.bit_length()} bits>" if t is int and x.bit_length() > INT_BITS_MAX else repr(x)  # type: ignore[attr-defined]
    if t is str or t is bytes:
        return repr(x[:limit]) + ("..." if len(x) > limit else "")  # type: ignore[index, arg-type]
    if t in (list, tuple) and limit > 8:
        parts = [brief(item, limit // 4) for item in x[:8]]  # type: ignore[index]
        more = ", ..." if len(x) > 8 else ""  # type: ignore[arg-type]
        return ("[%s]" if t is list else "(%s)") % (", ".join(parts) + more)
    return f"<{t.__name__}>"


def exception_message(exc: BaseException) -> str:
    """The message of `exc` without memory addresses, bounded, computed without running program code."""
    args = exc.args
    if all(type(a) in _SIMPLE_ARGS for a in args) and sum(len(a) for a in args if type(a) in (str, bytes)) < 4096:
        try:
            text = str(exc)
        except Exception:  # noqa: BLE001 -- a message is best effort; the type name still says what happened
            text = ""
    elif len(args) == 1:
        text = brief(args[0])
    else:
        text = brief(args)
    return clip(_ADDRESS.sub("", text))


def clip(text: str, limit: int = REASON_BYTES_MAX) -> str:
    """Cut `text` to at most `limit` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")
