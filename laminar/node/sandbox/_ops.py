"""Guards for operators, subscripts, writes, unpacking and formatting.

The compiler turns `a + b` into `_add_(a, b)`, `a < b` into `_lt_(a, b)`, f-strings into `_fstr_`, and so on
(see _transform.py; operations whose cost cannot depend on their operands, like `n + 1`, stay native). Each
guard charges the work its native operation will do and refuses results over the value or int budget *before*
computing them, so one operator can never build a huge value or stall the process.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from laminar.node.sandbox import _meter
from laminar.node.sandbox._meter import (
    BYTES_PER_STEP,
    charge,
    charge_bytes,
    charge_chars,
    charge_compares,
    charge_entries,
    charge_items,
    charge_objects,
    exhausted,
    mutating,
)
from laminar.node.sandbox._values import (
    CHEAP,
    DICT_ENTRIES_MAX,
    IDENTITYLESS,
    INT_BITS_MAX,
    INTS,
    SEQUENCES,
    TEXT_FLOAT_MAX,
    VALUE_MAX,
    VIEWS,
    DictItems,
    DictKeys,
    MappingProxy,
    as_dict,
    charge_compare,
    check_int,
    check_key,
    check_size,
    check_sized,
    check_text,
    check_text_size,
    compare_flat,
    int_exhausted,
    measure,
    size_exhausted,
    stored,
    stored_all,
    text_flat,
    to_text,
    type_name,
)


class _Missing:
    """The default of arguments that may legitimately be None (min's default, int's base)."""


MISSING: Any = _Missing()
_BIG_INT_COST_SHIFT = 17  # a step per 2**17 of the product of the operands' bit lengths (about 0.2 us of work)
# And a step per 2**10 of their summed bit lengths: dividing a 2040-bit int by a small one is linear work (CPython's
# x_divrem walks the dividend), which the product alone charged at one step (0.9 us of CPU per step, the fuzzer found).
_BIG_INT_LINEAR_SHIFT = 10


def _int_work(a: int, b: int) -> None:
    bits_a, bits_b = a.bit_length(), b.bit_length()
    charge(1 + ((bits_a + bits_b) >> _BIG_INT_LINEAR_SHIFT) + ((bits_a * bits_b) >> _BIG_INT_COST_SHIFT))


def _no_set_ops(a: object, b: object) -> None:
    if type(a) in VIEWS or type(b) in VIEWS:
        raise TypeError("set operations on dict views are not supported (sets have no deterministic order)")


def add(a: Any, b: Any) -> Any:
    """`_add_`: concatenation is charged by the result's length and refused over the value budget."""
    ta = type(a)
    if ta is int and type(b) is int:  # the common case, first
        return check_int(a + b)
    if ta is type(b) and ta in SEQUENCES:
        n = len(a) + len(b)
        if ta is str:
            wide = not (a.isascii() and b.isascii())  # O(1): a flag of the str
            check_text_size(n, wide)
            charge_bytes(4 * n if wide else n)
            return a + b
        check_size(n, ta.__name__)
        charge_bytes(n) if ta is bytes else charge_items(n)
        return a + b
    return check_int(a + b)


def sub(a: Any, b: Any) -> Any:
    """`_sub_`"""
    if type(a) is not int or type(b) is not int:
        _no_set_ops(a, b)
    return check_int(a - b)


def repeat(seq: Any, count: Any) -> Any:
    n = len(seq) * max(count, 0)
    if type(seq) is str:
        wide = not seq.isascii()
        check_text_size(n, wide)
        charge_bytes(4 * n if wide else n)
        return seq * count
    check_size(n, type_name(seq))
    charge_bytes(n) if type(seq) is bytes else charge_items(n)
    return seq * count


def mul(a: Any, b: Any) -> Any:
    """`_mul_`: int products are checked against the int budget before they are computed."""
    ta, tb = type(a), type(b)
    if ta in INTS and tb in INTS:
        if a.bit_length() + b.bit_length() - 1 > INT_BITS_MAX:
            int_exhausted(a.bit_length() + b.bit_length() - 1)
        _int_work(a, b)
        return check_int(a * b)
    if ta in SEQUENCES and tb in INTS:
        return repeat(a, b)
    if tb in SEQUENCES and ta in INTS:
        return repeat(b, a)
    return a * b


def pow_(a: Any, b: Any) -> Any:
    """`_pow_`: integers only (libm's pow is not bit-identical across platforms), result size checked first."""
    if type(a) not in INTS or type(b) not in INTS:
        if type(a) is float or type(b) is float:
            raise TypeError("** with a float is not supported: its result may differ between platforms")
        return a**b
    if b < 0:
        raise ValueError("** with a negative exponent is not supported: its float result may differ between platforms")
    if a.bit_length() > 1 and (a.bit_length() - 1) * b + 1 > INT_BITS_MAX:
        int_exhausted((a.bit_length() - 1) * b + 1)
    charge(1 + ((b.bit_length() * INT_BITS_MAX * INT_BITS_MAX) >> (_BIG_INT_COST_SHIFT + 4)))
    return check_int(a**b)


def lshift(a: Any, b: Any) -> Any:
    """`_lshift_`"""
    if type(a) in INTS and type(b) in INTS and a and b > 0 and a.bit_length() + b > INT_BITS_MAX:
        int_exhausted(a.bit_length() + b)
    return a << b


def floordiv(a: Any, b: Any) -> Any:
    """`_floordiv_`"""
    if type(a) in INTS and type(b) in INTS:
        _int_work(a, b)
    return a // b


def mod(a: Any, b: Any) -> Any:
    """`_mod_`: `%` formatting of str and bytes, or a remainder."""
    ta = type(a)
    if ta is str or ta is bytes:
        return percent_format(a, b)
    if ta in INTS and type(b) in INTS:
        _int_work(a, b)
    return a % b


def divmod_(a: Any, b: Any) -> Any:
    if type(a) in INTS and type(b) in INTS:
        _int_work(a, b)
    return divmod(a, b)


def bitand(a: Any, b: Any) -> Any:
    """`_and_`"""
    _no_set_ops(a, b)
    return a & b


def bitxor(a: Any, b: Any) -> Any:
    """`_xor_`"""
    _no_set_ops(a, b)
    return a ^ b


def bitor(a: Any, b: Any) -> Any:
    """`_or_`: also merges dicts, charged by the result's size."""
    _no_set_ops(a, b)
    if type(a) is dict and type(b) in (dict, MappingProxy):
        n = len(a) + len(b)
        check_size(n, "dict")
        charge_entries(n)
        return a | as_dict(b)
    return a | b


# --- In-place operators (`x += y` becomes `x = _inplacevar_("+=", x, y)`) ----------------------------------


def extend_list(target: list[Any], items: Any) -> list[Any]:
    new = materialize(items)
    check_size(len(target) + len(new), "list")
    charge_items(len(new))
    stored_all(new)
    target.extend(new)
    return target


def update_dict(target: dict[str, Any], other: Any) -> dict[str, Any]:
    if type(other) is not dict and type(other) is not MappingProxy:
        raise TypeError(f"|= needs a dict, not {type_name(other)}")
    check_size(len(target) + len(other), "dict")
    charge_entries(len(other))
    stored_all(other.values())
    target.update(as_dict(other))
    return target


def _repeat_list(target: list[Any], count: Any) -> list[Any]:
    repeated = repeat(target, count)
    stored_all(target)  # each element will be there `count` times
    target[:] = repeated
    return target


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+=": add,
    "-=": sub,
    "*=": mul,
    "**=": pow_,
    "<<=": lshift,
    "//=": floordiv,
    "%=": mod,
    "&=": bitand,
    "^=": bitxor,
    "|=": bitor,
    "/=": operator.truediv,
    ">>=": operator.rshift,
    "@=": operator.matmul,
}


def inplacevar(op: str, x: Any, y: Any) -> Any:
    """`_inplacevar_`: like Python, `+=` and `*=` change a list in place and `|=` a dict."""
    if type(x) is list and op == "+=":
        return extend_list(x, y)
    if type(x) is list and op == "*=" and type(y) in INTS:
        return _repeat_list(x, y)
    if type(x) is dict and op == "|=":
        return update_dict(x, y)
    return _BINARY[op](x, y)


# --- Comparisons --------------------------------------------------------------------------------------------

EQ, NE, LT, LE, GT, GE, IN, NOT_IN, IS, IS_NOT = range(10)
_COMPARE: tuple[Callable[[Any, Any], Any], ...] = (
    operator.eq,
    operator.ne,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
    lambda a, b: contains(b, a),
    lambda a, b: not contains(b, a),
    lambda a, b: is_(a, b),
    lambda a, b: is_not(a, b),
)
_CONTAINERS = frozenset({list, tuple, dict, MappingProxy})


def _charge_comparison(a: Any, b: Any) -> None:
    ta, tb = type(a), type(b)
    if ta is str or ta is bytes:
        if ta is tb:  # charge_bytes(min(len(a), len(b))), written out: the common case
            meter = _meter._active
            meter.left -= 1 + min(len(a), len(b)) // BYTES_PER_STEP
            if meter.left < 0:
                _meter.charge(0)  # raises the step budget's abort
    elif ta in _CONTAINERS and tb in _CONTAINERS:
        charge_compare(a if len(a) <= len(b) else b)
    elif ta in VIEWS and tb in VIEWS:
        # Set-like comparisons probe one view's elements in the other: a lookup each, and for items a tuple
        # and a comparison of the values too.
        charge_objects(len(a) + len(b))
        for view in (a, b):
            if type(view) is DictItems:
                charge(len(view))
                charge_compare(tuple(view.mapping.values()))


def compare(a: Any, op: int, b: Any) -> Any:
    """`_chain_`'s comparison: charges what the comparison walks (long str, nested containers)."""
    if op < IN and not (type(a) in CHEAP and type(b) in CHEAP):
        _charge_comparison(a, b)
    return _COMPARE[op](a, b)


# One guard per operator for single comparisons, the common case: `_eq_(a, b)` and so on.


def eq(a: Any, b: Any) -> Any:
    if type(a) not in CHEAP or type(b) not in CHEAP:
        _charge_comparison(a, b)
    return a == b


def ne(a: Any, b: Any) -> Any:
    if type(a) not in CHEAP or type(b) not in CHEAP:
        _charge_comparison(a, b)
    return a != b


def lt(a: Any, b: Any) -> Any:
    if type(a) not in CHEAP or type(b) not in CHEAP:
        _charge_comparison(a, b)
    return a < b


def le(a: Any, b: Any) -> Any:
    if type(a) not in CHEAP or type(b) not in CHEAP:
        _charge_comparison(a, b)
    return a <= b


def gt(a: Any, b: Any) -> Any:
    if type(a) not in CHEAP or type(b) not in CHEAP:
        _charge_comparison(a, b)
    return a > b


def ge(a: Any, b: Any) -> Any:
    if type(a) not in CHEAP or type(b) not in CHEAP:
        _charge_comparison(a, b)
    return a >= b


def in_(a: Any, b: Any) -> bool:
    return contains(b, a)


def _identityless(a: Any, b: Any) -> None:
    raise TypeError(
        f"'is' cannot compare a {type_name(a)} with a {type_name(b)}: whether two equal ints, floats, str, bytes or "
        "tuples are one object differs between nodes (a node that reloaded ctx.state holds copies); use =="
    )


def is_(a: Any, b: Any) -> bool:
    """`_is_(a, b)`: identity, except between values whose identity is not part of the language (see IDENTITYLESS).

    The state's objects are kept from call to call, while a restarted node loads equal copies: `s["a"] is s["b"]`
    on two ints or str would differ between them. `x is None` (and True, False) compiles to a native `is`.
    """
    if type(a) in IDENTITYLESS and type(b) in IDENTITYLESS:
        _identityless(a, b)
    return a is b


def is_not(a: Any, b: Any) -> bool:
    """`_is_not_(a, b)`"""
    if type(a) in IDENTITYLESS and type(b) in IDENTITYLESS:
        _identityless(a, b)
    return a is not b


def not_in(a: Any, b: Any) -> bool:
    return not contains(b, a)


COMPARE_GUARDS = {
    EQ: "_eq_",
    NE: "_ne_",
    LT: "_lt_",
    LE: "_le_",
    GT: "_gt_",
    GE: "_ge_",
    IN: "_in_",
    NOT_IN: "_not_in_",
    IS: "_is_",
    IS_NOT: "_is_not_",
}


def compare_chain(left: Any, ops: tuple[int, ...], *rights: Callable[[], Any]) -> bool:
    """`_chain_(a, (op, op), lambda: b, lambda: c)` is `a op b op c`: each operand evaluated once, lazily."""
    for op, right in zip(ops, rights, strict=True):
        value = right()
        if not compare(left, op, value):
            return False
        left = value
    return True


def _contains_mapping(container: Any, item: Any) -> bool:
    if type(item) is str:
        return item in container
    if type(item) in (list, dict):
        raise TypeError(f"unhashable type: '{type_name(item)}'")
    return False  # keys are always str, so nothing else can be there: no need to hash it


def charge_element_search(container: Any, item: Any) -> None:
    """Charge for looking for `item` in a sequence: one comparison per element, each as deep as `item`; in str
    or bytes, a substring search (see _meter.search_compares)."""
    tc, ti = type(container), type(item)
    if tc is str or tc is bytes:
        _meter.charge_search(len(container), len(item) if ti is tc else 1)
    elif tc is range:
        if ti not in INTS:
            charge_compares(len(container))
    elif tc in _CONTAINERS or tc in VIEWS:
        if ti in CHEAP:
            charge_compares(len(container))
        elif ti is str or ti is bytes:
            charge_compares(len(container) * (1 + len(item) // 64))
        else:
            charge_compare(container)


def contains(container: Any, item: Any) -> bool:
    """`item in container`, charged by what the search walks."""
    tc = type(container)
    if tc is dict or tc is MappingProxy or tc is DictKeys:
        return _contains_mapping(container, item)
    if tc is DictItems:
        if type(item) is not tuple or len(item) != 2 or type(item[0]) is not str:
            return False
        charge_compare(item[1])
        return item in container
    charge_element_search(container, item)
    return item in container


# --- Sorting and extremes -----------------------------------------------------------------------------------


def _walked(keys: list[Any]) -> int:
    """Elements of `keys` and everything nested in them; walking them is charged once here."""
    types = set(map(type, keys))
    if types <= CHEAP:
        charge_compares(len(keys))
        return len(keys)
    if types == {str} or types == {bytes}:
        longest = max(map(len, keys))
        charge_compares(len(keys) * (1 + longest // 64))
        return len(keys) * (1 + longest // 64)
    return measure(keys, compare_flat, 1 << 62)


def sort_items(items: list[Any], key: Any = None, reverse: bool = False) -> list[Any]:
    """sorted(items, key=key, reverse=reverse), charged for n log n comparisons of the keys' size."""
    n = len(items)
    charge_items(n)
    keys = items if key is None else [key(item) for item in items]
    if n > 1:
        charge_compares(_walked(keys) * (n.bit_length() - 1))
    if key is None:
        return sorted(items, reverse=bool(reverse))
    order = sorted(range(n), key=keys.__getitem__, reverse=bool(reverse))
    return [items[i] for i in order]


_EXTREME_STEPS = 2  # what min() and max() cost in Python before they compare anything (measured by the fuzzer)


def extreme(pick: Callable[..., Any], items: list[Any], key: Any, default: Any) -> Any:
    """min or max of `items`, charged for n comparisons of the keys' size (and a few steps of its own)."""
    charge(_EXTREME_STEPS)
    if not items:
        if default is MISSING:
            raise ValueError(f"{pick.__name__}() arg is an empty sequence")
        return default
    keys = items if key is None else [key(item) for item in items]
    _walked(keys)
    if key is None:
        return pick(items)
    return items[pick(range(len(items)), key=keys.__getitem__)]


# --- Subscripts, writes, unpacking --------------------------------------------------------------------------


def getitem(obj: Any, key: Any) -> Any:
    """`_getitem_`: slices are charged by their length; dict keys must be str."""
    t = type(obj)
    if t is dict and type(key) is str:
        return obj[key]
    if t is dict or t is MappingProxy:
        return obj[check_key(key)]
    if t in SEQUENCES or t is range:
        if type(key) is slice and t is not range:
            n = len(range(len(obj))[key])
            charge_bytes(n) if t is str or t is bytes else charge_items(n)
        return obj[key]
    raise TypeError(f"'{type_name(obj)}' object is not subscriptable")


def setitem(value: Any, obj: Any, key: Any) -> None:
    """`_setitem_(value, obj, key)` for `obj[key] = value` (arguments in Python's evaluation order)."""
    if type(obj) is dict:
        key = check_key(key)  # before any hashing
        if len(obj) >= DICT_ENTRIES_MAX and key not in obj:
            size_exhausted(len(obj) + 1, "dict")
        stored(value, key)
        obj[key] = value
    elif type(obj) is list and type(key) is not slice:
        stored(value)
        obj[key] = value
    else:
        _write_guard_fallback(obj)[key] = value


def _write_guard_fallback(obj: Any) -> Any:
    if type(obj) is list:
        return _ListWriter(obj)
    raise TypeError(f"'{type_name(obj)}' objects are read-only in programs")


class _DictWriter:
    """What `_write_(d)` returns for a dict: item writes with the str-key rule."""

    __slots__ = ("_d",)

    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def __setitem__(self, key: Any, value: Any) -> None:
        d = self._d
        key = check_key(key)  # before any hashing
        if len(d) >= DICT_ENTRIES_MAX and key not in d:
            size_exhausted(len(d) + 1, "dict")
        stored(value, key)
        d[key] = value

    def __delitem__(self, key: Any) -> None:
        key = check_key(key)
        mutating()
        del self._d[key]


class _ListWriter:
    """What `_write_(l)` returns for a list: slice assignments are charged and size-checked."""

    __slots__ = ("_l",)

    def __init__(self, items: list[Any]) -> None:
        self._l = items

    def __setitem__(self, index: Any, value: Any) -> None:
        items = self._l
        if type(index) is slice:
            value = materialize(value)
            removed = len(range(len(items))[index])
            check_size(len(items) - removed + len(value), "list")
            charge_items(len(items) + len(value))
            stored_all(value)
        else:
            stored(value)
        items[index] = value

    def __delitem__(self, index: Any) -> None:
        items = self._l
        if type(index) is slice:
            charge_items(len(items))
        mutating()
        del items[index]


def make_write_guard(ctx_type: type, ctx_writer: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`_write_(obj)`: only dicts, lists and `ctx.state` can be written; everything else is read-only."""

    def write(obj: Any) -> Any:
        t = type(obj)
        if t is dict:
            return _DictWriter(obj)
        if t is list:
            return _ListWriter(obj)
        if t is ctx_type:
            return ctx_writer(obj)
        raise TypeError(f"'{type_name(obj)}' objects are read-only in programs")

    return write


_SIZED = frozenset({list, tuple, str, bytes, dict, MappingProxy, range}) | VIEWS


def charge_copy(items: Any) -> None:
    """Charge for copying the elements of a sized value into a list or tuple: references, or new objects for str,
    bytes, range. The copy holds a reference per element, whatever it copies."""
    t = type(items)
    n = len(items)
    check_size(n, "list")
    charge_items(n) if t in _CONTAINERS or t in VIEWS else charge_objects(n)


def materialize(items: Any) -> list[Any]:
    """list(items), charged: sized things by length up front, iterators item by item as they run."""
    if type(items) in _SIZED:
        charge_copy(items)
        return list(items)
    result = list(items)
    check_size(len(result), "list")
    return result


def star(value: Any) -> Any:
    """`_star_(x)` for `*x` in calls and displays: Python copies x, so charge for it first."""
    if type(value) in _SIZED:
        charge_copy(value)
    return value


def double_star(value: Any) -> Any:
    """`_dstar_(x)` for `**x` in calls and dict displays: a proxy is unpacked from a plain copy (a dict merges at
    C speed; a proxy goes key by key, several times slower)."""
    if type(value) is dict or type(value) is MappingProxy:
        charge_entries(len(value))
        return as_dict(value)
    return value


def apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`_apply_(f, *a, **k)`: RestrictedPython's hook for calls with `*` or `**`; the copies were charged."""
    return func(*args, **kwargs)


def unpack_sequence(value: Any, spec: dict[str, Any], _getiter: object = None) -> Any:
    """`_unpack_sequence_`: used only for targets with a starred name, which copy the rest of the value."""
    value = materialize(value)
    for index, child in spec["childs"]:
        if len(value) >= spec["min_len"]:
            value[index] = unpack_sequence(value[index], child)
    return value


def iter_unpack_sequence(value: Any, spec: dict[str, Any], _getiter: object = None) -> Any:
    """`_iter_unpack_sequence_`: `for a, *b in x`."""
    for item in value:
        yield unpack_sequence(item, spec)


def key(value: Any) -> str:
    """`_key_(k)` for computed keys of dict displays and comprehensions."""
    return check_key(value)


# --- Formatting ---------------------------------------------------------------------------------------------

_SPEC_NUMBER = re.compile(r"\d+")


_NUMBER_DIGITS_MAX = 18  # a longer width or precision is over every budget (and int() of it would be env-bound)


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= _NUMBER_DIGITS_MAX else 1 << 62


def format_value(value: Any, conversion: int, spec: str) -> str:
    """`_fmt_(value, conversion, spec)`: one `{value!conversion:spec}` of an f-string."""
    if conversion == ord("r"):
        value = to_text(value, as_repr=True)
    elif conversion == ord("a"):
        to_text(value, as_repr=True)  # checks and charges; ascii() escapes at most 10 characters per character
        value = ascii(value)
        check_size(len(value), "str")
        charge_bytes(len(value))
    elif conversion == ord("s") or (type(value) not in CHEAP and type(value) is not str):
        value = to_text(value)
    if not spec:
        return value if type(value) is str else to_text(value)
    if spec.endswith("n"):
        raise ValueError("format type 'n' is not supported: it depends on the node's locale")
    charge_chars(len(spec))
    widths = [_number(n) for n in _SPEC_NUMBER.findall(spec)]
    if widths and max(widths) > VALUE_MAX:
        exhausted(f"value budget exhausted (a format width or precision of {max(widths)}; the limit is {VALUE_MAX})")
    charge_chars(sum(widths))
    return check_text(format(value, spec))


def join_fstring(parts: tuple[str, ...]) -> str:
    """`_fstr_((part, ...))`: an f-string's pieces, joined once their total size is known."""
    n = sum(len(p) for p in parts)
    check_size(n, "str")
    charge_bytes(n)
    return check_text("".join(parts))


def _percent_args(args: Any) -> list[Any]:
    if type(args) is dict or type(args) is MappingProxy:
        return list(args.values())
    return [args]


_LENGTH_MODIFIERS = "hlL"


_FLAG_RUN = re.compile("[-+ #0]*")  # runs of one character class: linear, no backtracking
_DIGIT_RUN = re.compile("[0-9]*")  # ASCII digits only, as CPython reads them (not \\d)


def _digits(fmt: str, pos: int) -> tuple[int, int]:
    """The number written at fmt[pos:] (0 if none) and the position after it (see _number)."""
    end = _DIGIT_RUN.match(fmt, pos).end()  # type: ignore[union-attr]
    return (_number(fmt[pos:end]) if end > pos else 0), end


def _percent_key_end(fmt: str, pos: int) -> int:
    """After `%(` at pos: the position after the matching `)` (parentheses nest, as CPython counts them), or -1.
    Each round scans a stretch no other round scans: linear in the key."""
    depth, i = 1, pos
    while depth:
        close = fmt.find(")", i)
        if close < 0:
            return -1
        depth += fmt.count("(", i, close) - 1
        i = close + 1
    return i


def percent_conversions(fmt: str) -> tuple[int, int]:
    """(conversions, sum of their widths and precisions) of a %-format, parsed as CPython 3.11 does
    (Objects/unicodeobject.c, unicode_format_arg_parse): `%`, an optional `(key)` with nested parentheses, flags,
    a width, a `.precision`, a length modifier, a type. Linear, and charged by the caller before it runs."""
    conversions = widths = 0
    pos = fmt.find("%")
    while pos >= 0:
        pos += 1
        if pos < len(fmt) and fmt[pos] == "%":
            pos = fmt.find("%", pos + 1)
            continue
        if pos < len(fmt) and fmt[pos] == "(":
            pos = _percent_key_end(fmt, pos + 1)
            if pos < 0:
                break  # "incomplete format key": CPython raises before formatting anything
        pos = _FLAG_RUN.match(fmt, pos).end()  # type: ignore[union-attr]
        if pos < len(fmt) and fmt[pos] == "*":
            raise ValueError("'*' widths in % formatting are not supported")
        width, pos = _digits(fmt, pos)
        precision = 0
        if pos < len(fmt) and fmt[pos] == ".":
            if pos + 1 < len(fmt) and fmt[pos + 1] == "*":
                raise ValueError("'*' precisions in % formatting are not supported")
            precision, pos = _digits(fmt, pos + 1)
        if pos < len(fmt) and fmt[pos] in _LENGTH_MODIFIERS:
            pos += 1
        conversions += 1
        widths += width + precision
        pos = fmt.find("%", pos + 1)
    return conversions, widths


def percent_format(fmt: Any, args: Any) -> Any:
    """`fmt % args` for str and bytes: the result is bounded before it is built (widths, arguments)."""
    charge_chars(len(fmt))
    text = fmt if type(fmt) is str else fmt.decode("latin-1")  # the same grammar for bytes, a byte a character
    charge(1 + 2 * (text.count("%") + text.count(")")))  # the parser's rounds, in Python: a few a step
    conversions, widths = percent_conversions(text)
    # Positional arguments are used once each; a mapping's values may be used by every conversion.
    arguments = measure(args if type(args) is tuple else _percent_args(args), text_flat, VALUE_MAX)
    uses = 1 if type(args) is tuple else conversions
    bound = len(fmt) + widths + uses * arguments + conversions * TEXT_FLOAT_MAX
    if bound > VALUE_MAX:
        exhausted(f"value budget exhausted (a % format that could build {bound} characters; the limit is {VALUE_MAX})")
    charge_chars(bound)
    return check_sized(fmt % args)
