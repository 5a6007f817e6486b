"""The builtins a program sees (the allowlist), and the one module it may import: `json`.

Everything here is either a pure builtin whose cost is bounded by its (bounded) argument, or a wrapper that
charges its work and checks sizes. Nothing gives access to I/O, time, randomness, the interpreter or the host.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from operator import attrgetter
from types import FunctionType
from typing import Any

from laminar.node.sandbox._meter import (
    charge,
    charge_bytes,
    charge_chars,
    charge_compares,
    charge_int_text,
    charge_items,
    charge_objects,
    exhausted,
    recursion_depth,
)
from laminar.node.sandbox._methods import codec, pairs_to_dict, register
from laminar.node.sandbox._ops import MISSING, divmod_, extreme, materialize, sort_items
from laminar.node.sandbox._values import (
    CHEAP,
    DATA_DEPTH_MAX,
    INT_BITS_MAX,
    INTS,
    NUMBERS,
    SMALL_INT_BITS,
    VALUE_MAX,
    check_int,
    check_size,
    check_sized,
    check_text,
    json_flat,
    measure,
    to_text,
    type_name,
)


def _radix(convert: Callable[[Any], str]) -> Callable[[Any], str]:
    """bin, oct, hex: linear in the int's bits (at most PROGRAM_INT_BITS_MAX and a few more)."""

    def text(x: Any) -> str:
        if type(x) is int:
            charge_chars(x.bit_length() // 2)
        return convert(x)

    text.__name__ = convert.__name__
    return text


# int() and JSON parse at most this many characters: below Python's smallest int_max_str_digits setting (640),
# so the node's interpreter configuration can never decide an outcome. PROGRAM_INT_BITS_MAX needs 617 digits.
_INT_TEXT_MAX = 640
_INT_TEXT_MAX_POW2 = INT_BITS_MAX + 64  # bases 2, 4, 8, 16, 32 convert in linear time and have no such limit
_FLOAT_TEXT_MAX = 1000
_JSON_VALUES_PER_STEP = 4  # values json.loads creates per step
_LONG_NUMBER = re.compile(rf"\d{{{INT_BITS_MAX * 30103 // 100000},}}")  # a digit run that may exceed the int budget
_LONG_NUMBER_BYTES = re.compile(_LONG_NUMBER.pattern.encode())


def _int(x: Any = 0, base: Any = MISSING) -> int:
    t = type(x)
    if t is str or t is bytes:
        pow2 = base in (2, 4, 8, 16, 32)
        limit = _INT_TEXT_MAX_POW2 if pow2 else _INT_TEXT_MAX
        if len(x) > limit:
            raise ValueError(f"int(): a string of {len(x)} characters is too long (programs convert at most {limit})")
        charge_int_text(len(x) * 4)  # about 3.3 bits a decimal digit; linear in powers of two, charged alike
        n = int(x) if base is MISSING else int(x, base)
        if n.bit_length() > INT_BITS_MAX:
            raise ValueError(f"int(): the value has more than {INT_BITS_MAX} bits")
        return n
    if base is not MISSING:
        raise TypeError("int() can't convert non-string with explicit base")
    if t is float or t in INTS:
        return int(x)
    raise TypeError(f"int() argument must be a string, bytes or a number, not '{type_name(x)}'")


def _from_bytes(data: Any, byteorder: Any = "big", *, signed: Any = False) -> int:
    """int.from_bytes: of bytes, or of anything bytes() accepts (converted first, charged), within the int budget
    before the int is built."""
    if type(data) is not bytes:
        data = _bytes(data)
    if len(data) * 8 > INT_BITS_MAX:
        raise ValueError(f"int.from_bytes(): more than {INT_BITS_MAX} bits")
    return int.from_bytes(data, byteorder, signed=signed)


def _float(x: Any = 0.0) -> float:
    t = type(x)
    if t is str or t is bytes:
        if len(x) > _FLOAT_TEXT_MAX:
            raise ValueError(f"float(): a string of {len(x)} characters is too long (at most {_FLOAT_TEXT_MAX})")
        return float(x)
    if t is float or t in INTS:
        return float(x)
    raise TypeError(f"float() argument must be a string or a number, not '{type_name(x)}'")


def _decode(data: Any, encoding: Any = "utf-8", errors: Any = "strict") -> str:
    if type(data) is not bytes:
        raise TypeError(f"decoding to str: need a bytes object, not {type_name(data)}")
    name, handler = codec(encoding, errors)
    charge_chars(len(data))
    return check_text(str(data, name, handler))  # type: ignore[no-any-return]


def _str(*args: Any, **kwargs: Any) -> str:
    if len(args) == 1 and not kwargs:
        x = args[0]
        if type(x) in CHEAP and (type(x) is not int or x.bit_length() <= SMALL_INT_BITS):
            return str(x)  # small numbers first: what to_text does with them
        return to_text(x)
    if not args and not kwargs:
        return ""
    return _decode(*args, **kwargs)


def _repr(x: Any) -> str:
    return to_text(x, as_repr=True)


def _bytes(source: Any = MISSING, encoding: Any = MISSING, errors: Any = "strict") -> bytes:
    t = type(source)
    if source is MISSING:
        return b""
    if t is str:
        if encoding is MISSING:
            raise TypeError("string argument without an encoding")
        name, handler = codec(encoding, errors)
        charge_chars(len(source))
        return check_sized(source.encode(name, handler))  # type: ignore[no-any-return]
    if encoding is not MISSING:
        raise TypeError("encoding without a string argument")
    if t in INTS:
        check_size(source, "bytes")
        charge_bytes(source)
        return bytes(source)
    if t is bytes:
        return source  # type: ignore[no-any-return]
    items = materialize(source)
    charge_compares(len(items))  # each item is checked to be an int in range(256)
    return bytes(items)


def _fromhex(text: Any) -> bytes:
    if type(text) is str:
        charge_chars(len(text))
    return bytes.fromhex(text)


def _tuple(items: Any = ()) -> tuple[Any, ...]:
    return items if type(items) is tuple else tuple(materialize(items))


def _dict(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return pairs_to_dict(args, kwargs)


def _list(items: Any = ()) -> list[Any]:
    return materialize(items)


# The types' constructors, as programs see them: guarded functions that isinstance() maps back to the types.
CONSTRUCTORS: dict[Any, type] = {
    _int: int,
    _float: float,
    _str: str,
    _bytes: bytes,
    _list: list,
    _tuple: tuple,
    _dict: dict,
}
_TYPE_ATTRIBUTES: dict[tuple[Any, str], Any] = {(_int, "from_bytes"): _from_bytes, (_bytes, "fromhex"): _fromhex}


def _type_attribute(name: str) -> Callable[[Any], Any]:
    def make(obj: Any) -> Any:
        found = _TYPE_ATTRIBUTES.get((obj, name))
        if found is None:
            raise AttributeError(f"'{type_name(obj)}' object has no attribute '{name}' available to programs")
        return found

    return make


register(FunctionType, {"from_bytes": _type_attribute("from_bytes"), "fromhex": _type_attribute("fromhex")})


# --- Functions ------------------------------------------------------------------------------------------------


def _counted(iterator: Iterator[Any], weight: int = 1) -> Iterator[Any]:
    """Lazy builtins (zip, map, ...) charge as they go, however they are consumed (a loop, list(), sum())."""
    for item in iterator:
        charge(weight)
        yield item


def _enumerate(items: Any, start: Any = 0) -> Iterator[Any]:
    return _counted(enumerate(items, start))


def _zip(*iterables: Any, strict: Any = False) -> Iterator[Any]:
    return _counted(zip(*iterables, strict=bool(strict)), max(1, len(iterables)))


def _map(function: Any, *iterables: Any) -> Iterator[Any]:
    return _counted(map(function, *iterables), max(1, len(iterables)))


def _filter(function: Any, items: Any) -> Iterator[Any]:
    return _counted(filter(function, items))


def _reversed(items: Any) -> Iterator[Any]:
    return _counted(reversed(items))


def _sorted(items: Any, *, key: Any = None, reverse: Any = False) -> list[Any]:
    return sort_items(materialize(items), key, reverse)


def _extreme(pick: Callable[..., Any], args: tuple[Any, ...], key: Any, default: Any) -> Any:
    if not args:
        raise TypeError(f"{pick.__name__} expected at least 1 argument, got 0")
    return extreme(pick, materialize(args[0]) if len(args) == 1 else list(args), key, default)


def _min(*args: Any, key: Any = None, default: Any = MISSING) -> Any:
    return _extreme(min, args, key, default)


def _max(*args: Any, key: Any = None, default: Any = MISSING) -> Any:
    return _extreme(max, args, key, default)


def _sum(items: Any, start: Any = 0) -> Any:
    values = materialize(items)
    if not set(map(type, values)) <= NUMBERS or type(start) not in NUMBERS:
        raise TypeError("sum() adds numbers only (use str.join or list.extend for the rest)")
    charge_objects(len(values))
    return check_int(sum(values, start))


def _truth(pick: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """any() and all(): they stop early, so anything lazy (a range, a view) is charged item by item as it runs."""

    def test(items: Any) -> bool:
        if type(items) in (list, tuple, dict, str, bytes):
            charge_items(len(items))
            return pick(items)
        return pick(_counted(iter(items)))

    test.__name__ = pick.__name__
    return test


def _round(x: Any, ndigits: Any = None) -> Any:
    if ndigits is None:
        return round(x)
    if type(x) in INTS and type(ndigits) in INTS and ndigits < -_INT_TEXT_MAX:
        return 0  # |x| < 10**617, so rounding to more digits than that gives 0 (Python would compute 10**-ndigits)
    return round(x, ndigits)


EXCEPTIONS: tuple[type[BaseException], ...] = (
    ArithmeticError,
    AssertionError,
    AttributeError,
    Exception,
    IndexError,
    KeyError,
    LookupError,
    NameError,
    NotImplementedError,
    OverflowError,
    RuntimeError,
    TypeError,
    UnicodeDecodeError,
    UnicodeEncodeError,
    UnicodeError,
    ValueError,
    ZeroDivisionError,
)


# What isinstance() accepts as a type, and the real type each stands for.
_CLASSES: dict[Any, type] = {**CONSTRUCTORS, bool: bool, range: range, **{e: e for e in EXCEPTIONS}}


_CLASS_TYPES = (FunctionType, type)  # what the keys of _CLASSES are: hashing one is O(1)


def _class(spec: Any) -> type:
    # The type is checked before the lookup hashes `spec`: a tuple nested 100,000 deep hashes recursively in C,
    # with no recursion check, and would overflow the thread's stack.
    if type(spec) in _CLASS_TYPES:
        found = _CLASSES.get(spec)
        if found is not None:
            return found
    raise TypeError("isinstance() arg 2 must be a type, or a tuple of types")


def _isinstance(obj: Any, spec: Any) -> bool:
    if type(spec) is tuple:
        charge(1 + len(spec))  # _class runs in Python for each: a step each (at 4 a step it cost 0.89 us a step)
        return isinstance(obj, tuple(map(_class, spec)))
    if type(spec) in _CLASS_TYPES:  # _class(spec), written out: the common case
        found = _CLASSES.get(spec)
        if found is not None:
            return isinstance(obj, found)
    return isinstance(obj, _class(spec))


# --- json -----------------------------------------------------------------------------------------------------


def _parse_int(text: str) -> int:
    if len(text) > _INT_TEXT_MAX:
        raise ValueError(f"JSON integer of {len(text)} digits is too long (at most {_INT_TEXT_MAX})")
    charge_int_text(len(text) * 4)
    n = int(text)
    if n.bit_length() > INT_BITS_MAX:
        raise ValueError(f"JSON integer has more than {INT_BITS_MAX} bits")
    return n


def _parse_float(text: str) -> float:
    if len(text) > _FLOAT_TEXT_MAX:
        raise ValueError(f"JSON number of {len(text)} characters is too long (at most {_FLOAT_TEXT_MAX})")
    return float(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not supported")


# What json.loads(text, parse_constant=..., ...) builds for each call, built once (decoders keep no state).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_BIG_NUMBER_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_no_constant)
_SPACE = json.decoder.WHITESPACE.match  # type: ignore[attr-defined]
_SPACE_CHARS = " \t\n\r"  # what WHITESPACE matches: most texts start and end without any


def _skip_space(text: str, index: int) -> int:
    """`_SPACE(text, index).end()`, without the regex call when there is no space at `index`."""
    if index < len(text) and text[index] not in _SPACE_CHARS:
        return index
    return _SPACE(text, index).end()  # type: ignore[no-any-return]


_JSON_DEPTH_SLACK = 4  # levels between the probe and the scanner's first nesting level, and a margin


def _scan_nested(scan: Callable[[str, int], Any], text: str) -> Any:
    """scan(text, start) for text that may nest deeper than DATA_DEPTH_MAX (the C scanner recurses once a level),
    under a recursion limit pinned at the exact depth: how deep it may nest is then the same on every node."""
    depth = recursion_depth()
    saved = sys.getrecursionlimit()
    if depth is not None:
        sys.setrecursionlimit(depth + DATA_DEPTH_MAX + _JSON_DEPTH_SLACK)
    try:
        return scan(text, _skip_space(text, 0))
    except RecursionError:
        exhausted(f"nesting budget exhausted (JSON nested more than about {DATA_DEPTH_MAX} levels deep)")
    finally:
        sys.setrecursionlimit(saved)


def json_loads(text: Any) -> Any:
    """`json.loads`: str or bytes in, plain data out (dicts with str keys, lists, str, int, float, bool, None)."""
    t = type(text)
    # Values created: about one per comma or colon, and a container per bracket.
    if t is str:
        containers = text.count("[") + text.count("{")
        separators = text.count(",") + text.count(":") + containers
    elif t is bytes:
        containers = text.count(b"[") + text.count(b"{")
        separators = text.count(b",") + text.count(b":") + containers
    else:
        raise TypeError(f"the JSON object must be str or bytes, not {type_name(text)}")
    # Scanning is charged by length, building by the values it can create (one per comma or colon, about).
    charge_chars(len(text))
    charge(1 + separators // _JSON_VALUES_PER_STEP)
    # What json.loads does before it decodes, then its decoder (no number can reach the int budget unless a long
    # digit run is there: then every number is parsed by our checking functions; else all at C speed).
    big = (_LONG_NUMBER if t is str else _LONG_NUMBER_BYTES).search(text) is not None
    if t is bytes:
        # json.detect_encoding says utf-8 whenever the text starts with a printable ASCII character that is not
        # followed by a zero byte (every BOM and UTF-16/32 pattern starts otherwise); else ask it.
        plain = 0x20 <= text[0] < 0x7F and (len(text) == 1 or text[1] != 0) if text else True
        text = text.decode("utf-8" if plain else json.detect_encoding(text), "surrogatepass")
    elif text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    # JSONDecoder.decode and raw_decode, written out (two calls fewer, the same results and errors)
    scan = (_BIG_NUMBER_DECODER if big else _DECODER).scan_once  # type: ignore[attr-defined]
    try:
        if containers > DATA_DEPTH_MAX:
            obj, end = _scan_nested(scan, text)
        else:
            obj, end = scan(text, _skip_space(text, 0))
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    if end != len(text):
        end = _SPACE(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


def json_dumps(obj: Any, *, sort_keys: Any = False) -> str:
    """`json.dumps`: compact, in insertion order unless sort_keys, non-ASCII kept, NaN and infinity refused."""
    bound = measure(obj, json_flat, VALUE_MAX)
    if bound > VALUE_MAX:
        exhausted(f"value budget exhausted (JSON text that could exceed {VALUE_MAX} characters)")
    charge_chars(bound)
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=bool(sort_keys))
    return check_text(text)  # type: ignore[no-any-return]


class JsonModule:
    """What `import json` gives a program."""

    __slots__ = ("dumps", "loads")

    def __init__(self) -> None:
        self.loads = json_loads
        self.dumps = json_dumps

    def __repr__(self) -> str:
        return "<module 'json'>"


JSON = JsonModule()
IMPORTABLE = {"json": ("loads", "dumps")}
register(JsonModule, {"loads": attrgetter("loads"), "dumps": attrgetter("dumps")})


def _import(name: Any, globals: Any = None, locals: Any = None, fromlist: Any = (), level: Any = 0) -> Any:
    if name == "json" and level == 0:
        return JSON
    raise ImportError(f"import of {name!r} is not allowed")


BUILTINS: dict[str, Any] = {
    "__import__": _import,
    "abs": abs,
    "all": _truth(all),
    "any": _truth(any),
    "bin": _radix(bin),
    "bool": bool,
    "bytes": _bytes,
    "chr": chr,
    "dict": _dict,
    "divmod": divmod_,
    "enumerate": _enumerate,
    "filter": _filter,
    "float": _float,
    "hex": _radix(hex),
    "int": _int,
    "isinstance": _isinstance,
    "len": len,
    "list": _list,
    "map": _map,
    "max": _max,
    "min": _min,
    "next": next,
    "oct": _radix(oct),
    "ord": ord,
    "range": range,
    "repr": _repr,
    "reversed": _reversed,
    "round": _round,
    "sorted": _sorted,
    "str": _str,
    "sum": _sum,
    "tuple": _tuple,
    "zip": _zip,
    **{exc.__name__: exc for exc in EXCEPTIONS},
}
# Objects a module-level name may hold although they are not plain data: they are immutable and shared.
SHARED_OBJECTS: frozenset[int] = frozenset(id(v) for v in (*BUILTINS.values(), JSON, json_loads, json_dumps))
