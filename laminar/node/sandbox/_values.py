"""The values programs handle: their types, their sizes, and their text.

Programs only ever hold plain data (None, bool, int, float, str, bytes, list, tuple, dict with str keys), a few
read-only objects (ctx, json, builtins), their own functions, and iterators over those. Sizes are bounded by
PROGRAM_VALUE_BYTES_MAX, in bytes, checked before the value is built (an ASCII str 1 a character, any other 4, bytes
1, a list or tuple REFERENCE_BYTES an element, a dict DICT_ENTRY_BYTES an entry) and ints by PROGRAM_INT_BITS_MAX.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, NoReturn

from laminar.limits import PROGRAM_DATA_DEPTH_MAX, PROGRAM_INT_BITS_MAX, PROGRAM_VALUE_BYTES_MAX, REASON_BYTES_MAX
from laminar.node.sandbox import _meter
from laminar.node.sandbox._meter import (
    INT_TEXT_COST_SHIFT,
    charge,
    charge_bytes,
    charge_chars,
    charge_int_text,
    exhausted,
)

NoneType = type(None)
MappingProxy = MappingProxyType
DictKeys: Any = type({}.keys())
DictValues: Any = type({}.values())
DictItems: Any = type({}.items())

INTS = frozenset({int, bool})
NUMBERS = frozenset({int, bool, float})
CHEAP = frozenset({NoneType, bool, int, float})  # compared in O(1): ints are bounded
SEQUENCES = frozenset({str, bytes, list, tuple})
MAPPINGS = frozenset({dict, MappingProxy})
VIEWS = frozenset({DictKeys, DictValues, DictItems})
TEXT_FLOAT_MAX = 330  # characters of the longest float text ("%f" of 1e308)
DATA_DEPTH_MAX = PROGRAM_DATA_DEPTH_MAX  # see limits.py
SMALL_INT_BITS = 128  # an int this small converts to text in well under a step
_TEXT_CHARS_PER_OBJECT = 8  # the shortest text of an element in a container's repr, with its separator, about

VALUE_MAX = PROGRAM_VALUE_BYTES_MAX
INT_BITS_MAX = PROGRAM_INT_BITS_MAX

# Values a container may hold as a live object between calls: programs cannot tell one of these from an equal
# copy (`is` refuses to compare them, and their `==` is reflexive), so it does not matter that the state's
# objects are shared with each other or with constants while a node that reloaded the state has fresh ones.
# Not floats as such (NaN != NaN, so `[x] == [x]` depends on identity) and not containers (sharing is mutable).
ATOMS = frozenset({NoneType, bool, int, str, bytes})
IDENTITYLESS = frozenset({int, float, str, bytes, tuple})  # `a is b` on two of these is refused (see _ops.is_)
_STORED_SCAN_MAX = 16  # elements of a tuple or a bulk write examined one by one; a longer one is not kept live


def type_name(x: object) -> str:
    return type(x).__name__


def int_exhausted(bits: int) -> NoReturn:
    exhausted(f"int budget exhausted (an int of {bits} bits; the limit is {INT_BITS_MAX})")


def check_int(n: Any) -> Any:
    """Pass `n` through, aborting if it is an int over the int budget."""
    if type(n) is int and n.bit_length() > INT_BITS_MAX:
        int_exhausted(n.bit_length())
    return n


# What an element of a container takes in memory, in bytes: a list or tuple holds a reference (8 bytes) per element;
# a dict an entry of hash, key and value (24 bytes) plus its index and the room CPython keeps free (measured: 21 to
# 44 bytes an entry over sizes up to 100,000, the high end just after a resize).
REFERENCE_BYTES = 8
DICT_ENTRY_BYTES = 48
_UNIT_BYTES = {"str": 1, "bytes": 1, "list": REFERENCE_BYTES, "tuple": REFERENCE_BYTES, "dict": DICT_ENTRY_BYTES}
_UNITS = {"str": "characters", "bytes": "bytes", "dict": "entries"}
LIST_ITEMS_MAX = VALUE_MAX // REFERENCE_BYTES  # the most elements a list may hold
DICT_ENTRIES_MAX = VALUE_MAX // DICT_ENTRY_BYTES  # the most entries a dict may hold


def size_exhausted(n: int, what: str) -> NoReturn:
    unit = _UNIT_BYTES.get(what, REFERENCE_BYTES)
    counted = f" counts {n * unit} bytes" if unit != 1 else ""
    exhausted(
        f"value budget exhausted (a {what} of {n} {_UNITS.get(what, 'elements')}{counted}; the limit is {VALUE_MAX})"
    )


def check_size(n: int, what: str) -> None:
    """Abort before building a `what` (str of ASCII characters, bytes, list, tuple, dict) of `n` characters, bytes,
    elements or entries if its bytes would be over the value budget."""
    if n * _UNIT_BYTES.get(what, REFERENCE_BYTES) > VALUE_MAX:
        size_exhausted(n, what)


# A str's memory is its length times the width of its widest character (1, 2 or 4 bytes). Python offers no O(1)
# way to read the width but `isascii()`, so the value budget counts an ASCII str at 1 byte a character and any
# other at 4: an upper bound, the same on every node (it depends on the characters only). Sizes are checked in
# characters before a str is built (bounding what is allocated to 4 * VALUE_MAX) and in bytes after.
TEXT_WIDE_BYTES = 4


def check_text_size(n: int, wide: bool) -> None:
    """Abort before building a str of `n` characters if it may be over the value budget (`wide`: not ASCII)."""
    if n > VALUE_MAX or (wide and n * TEXT_WIDE_BYTES > VALUE_MAX):
        text_exhausted(n, wide)


def text_exhausted(n: int, wide: bool) -> NoReturn:
    if not wide:
        size_exhausted(n, "str")
    exhausted(
        f"value budget exhausted (a non-ASCII str of {n} characters counts {n * TEXT_WIDE_BYTES} bytes; "
        f"the limit is {VALUE_MAX})"
    )


def check_text(text: Any) -> Any:
    """Pass a str just built through, aborting if its bytes are over the value budget (see TEXT_WIDE_BYTES)."""
    n = len(text)
    if n * TEXT_WIDE_BYTES > VALUE_MAX and (n > VALUE_MAX or not text.isascii()):
        text_exhausted(n, not text.isascii())
    return text


def check_sized(value: Any) -> Any:
    """Pass `value` through, aborting if it is a str, bytes or container over the value budget."""
    if type(value) is str:
        return check_text(value)
    if type(value) in SEQUENCES or type(value) is dict:
        check_size(len(value), type_name(value))
    return value


def as_dict(mapping: Any) -> dict[str, Any]:
    """A dict to merge from: a proxy's own dict copied (at C speed; merging from a proxy goes key by key)."""
    return mapping if type(mapping) is dict else mapping.copy()  # type: ignore[no-any-return]


def _atom(value: Any) -> bool:
    t = type(value)
    return t in ATOMS or (t is float and value == value)


# What storing a value into a list or dict can add to the state's encoding (pickle protocol 4, no memo), at most:
# its own opcodes (str: 9 bytes of header and up to 4 bytes a character, int: 8 and its bytes, float: 9), the key's
# for a dict, and more than enough for the container's batch marks and a frame header (9 bytes; a str or bytes
# over 64 KiB is written between two frames). See TopicRuntime.
_STORE_OVERHEAD = 32
_UNBOUNDED = 1 << 62  # "could add any amount": the runtime encodes the state after the call


def stored(value: Any, key: str | None = None) -> None:
    """`value` is about to be stored into a list, or into a dict under `key`, maybe in the state: tell the meter.

    The call changes a container (`mutated`). Keeping the state's objects between calls is only sound if a
    restarted node, which loads fresh objects from the state's bytes, cannot tell them apart: so a container
    (which may now be reachable twice), a NaN, or a tuple holding either makes the call `aliased`, and the
    runtime reloads the state after it. Otherwise `grown` and `added` count what the value (and the key) can add
    to the encoding, in bytes and objects. (Written for speed: it runs for every item a program stores.)
    """
    meter = _meter._active
    meter.mutated = True
    if key is None:
        size = _STORE_OVERHEAD
        meter.added += 1
    else:
        size = _STORE_OVERHEAD + 9 + 4 * len(key)
        meter.added += 2
    t = type(value)
    if t is str or t is bytes:
        size += 9 + 4 * len(value)
    elif t is int:
        size += 8 + value.bit_length() // 8
    elif t is NoneType or t is bool or (t is float and value == value):
        size += 9
    elif t is tuple and len(value) <= _STORED_SCAN_MAX:
        size += 2
        meter.added += len(value)
        for item in value:
            t = type(item)
            if t is str or t is bytes:
                size += 9 + 4 * len(item)
            elif t is int:
                size += 8 + item.bit_length() // 8
            elif t is NoneType or t is bool or (t is float and item == item):
                size += 9
            else:
                meter.aliased = True
                return
    else:
        meter.aliased = True
        return
    meter.grown += size


def stored_all(values: Any) -> None:
    """`stored` for many values at once (a sized collection), at C speed; their size is not counted."""
    meter = _meter._active
    meter.mutated = True
    meter.grown = _UNBOUNDED
    if len(values) > _STORED_SCAN_MAX or not all(map(_atom, values)):
        meter.aliased = True


def check_key(key: object) -> str:
    """Dict keys are str everywhere: one rule, and no hashing of (possibly very deep) tuples."""
    if type(key) is not str:
        raise TypeError(f"dict keys must be str, not {type_name(key)}")
    return key


_CONTAINER_TYPES = frozenset({list, tuple, dict, MappingProxy})
_CONTAINER_STEPS = 8  # walking into a container, and what the native operation then does there (a repr recursion)
Flat = Callable[[Any, set[type]], int]  # (elements, their types) -> their total size; none is a container


def _by_type(items: Any, types: set[type]) -> dict[type, Any]:
    """`items` grouped by type, in an order that is the same in every process (a set of types iterates in an
    order that depends on addresses; it decides which error a mixed container reports)."""
    if len(types) == 1:
        return {next(iter(types)): items}
    charge(len(items) // 4)
    ordered = sorted(types, key=lambda t: (t.__module__, t.__qualname__))
    return {t: [i for i in items if type(i) is t] for t in ordered}


def _number_text(t: type, group: Any) -> int:
    if t is int or t is bool:
        bits = max(map(int.bit_length, group))
        if bits > SMALL_INT_BITS:
            charge(len(group) * (1 + ((bits * bits) >> INT_TEXT_COST_SHIFT)))  # decimal conversion is quadratic
        return len(group) * (bits * 30103 // 100000 + 4)
    if t is float:
        return 34 * len(group)
    if t is NoneType:
        return 6 * len(group)
    raise TypeError(f"cannot convert a {t.__name__} to text")


def text_flat(items: Any, types: set[type]) -> int:
    """Upper bound of the repr of each of `items`, plus separators."""
    total = 0
    for t, group in _by_type(items, types).items():
        if t is str:
            n = sum(map(len, group))
            charge_chars(n)
            total += (2 if all(map(str.isprintable, group)) else 10) * n + 4 * len(group)
        elif t is bytes:
            total += 4 * sum(map(len, group)) + 5 * len(group)
        else:
            total += _number_text(t, group)
    return total


def json_flat(items: Any, types: set[type]) -> int:
    """Upper bound of the JSON text of each of `items`, plus separators."""
    total = 0
    for t, group in _by_type(items, types).items():
        if t is str:
            total += 6 * sum(map(len, group)) + 4 * len(group)
        elif t is bytes:
            raise TypeError("Object of type bytes is not JSON serializable (decode it first)")
        else:
            total += _number_text(t, group)
    return total


def compare_flat(items: Any, types: set[type]) -> int:
    """Charges what comparing `items` one by one costs (str and bytes by length); their count."""
    if str in types or bytes in types:
        charge_bytes(sum(len(i) for i in items if type(i) is str or type(i) is bytes))
    return len(items)


def _elements(items: Any, flat: Flat, stack: list[Any]) -> int:
    """Size of a container's elements: flat ones at C speed, nested containers pushed for later."""
    n = len(items)
    charge(_CONTAINER_STEPS + n // 8)
    types = set(map(type, items))
    if types.isdisjoint(_CONTAINER_TYPES):
        return flat(items, types) if n else 0
    charge(n // 4)
    nested = [i for i in items if type(i) in _CONTAINER_TYPES]
    stack.extend(nested)
    if len(nested) == n:
        return 0
    return flat([i for i in items if type(i) not in _CONTAINER_TYPES], types - _CONTAINER_TYPES)


def measure(x: Any, flat: Flat, limit: int) -> int:
    """An upper bound of what `x` stands for (its text length, or the work of comparing it).

    Walks containers iteratively, level by level, charging as it goes (before copying anything), so a huge, shared
    or cyclic structure exhausts the step budget instead of hanging. Stops once past `limit`. Every operation that
    recurses natively over a program's data (comparing, printing, json.dumps, sorting) measures it first, so this
    is also where nesting is bounded: past DATA_DEPTH_MAX levels the call ends, the same way on every node, before
    any native recursion could reach the interpreter's limit (see _runtime).
    """
    total = 0
    level: list[Any] = [x]
    depth = 0
    while level and total <= limit:
        depth += 1
        if depth > DATA_DEPTH_MAX:
            exhausted(f"nesting budget exhausted (data nested more than {DATA_DEPTH_MAX} levels deep)")
        nested: list[Any] = []
        for obj in level:
            t = type(obj)
            if t is dict or t is MappingProxy:
                total += 16 + 2 * len(obj) + _elements(obj.keys(), flat, nested) + _elements(obj.values(), flat, nested)
            elif t is list or t is tuple:
                total += 2 + 2 * len(obj) + _elements(obj, flat, nested)
            else:
                total += flat((obj,), {t})
            if total > limit:
                break
        level = nested
    return total


def charge_compare(x: object) -> None:
    """Charge for comparing `x` (and everything nested in it) against something of its size."""
    if type(x) not in CHEAP:
        measure(x, compare_flat, 1 << 62)


def to_text(x: Any, as_repr: bool = False) -> str:
    """str(x) or repr(x) for plain data, refusing objects whose text would leak an address or be too big."""
    t = type(x)
    if t in CHEAP:
        if t is int and x.bit_length() > SMALL_INT_BITS:
            charge_int_text(x.bit_length())  # ints are bounded (at most ~620 digits), but converting is quadratic
        return repr(x) if as_repr else str(x)
    if t is str and not as_repr:
        return x  # type: ignore[no-any-return]
    if isinstance(x, BaseException):
        text = exception_message(x)
        return f"{type_name(x)}({text!r})" if as_repr else text
    if t is str or t is bytes:
        charge_chars(len(x))
        text = repr(x)
    else:
        bound = measure(x, text_flat, VALUE_MAX)
        if bound > VALUE_MAX:
            exhausted(f"value budget exhausted (the text of a {type_name(x)} could exceed {VALUE_MAX} characters)")
        charge_bytes(bound)
        charge(1 + bound // _TEXT_CHARS_PER_OBJECT // _meter.OBJECTS_PER_STEP)  # a new str per element, about
        text = repr(x) if as_repr else str(x)
    check_text(text)
    charge_bytes(len(text))
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
    """Cut `text` to at most `limit` UTF-8 bytes without splitting a character. Lone surrogates (a program can
    put them in a str) become "?": the result always encodes, so the node can store and send it."""
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")
