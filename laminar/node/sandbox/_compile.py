"""Compiling a program and running its module body into a frozen namespace of handlers."""

from __future__ import annotations

import ast
import inspect
import re
import tokenize
from collections import OrderedDict
from collections.abc import Callable
from io import StringIO
from types import CodeType, FunctionType, MappingProxyType
from typing import Any

from laminar.limits import PROGRAM_MODULE_BYTES_MAX, PROGRAM_SOURCE_BYTES_MAX
from laminar.node.sandbox import _meter, _ops
from laminar.node.sandbox._api import ProgramRefused
from laminar.node.sandbox._builtins import BUILTINS, SHARED_OBJECTS
from laminar.node.sandbox._context import Context, context_writer
from laminar.node.sandbox._methods import getattr_, method_
from laminar.node.sandbox._transform import instrument, policy_errors, restrict, rewrite_augmented
from laminar.node.sandbox._values import TEXT_WIDE_BYTES, NoneType, type_name

FILENAME = "<program>"
_CACHE_MAX = 64  # compiled programs kept, by source: many topics share a handful of programs
_cache: OrderedDict[str, CodeType] = OrderedDict()

HANDLERS = {
    "on_create": ("ctx",),
    "on_put": ("ctx", "key", "value"),
    "on_delete": ("ctx", "key"),
    "on_result": ("ctx", "call", "response", "failure"),  # pipelines: a call's result (docs/pipelines.md)
}

GUARDS: dict[str, Any] = {
    "_getattr_": getattr_,
    "_m_": method_,
    "_getitem_": _ops.getitem,
    "_getiter_": iter,
    "_write_": _ops.make_write_guard(Context, context_writer),
    "_setitem_": _ops.setitem,
    "_inplacevar_": _ops.inplacevar,
    "_unpack_sequence_": _ops.unpack_sequence,
    "_iter_unpack_sequence_": _ops.iter_unpack_sequence,
    "_apply_": _ops.apply,
    "_step_": _meter.step,
    "_enter_": _meter.enter,
    "_leave_": _meter.leave,
    "_lam_": _meter.leave_with,
    "_exc_": _meter.caught,
    "_add_": _ops.add,
    "_sub_": _ops.sub,
    "_mul_": _ops.mul,
    "_pow_": _ops.pow_,
    "_lshift_": _ops.lshift,
    "_floordiv_": _ops.floordiv,
    "_mod_": _ops.mod,
    "_and_": _ops.bitand,
    "_or_": _ops.bitor,
    "_xor_": _ops.bitxor,
    "_eq_": _ops.eq,
    "_ne_": _ops.ne,
    "_lt_": _ops.lt,
    "_le_": _ops.le,
    "_gt_": _ops.gt,
    "_ge_": _ops.ge,
    "_in_": _ops.in_,
    "_not_in_": _ops.not_in,
    "_is_": _ops.is_,
    "_is_not_": _ops.is_not,
    "_chain_": _ops.compare_chain,
    "_fstr_": _ops.join_fstring,
    "_fmt_": _ops.format_value,
    "_key_": _ops.key,
    "_star_": _ops.star,
    "_dstar_": _ops.double_star,
}

# An int literal is converted by the parser, under the interpreter's int_max_str_digits setting (which a node's
# environment can lower to 640): longer decimal literals are refused here, identically on every node.
_LONG_DIGITS = re.compile(r"\d[\d_]{600,}")
_INT_LITERAL_DIGITS_MAX = 640


def _check_literals(source: str) -> None:
    if not _LONG_DIGITS.search(source):
        return
    try:
        tokens = list(tokenize.generate_tokens(StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return  # the parser will report it
    for tok in tokens:
        text = tok.string.replace("_", "")
        if tok.type == tokenize.NUMBER and text.isdigit() and len(text) > _INT_LITERAL_DIGITS_MAX:
            raise ProgramRefused(f"line {tok.start[0]}: an int literal of {len(text)} digits is too long")


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source, FILENAME)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        raise ProgramRefused(f"{where}syntax error: {exc.msg}") from None
    except ValueError as exc:  # null bytes
        raise ProgramRefused(f"syntax error: {exc}") from None
    except (RecursionError, MemoryError):  # the parser's own fixed stacks; deterministic under the pinned limit
        raise ProgramRefused("the program is nested too deeply to parse") from None


def _refuse_if(errors: list[str]) -> None:
    if errors:
        raise ProgramRefused("; ".join(errors[:5]) + ("; ..." if len(errors) > 5 else ""))


def parse_program(source: Any) -> CodeType | ast.Module:
    """Check `source` and parse it; or its code, if compiled before. Call it with the recursion limit pinned:
    how deep the parser may nest depends on it."""
    if type(source) is not str:
        raise ProgramRefused(f"a program is Python source text, not {type_name(source)}")
    try:
        size = len(source.encode("utf-8"))
    except UnicodeEncodeError:
        raise ProgramRefused("the program source is not valid UTF-8") from None
    if size > PROGRAM_SOURCE_BYTES_MAX:
        raise ProgramRefused(f"the program is {size} bytes; the limit is {PROGRAM_SOURCE_BYTES_MAX}")
    code = _cache.get(source)
    if code is not None:
        _cache.move_to_end(source)
        return code
    _check_literals(source)
    return _parse(source)


def build_program(tree: ast.Module) -> CodeType:
    """Policy checks, RestrictedPython and instrumentation, then compile. Needs no pinned limit: the policy
    pass (iterative) refuses trees nested deeper than TREE_DEPTH_MAX before the recursive passes run."""
    _refuse_if(policy_errors(tree))
    tree = rewrite_augmented(tree)
    _refuse_if(restrict(tree))
    return compile(instrument(tree), FILENAME, "exec", dont_inherit=True)


def remember(source: str, code: CodeType) -> None:
    """Keep compiled code by source (call under the runtime's lock: the cache is shared)."""
    _cache[source] = code
    if len(_cache) > _CACHE_MAX:
        _cache.popitem(last=False)


# --- The module body ------------------------------------------------------------------------------------------


class _NotFrozen(Exception):
    pass


_IMMUTABLE = frozenset({NoneType, bool, int, float, str, bytes, range, MappingProxyType})
_REFERENCE_BYTES = 8  # a tuple's or dict's slot for one value
_SCALAR_BYTES = 32  # an int, float or the header of a str or bytes, about
_MODULE_DEPTH_MAX = 100  # nesting of module-level tuples and dicts (freezing walks them recursively)


class _Freezer:
    """Makes module-level values read-only (see _freeze), counting the bytes they hold against
    PROGRAM_MODULE_BYTES_MAX: they are kept for the topic's life, on every node. A value reachable several times is
    counted each time, so a walk never visits more than the limit allows, however much the values share."""

    def __init__(self) -> None:
        self.left = PROGRAM_MODULE_BYTES_MAX
        self.seen: set[int] = set()

    def spend(self, n: int, where: str) -> None:
        self.left -= n
        if self.left < 0:
            raise _NotFrozen(
                f"module-level values hold more than {PROGRAM_MODULE_BYTES_MAX} bytes (at {where}); "
                "compute big values in the handlers, or keep them in ctx.state"
            )

    def freeze(self, value: Any, where: str, depth: int = 0) -> Any:
        """`value` made read-only, or _NotFrozen: module-level values are shared by every call, and a mutable one
        would carry data from call to call that is neither persisted nor rolled back (and differs after a
        restart)."""
        if depth > _MODULE_DEPTH_MAX:
            raise _NotFrozen(f"{where} is nested more than {_MODULE_DEPTH_MAX} levels deep")
        t = type(value)
        if t is str:
            self.spend(_SCALAR_BYTES + len(value) * (1 if value.isascii() else TEXT_WIDE_BYTES), where)
            return value
        if t is bytes:
            self.spend(_SCALAR_BYTES + len(value), where)
            return value
        if t in _IMMUTABLE or id(value) in SHARED_OBJECTS:
            self.spend(_SCALAR_BYTES, where)
            return value
        if t is tuple:
            self.spend(_SCALAR_BYTES + _REFERENCE_BYTES * len(value), where)
            return tuple(self.freeze(v, where, depth + 1) for v in value)
        if t is dict:
            self.spend(_SCALAR_BYTES + 3 * _REFERENCE_BYTES * len(value), where)
            return MappingProxyType({self.freeze(k, where): self.freeze(v, where, depth + 1) for k, v in value.items()})
        if t is FunctionType and value.__code__.co_filename == FILENAME:
            self.function(value, depth)
            return value
        if t is list:
            raise _NotFrozen(f"{where} is a list, but module-level values must be immutable (use a tuple)")
        raise _NotFrozen(f"{where} is a {t.__name__}, but module-level values must be constants or functions")

    def function(self, fn: FunctionType, depth: int) -> None:
        if id(fn) in self.seen:
            return
        self.seen.add(id(fn))
        if fn.__defaults__:
            fn.__defaults__ = self.freeze(fn.__defaults__, f"a default value of {fn.__name__}()", depth + 1)
        if fn.__kwdefaults__:
            fn.__kwdefaults__ = {
                k: self.freeze(v, f"a default of {fn.__name__}()", depth + 1) for k, v in fn.__kwdefaults__.items()
            }
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            cell.cell_contents = self.freeze(contents, f"a variable {fn.__name__}() closes over", depth + 1)


def _handler(namespace: dict[str, Any], name: str) -> Callable[..., Any] | None:
    fn = namespace.get(name)
    if fn is None:
        return None
    params = ", ".join(HANDLERS[name])
    if type(fn) is not FunctionType or fn.__code__.co_filename != FILENAME:
        raise ProgramRefused(f"{name} must be a function {name}({params})")
    try:
        inspect.signature(fn).bind(*HANDLERS[name])
    except TypeError:
        raise ProgramRefused(f"{name} must accept ({params})") from None
    return fn


def load_module(code: CodeType) -> tuple[dict[str, Callable[..., Any]], int]:
    """Run the module body (under the caller's meter); its handlers, by name, and the bytes its module-level values
    hold, as PROGRAM_MODULE_BYTES_MAX counts them."""
    namespace: dict[str, Any] = {"__builtins__": BUILTINS, "__name__": "program", **GUARDS}
    exec(code, namespace)
    freezer = _Freezer()
    try:
        for name in [n for n in namespace if n not in GUARDS and not n.startswith("__")]:
            namespace[name] = freezer.freeze(namespace[name], f"module-level name {name!r}")
    except _NotFrozen as exc:
        raise ProgramRefused(str(exc)) from None
    handlers = {name: _handler(namespace, name) for name in HANDLERS}
    return {name: fn for name, fn in handlers.items() if fn is not None}, PROGRAM_MODULE_BYTES_MAX - freezer.left
