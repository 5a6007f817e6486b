"""ctx.state kept as live objects between calls: indistinguishable from a node that reloads it before every call."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandbox_helpers import context, put_program, run_put

from laminar.node.sandbox import CallOutcome, Emitted, TopicRuntime, _runtime, _state
from laminar.node.sandbox._transform import module_constants

# A program that runs a list of operations (from the value, as JSON) on ctx.state, among them everything that
# could make live objects differ from reloaded ones (aliases, NaN, a replaced state) and everything that could
# tell them apart (identity, mutation through an alias, NaN in comparisons), and failures half-way through.
OPERATIONS = put_program(
    """
    import json
    s = ctx.state
    for op in json.loads(value):
        kind, a, b = op
        if kind == "set":
            s[a] = b
        elif kind == "pair":
            s[a] = (b, len(s))
        elif kind == "alias":
            s[a] = s.get(b)
        elif kind == "nest":
            s[a] = [s.get(b), 1]
        elif kind == "nan":
            s[a] = NAN
        elif kind == "nan_pair":
            s[a] = (NAN, b)
        elif kind == "append":
            if isinstance(s.get(a), list):
                s[a].append(s.get(b) if b in s else b)
        elif kind == "extend":
            if isinstance(s.get(a), list):
                s[a].extend([b, b])
        elif kind == "setdefault":
            s.setdefault(a, []).append(b)
        elif kind == "update":
            s.update({a: b})
        elif kind == "pop":
            s.pop(a, None)
        elif kind == "popitem":
            if s:
                s.popitem()
        elif kind == "delete":
            if a in s:
                del s[a]
        elif kind == "sort":
            if isinstance(s.get(a), list):
                s[a].sort(key=repr)
        elif kind == "replace":
            ctx.state = {a: b}
            s = ctx.state
        elif kind == "temp":
            t = {}
            t[a] = [b]
        elif kind == "reject":
            ctx.reject("no")
        elif kind == "fail":
            s[a] = 1 // 0
        elif kind == "look":
            x, y = s.get(a), s.get(b)
            ctx.put("same", str([x] == [y]))
            ctx.put("repr", repr(s))
            try:
                ctx.put("identical", str(x is y))
            except TypeError:
                ctx.put("identical", "not comparable")
            if isinstance(x, list) and isinstance(y, list):
                ctx.put("is", str(x is y))
                x.append(0)
                ctx.put("through", repr(y))
    """,
    prelude="NAN = float('nan')\n",
)
NAMES = ("a", "b", "c")
KINDS = (
    "set", "pair", "alias", "nest", "nan", "nan_pair", "append", "extend", "setdefault", "update", "pop",
    "popitem", "delete", "sort", "replace", "temp", "reject", "fail", "look", "look", "look",
)  # fmt: skip
VALUES = st.one_of(
    st.integers(-3, 300),
    st.sampled_from(["x", "", "é", "long text", 10**12, 1.5, None, True]),  # objects cached by Python, and not
    st.sampled_from(NAMES),
)
operation = st.tuples(st.sampled_from(KINDS), st.sampled_from(NAMES), VALUES)
calls = st.lists(st.lists(operation, min_size=1, max_size=6), min_size=1, max_size=12)


# Histories that must tell live objects from reloaded ones if the runtime kept the wrong ones (the property test
# below finds them too, given time).
TELLING = {
    "an alias of a str": [[("set", "a", "long text"), ("alias", "b", "a")], [("look", "a", "b")]],
    "an alias of a big int": [[("set", "a", 10**12), ("alias", "b", "a")], [("look", "a", "b")]],
    "an alias of a list": [[("set", "a", [1]), ("alias", "b", "a")], [("look", "a", "b")], [("look", "b", "a")]],
    "a list in a list": [[("set", "a", [1]), ("nest", "b", "a")], [("append", "a", 2), ("look", "a", "b")]],
    "a NaN twice": [[("nan", "a", 0), ("alias", "b", "a")], [("look", "a", "b")]],
    "a NaN in a tuple": [[("nan_pair", "a", 0), ("alias", "b", "a")], [("look", "a", "b")]],
    "a default list": [[("setdefault", "a", 1), ("alias", "b", "a")], [("setdefault", "a", 2), ("look", "a", "b")]],
    "a replaced state": [[("set", "a", [1])], [("replace", "b", [2])], [("look", "a", "b")]],
    "a failure after a change": [[("set", "a", 1)], [("set", "a", 2), ("popitem", "a", 0), ("fail", "b", 0)]],
    "a reject after a change": [[("set", "a", [1])], [("append", "a", 2), ("reject", "a", 0)], [("look", "a", "a")]],
}


def _run(runtime: TopicRuntime, offset: int, ops: list[tuple[str, str, object]]) -> CallOutcome:
    return runtime.on_put(context(offset), b"k", json.dumps(ops).encode())


def _check_history(calls: list, batch_ends: list[bool] | None = None) -> None:
    """Each call gives the same outcome on a runtime that keeps running as on one just restarted from the state
    before the call (a node that restarted: fresh objects, nothing deferred), and the state bytes agree whenever
    the state machine would ask for them: at the end of each batch (`batch_ends`; by default after every call)."""
    live = TopicRuntime.start(OPERATIONS, None)
    before = live.state_bytes()
    for offset, ops in enumerate(calls, 1):
        restarted = TopicRuntime.start(OPERATIONS, before)
        expected = _run(restarted, offset, ops)
        assert _run(live, offset, ops) == expected, ops
        before = restarted.state_bytes()
        if batch_ends is None or batch_ends[(offset - 1) % len(batch_ends)]:
            assert live.state_bytes() == before, ops
            assert _state.dump_state(_state.load_state(before)) == before
    assert live.state_bytes() == before


@pytest.mark.parametrize("name", sorted(TELLING))
def test_live_state_behaves_like_a_reloaded_one_in_telling_histories(name: str) -> None:
    _check_history(TELLING[name])
    _check_history(TELLING[name], batch_ends=[False])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=calls, batch_ends=st.lists(st.booleans(), min_size=1, max_size=5))
def test_live_state_behaves_exactly_like_a_state_reloaded_before_every_call(
    calls: list, batch_ends: list[bool]
) -> None:
    _check_history(calls, batch_ends)


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    loads = [0]
    real = _runtime.load_state

    def counting(data: bytes) -> object:
        loads[0] += 1
        return real(data)

    monkeypatch.setattr(_runtime, "load_state", counting)
    return loads


def test_the_state_is_decoded_once_not_at_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = _count_loads(monkeypatch)
    source = put_program("ctx.state['n'] = ctx.state.get('n', 0) + 1\nctx.state[key.decode()] = (1, 'x', 2.5)")
    runtime = TopicRuntime.start(source, None)
    for i in range(20):
        assert runtime.on_put(context(i), f"k{i % 3}".encode(), b"v").ok
    assert loads[0] == 1
    assert TopicRuntime.start(source, runtime.state_bytes()).state_bytes() == runtime.state_bytes()


def test_a_call_that_stores_a_container_makes_the_next_call_decode_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = _count_loads(monkeypatch)
    runtime = TopicRuntime.start(put_program("ctx.state[key.decode()] = [value]"), None)
    for i in range(3):
        assert runtime.on_put(context(i), b"k", b"v").ok
    assert loads[0] == 3


def test_a_rejected_call_rolls_back_the_live_state(monkeypatch: pytest.MonkeyPatch) -> None:
    source = put_program(
        """
        log = ctx.state.setdefault("log", [])
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        log.append(value.decode())
        del ctx.state["n"]
        ctx.state["n"] = len(log)
        if value == b"no":
            ctx.reject("refused: no")
        ctx.put("log", ",".join(log) + "|" + ",".join(ctx.state))
        """
    )
    runtime = TopicRuntime.start(source, None)
    assert runtime.on_put(context(1), b"k", b"a").ok
    assert runtime.on_put(context(2), b"k", b"b").ok  # the live objects are kept from here on
    loads = _count_loads(monkeypatch)
    before = runtime.state_bytes()
    assert runtime.on_put(context(3), b"k", b"no") == CallOutcome(False, "refused: no", ())
    assert runtime.state_bytes() == before
    assert runtime.on_put(context(4), b"k", b"c").events == (Emitted("PUT", b"log", b"a,b,c|log,n"),)
    assert loads[0] == 1  # the rollback


def test_a_call_that_fails_before_changing_anything_keeps_the_live_state(monkeypatch: pytest.MonkeyPatch) -> None:
    source = put_program(
        """
        if value == b"no":
            ctx.reject("refused: " + str(len(ctx.state)))
        if value == b"boom":
            x = ctx.state["missing"]
        ctx.state[value.decode()] = 1
        """
    )
    runtime = TopicRuntime.start(source, None)
    assert runtime.on_put(context(1), b"k", b"a").ok
    loads = _count_loads(monkeypatch)
    before = runtime.state_bytes()
    assert runtime.on_put(context(2), b"k", b"no").reason == "refused: 1"
    assert not runtime.on_put(context(3), b"k", b"boom").ok
    assert runtime.on_put(context(4), b"k", b"b").ok
    assert loads[0] == 0
    assert runtime.state_bytes() != before
    assert TopicRuntime.start(source, runtime.state_bytes()).state_bytes() == runtime.state_bytes()


def test_a_state_that_cannot_be_kept_rolls_back() -> None:
    source = put_program("ctx.state['x'] = value.decode()\nif value == b'cycle':\n    ctx.state['me'] = [ctx.state]")
    runtime = TopicRuntime.start(source, None)
    assert runtime.on_put(context(1), b"k", b"a").ok
    before = runtime.state_bytes()
    assert not runtime.on_put(context(2), b"k", b"cycle").ok
    assert runtime.state_bytes() == before
    assert runtime.on_put(context(3), b"k", b"b").ok
    assert runtime.state_bytes() == TopicRuntime.start(source, runtime.state_bytes()).state_bytes()


def test_an_encoder_that_failed_is_not_reused() -> None:
    # A failed dump can leave the reusable pickler's cycle check with stale entries: later states must be encoded
    # (and refused) exactly as by a new one.
    nested: object = 1
    for _ in range(60):  # deeper than the pickler's nesting level where its cycle check starts
        nested = [nested]
    deep = {"x": nested}
    cyclic: list[object] = [1]
    inner: object = cyclic
    for _ in range(60):
        inner = [inner]
    cyclic.append(inner)
    expected = _state.dump_state(deep)
    for _ in range(3):
        with pytest.raises(_state.StateProblem):
            _state.dump_state({"c": cyclic})
        assert _state.dump_state(deep) == expected
    assert _state.load_state(expected) == deep


def test_nan_in_the_state_compares_as_after_a_restart() -> None:
    source = put_program(
        """
        if value == b"store":
            ctx.state["a"] = NAN
            ctx.state["b"] = ctx.state["a"]
            ctx.state["t"] = (NAN,)
        else:
            s = ctx.state
            ctx.put("a", str([s["a"]] == [s["b"]]))
            ctx.put("c", str([s["a"]] == [NAN]))
            ctx.put("t", str(s["t"] == (NAN,)))
        """,
        prelude="NAN = float('nan')\n",
    )
    live = TopicRuntime.start(source, None)
    assert live.on_put(context(1), b"k", b"store").ok
    restarted = TopicRuntime.start(source, live.state_bytes())
    looked = live.on_put(context(2), b"k", b"look")
    assert looked == restarted.on_put(context(2), b"k", b"look")
    assert looked.events == (
        Emitted("PUT", b"a", b"False"),
        Emitted("PUT", b"c", b"False"),
        Emitted("PUT", b"t", b"False"),
    )
    assert math.isnan(0.0 * float("inf"))  # (the program's NaN, for the record)


def test_is_compares_identity_only_where_it_is_the_same_on_every_node() -> None:
    ok = run_put(
        """
        l = [1]
        m = l
        d = {}
        ctx.put("r", repr([l is m, l is not [1], d is d, None is None, value is not None, True is True, l is 1]))
        """
    )
    assert ok.events == (Emitted("PUT", b"r", b"[True, True, True, True, True, True, False]"),)
    for body in ("x = key.decode()\ny = x is x", "y = 1000 is 1000", "y = (1,) is not ()", "y = 0 < 1 is 1"):
        outcome = run_put(body)
        assert not outcome.ok and outcome.reason.startswith("TypeError: 'is' cannot compare"), (body, outcome)


def test_method_calls_look_the_method_up_before_evaluating_the_arguments() -> None:
    outcome = run_put(
        """
        try:
            key.no_such_method(ctx.put("evaluated", "yes"))
        except AttributeError as e:
            ctx.put("error", str(e))
        get = {"a": 1}.get
        ctx.put("bound", str([get("a"), get("b", 2), {"a": 1}.get("a"), ctx.state.get("x")]))
        try:
            {}.get(1)
        except TypeError as e:
            ctx.put("key", str(e))
        """
    )
    assert outcome.events == (
        Emitted("PUT", b"error", b"'bytes' object has no attribute 'no_such_method' available to programs"),
        Emitted("PUT", b"bound", b"[1, 2, 1, None]"),
        Emitted("PUT", b"key", b"dict keys must be str, not int"),
    )


def test_module_constants_are_names_bound_once_to_a_small_constant() -> None:
    import ast

    source = """
LIMIT = 64
BIG = 10**18
HUGE = 10**40
NAME = "mint"
LONG = "x" * 300
TEXT = "%s"
PAIR = (1, 2)
REBOUND = 1
SHADOWED = 2
REBOUND = 3
def f(SHADOWED):
    return SHADOWED
"""
    found = module_constants(ast.parse(source + f"\nLONG_LITERAL = {'y' * 300!r}\n"))
    values = {name: node.value for name, node in found.items()}  # type: ignore[attr-defined]
    assert values == {"LIMIT": 64, "BIG": 10**18, "NAME": "mint", "TEXT": "%s"}


def _same_as_restarted(source: str, values: list[bytes], batch_end: int = 1000) -> list[CallOutcome]:
    """Run `values` through `source` on one runtime, asking for the state's bytes every `batch_end` calls, and
    on runtimes restarted before every call; the outcomes and bytes must agree. The outcomes."""
    live = TopicRuntime.start(source, None)
    before = live.state_bytes()
    outcomes = []
    for offset, value in enumerate(values, 1):
        restarted = TopicRuntime.start(source, before)
        expected = restarted.on_put(context(offset), b"k", value)
        assert live.on_put(context(offset), b"k", value) == expected, (offset, value[:20])
        outcomes.append(expected)
        before = restarted.state_bytes()
        if offset % batch_end == 0:
            assert live.state_bytes() == before
    assert live.state_bytes() == before
    return outcomes


def test_deferred_encoding_never_lets_the_state_pass_its_bounds() -> None:
    # Each call adds a short tuple (deferrable) or 120 000 characters; the state passes 1 MiB after a while, and
    # each call that would take it there fails whether or not the encoding of the calls before it was deferred.
    source = put_program("ctx.state[str(len(ctx.state))] = (1, 'x') if value == b's' else 'y' * int(value)")
    values = [b"s", b"s", b"120000", b"s"] * 10
    outcomes = _same_as_restarted(source, values)
    refused = [o.reason for o in outcomes if not o.ok]
    assert refused and all(r.startswith("state budget exhausted") for r in refused), refused
    assert outcomes[-1].ok and sum(o.ok for o in outcomes) > len(values) // 2


def test_deferred_encoding_never_lets_the_state_grow_too_deep() -> None:
    # A state nested as deep as it can be kept, then a flat tuple stored at its bottom: one level more, which the
    # state can take or not depending on how the levels add up (lists count double for the encoder, so both
    # ways of wrapping the chain are tried). Refused, deferred or not.
    refused = []
    for wrap in ("a", "(a,)"):
        source = put_program(
            f"""
            if value.startswith(b"build"):
                a = []
                for i in range(int(value[5:])):
                    a = [a]
                ctx.state["d"] = {wrap}
            else:
                x = ctx.state["d"]
                while not isinstance(x, list) or x:
                    x = x[0]
                x.append((1, 2))
            """
        )
        low, high = 10, 2000  # the deepest chain that can be kept lies in between
        while low < high:
            middle = (low + high + 1) // 2
            fresh = TopicRuntime.start(source, None)
            low, high = (middle, high) if fresh.on_put(context(), b"k", b"build%d" % middle).ok else (low, middle - 1)
        assert 100 < low < 2000, low
        for depth in (low, low - 1, 20):
            outcomes = _same_as_restarted(source, [b"build%d" % depth, b"deepen", b"deepen"], batch_end=2)
            assert outcomes[0].ok
            if not outcomes[1].ok:
                assert outcomes[1].reason == "ctx.state is nested more than 300 levels deep (or contains a cycle)"
                refused.append((wrap, depth))
    assert refused and all(depth != 20 for _, depth in refused), refused


def test_a_rollback_after_deferred_calls_runs_them_again_from_the_last_bytes() -> None:
    # Calls that only store atoms are not encoded one by one; a later call that fails after changing the state
    # rolls back to the last bytes plus those calls, run again, before the next call and before state_bytes().
    source = put_program(
        """
        log = ctx.state["log"]
        log.append(value.decode())
        ctx.state["n"] = len(log)
        if value == b"no":
            ctx.reject("no")
        ctx.put("log", ",".join(log))
        """,
        prelude="def on_create(ctx):\n    ctx.state['log'] = []\n",
    )
    runtime = TopicRuntime.start(source, None)
    assert runtime.on_create(context(1), b"").ok
    assert runtime.on_put(context(2), b"k", b"a").ok
    encoded = runtime.state_bytes()  # the last bytes, as at the end of a log entry
    runs = []
    for offset, value in enumerate((b"b", b"c", b"no", b"d"), 3):
        runs.append(runtime.on_put(context(offset), b"k", value))
    assert [o.ok for o in runs] == [True, True, False, True]
    assert runs[-1].events == (Emitted("PUT", b"log", b"a,b,c,d"),)
    assert runtime.state_bytes() != encoded
    assert _state.load_state(runtime.state_bytes()) == {"log": ["a", "b", "c", "d"], "n": 4}
    assert runtime.on_put(context(7), b"k", b"no").reason == "no"
    assert _state.load_state(runtime.state_bytes()) == {"log": ["a", "b", "c", "d"], "n": 4}
