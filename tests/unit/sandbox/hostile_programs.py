"""Hostile topic programs and what the sandbox must do with each, for unit and cluster tests alike.

HOSTILE maps a name to (source, verdict, why). The verdict is:
  "refused": check_program(source) and TopicRuntime.start(source, None) raise ProgramRefused;
  "error":   the program starts, and on_put(ctx, b"k", b"v") returns ok=False (no events, state unchanged),
             with the process intact and nothing real (builtins, modules, frames) leaked.
Every program here tries to escape, leak, stall, crash or desynchronize nodes; none may succeed.
Sources are self-contained (no imports from the test suite), so cluster tests can send them to real nodes.
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple


class Hostile(NamedTuple):
    source: str
    verdict: str  # "refused" or "error"
    why: str


def _put(body: str, prelude: str = "") -> str:
    return (
        textwrap.dedent(prelude) + "\ndef on_put(ctx, key, value):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    )


def _refused(body: str, why: str, prelude: str = "") -> Hostile:
    return Hostile(_put(body, prelude), "refused", why)


def _error(body: str, why: str, prelude: str = "") -> Hostile:
    return Hostile(_put(body, prelude), "error", why)


# As deep as the step budget lets a call build (hashing one this deep overflowed a 2 MiB thread's C stack).
_DEEP_TUPLE = """
t = ()
for i in range(30000):
    t = (t,)
"""

# Reverse searches in CPython are O(n*m): 'ab' then a's is the worst case for a haystack of a's.
_QUADRATIC = "s = 'a' * 100000\np = 'ab' + 'a' * 49998\n"
_WIDE_TABLE = "T = {str(i): i for i in range(10000)}\n"

# Long constructs whose work grows with their length, run in a loop: each must cost steps by its size.
_BIG_DISPLAY = "{" + ", ".join(f"'k{j}': i" for j in range(2000)) + "}"
_MANY_ARGUMENTS = "f(" + "i, " * 4000 + ")"
_LONG_CHAIN = " < ".join(["(i + 1)"] * 1000)  # (PROGRAM_SYNTAX_NODES_MAX)

HOSTILE: dict[str, Hostile] = {
    # --- Dunder walks and introspection: refused by name at compile time ------------------------------------
    "subclasses_walk": _refused(
        "ctx.put('k', str(().__class__.__bases__[0].__subclasses__()))", "the classic object.__subclasses__() walk"
    ),
    "function_globals": _refused("ctx.put('k', str(on_put.__globals__))", "function globals"),
    "builtins_via_function": _refused("ctx.put('k', str(len.__self__))", "a builtin's __self__ is the builtins module"),
    "method_self": _refused("ctx.put('k', str(ctx.put.__self__))", "a bound method's __self__"),
    "ctx_private_slot": _refused("ctx.put('k', str(ctx._owner))", "ctx's private fields"),
    "ctx_class": _refused("ctx.put('k', str(ctx.__class__))", "ctx's class"),
    "builtins_name": _refused("ctx.put('k', str(__builtins__))", "the builtins namespace"),
    "dunder_import": _refused("__import__('os').system('true')", "__import__ by name"),
    "generator_frame": _refused(
        "g = (x for x in (1,))\nf = g.gi_frame.f_back.f_globals", "generator frames (CVE-2023-37271)"
    ),
    "yield_frame": _refused("def g():\n    yield 1\nctx.put('k', str(g().gi_frame))", "generators and their frames"),
    "coroutine_frame": _refused("async def c():\n    pass\nc().cr_frame", "coroutines"),
    "traceback_frames": _refused(
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    ctx.put('k', str(e.__traceback__.tb_frame.f_globals))",
        "exception tracebacks",
    ),
    "exception_context": _refused(
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    ctx.put('k', str(e.__context__))", "exception context"
    ),
    "getattr_computed": _refused("ctx.put('k', str(getattr(ctx, '__cl' + 'ass__')))", "getattr with a computed name"),
    "setattr_builtin": _refused("setattr(ctx, 'topic', 'other')", "setattr"),
    "type_builtin": _refused("ctx.put('k', str(type(ctx)))", "type()"),
    "vars_builtin": _refused("ctx.put('k', str(vars()))", "vars()"),
    "globals_builtin": _refused("ctx.put('k', str(globals()))", "globals()"),
    "locals_builtin": _refused("ctx.put('k', str(locals()))", "locals()"),
    "dir_builtin": _refused("ctx.put('k', str(dir(ctx)))", "dir()"),
    "eval_builtin": _refused("eval('1')", "eval"),
    "exec_builtin": _refused("exec('x = 1')", "exec"),
    "compile_builtin": _refused("compile('1', 'f', 'eval')", "compile"),
    "open_file": _refused("open('/etc/passwd').read()", "file I/O"),
    "print_output": _refused("print('hello')", "print side effects"),
    "id_builtin": _refused("ctx.put('k', str(id(ctx)))", "object ids differ between nodes"),
    "hash_builtin": _refused("ctx.put('k', str(hash('x')))", "str hashes differ between processes"),
    "breakpoint_builtin": _refused("breakpoint()", "debugger"),
    "catch_base_exception": _refused(
        "try:\n    pass\nexcept BaseException:\n    pass", "BaseException is not exposed (aborts derive from it)"
    ),
    "catch_recursion_error": _refused(
        "try:\n    pass\nexcept RecursionError:\n    pass", "RecursionError is not exposed"
    ),
    # --- Imports --------------------------------------------------------------------------------------------
    "import_os": _refused("import os\nos.system('true')", "imports outside the allowlist"),
    "import_from_os": _refused("from os import system\nsystem('true')", "from-imports outside the allowlist"),
    "import_sys": _refused("import sys\nctx.put('k', str(sys.modules))", "sys"),
    "import_string_formatter": _refused(
        "import string\nstring.Formatter().format('{0.__class__}', ctx)", "string.Formatter (CVE-2023-41039)"
    ),
    "import_json_internals": _refused("from json import decoder", "json internals"),
    "relative_import": _refused("from . import json", "relative imports"),
    # --- Rebinding guard names (RestrictedPython advisories) ------------------------------------------------
    "guard_parameter": _refused(
        "def f(_getattr_=None):\n    return _getattr_\nf()", "a parameter named like a guard shadows it"
    ),
    "guard_positional_only": _refused(
        "def f(_write_, /):\n    _write_(ctx).topic = 'x'\nf(None)", "positional-only parameters (GHSA-ffg3-p8fm-mjx2)"
    ),
    "guard_kwonly": _refused("def f(*, _getiter_=len):\n    pass", "keyword-only parameters"),
    "guard_varargs": _refused("def f(*_getitem_):\n    pass", "*args named like a guard"),
    "guard_lambda": _refused("f = lambda _getattr_: _getattr_", "lambda parameters"),
    "guard_assignment": _refused("_getattr_ = lambda o, n: o", "assignment to a guard name"),
    "guard_walrus": _refused("(_write_ := None)", "assignment expressions"),
    "guard_for_target": _refused("for _getiter_ in (1,):\n    pass", "loop targets"),
    "guard_comprehension": _refused("[0 for _getitem_ in (1,)]", "comprehension targets"),
    "guard_except_name": _refused("try:\n    pass\nexcept ValueError as _write_:\n    pass", "except ... as"),
    "guard_import_alias": _refused("import json as _getattr_", "import aliases"),
    "guard_delete": _refused("del _write_", "deleting a guard"),
    "global_rebind": _refused("global on_put\non_put = None", "global statements"),
    "nonlocal_rebind": _refused("def f():\n    def g():\n        nonlocal x\n    x = 1", "nonlocal statements"),
    # --- Language features the sandbox refuses --------------------------------------------------------------
    "try_star": _refused("try:\n    pass\nexcept* ValueError:\n    pass", "except* (ExceptionGroup escapes)"),
    "match_statement": _refused("match value:\n    case {'a': x}:\n        pass", "match bypasses the guards"),
    "class_metaclass": _refused("class A(metaclass=type):\n    pass", "classes and metaclasses"),
    "class_plain": _refused("class A:\n    pass", "classes (instances would have address-bearing reprs)"),
    "set_literal": _refused("ctx.put('k', str({'b', 'a'}))", "sets iterate in a per-process order"),
    "set_builtin": _refused("ctx.put('k', str(set('ab')))", "set()"),
    "set_comprehension": _refused("ctx.put('k', str({c for c in 'ab'}))", "set comprehensions"),
    "with_statement": _refused("with ctx:\n    pass", "context managers"),
    "complex_literal": _refused("x = 1j", "complex numbers"),
    "ellipsis_literal": _refused("x = ...", "Ellipsis"),
    "long_int_literal": Hostile("X = " + "9" * 700 + "\n", "refused", "parsing depends on int_max_str_digits"),
    "huge_int_literal": Hostile("X = 0x" + "f" * 600 + "\n", "refused", "an int literal over the int budget"),
    "deep_source_nesting": Hostile("X = " + "[" * 150 + "]" * 150 + "\n", "refused", "recursion in compile"),
    "deep_source_chain": Hostile("X = " + "1+" * 30000 + "1\n", "refused", "recursion in the parser"),
    "long_source": Hostile("X = 1\n" + "#" * 70000 + "\n", "refused", "PROGRAM_SOURCE_BYTES_MAX"),
    "null_byte": Hostile("X = 1\x00\n", "refused", "null bytes"),
    "syntax_error": Hostile("def on_put(ctx, key, value)\n    pass\n", "refused", "syntax errors"),
    # --- Module-level mutable values (would carry data between calls, and differ after a restart) -----------
    "module_list": Hostile("SEEN = []\n" + _put("SEEN.append(key)"), "refused", "a mutable module-level list"),
    "mutable_default": Hostile(_put("pass", "def f(acc=[]):\n    return acc\n"), "refused", "a mutable default"),
    "closure_over_list": Hostile(
        "def make():\n    seen = []\n    return lambda ctx, key, value: seen.append(key)\non_put = make()\n",
        "refused",
        "a closure over a list",
    ),
    "module_iterator": Hostile("IT = map(str, (1, 2))\n" + _put("pass"), "refused", "a module-level iterator"),
    "module_bound_method": Hostile("PUSH = [].append\n" + _put("pass"), "refused", "a bound method of a list"),
    "module_infinite_loop": Hostile("while True:\n    pass\n", "refused", "the module body has a step budget"),
    "handler_not_function": Hostile("on_put = len\n", "refused", "handlers must be program functions"),
    "handler_bad_signature": Hostile("def on_put(ctx):\n    pass\n", "refused", "handlers must take (ctx, key, value)"),
    # --- Format strings -------------------------------------------------------------------------------------
    "str_format_fields": _error("ctx.put('k', '{0.__class__.__mro__}'.format(ctx))", "str.format field lookups"),
    "str_format_map": _error("ctx.put('k', '{x.__class__}'.format_map({'x': ctx}))", "str.format_map"),
    "fstring_dunder": _refused("ctx.put('k', f'{ctx.__class__}')", "attribute access in f-strings"),
    "fstring_repr_function": _error("ctx.put('k', f'{on_put!r}')", "a function's repr holds its address"),
    "fstring_locale": _error("ctx.put('k', f'{1234567:n}')", "the 'n' format depends on the locale"),
    "percent_function": _error("ctx.put('k', '%s' % (on_put,))", "% of a function"),
    "repr_function": _error("ctx.put('k', repr(on_put))", "repr of a function"),
    "str_ctx": _error("ctx.put('k', str(ctx))", "str of ctx"),
    "exception_args": _error(
        "try:\n    [].index(on_put)\nexcept ValueError as e:\n    ctx.put('k', e.args[0])", "exception args"
    ),
    "exception_address_in_reason": _error(
        "try:\n    [].index(on_put)\nexcept ValueError as e:\n    ctx.reject(str(e))", "addresses are removed"
    ),
    "json_internal_attribute": _error("import json\nctx.put('k', str(json.JSONDecoder))", "json internals"),
    # --- Mutating shared objects ----------------------------------------------------------------------------
    "set_ctx_topic": _error("ctx.topic = 'other'\nctx.put('k', 'v')", "ctx is read-only (but state)"),
    "replace_ctx_put": _error("ctx.put = None", "ctx methods are read-only"),
    "delete_ctx_state": _error("del ctx.state", "ctx.state cannot be deleted"),
    "mutate_exception_class": _error("ValueError.args = 5", "exception classes are shared by the process"),
    "mutate_json_module": _error("import json\njson.loads = None", "the json module is shared"),
    "mutate_builtin_function": _error("len.x = 1", "builtins are shared"),
    "mutate_module_dict": Hostile("TABLE = {'a': 1}\n" + _put("TABLE['b'] = 2"), "error", "module dicts are frozen"),
    "mutate_function": _error("on_put.x = 1", "functions are read-only"),
    "mutate_str": _error("s = 'abc'\ns[0] = 'x'", "str is immutable anyway"),
    # --- ctx.state that is not plain data: error, and the state rolls back ----------------------------------
    "state_function": _error("ctx.state['f'] = on_put", "functions cannot be persisted"),
    "state_lambda": _error("ctx.state['f'] = lambda: 1", "lambdas cannot be persisted"),
    "state_generator": _error("ctx.state['g'] = (x for x in (1,))", "generators cannot be persisted"),
    "state_class": _error("ctx.state['c'] = ValueError", "classes cannot be persisted"),
    "state_exception": _error("ctx.state['e'] = ValueError('x')", "exceptions cannot be persisted"),
    "state_ctx": _error("ctx.state['c'] = ctx", "ctx cannot be persisted"),
    "state_builtin": _error("ctx.state['f'] = len", "builtins cannot be persisted"),
    "state_range": _error("ctx.state['r'] = range(3)", "ranges are not plain data"),
    "state_view": _error("ctx.state['v'] = {}.keys()", "dict views are not plain data"),
    "state_frozen_dict": Hostile("T = {'a': 1}\n" + _put("ctx.state['t'] = T"), "error", "module dicts are proxies"),
    "state_cycle": _error("a = []\na.append(a)\nctx.state['a'] = a", "cycles"),
    "state_deep": _error("a = []\nfor i in range(2000):\n    a = [a]\nctx.state['a'] = a", "deep nesting"),
    "state_shared_blowup": _error("ctx.state['x'] = ['y' * 1000] * 100000", "sharing would blow up the encoding"),
    "state_many_objects": _error("ctx.state['x'] = [[]] * 100000", "PROGRAM_STATE_OBJECTS_MAX"),
    "state_not_dict": _error("ctx.state = [1, 2]", "ctx.state must be a dict"),
    "state_int_key": _error("ctx.state[1] = 2", "dict keys are str"),
    # --- Swallowing aborts ------------------------------------------------------------------------------------
    "catch_budget_bare": _error(
        "try:\n    while True:\n        pass\nexcept:\n    pass\nctx.put('k', 'escaped')", "bare except"
    ),
    "catch_budget_exception": _error(
        "try:\n    while True:\n        pass\nexcept Exception:\n    pass\nctx.put('k', 'escaped')", "except Exception"
    ),
    "catch_budget_finally_return": _error(
        "def f():\n    try:\n        while True:\n            pass\n    finally:\n        return 1\n"
        "f()\nctx.put('k', 'x')",
        "return in finally",
    ),
    "catch_budget_loop": _error(
        "while True:\n    try:\n        while True:\n            pass\n    except:\n        continue", "retry forever"
    ),
    "catch_reject": _error("try:\n    ctx.reject('no')\nexcept:\n    pass\nctx.put('k', 'escaped')", "reject"),
    "catch_recursion": _error(
        "def f(n):\n    try:\n        return f(n + 1)\n    except Exception:\n        return f(n + 1)\nf(0)",
        "recursion",
    ),
    # --- Resource exhaustion and crashes --------------------------------------------------------------------
    "infinite_loop": _error("while True:\n    pass", "PROGRAM_STEPS_MAX"),
    "huge_power": _error("x = 2 ** (10 ** 9)", "PROGRAM_INT_BITS_MAX"),
    "int_square_chain": _error("x = 3\nwhile True:\n    x = x * x", "PROGRAM_INT_BITS_MAX"),
    "shift_bomb": _error("x = 1 << (10 ** 9)", "PROGRAM_INT_BITS_MAX"),
    "float_power": _error("x = 2.0 ** 0.5", "libm pow differs between platforms"),
    "string_doubling": _error("s = 'x'\nwhile True:\n    s = s + s", "PROGRAM_VALUE_BYTES_MAX"),
    "string_repeat": _error("s = 'x' * 10 ** 10", "PROGRAM_VALUE_BYTES_MAX"),
    "format_width": _error("s = f'{1:>999999999}'", "PROGRAM_VALUE_BYTES_MAX"),
    "percent_width": _error("s = '%999999999d' % 1", "PROGRAM_VALUE_BYTES_MAX"),
    "bytes_alloc": _error("b = bytes(10 ** 10)", "PROGRAM_VALUE_BYTES_MAX"),
    "list_alloc": _error("l = [0] * 10 ** 10", "PROGRAM_VALUE_BYTES_MAX"),
    "range_materialize": _error("l = list(range(10 ** 10))", "PROGRAM_VALUE_BYTES_MAX"),
    "range_contains_scan": _error("x = 'a' in range(10 ** 12)", "a linear scan of a huge range"),
    "all_of_huge_range": _error("x = all(range(1, 10 ** 12))", "any() and all() consume lazily, item by item"),
    "big_display_in_loop": _error(f"for i in range(10 ** 6):\n    d = {_BIG_DISPLAY}", "displays cost by size"),
    "many_arguments_in_loop": _error(
        f"def f(*a):\n    pass\nfor i in range(10 ** 6):\n    {_MANY_ARGUMENTS}", "calls cost by their arguments"
    ),
    "long_chain_in_loop": _error(f"for i in range(10 ** 6):\n    x = {_LONG_CHAIN}", "lazy comparison chains"),
    "isinstance_many_types": _error(
        "types = (int,) * 5000\nfor i in range(10 ** 6):\n    isinstance(i, types)", "isinstance walks a tuple"
    ),
    "zip_many_iterables": _error(
        "its = [range(10 ** 6)] * 5000\nfor t in zip(*its):\n    pass", "zip builds a tuple per item"
    ),
    "annotations_in_loop": _error(
        "for i in range(10 ** 6):\n    def f(a: [j for j in range(9)] = 1):\n        pass", "annotations run per def"
    ),
    "star_unpack_range": _error("a, *b = range(10 ** 10)", "starred unpacking copies"),
    "star_call_range": _error("def f(*a):\n    pass\nf(*range(10 ** 10))", "*args copies"),
    "deep_recursion": _error("def f(n):\n    return f(n + 1)\nf(0)", "PROGRAM_RECURSION_DEPTH_MAX"),
    "lambda_recursion": _error("f = lambda n: f(n + 1)\nf(0)", "PROGRAM_RECURSION_DEPTH_MAX"),
    "deep_data_compare": _error(
        "a = []\nb = []\nfor i in range(3000):\n    a = [a]\n    b = [b]\nx = a == b", "C recursion"
    ),
    "deep_tuple_dict_key": _error(_DEEP_TUPLE + "d = {}\nd[t] = 1", "hashing a deep tuple overflows the C stack"),
    "deep_tuple_lookup": _error(_DEEP_TUPLE + "x = {'a': 1}.get(t)", "dict lookups hash too"),
    "deep_tuple_display": _error(_DEEP_TUPLE + "d = {t: 1}", "dict displays hash too"),
    "event_flood": _error("while True:\n    ctx.put('k', 'v')", "PROGRAM_EVENTS_MAX"),
    "emitted_bytes_flood": _error("v = b'x' * 1000000\nfor i in range(10):\n    ctx.put('k', v)", "emitted bytes"),
    "huge_reason": _error("ctx.reject('x' * 1000000)", "reasons are cut to REASON_BYTES_MAX"),
    "raise_non_exception": _error("raise 5", "TypeError"),
    "raise_deep_args": _error("a = []\nfor i in range(5000):\n    a = [a]\nraise ValueError(a)", "message is bounded"),
    "emit_non_bytes": _error("ctx.put(1, 2)", "keys and values are str or bytes"),
    "emit_huge_key": _error("ctx.put('k' * 5000, 'v')", "KEY_BYTES_MAX"),
    "unknown_codec": _error("x = b'abc'.decode('idna')", "codecs beyond utf-8/ascii/latin-1 import modules"),
    "iterate_ctx": _error("for x in ctx:\n    pass", "ctx is not iterable"),
    "dict_view_set_ops": _error("x = {'a': 1}.keys() - {'b': 2}.keys()", "set results"),
    # --- Cost model (issue 12): work charged at its worst case, sizes checked before allocation -----------------
    "rfind_quadratic": _error(_QUADRATIC + "x = s.rfind(p)", "reverse search is O(n*m) in CPython"),
    "rindex_quadratic": _error(_QUADRATIC + "try:\n    s.rindex(p)\nexcept ValueError:\n    pass", "rindex"),
    "rpartition_quadratic": _error(_QUADRATIC + "x = s.rpartition(p)", "rpartition searches in reverse"),
    "rsplit_quadratic": _error(_QUADRATIC + "x = s.rsplit(p)", "rsplit searches in reverse"),
    "strip_chars_quadratic": _error(
        "s = '\\u0100' * 60000\nc = 'b' * 60000 + '\\u0100'\nx = s.strip(c)", "strip(chars) is O(n*m)"
    ),
    "rstrip_chars_quadratic": _error(
        "s = '\\u0100' * 60000\nc = 'b' * 60000 + '\\u0100'\nx = s.rstrip(c)", "rstrip(chars) is O(n*m)"
    ),
    "in_literal_unguarded": _error(
        "n = 'a' * 49 + 'b' + 'a' * 49\nfor i in range(3000):\n    x = n in '" + "a" * 29999 + "'",
        "`x in '<long literal>'` compiled with no guard",
    ),
    "in_str_quadratic": _error(
        "s = 'a' * 29999\nn = 'a' * 49 + 'b' + 'a' * 49\nfor i in range(3000):\n    x = n in s",
        "a short needle in a short haystack is O(n*m) in CPython",
    ),
    "percent_key_backtracking": _error(
        "f = '%(' * 30000\nfor i in range(2):\n    try:\n        x = f % {}\n    except ValueError:\n        pass\n"
        "ctx.reject('done')",
        "the guard's own %-format regex backtracked quadratically before charging",
    ),
    "percent_nested_paren_width": _error(
        "x = '%((x))300000000s' % {'(x)': 1}", "a width hidden behind a nested-paren key built 300 MB"
    ),
    "dict_from_mapping": _error(
        "for i in range(560):\n    d = dict(T)", "dict(mapping) was charged a step per 64 entries", _WIDE_TABLE
    ),
    "dict_double_star": _error("for i in range(560):\n    d = {**T}", "{**mapping} too", _WIDE_TABLE),
    "dict_merge_mapping": _error(
        "for i in range(560):\n    d = {'a': 1}\n    d |= T", "dict |= mapping too", _WIDE_TABLE
    ),
    "from_bytes_list_bigint": _error(
        "x = int.from_bytes([255] * 100000, 'big')\nfor i in range(1000):\n    y = x // 7\n    z = x >> 1\n"
        "    w = x & x",
        "int.from_bytes(list) skipped the int budget; >>, //, & then ran unguarded",
    ),
    "value_bytes_not_chars": _error(
        "s = '\\U0010ffff' * (1 << 20)", "1M characters of 4 bytes each is 4 MiB: the value budget counts bytes"
    ),
    "list_references_not_elements": _error(
        "x = [0] * 1000000", "a million references is 8 MB: the value budget counts a list's bytes, not its elements"
    ),
    "list_extend_references": _error(
        "l = [0] * 100000\nfor i in range(3):\n    l.extend(l)", "list growth counts bytes (800,000 references)"
    ),
    "deep_tuple_isinstance": _error(_DEEP_TUPLE + "x = isinstance(1, (t,))", "isinstance hashed its spec natively"),
    "deep_tuple_codec_errors": _error(_DEEP_TUPLE + "x = b'x'.decode('utf-8', t)", "codec errors were hashed"),
    "module_constants_huge": Hostile(
        "A = 'x' * (1 << 20)\nB = 'y' * (1 << 20)\nC = 'z' * (1 << 20)\nD = 'w' * (1 << 20)\n" + _put("pass"),
        "refused",
        "module-level constants are kept for the topic's life",
    ),
    "compile_long_chain": Hostile(
        "X = " + " < ".join(["1"] * 16000) + "\n", "refused", "a 64 KiB chained comparison took seconds to compile"
    ),
    "compile_long_chain_in_function": Hostile(
        "def f(x):\n    return " + " < ".join(["x"] * 16000) + "\n", "refused", "compile work is bounded at create"
    ),
}
