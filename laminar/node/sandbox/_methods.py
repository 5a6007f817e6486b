"""`_getattr_`: the attributes a program may read, per type. Everything not listed here does not exist.

Deny by default is what closes the dunder walks, frame and generator attributes (gi_frame, f_globals, ...),
exception internals (__traceback__, args), str.format's field lookups, and anything a future Python adds.
Methods whose work or result grows with their input are wrapped to charge steps and check sizes first.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from laminar.node.sandbox._meter import charge_bytes, charge_chars, charge_items, charge_objects
from laminar.node.sandbox._ops import charge_search, extend_list, materialize, sort_items
from laminar.node.sandbox._values import (
    INTS,
    VALUE_MAX,
    MappingProxy,
    check_key,
    check_size,
    check_sized,
    size_exhausted,
    type_name,
)

Maker = Callable[[Any], Any]  # object -> the attribute's value
ATTRIBUTES: dict[type, dict[str, Maker]] = {}


def getattr_(obj: Any, name: str) -> Any:
    """`_getattr_(obj, name)`; RestrictedPython only generates it with a literal name."""
    table = ATTRIBUTES.get(type(obj))
    if table is not None:
        make = table.get(name)
        if make is not None:
            return make(obj)
    if type(obj) is str and name in ("format", "format_map"):
        raise AttributeError("str.format is not available to programs: use an f-string or %")
    raise AttributeError(f"'{type_name(obj)}' object has no attribute '{name}' available to programs")


def _texts_len(args: tuple[Any, ...]) -> int:
    return sum(len(a) for a in args if type(a) is str or type(a) is bytes)


def linear(fn: Callable[..., Any]) -> Maker:
    """Work linear in the input; a result within a small factor of it (checked after)."""

    def make(obj: Any) -> Callable[..., Any]:
        def method(*args: Any, **kwargs: Any) -> Any:
            charge_chars(len(obj) + _texts_len(args))
            return check_sized(fn(obj, *args, **kwargs))

        return method

    return make


def _pieces(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    sep = args[0] if args else kwargs.get("sep")
    maxsplit = args[1] if len(args) > 1 else kwargs.get("maxsplit", -1)
    if sep is None:
        pieces = len(obj) // 2 + 1
    elif type(sep) is type(obj) and sep:
        pieces = obj.count(sep) + 1
    else:
        pieces = 1
    if type(maxsplit) in INTS and 0 <= maxsplit < pieces:
        pieces = maxsplit + 1
    return pieces


def splitting(fn: Callable[..., Any]) -> Maker:
    """split and rsplit: charged for the pieces they create, counted (or bounded) first."""

    def make(obj: Any) -> Callable[..., Any]:
        def method(*args: Any, **kwargs: Any) -> Any:
            charge_chars(len(obj))
            charge_objects(_pieces(obj, args, kwargs))
            return fn(obj, *args, **kwargs)

        return method

    return make


_LINE_BREAKS = ("\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _splitlines(obj: Any) -> Callable[..., Any]:
    def method(*args: Any, **kwargs: Any) -> Any:
        charge_chars(len(obj))
        breaks = _LINE_BREAKS if type(obj) is str else (b"\n", b"\r")
        charge_objects(sum(obj.count(b) for b in breaks) + 1)
        return obj.splitlines(*args, **kwargs)

    return method


def widening(fn: Callable[..., Any]) -> Maker:
    """center, ljust, rjust, zfill: the result is as long as the width asked for."""

    def make(obj: Any) -> Callable[..., Any]:
        def method(width: Any, *args: Any) -> Any:
            if type(width) in INTS and width > VALUE_MAX:
                size_exhausted(width, type_name(obj))
            charge_bytes(max(len(obj), width if type(width) in INTS else 0))
            return fn(obj, width, *args)

        return method

    return make


def _expandtabs(obj: Any) -> Callable[..., Any]:
    def method(tabsize: Any = 8) -> Any:
        tab = "\t" if type(obj) is str else b"\t"
        bound = len(obj) + obj.count(tab) * (max(tabsize, 0) if type(tabsize) in INTS else 0)
        check_size(bound, type_name(obj))
        charge_bytes(bound)
        return obj.expandtabs(tabsize)

    return method


def _join(obj: Any) -> Callable[..., Any]:
    def method(iterable: Any) -> Any:
        items = materialize(iterable)
        if not set(map(type, items)) <= {type(obj)}:
            return obj.join(items)  # raises Python's own TypeError, after a linear scan at most
        total = sum(map(len, items)) + len(obj) * max(len(items) - 1, 0)
        check_size(total, type_name(obj))
        charge_bytes(total)
        return obj.join(items)

    return method


def _replace(obj: Any) -> Callable[..., Any]:
    def method(old: Any, new: Any, count: Any = -1) -> Any:
        if type(old) is not type(obj) or type(new) is not type(obj) or type(count) not in INTS:
            return obj.replace(old, new, count)  # Python's own TypeError
        charge_chars(len(obj))
        n = obj.count(old) if old else len(obj) + 1
        if 0 <= count < n:
            n = count
        size = len(obj) + n * (len(new) - len(old))
        check_size(size, type_name(obj))
        charge_bytes(size)
        return obj.replace(old, new, count)

    return method


# Codecs are limited to the exact, fast, import-free ones; `latin-1` maps any bytes to a str and back.
_CODECS = {"utf-8": "utf-8", "utf8": "utf-8", "ascii": "ascii", "latin-1": "latin-1", "latin1": "latin-1"}
_CODECS["iso-8859-1"] = "latin-1"
_CODEC_ERRORS = frozenset({"strict", "ignore", "replace"})


def codec(encoding: Any, errors: Any) -> tuple[str, str]:
    name = _CODECS.get(encoding.lower().replace("_", "-")) if type(encoding) is str else None
    if name is None:
        raise LookupError(f"encoding {encoding!r} is not available to programs (use utf-8, ascii or latin-1)")
    if errors not in _CODEC_ERRORS:
        raise LookupError(f"error handler {errors!r} is not available to programs (use strict, ignore or replace)")
    return name, errors


def _coding(method_name: str) -> Maker:
    def make(obj: Any) -> Callable[..., Any]:
        def method(encoding: Any = "utf-8", errors: Any = "strict") -> Any:
            name, handler = codec(encoding, errors)
            charge_chars(len(obj))
            return check_sized(getattr(obj, method_name)(name, handler))

        return method

    return make


def _bound(attribute: str) -> Maker:
    """A method that is O(1), or linear in an input that was already charged when it was built."""
    return attrgetter(attribute)


_TEXT_LINEAR = [
    "capitalize",
    "count",
    "endswith",
    "find",
    "index",
    "isalnum",
    "isalpha",
    "isascii",
    "isdigit",
    "islower",
    "isspace",
    "istitle",
    "isupper",
    "lower",
    "lstrip",
    "partition",
    "removeprefix",
    "removesuffix",
    "rfind",
    "rindex",
    "rpartition",
    "rstrip",
    "startswith",
    "strip",
    "swapcase",
    "title",
    "upper",
]
_STR_ONLY_LINEAR = ["casefold", "isdecimal", "isidentifier", "isnumeric", "isprintable"]


def _text_table(kind: Any) -> dict[str, Maker]:
    names = _TEXT_LINEAR + (_STR_ONLY_LINEAR if kind is str else ["hex"])
    table = {name: linear(getattr(kind, name)) for name in names}
    table.update(
        split=splitting(kind.split),
        rsplit=splitting(kind.rsplit),
        splitlines=_splitlines,
        center=widening(kind.center),
        ljust=widening(kind.ljust),
        rjust=widening(kind.rjust),
        zfill=widening(kind.zfill),
        expandtabs=_expandtabs,
        join=_join,
        replace=_replace,
    )
    table["encode" if kind is str else "decode"] = _coding("encode" if kind is str else "decode")
    return table


# --- list, dict, tuple ----------------------------------------------------------------------------------------


def _append(items: list[Any]) -> Callable[[Any], None]:
    def append(value: Any) -> None:
        if len(items) >= VALUE_MAX:
            size_exhausted(len(items) + 1, "list")
        items.append(value)

    return append


def _insert(items: list[Any]) -> Callable[[Any, Any], None]:
    def insert(index: Any, value: Any) -> None:
        check_size(len(items) + 1, "list")
        charge_items(len(items))
        items.insert(index, value)

    return insert


def _pop(items: list[Any]) -> Callable[..., Any]:
    def pop(*index: Any) -> Any:
        if index:
            charge_items(len(items))
        return items.pop(*index)

    return pop


def _searching(method_name: str) -> Maker:
    """index, count, remove: one comparison per element."""

    def make(obj: Any) -> Callable[..., Any]:
        def method(value: Any, *args: Any) -> Any:
            charge_search(obj, value)
            if method_name == "remove":
                charge_items(len(obj))
            return getattr(obj, method_name)(value, *args)

        return method

    return make


def _copying(method_name: str) -> Maker:
    """copy, clear, reverse: linear in the container."""

    def make(obj: Any) -> Callable[[], Any]:
        def method() -> Any:
            charge_items(len(obj))
            return getattr(obj, method_name)()

        return method

    return make


def _sort(items: list[Any]) -> Callable[..., None]:
    def sort(*, key: Any = None, reverse: Any = False) -> None:
        items[:] = sort_items(items, key, reverse)

    return sort


def _extend(items: list[Any]) -> Callable[[Any], None]:
    def extend(values: Any) -> None:
        extend_list(items, values)

    return extend


def pairs_to_dict(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """dict(*args, **kwargs) with the str-key rule, charged."""
    if len(args) > 1:
        raise TypeError(f"dict expected at most 1 argument, got {len(args)}")
    result: dict[str, Any] = {}
    if args:
        source = args[0]
        if type(source) is dict or type(source) is MappingProxy:
            charge_items(len(source))
            result.update(source)
        else:
            items = materialize(source)
            charge_objects(len(items))
            for pair in items:
                k, v = pair
                result[check_key(k)] = v
    charge_objects(len(kwargs))
    result.update(kwargs)
    return result


def _update(d: dict[str, Any]) -> Callable[..., None]:
    def update(*args: Any, **kwargs: Any) -> None:
        other = pairs_to_dict(args, kwargs)
        check_size(len(d) + len(other), "dict")
        charge_items(len(other))
        d.update(other)

    return update


def _get(d: Any) -> Callable[..., Any]:
    def get(k: Any, default: Any = None) -> Any:
        return d.get(check_key(k), default)

    return get


def _dict_pop(d: dict[str, Any]) -> Callable[..., Any]:
    def pop(k: Any, *default: Any) -> Any:
        return d.pop(check_key(k), *default)

    return pop


def _setdefault(d: dict[str, Any]) -> Callable[..., Any]:
    def setdefault(k: Any, default: Any = None) -> Any:
        k = check_key(k)
        if k not in d and len(d) >= VALUE_MAX:
            size_exhausted(len(d) + 1, "dict")
        return d.setdefault(k, default)

    return setdefault


def _to_bytes(n: int) -> Callable[..., bytes]:
    def to_bytes(length: Any = 1, byteorder: Any = "big", *, signed: Any = False) -> bytes:
        if type(length) in INTS:
            check_size(length, "bytes")
            charge_bytes(length)
        return n.to_bytes(length, byteorder, signed=signed)

    return to_bytes


_VIEWING = {"keys": _bound("keys"), "values": _bound("values"), "items": _bound("items"), "get": _get}

ATTRIBUTES.update(
    {
        str: _text_table(str),
        bytes: _text_table(bytes),
        list: {
            "append": _append,
            "extend": _extend,
            "insert": _insert,
            "pop": _pop,
            "remove": _searching("remove"),
            "index": _searching("index"),
            "count": _searching("count"),
            "sort": _sort,
            "reverse": _copying("reverse"),
            "copy": _copying("copy"),
            "clear": _copying("clear"),
        },
        tuple: {"index": _searching("index"), "count": _searching("count")},
        dict: {
            **_VIEWING,
            "pop": _dict_pop,
            "popitem": _bound("popitem"),
            "setdefault": _setdefault,
            "update": _update,
            "copy": _copying("copy"),
            "clear": _copying("clear"),
        },
        MappingProxy: {**_VIEWING, "copy": _copying("copy")},
        int: {"bit_length": _bound("bit_length"), "to_bytes": _to_bytes},
        bool: {"bit_length": _bound("bit_length")},
        float: {"is_integer": _bound("is_integer")},
    }
)


def register(kind: type, table: dict[str, Maker]) -> None:
    """Let other modules (ctx, json, builtins) publish their attributes."""
    ATTRIBUTES[kind] = table
