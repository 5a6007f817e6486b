"""From source to sandboxed code: policy checks, RestrictedPython, then our instrumentation.

1. `policy_errors` refuses what the sandbox does not support (classes, `global`, generators, sets, complex
   numbers, imports other than json, builtins that do not exist here) with a clear message per line, and
   bounds the tree's nesting so every later pass (all recursive) stays far from Python's recursion limit.
2. `rewrite_augmented` turns `d[k] += 1` into `d[k] = d[k] + 1` when `d` and `k` are plain names and
   constants (RestrictedPython refuses augmented assignment to items otherwise), `n += 1` into `n = n + 1`,
   and `a < b < c` into `a < b and b < c` when `b` is such a plain expression.
3. RestrictedPython's transformer: name checks (no `_` names, so no guard can be rebound), `_getattr_`,
   `_getitem_`, `_write_`, `_getiter_`, `_inplacevar_`, unpacking guards; it refuses what it does not know.
4. `Instrument`: budgets and guards. Every loop iteration, comprehension iteration, function and lambda call
   charges steps (`_step_`, `_enter_`): one per operation in its body, at least one; every except clause starts with
   `_exc_` (so no program can swallow an abort); operators, comparisons, f-strings, `*` and `**` unpacking
   and computed dict keys go through guards.
"""

from __future__ import annotations

import ast
import builtins
import copy
import operator
from collections.abc import Iterable
from typing import Any, TypeVar

from RestrictedPython.transformer import RestrictingNodeTransformer

from laminar.limits import PROGRAM_SYNTAX_NODES_MAX
from laminar.node.sandbox._builtins import BUILTINS, IMPORTABLE
from laminar.node.sandbox._ops import COMPARE_GUARDS, EQ, GE, GT, IN, IS, IS_NOT, LE, LT, NE, NOT_IN
from laminar.node.sandbox._values import INT_BITS_MAX

TREE_DEPTH_MAX = 100  # nesting of the syntax tree; real programs stay under 30

_UNAVAILABLE = {
    "open": "programs do no I/O",
    "input": "programs do no I/O",
    "print": "programs have no output: emit events, or ctx.reject(reason)",
    "eval": "programs cannot run new code",
    "exec": "programs cannot run new code",
    "compile": "programs cannot run new code",
    "breakpoint": "programs cannot be debugged in place",
    "globals": "programs cannot inspect namespaces",
    "locals": "programs cannot inspect namespaces",
    "vars": "programs cannot inspect namespaces",
    "dir": "programs cannot inspect namespaces",
    "type": "programs cannot inspect types; use isinstance()",
    "getattr": "use plain attribute access",
    "setattr": "programs cannot set attributes",
    "delattr": "programs cannot set attributes",
    "hasattr": "use plain attribute access",
    "id": "object identities differ between nodes",
    "hash": "hashes of str differ between processes",
    "set": "sets iterate in an order that differs between processes; use a dict",
    "frozenset": "sets iterate in an order that differs between processes; use a dict",
    "object": "programs cannot define types",
    "super": "programs cannot define types",
    "memoryview": "use bytes",
    "bytearray": "use bytes",
    "iter": "use a for loop or a generator expression",
    "format": "use an f-string",
    "pow": "use **",
}
_PYTHON_BUILTINS = frozenset(vars(builtins))
_UNAVAILABLE_NODES = {
    ast.ClassDef: "classes are not supported",
    ast.Global: "global statements are not supported: keep data between calls in ctx.state",
    ast.Nonlocal: "nonlocal statements are not supported",
    ast.Yield: "generators (yield) are not supported",
    ast.YieldFrom: "generators (yield) are not supported",
    ast.With: "with statements are not supported: no context managers are available",
    ast.Set: "sets are not supported (their iteration order differs between processes); use a dict",
    ast.SetComp: "sets are not supported (their iteration order differs between processes); use a dict",
}


def _line(node: ast.AST) -> int:
    return getattr(node, "lineno", 0)


def _tree_problem(tree: ast.AST) -> str | None:
    """Why the tree is too big or too deep to compile, or None. Iterative: the tree may be deep."""
    stack: list[tuple[ast.AST, int, int]] = [(tree, 0, 1)]
    nodes = 0
    while stack:
        node, depth, line = stack.pop()
        line = getattr(node, "lineno", line)
        if depth > TREE_DEPTH_MAX:
            return f"line {line}: the program is nested more than {TREE_DEPTH_MAX} levels deep"
        nodes += 1
        if nodes > PROGRAM_SYNTAX_NODES_MAX:
            return f"the program has more than {PROGRAM_SYNTAX_NODES_MAX} syntax nodes (it would compile too slowly)"
        stack.extend((child, depth + 1, line) for child in ast.iter_child_nodes(node))
    return None


def _bound_name(node: ast.AST) -> str | None:
    """The name `node` binds, if it binds one."""
    if isinstance(node, ast.Name):
        return None if isinstance(node.ctx, ast.Load) else node.id
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.arg):
        return node.arg
    if isinstance(node, ast.alias):
        return node.asname or node.name
    if isinstance(node, ast.ExceptHandler):
        return node.name
    return None


def _constant_problem(value: object) -> str | None:
    if isinstance(value, complex):
        return "complex numbers are not supported"
    if value is Ellipsis:
        return "... (Ellipsis) is not supported"
    if type(value) is int and value.bit_length() > INT_BITS_MAX:
        return f"an int literal of {value.bit_length()} bits is over the int budget ({INT_BITS_MAX} bits)"
    return None


def _import_problem(node: ast.Import | ast.ImportFrom) -> str | None:
    allowed = ", ".join(sorted(IMPORTABLE))
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name not in IMPORTABLE:
                return f"import of {alias.name!r} is not allowed (programs may import: {allowed})"
        return None
    if node.level or node.module not in IMPORTABLE:
        return (
            f"import from {('.' * node.level) + (node.module or '')!r} is not allowed (programs may import: {allowed})"
        )
    names = IMPORTABLE[node.module]
    for alias in node.names:
        if alias.name not in names:
            return f"{alias.name!r} cannot be imported from {node.module} (available: {', '.join(names)})"
    return None


def _node_problem(node: ast.AST) -> str | None:
    problem = _UNAVAILABLE_NODES.get(type(node))
    if problem:
        return problem
    if isinstance(node, ast.Constant):
        return _constant_problem(node.value)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return _import_problem(node)
    return None


def _unavailable(name: str) -> str | None:
    why = _UNAVAILABLE.get(name)
    if why is None and name not in BUILTINS and name in _PYTHON_BUILTINS:
        why = "it is not in the sandbox's builtins"
    return f"{name!r} is not available to programs ({why})" if why else None


def policy_errors(tree: ast.Module) -> list[str]:
    """What the sandbox refuses in `tree`, one message per problem, in source order."""
    problem = _tree_problem(tree)
    if problem is not None:
        return [problem]
    bound: set[str] = set()
    loaded: list[ast.Name] = []  # names a builtin may stand for, checked once every binding is known
    found = []
    for node in ast.walk(tree):
        name = _bound_name(node)
        if name:
            bound.add(name)
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loaded.append(node)
            continue
        problem = _node_problem(node)
        if problem:
            found.append((_line(node), problem))
    for node in loaded:
        problem = None if node.id in bound else _unavailable(node.id)
        if problem:
            found.append((node.lineno, problem))
    return [f"line {line}: {problem}" for line, problem in sorted(found)]


# --- Before RestrictedPython ----------------------------------------------------------------------------------


def _simple(node: ast.expr) -> bool:
    """Evaluating `node` twice is the same as once: no calls, no side effects."""
    if isinstance(node, (ast.Name, ast.Constant)):
        return True
    if isinstance(node, ast.Attribute):
        return _simple(node.value)
    if isinstance(node, ast.Subscript):
        return _simple(node.value) and _simple(node.slice)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _simple(node.operand)
    return False


def _copy_simple(node: ast.expr) -> ast.expr:
    """A copy of a `_simple` expression, built directly: copy.deepcopy costs ~20 us a node, which a long chain
    of comparisons would multiply at every create and restart."""
    if isinstance(node, ast.Name):
        new: ast.expr = ast.Name(id=node.id, ctx=node.ctx)
    elif isinstance(node, ast.Constant):
        new = ast.Constant(value=node.value, kind=node.kind)
    elif isinstance(node, ast.Attribute):
        new = ast.Attribute(value=_copy_simple(node.value), attr=node.attr, ctx=node.ctx)
    elif isinstance(node, ast.Subscript):
        new = ast.Subscript(value=_copy_simple(node.value), slice=_copy_simple(node.slice), ctx=node.ctx)
    elif isinstance(node, ast.UnaryOp):
        new = ast.UnaryOp(op=node.op, operand=_copy_simple(node.operand))
    else:
        return copy.deepcopy(node)
    return ast.copy_location(new, node)


class _Rewrite(ast.NodeTransformer):
    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        """`a < b <= c` is `a < b and b <= c` when evaluating `b` twice changes nothing: two single comparisons
        (often against constants, which need no guard) are much cheaper than a lazily evaluated chain."""
        self.generic_visit(node)
        if len(node.ops) == 1 or not all(_simple(c) for c in node.comparators[:-1]):
            return node
        lefts = [node.left, *node.comparators[:-1]]
        parts: list[ast.expr] = [
            ast.Compare(left=_copy_simple(left), ops=[op], comparators=[_copy_simple(right)])
            for left, op, right in zip(lefts, node.ops, node.comparators, strict=True)
        ]
        return _placed(ast.BoolOp(op=ast.And(), values=parts), node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        target = node.target
        if isinstance(target, ast.Name) and isinstance(node.op, (ast.Add, ast.Sub)) and _small_int(node.value):
            # `n += 1` is `n = n + 1` for every type that accepts an int (a list raises TypeError either way),
            # and the plain operator is much cheaper than `_inplacevar_`.
            load = ast.Name(id=target.id, ctx=ast.Load())
            return _placed(ast.Assign(targets=[target], value=ast.BinOp(load, node.op, node.value)), node)
        if not (isinstance(target, ast.Subscript) and _simple(target.value) and _simple(target.slice)):
            return node
        subscript = _copy_simple(target)
        subscript.ctx = ast.Load()  # type: ignore[attr-defined]
        value = ast.BinOp(left=subscript, op=node.op, right=node.value)
        assign = ast.Assign(targets=[target], value=value)
        return _placed(assign, node)


def rewrite_augmented(tree: ast.Module) -> ast.Module:
    result = _Rewrite().visit(tree)
    assert isinstance(result, ast.Module)
    return result


def restrict(tree: ast.Module) -> list[str]:
    """Run RestrictedPython's transformer over `tree` in place; its errors, worded like ours."""
    errors: list[str] = []
    RestrictingNodeTransformer(errors, [], {}).visit(tree)
    return [e.replace("Line ", "line ", 1) for e in errors]


# --- After RestrictedPython: instrumentation ------------------------------------------------------------------


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


def _const(value: Any) -> ast.Constant:
    return ast.Constant(value=value)


_NODES_PER_STEP = 8  # names, constants and other syntax evaluated per step, beyond the operations
_SYNTAX = (ast.expr, ast.stmt, ast.alias, ast.keyword, ast.comprehension, ast.arg, ast.excepthandler)
_LEAVES = (ast.Name, ast.Constant)


def _region_cost(nodes: Iterable[ast.AST]) -> int:
    """Steps one run of a region costs: a step per operation (call, operator, subscript, display, ...) plus one
    per _NODES_PER_STEP pieces of syntax, so that no body, however long (a display of 10 000 constants, a
    call with 10 000 arguments), costs much more time than it is charged. Regions that charge for themselves
    (loop bodies, comprehension iterations, function and lambda bodies) are left out."""
    operations = syntax = 0
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, _SYNTAX):
            syntax += 1
            operations += isinstance(node, (ast.expr, ast.keyword)) and not isinstance(node, _LEAVES)
            if isinstance(node, ast.Dict):
                operations += len(node.keys) // 2  # each entry is hashed and inserted
        stack.extend(_evaluated_here(node))
    return operations + syntax // _NODES_PER_STEP


def _evaluated_here(node: ast.AST) -> list[ast.AST]:
    """The children of `node` that run when `node` does (not those that charge for themselves when they run)."""
    if isinstance(node, ast.FunctionDef) or (isinstance(node, ast.Lambda) and _calls(node.body, "_lam_")):
        return _evaluated_at_definition(node)  # a program's function: its body charges at each call
    if isinstance(node, ast.For):
        return [node.iter, node.target, *node.orelse]
    if isinstance(node, ast.While):
        return [node.test, *node.orelse]
    if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.DictComp)):
        return [node.generators[0].iter]
    return list(ast.iter_child_nodes(node))  # including `_chain_`'s lambdas, which are part of the expression


def _evaluated_at_definition(node: ast.FunctionDef | ast.Lambda) -> list[ast.AST]:
    """What `def` or `lambda` evaluates where it stands: defaults, decorators, annotations (not the body)."""
    args = node.args
    parts: list[ast.AST | None] = [*args.defaults, *args.kw_defaults]
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    parts.extend(a.annotation for a in every if a is not None)
    if isinstance(node, ast.FunctionDef):
        parts.extend([*node.decorator_list, node.returns])
    return [p for p in parts if p is not None]


def _weight(nodes: Iterable[ast.AST]) -> ast.Constant:
    return _const(max(1, _region_cost(nodes)))


def _unpacking(target: ast.expr) -> list[ast.expr]:
    """A loop target's cost: nothing for a plain name, the target itself when it unpacks or subscripts."""
    return [] if isinstance(target, ast.Name) else [target]


def _calls(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _has_starred(target: ast.AST) -> bool:
    return any(isinstance(n, ast.Starred) for n in ast.walk(target))


def _plain_unpack(value: ast.expr, target: ast.AST, guard: str) -> ast.expr:
    """Drop RestrictedPython's unpacking guard when the target has no `*name`: a native unpack of a fixed
    number of names costs O(1) and reveals nothing; a starred one copies, so it keeps the (charging) guard."""
    if isinstance(value, ast.Call) and _calls(value, guard) and not _has_starred(target):
        return _call("_getiter_", value.args[0]) if guard == "_iter_unpack_sequence_" else value.args[0]
    return value


_BINARY_GUARDS: dict[type, str] = {
    ast.Add: "_add_",
    ast.Sub: "_sub_",
    ast.Mult: "_mul_",
    ast.Pow: "_pow_",
    ast.LShift: "_lshift_",
    ast.FloorDiv: "_floordiv_",
    ast.Mod: "_mod_",
    ast.BitAnd: "_and_",
    ast.BitOr: "_or_",
    ast.BitXor: "_xor_",
}
_COMPARE_CODES: dict[type, int] = {
    ast.Eq: EQ,
    ast.NotEq: NE,
    ast.Lt: LT,
    ast.LtE: LE,
    ast.Gt: GT,
    ast.GtE: GE,
    ast.In: IN,
    ast.NotIn: NOT_IN,
    ast.Is: IS,
    ast.IsNot: IS_NOT,
}
_SMALL = 1 << 31


def _small_int(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and -_SMALL < node.value < _SMALL


def _scalar_constant(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and not isinstance(node.value, tuple)


def _singleton(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and (node.value is None or node.value is True or node.value is False)


def _constant_tuple(node: ast.expr) -> bool:
    return isinstance(node, (ast.Tuple, ast.List)) and all(_comparable_constant(e) for e in node.elts)


Constants = dict[str, ast.expr]  # module-level names that always hold a constant (see module_constants)
_NAMED_TEXT_MAX = 256  # longest str or bytes constant a native comparison may hold (a memcmp of 1 KiB at most)
_IN_TEXT_MAX = 16  # longest str or bytes literal a native `in` may search: 16 * 16 character comparisons at most


def _small_constant(node: ast.expr) -> bool:
    if not _scalar_constant(node):
        return False
    value = node.value  # type: ignore[attr-defined]
    return not isinstance(value, (str, bytes)) or len(value) <= _NAMED_TEXT_MAX


_FOLDED_BITS_MAX = 64
_FOLDABLE = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow}


def _folded(node: ast.expr) -> ast.expr:
    """`10**18`, `384 * 1024`: an arithmetic of small int literals as the constant it is (Python's compiler folds
    it too), when the result fits in 64 bits; anything else as it is."""
    if not (isinstance(node, ast.BinOp) and type(node.op) in _FOLDABLE):
        return node
    left, right = _folded(node.left), _folded(node.right)
    if not all(isinstance(x, ast.Constant) and type(x.value) is int for x in (left, right)):
        return node
    a, b = left.value, right.value  # type: ignore[attr-defined]
    if a.bit_length() > _FOLDED_BITS_MAX or b.bit_length() > _FOLDED_BITS_MAX:
        return node
    if isinstance(node.op, ast.Pow) and (b < 0 or b > _FOLDED_BITS_MAX):
        return node
    value = _FOLDABLE[type(node.op)](a, b)
    return ast.Constant(value=value) if value.bit_length() <= _FOLDED_BITS_MAX else node


def module_constants(tree: ast.Module) -> Constants:
    """Names bound exactly once in the whole program, by a module-level `NAME = constant` (a number, None, a
    bool, or a short str or bytes). Nothing else can rebind them (no `global`, and any other binding of the name
    anywhere, a parameter, a local, a loop target, an import, counts), so wherever such a name is read it is
    that constant (or not yet bound: NameError either way), and comparing with it costs what comparing with the
    literal does. Short, because a name costs less syntax than the literal it stands for (see _region_cost)."""
    bindings: dict[str, int] = {}
    for node in ast.walk(tree):
        name = _bound_name(node)
        if name:
            bindings[name] = bindings.get(name, 0) + 1
    constants: Constants = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1):
            continue
        target, value = statement.targets[0], _folded(statement.value)
        if isinstance(target, ast.Name) and bindings.get(target.id) == 1 and _small_constant(value):
            constants[target.id] = value
    return constants


def _resolved(node: ast.expr, constants: Constants) -> ast.expr:
    """The constant a module-level constant name stands for, or `node` itself."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        return constants.get(node.id, node)
    return node


def _cheap_binop(node: ast.BinOp, constants: Constants) -> bool:
    """Adding or subtracting a small int constant, or dividing by one, costs O(1) whatever the other side is."""
    left, right = _resolved(node.left, constants), _resolved(node.right, constants)
    if isinstance(node.op, (ast.Add, ast.Sub)):
        return _small_int(left) or _small_int(right)
    return isinstance(node.op, ast.FloorDiv) and _small_int(right) and right.value != 0  # type: ignore[attr-defined]


def _cheap_compare(node: ast.Compare, constants: Constants) -> bool:
    """One comparison with a constant costs at most the constant's length, whatever the other side is. `is`
    needs no guard against None, True or False (singletons everywhere); otherwise see _ops.is_."""
    if len(node.ops) != 1:
        return False
    op = node.ops[0]
    left, right = _resolved(node.left, constants), _resolved(node.comparators[0], constants)
    if isinstance(op, (ast.Is, ast.IsNot)):
        return _singleton(left) or _singleton(right)
    if isinstance(op, (ast.In, ast.NotIn)):
        # `x in 'abc'` searches the literal for x: O(n*m) in CPython's simple search, so only a short literal
        # may compile to a native `in` (a longer one goes through the guard, which charges the search).
        return _constant_tuple(right) or _short_text(right, _IN_TEXT_MAX)
    return _comparable_constant(left) or _comparable_constant(right)


def _short_text(node: ast.expr, limit: int) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (str, bytes) and len(node.value) <= limit  # type: ignore[arg-type]


def _comparable_constant(node: ast.expr) -> bool:
    """A constant whose comparison with anything costs O(its length), which is at most _NAMED_TEXT_MAX."""
    if not _scalar_constant(node):
        return False
    return type(node.value) not in (str, bytes) or len(node.value) <= _NAMED_TEXT_MAX  # type: ignore[attr-defined]


_N = TypeVar("_N", bound=ast.AST)
_LOCATION = {"lineno": 1, "col_offset": 0, "end_lineno": 1, "end_col_offset": 0}  # and their defaults


def _placed(new: _N, ref: ast.AST) -> _N:
    _locate(new, ref)
    return new


def _locate(root: ast.AST, ref: ast.AST) -> None:
    """Give the nodes just created under `root` the location of `ref`; stop at nodes that have one already
    (the program's own), so this costs what was created, not the whole tree (unlike fix_missing_locations)."""
    place = {name: getattr(ref, name, default) for name, default in _LOCATION.items()}
    stack = [root]
    while stack:
        node = stack.pop()
        if "lineno" in node._attributes:
            if hasattr(node, "lineno") and node is not root:
                continue  # the program's own node (or one placed before): its subtree is placed too
            for name, value in place.items():
                if getattr(node, name, None) is None:
                    setattr(node, name, value)
        stack.extend(ast.iter_child_nodes(node))


class Instrument(ast.NodeTransformer):
    """Insert budget hooks and operator guards (see the module docstring)."""

    def __init__(self, constants: Constants | None = None) -> None:
        self._functions = 0
        self._constants = constants or {}

    def visit_Module(self, node: ast.Module) -> ast.AST:
        self.generic_visit(node)
        node.body.insert(0, _placed(ast.Expr(_call("_step_", _weight(node.body))), node.body[0] if node.body else node))
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1
        enter = ast.Assign(targets=[ast.Name(id="_d", ctx=ast.Store())], value=_call("_enter_", _weight(node.body)))
        leave = ast.Expr(_call("_leave_"))
        node.body = [
            _placed(enter, node),
            _placed(ast.Try(body=node.body, handlers=[], orelse=[], finalbody=[leave]), node),
        ]
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self.generic_visit(node)
        node.body = _placed(_call("_lam_", _call("_enter_", _weight([node.body])), node.body), node)
        return node

    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        node.iter = _placed(_plain_unpack(node.iter, node.target, "_iter_unpack_sequence_"), node)
        node.body.insert(0, _placed(ast.Expr(_call("_step_", _weight([*_unpacking(node.target), *node.body]))), node))
        return node

    def visit_While(self, node: ast.While) -> ast.AST:
        self.generic_visit(node)
        node.body.insert(0, _placed(ast.Expr(_call("_step_", _weight([node.test, *node.body]))), node))
        return node

    def _comprehension(self, node: ast.ListComp | ast.GeneratorExp | ast.DictComp, result: list[ast.expr]) -> None:
        generators = node.generators
        for i, gen in enumerate(generators):
            gen.iter = _placed(_plain_unpack(gen.iter, gen.target, "_iter_unpack_sequence_"), node)
            then = [generators[i + 1].iter] if i + 1 < len(generators) else result
            gen.ifs.insert(0, _placed(_call("_step_", _weight([*_unpacking(gen.target), *gen.ifs, *then])), node))

    def visit_ListComp(self, node: ast.ListComp) -> ast.AST:
        self.generic_visit(node)
        self._comprehension(node, [node.elt])
        return node

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> ast.AST:
        self.generic_visit(node)
        self._comprehension(node, [node.elt])
        return node

    def visit_DictComp(self, node: ast.DictComp) -> ast.AST:
        self.generic_visit(node)
        if not (isinstance(node.key, ast.Constant) and type(node.key.value) is str):
            node.key = _placed(_call("_key_", node.key), node)
        self._comprehension(node, [node.key, node.value])
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        self.generic_visit(node)
        depth: ast.expr = ast.Name(id="_d", ctx=ast.Load()) if self._functions else _const(0)
        node.body.insert(0, _placed(ast.Expr(_call("_exc_", depth)), node))
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        self.generic_visit(node)
        if len(node.targets) != 1:
            return node
        target = node.targets[0]
        if isinstance(target, ast.Subscript) and not isinstance(target.slice, ast.Slice):
            writer = target.value
            if isinstance(writer, ast.Call) and _calls(writer, "_write_"):
                # `obj[key] = value` as one guard call instead of a write proxy; value first, as in Python
                setitem = _call("_setitem_", node.value, writer.args[0], target.slice)
                return _placed(ast.Expr(setitem), node)
        node.value = _placed(_plain_unpack(node.value, target, "_unpack_sequence_"), node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        guard = _BINARY_GUARDS.get(type(node.op))
        if guard is None or _cheap_binop(node, self._constants):
            return node
        return _placed(_call(guard, node.left, node.right), node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if _cheap_compare(node, self._constants):
            return node
        codes = [_COMPARE_CODES[type(op)] for op in node.ops]
        if len(codes) == 1:
            call = _call(COMPARE_GUARDS[codes[0]], node.left, node.comparators[0])
        else:
            lazy = [ast.Lambda(args=_no_args(), body=c) for c in node.comparators]
            call = _call("_chain_", node.left, _const(tuple(codes)), *lazy)
        return _placed(call, node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        self.generic_visit(node)
        parts: list[ast.expr] = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                spec = value.format_spec if value.format_spec is not None else _const("")
                parts.append(_call("_fmt_", value.value, _const(value.conversion), spec))
            else:
                parts.append(value)
        return _placed(_call("_fstr_", ast.Tuple(elts=parts, ctx=ast.Load())), node)

    def visit_Dict(self, node: ast.Dict) -> ast.AST:
        self.generic_visit(node)
        for i, k in enumerate(node.keys):
            if k is None:
                node.values[i] = _placed(_call("_dstar_", node.values[i]), node)
            elif not (isinstance(k, ast.Constant) and type(k.value) is str):
                node.keys[i] = _placed(_call("_key_", k), node)
        return node

    def visit_Starred(self, node: ast.Starred) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = _placed(_call("_star_", node.value), node)
        return node

    def visit_keyword(self, node: ast.keyword) -> ast.AST:
        self.generic_visit(node)
        if node.arg is None:
            node.value = _placed(_call("_dstar_", node.value), node)
        return node


class FuseMethodCalls(ast.NodeTransformer):
    """`_getattr_(x, "m")(args)` -> `_m_(x, "m")(x, args)` when `x` is a plain name (see _methods.method_).

    Python evaluates `x`, then looks `m` up (AttributeError here), then evaluates the arguments, then calls: so
    does the fused form, since reading a name twice in a row gives the same object. It runs after Instrument, so
    the step weights are those of the program as written."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        lookup = node.func
        if not (isinstance(lookup, ast.Call) and _calls(lookup, "_getattr_") and not lookup.keywords):
            return node
        if len(lookup.args) != 2:
            return node
        receiver, name = lookup.args
        if not (isinstance(receiver, ast.Name) and isinstance(name, ast.Constant) and type(name.value) is str):
            return node
        again = _placed(ast.Name(id=receiver.id, ctx=ast.Load()), receiver)
        node.func = _placed(_call("_m_", receiver, name), lookup)
        node.args.insert(0, again)
        return node


def _no_args() -> ast.arguments:
    return ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])


def instrument(tree: ast.Module) -> ast.Module:
    result = FuseMethodCalls().visit(Instrument(module_constants(tree)).visit(tree))
    assert isinstance(result, ast.Module)
    return result
