"""`_getattr_` and `_m_`: the attributes a program may read, per type. Everything not listed here does not exist.

Deny by default is what closes the dunder walks, frame and generator attributes (gi_frame, f_globals, ...),
exception internals (__traceback__, args), str.format's field lookups, and anything a future Python adds.
Methods whose work or result grows with their input are wrapped to charge steps and check sizes first.

Each method is written once, unbound: a function of (the object, the call's arguments). A program's `x.m(a)`,
with `x` a plain name, compiles to `_m_(x, "m")(x, a)` (see _transform.FuseMethodCalls): the method is looked up
(and refused) where Python would, before the arguments are evaluated, and called without building a bound
method first. Any other `obj.m` goes through `_getattr_`, which binds the same function to the object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from operator import attrgetter
from typing import Any

from laminar.node.sandbox._meter import (
    charge_bytes,
    charge_chars,
    charge_entries,
    charge_items,
    charge_objects,
    charge_search,
    mutating,
)
from laminar.node.sandbox._ops import charge_element_search, extend_list, materialize, sort_items
from laminar.node.sandbox._values import (
    DICT_ENTRIES_MAX,
    INTS,
    LIST_ITEMS_MAX,
    VALUE_MAX,
    MappingProxy,
    as_dict,
    brief,
    check_key,
    check_size,
    check_sized,
    check_text,
    size_exhausted,
    stored,
    stored_all,
    type_name,
)

Maker = Callable[[Any], Any]  # object -> the attribute's value
ATTRIBUTES: dict[type, dict[str, Maker]] = {}
METHODS: dict[type, dict[str, Callable[..., Any]]] = {}  # the same attributes, as functions of (object, *args)


def _no_attribute(obj: Any, name: str) -> Any:
    if type(obj) is str and name in ("format", "format_map"):
        raise AttributeError("str.format is not available to programs: use an f-string or %")
    raise AttributeError(f"'{type_name(obj)}' object has no attribute '{name}' available to programs")


def getattr_(obj: Any, name: str) -> Any:
    """`_getattr_(obj, name)`; RestrictedPython only generates it with a literal name."""
    table = ATTRIBUTES.get(type(obj))
    if table is not None:
        make = table.get(name)
        if make is not None:
            return make(obj)
    return _no_attribute(obj, name)


def method_(obj: Any, name: str) -> Callable[..., Any]:
    """`_m_(obj, name)`: the attribute `obj.name` as a function to call with (obj, *args); same refusals."""
    table = METHODS.get(type(obj))
    if table is not None:
        fn = table.get(name)
        if fn is not None:
            return fn
    return _no_attribute(obj, name)  # type: ignore[no-any-return]


def _via_getattr(make: Maker) -> Callable[..., Any]:
    """An attribute that is not one of our methods (`ctx.offset`, `json.loads`), called: what `_getattr_` gives."""

    def call(obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        return make(obj)(*args, **kwargs)

    return call


def register(
    kind: type,
    values: dict[str, Maker] | None = None,
    methods: dict[str, Callable[..., Any]] | None = None,
    natives: Iterable[str] = (),
) -> None:
    """Publish the attributes of `kind`: `values` made by a function of the object, `methods` (unbound: called
    with the object first, bound by _getattr_), and `natives`, methods of `kind` itself that are O(1) (or linear
    in an input that was charged when it was built)."""
    makers: dict[str, Maker] = {}
    unbound: dict[str, Callable[..., Any]] = {}
    for name, make in (values or {}).items():
        makers[name], unbound[name] = make, _via_getattr(make)
    for name, fn in (methods or {}).items():
        makers[name], unbound[name] = partial(partial, fn), fn  # partial(fn, obj), built at C speed
    for name in natives:
        makers[name], unbound[name] = attrgetter(name), getattr(kind, name)
    ATTRIBUTES[kind] = makers
    METHODS[kind] = unbound


def _texts_len(args: tuple[Any, ...]) -> int:
    """The characters a method may compare in its arguments (startswith takes a tuple of prefixes)."""
    total = 0
    for a in args:
        if type(a) is str or type(a) is bytes:
            total += len(a)
        elif type(a) is tuple:
            charge_items(len(a))
            total += len(a) + sum(len(x) for x in a if type(x) is str or type(x) is bytes)
    return total


def linear(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Work linear in the input; a result within a small factor of it (checked after)."""

    def method(obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        charge_chars(len(obj) + _texts_len(args))
        return check_sized(fn(obj, *args, **kwargs))

    return method


def _needle(obj: Any, sub: Any) -> int:
    """The length of what a search looks for: a str in a str, bytes in bytes (or one byte, as an int)."""
    return len(sub) if type(sub) is type(obj) else 1


def searching(fn: Callable[..., Any], reverse: bool) -> Callable[..., Any]:
    """find, index, count, partition and their reverse forms: charged at the worst case of CPython's search."""

    def method(obj: Any, /, *args: Any) -> Any:
        charge_search(len(obj), _needle(obj, args[0]) if args else 1, reverse)
        return fn(obj, *args)

    return method


def stripping(fn: Callable[..., Any]) -> Callable[..., Any]:
    """strip, lstrip, rstrip: each character stripped is looked up in `chars`, so O(n*m)."""

    def method(obj: Any, /, chars: Any = None) -> Any:
        m = len(chars) if type(chars) is type(obj) else 1
        charge_chars(len(obj) * max(m, 1))
        return fn(obj, chars)

    return method


def _pieces(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any], reverse: bool) -> int:
    sep = args[0] if args else kwargs.get("sep")
    maxsplit = args[1] if len(args) > 1 else kwargs.get("maxsplit", -1)
    if sep is None:
        pieces = len(obj) // 2 + 1
    elif type(sep) is type(obj) and sep:
        charge_search(len(obj), len(sep))  # counting them
        charge_search(len(obj), len(sep), reverse)  # then the split itself
        pieces = obj.count(sep) + 1
    else:
        pieces = 1
    if type(maxsplit) in INTS and 0 <= maxsplit < pieces:
        pieces = maxsplit + 1
    return pieces


def splitting(fn: Callable[..., Any], reverse: bool) -> Callable[..., Any]:
    """split and rsplit: charged for their searches and the pieces they create, counted (or bounded) first."""

    def method(obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        charge_chars(len(obj))
        pieces = _pieces(obj, args, kwargs, reverse)
        check_size(pieces, "list")
        charge_objects(pieces)
        return fn(obj, *args, **kwargs)

    return method


_LINE_BREAKS = ("\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _splitlines(obj: Any, /, *args: Any, **kwargs: Any) -> Any:
    charge_chars(len(obj))
    breaks = _LINE_BREAKS if type(obj) is str else (b"\n", b"\r")
    lines = sum(obj.count(b) for b in breaks) + 1
    check_size(lines, "list")
    charge_objects(lines)
    return obj.splitlines(*args, **kwargs)


def widening(fn: Callable[..., Any]) -> Callable[..., Any]:
    """center, ljust, rjust, zfill: the result is as long as the width asked for."""

    def method(obj: Any, /, width: Any, *args: Any) -> Any:
        if type(width) in INTS and width > VALUE_MAX:
            size_exhausted(width, type_name(obj))
        charge_bytes(max(len(obj), width if type(width) in INTS else 0))
        return fn(obj, width, *args)

    return method


def _expandtabs(obj: Any, /, tabsize: Any = 8) -> Any:
    tab = "\t" if type(obj) is str else b"\t"
    charge_chars(len(obj))
    bound = len(obj) + obj.count(tab) * (max(tabsize, 0) if type(tabsize) in INTS else 0)
    check_size(bound, type_name(obj))
    charge_chars(bound)  # written a character at a time
    return obj.expandtabs(tabsize)


def _join(obj: Any, /, iterable: Any) -> Any:
    items = materialize(iterable)
    charge_objects(len(items))  # each item's type and length are read, then it is copied
    if not set(map(type, items)) <= {type(obj)}:
        return obj.join(items)  # raises Python's own TypeError, after a linear scan at most
    total = sum(map(len, items)) + len(obj) * max(len(items) - 1, 0)
    check_size(total, type_name(obj))
    charge_bytes(total)
    return check_sized(obj.join(items))


def _replace(obj: Any, /, old: Any, new: Any, count: Any = -1) -> Any:
    if type(old) is not type(obj) or type(new) is not type(obj) or type(count) not in INTS:
        return obj.replace(old, new, count)  # Python's own TypeError
    charge_chars(len(obj))
    charge_search(len(obj), len(old))  # counting the matches
    charge_search(len(obj), len(old))  # and finding them again to replace them
    n = obj.count(old) if old else len(obj) + 1
    if 0 <= count < n:
        n = count
    size = len(obj) + n * (len(new) - len(old))
    check_size(size, type_name(obj))
    charge_bytes(size)
    return obj.replace(old, new, count)


# Codecs are limited to the exact, fast, import-free ones; `latin-1` maps any bytes to a str and back.
_CODECS = {"utf-8": "utf-8", "utf8": "utf-8", "ascii": "ascii", "latin-1": "latin-1", "latin1": "latin-1"}
_CODECS["iso-8859-1"] = "latin-1"
_CODEC_ERRORS = frozenset({"strict", "ignore", "replace"})


def codec(encoding: Any, errors: Any) -> tuple[str, str]:
    name = None
    if type(encoding) is str:
        name = _CODECS.get(encoding) or _CODECS.get(encoding.lower().replace("_", "-"))  # usual spelling first
    if name is None:
        raise LookupError(f"encoding {brief(encoding)} is not available to programs (use utf-8, ascii or latin-1)")
    if type(errors) is not str or errors not in _CODEC_ERRORS:  # the type first: hashing a deep tuple overflows
        raise LookupError(f"error handler {brief(errors)} is not available to programs (use strict, ignore or replace)")
    return name, errors


def _encode(obj: str, /, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """str.encode: at most 4 bytes per character, checked against the value budget after."""
    name, handler = codec(encoding, errors)
    charge_chars(len(obj))
    converted = obj.encode(name, handler)
    check_size(len(converted), "bytes")
    return converted


def _decode(obj: bytes, /, encoding: Any = "utf-8", errors: Any = "strict") -> str:
    """bytes.decode: at most 1 character per byte, checked against the value budget after."""
    name, handler = codec(encoding, errors)
    charge_chars(len(obj))
    converted = obj.decode(name, handler)
    check_text(converted)
    return converted


_TEXT_LINEAR = [
    "capitalize",
    "endswith",
    "isalnum",
    "isalpha",
    "isascii",
    "isdigit",
    "islower",
    "isspace",
    "istitle",
    "isupper",
    "lower",
    "removeprefix",
    "removesuffix",
    "startswith",
    "swapcase",
    "title",
    "upper",
]
_FORWARD_SEARCHES = ["count", "find", "index", "partition"]
_REVERSE_SEARCHES = ["rfind", "rindex", "rpartition"]
_STR_ONLY_LINEAR = ["casefold", "isdecimal", "isidentifier", "isnumeric", "isprintable"]


def _text_methods(kind: Any) -> dict[str, Callable[..., Any]]:
    names = _TEXT_LINEAR + (_STR_ONLY_LINEAR if kind is str else ["hex"])
    table = {name: linear(getattr(kind, name)) for name in names}
    table.update({name: searching(getattr(kind, name), False) for name in _FORWARD_SEARCHES})
    table.update({name: searching(getattr(kind, name), True) for name in _REVERSE_SEARCHES})
    table.update({name: stripping(getattr(kind, name)) for name in ("strip", "lstrip", "rstrip")})
    table.update(
        split=splitting(kind.split, False),
        rsplit=splitting(kind.rsplit, True),
        splitlines=_splitlines,
        center=widening(kind.center),
        ljust=widening(kind.ljust),
        rjust=widening(kind.rjust),
        zfill=widening(kind.zfill),
        expandtabs=_expandtabs,
        join=_join,
        replace=_replace,
    )
    if kind is str:
        table["encode"] = _encode
    else:
        table["decode"] = _decode
    return table


# --- list, dict, tuple ----------------------------------------------------------------------------------------


def _append(items: list[Any], /, value: Any) -> None:
    if len(items) >= LIST_ITEMS_MAX:
        size_exhausted(len(items) + 1, "list")
    stored(value)
    items.append(value)


def _insert(items: list[Any], /, index: Any, value: Any) -> None:
    check_size(len(items) + 1, "list")
    charge_items(len(items))
    stored(value)
    items.insert(index, value)


def _pop(items: list[Any], /, *index: Any) -> Any:
    if index:
        charge_items(len(items))
    mutating()
    return items.pop(*index)


def _searching(method_name: str) -> Callable[..., Any]:
    """index, count, remove: one comparison per element."""

    def method(obj: Any, /, value: Any, *args: Any) -> Any:
        charge_element_search(obj, value)
        if method_name == "remove":
            charge_items(len(obj))
            mutating()
        return getattr(obj, method_name)(value, *args)

    return method


def _copying(method_name: str) -> Callable[..., Any]:
    """copy, clear, reverse: linear in the container (a dict's copy may insert every entry again)."""
    changes = method_name != "copy"

    def method(obj: Any, /) -> Any:
        charge_items(len(obj)) if type(obj) is list else charge_entries(len(obj))
        if changes:
            mutating()
        return getattr(obj, method_name)()

    return method


def _sort(items: list[Any], /, *, key: Any = None, reverse: Any = False) -> None:
    ordered = sort_items(items, key, reverse)
    mutating()
    items[:] = ordered


def _extend(items: list[Any], /, values: Any) -> None:
    extend_list(items, values)


def pairs_to_dict(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """dict(*args, **kwargs) with the str-key rule, charged."""
    if len(args) > 1:
        raise TypeError(f"dict expected at most 1 argument, got {len(args)}")
    result: dict[str, Any] = {}
    if args:
        source = args[0]
        if type(source) is dict or type(source) is MappingProxy:
            charge_entries(len(source))
            result.update(as_dict(source))
        else:
            items = materialize(source)
            charge_objects(len(items))
            for pair in items:
                k, v = pair
                result[check_key(k)] = v
    charge_entries(len(kwargs))
    result.update(kwargs)
    return result


def _update(d: dict[str, Any], /, *args: Any, **kwargs: Any) -> None:
    other = pairs_to_dict(args, kwargs)
    check_size(len(d) + len(other), "dict")
    charge_entries(len(other))
    stored_all(other.values())
    d.update(other)


def _get(d: Any, /, k: Any, default: Any = None) -> Any:
    return d.get(check_key(k), default)


def _dict_pop(d: dict[str, Any], /, k: Any, *default: Any) -> Any:
    k = check_key(k)
    mutating()
    return d.pop(k, *default)


def _popitem(d: dict[str, Any], /) -> Any:
    mutating()
    return d.popitem()


def _setdefault(d: dict[str, Any], /, k: Any, default: Any = None) -> Any:
    k = check_key(k)
    if k not in d:
        if len(d) >= DICT_ENTRIES_MAX:
            size_exhausted(len(d) + 1, "dict")
        stored(default, k)
    return d.setdefault(k, default)


def _to_bytes(n: int, /, length: Any = 1, byteorder: Any = "big", *, signed: Any = False) -> bytes:
    if type(length) in INTS:
        check_size(length, "bytes")
        charge_bytes(length)
    return n.to_bytes(length, byteorder, signed=signed)


register(str, methods=_text_methods(str))
register(bytes, methods=_text_methods(bytes))
register(
    list,
    methods={
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
)
register(tuple, methods={"index": _searching("index"), "count": _searching("count")})
_VIEWING = ("keys", "values", "items")  # O(1): a view
register(
    dict,
    methods={
        "get": _get,
        "pop": _dict_pop,
        "popitem": _popitem,
        "setdefault": _setdefault,
        "update": _update,
        "copy": _copying("copy"),
        "clear": _copying("clear"),
    },
    natives=_VIEWING,
)
register(MappingProxy, methods={"get": _get, "copy": _copying("copy")}, natives=_VIEWING)
register(int, methods={"to_bytes": _to_bytes}, natives=("bit_length",))
register(bool, natives=("bit_length",))
register(float, natives=("is_integer",))
