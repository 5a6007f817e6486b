"""The program contract (docs/programs.md) and the interface the state machine relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from sandbox_helpers import CLIENT, context, put_program, run_put

from laminar.node.sandbox import CallContext, CallOutcome, Emitted, ProgramRefused, TopicRuntime, check_program


def test_missing_handlers_pass_mutations_through() -> None:
    runtime = TopicRuntime.start("X = 1\n", None)
    assert runtime.on_create(context(), b"{}") == CallOutcome(True, "", ())
    assert runtime.on_put(context(), b"k", b"v") == CallOutcome(True, "", (Emitted("PUT", b"k", b"v"),))
    assert runtime.on_delete(context(), b"k") == CallOutcome(True, "", (Emitted("DELETE", b"k", b""),))


def test_a_handler_that_emits_nothing_is_valid_with_zero_events() -> None:
    runtime = TopicRuntime.start("def on_put(ctx, key, value):\n    pass\n\ndef on_delete(ctx, key):\n    pass\n", None)
    assert runtime.on_put(context(), b"k", b"v") == CallOutcome(True, "", ())
    assert runtime.on_delete(context(), b"k") == CallOutcome(True, "", ())


def test_handlers_emit_many_events_in_order_with_str_keys_encoded() -> None:
    outcome = run_put("for i in range(3):\n    ctx.put(f'k{i}', value)\nctx.delete(key)\nctx.put('é', 'ü')", value=b"x")
    assert outcome.ok
    assert outcome.events == (
        Emitted("PUT", b"k0", b"x"),
        Emitted("PUT", b"k1", b"x"),
        Emitted("PUT", b"k2", b"x"),
        Emitted("DELETE", b"k", b""),
        Emitted("PUT", "é".encode(), "ü".encode()),
    )


def test_ctx_fields() -> None:
    source = textwrap.dedent(
        """
        def on_create(ctx):
            ctx.put("args", ctx.args)
            ctx.put("json", str(ctx.args_json()))

        def on_put(ctx, key, value):
            ctx.put("fields", f"{ctx.topic}|{ctx.offset}|{ctx.client_id}|{ctx.nonce}|{ctx.args}")

        def on_delete(ctx, key):
            ctx.put("json", str(ctx.args_json()))
        """
    )
    runtime = TopicRuntime.start(source, None)
    created = runtime.on_create(CallContext("accounts", 7, CLIENT, 3), b'{"a": [1, 2]}')
    assert created.events == (Emitted("PUT", b"args", b'{"a": [1, 2]}'), Emitted("PUT", b"json", b"{'a': [1, 2]}"))
    put = runtime.on_put(CallContext("accounts", 9, CLIENT, 4), b"k", b"v")
    assert put.events == (Emitted("PUT", b"fields", f"accounts|9|{CLIENT}|4|None".encode()),)
    assert runtime.on_delete(context(), b"k").events == (Emitted("PUT", b"json", b"None"),)


def test_reject_emits_nothing_and_keeps_the_state() -> None:
    source = put_program(
        """
        ctx.state.setdefault("log", []).append(value.decode())
        ctx.put("seen", ",".join(ctx.state["log"]))
        if value == b"no":
            ctx.reject("refused: no")
        """
    )
    runtime = TopicRuntime.start(source, None)
    assert runtime.on_put(context(1), b"k", b"a").ok
    before = runtime.state_bytes()
    assert runtime.on_put(context(2), b"k", b"no") == CallOutcome(False, "refused: no", ())
    assert runtime.state_bytes() == before
    assert runtime.on_put(context(3), b"k", b"b").events == (Emitted("PUT", b"seen", b"a,b"),)


def test_fault_emits_nothing_and_rolls_back_nested_changes() -> None:
    source = put_program(
        """
        ctx.state.setdefault("items", [[]])
        ctx.state["items"][0].append(len(ctx.state["items"][0]))
        ctx.state["extra"] = "x"
        ctx.put("items", str(ctx.state["items"]))
        if value == b"boom":
            1 / 0
        """
    )
    runtime = TopicRuntime.start(source, None)
    assert runtime.on_put(context(1), b"k", b"a").ok
    before = runtime.state_bytes()
    outcome = runtime.on_put(context(2), b"k", b"boom")
    assert not outcome.ok
    assert outcome.events == ()
    assert outcome.reason.startswith("ZeroDivisionError: division by zero")
    assert runtime.state_bytes() == before
    assert runtime.on_put(context(3), b"k", b"b").events == (Emitted("PUT", b"items", b"[[0, 1]]"),)


def test_state_persists_across_calls_and_across_a_restart() -> None:
    source = put_program("ctx.state['n'] = ctx.state.get('n', 0) + 1\nctx.put('n', str(ctx.state['n']))")
    runtime = TopicRuntime.start(source, None)
    for _ in range(3):
        runtime.on_put(context(), b"k", b"v")
    restarted = TopicRuntime.start(source, runtime.state_bytes())
    assert restarted.state_bytes() == runtime.state_bytes()
    assert restarted.on_put(context(), b"k", b"v").events == (Emitted("PUT", b"n", b"4"),)


def test_state_keeps_insertion_order_across_a_restart() -> None:
    # A program can observe dict order, so a restarted node must iterate the state as the others do.
    source = put_program("ctx.state[value.decode()] = 1\nctx.put('order', ','.join(ctx.state))")
    runtime = TopicRuntime.start(source, None)
    for name in (b"zeta", b"alpha", b"mid"):
        runtime.on_put(context(), b"k", name)
    restarted = TopicRuntime.start(source, runtime.state_bytes())
    assert restarted.on_put(context(), b"k", b"beta").events == (Emitted("PUT", b"order", b"zeta,alpha,mid,beta"),)


def test_shared_objects_in_the_state_behave_as_after_a_restart() -> None:
    # Two names for one list would diverge from a restarted node, which loads two lists: every node reloads.
    source = put_program(
        """
        if value == b"alias":
            shared = []
            ctx.state["a"] = shared
            ctx.state["b"] = shared
        else:
            ctx.state["a"].append(1)
            ctx.put("b", str(ctx.state["b"]))
        """
    )
    live = TopicRuntime.start(source, None)
    live.on_put(context(), b"k", b"alias")
    restarted = TopicRuntime.start(source, live.state_bytes())
    assert live.on_put(context(), b"k", b"use") == restarted.on_put(context(), b"k", b"use")
    assert live.state_bytes() == restarted.state_bytes()


def test_ctx_state_can_be_replaced_with_a_dict_only() -> None:
    source = put_program("ctx.state = {'v': value.decode()} if value != b'bad' else [1]")
    runtime = TopicRuntime.start(source, None)
    assert runtime.on_put(context(), b"k", b"one").ok
    before = runtime.state_bytes()
    outcome = runtime.on_put(context(), b"k", b"bad")
    assert outcome == CallOutcome(False, "ctx.state must be a dict, not list", ())
    assert runtime.state_bytes() == before


def test_on_create_can_initialize_state_and_reject() -> None:
    source = textwrap.dedent(
        """
        def on_create(ctx):
            args = ctx.args_json()
            if not isinstance(args, dict):
                ctx.reject("malformed: args")
            ctx.state["limit"] = args["limit"]
            ctx.put("limit", str(args["limit"]))
        """
    )
    runtime = TopicRuntime.start(source, None)
    assert runtime.on_create(context(), b'{"limit": 3}').events == (Emitted("PUT", b"limit", b"3"),)
    assert b"limit" in runtime.state_bytes()
    refused = TopicRuntime.start(source, None)
    assert refused.on_create(context(), b"[]") == CallOutcome(False, "malformed: args", ())
    assert not refused.on_create(context(), b"not json").ok


def test_state_bytes_are_deterministic_across_processes_and_hash_seeds() -> None:
    script = textwrap.dedent(
        """
        import hashlib, json, sys
        sys.path.insert(0, sys.argv[1])
        from laminar.node.sandbox import CallContext, TopicRuntime
        source = open(sys.argv[2]).read()
        rt = TopicRuntime.start(source, None)
        digest = hashlib.sha256()
        for i in range(60):
            out = rt.on_put(CallContext("t", i + 1, "c", i), f"key{i % 7}".encode(), f"v{i}".encode())
            digest.update(repr(out).encode())
            digest.update(rt.state_bytes())
        print(digest.hexdigest())
        """
    )
    program = put_program(
        """
        import json
        words = ctx.state.setdefault("words", {})
        words[key.decode()] = words.get(key.decode(), 0) + len(value)
        ctx.state["sorted"] = sorted(words, key=lambda w: (words[w], w))
        ctx.state["json"] = json.dumps(words)
        ctx.state["ratio"] = len(words) / 3
        ctx.state["blob"] = value * 3
        ctx.put(key, json.dumps(ctx.state["sorted"]))
        if len(words) % 3 == 0 and value.endswith(b"5"):
            while True:
                pass
        if value.endswith(b"7"):
            ctx.put("mixed", str([ctx.put, len, ctx, 1.5]))  # which bad type is reported must not vary
        """
    )
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"sandbox_determinism_{os.getpid()}.py")
    with open(path, "w") as f:
        f.write(program)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    digests = set()
    try:
        for seed in ("1", "2"):
            env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONINTMAXSTRDIGITS="640")
            run = subprocess.run([sys.executable, "-c", script, root, path], env=env, capture_output=True, text=True)
            assert run.returncode == 0, run.stderr
            digests.add(run.stdout.strip())
    finally:
        os.unlink(path)
    assert len(digests) == 1


def test_calls_are_deterministic_whatever_the_callers_stack_depth() -> None:
    # A structure nested ~900 deep would compare fine or raise RecursionError depending on how much of Python's
    # recursion limit is left; the sandbox bounds nesting itself (DATA_DEPTH_MAX, 400) before any native recursion,
    # so the outcome never depends on where the state machine happens to call from.
    source = put_program(
        "a = []\nb = []\nfor i in range(int(value)):\n    a = [a]\n    b = [b]\nctx.put('eq', str(a == b))"
    )
    runtime = TopicRuntime.start(source, None)

    def at_depth(depth: int, value: bytes) -> CallOutcome:
        if depth:
            return at_depth(depth - 1, value)
        return runtime.on_put(context(), b"k", value)

    results = set()
    for value in (b"300", b"399", b"400", b"401", b"900", b"1100"):
        outcomes = {at_depth(depth, value) for depth in (0, 50, 200, 400)}
        assert len(outcomes) == 1, (value, outcomes)
        results.add(outcomes.pop().ok)
    assert results == {True, False}  # the threshold lies in the range tried


def test_check_program_accepts_the_example_programs_and_refuses_bad_ones() -> None:
    check_program(put_program("ctx.put(key, value)"))
    with pytest.raises(ProgramRefused):
        check_program("import os\n")
    with pytest.raises(ProgramRefused):
        check_program(123)  # type: ignore[arg-type]


def test_start_refuses_unreadable_state() -> None:
    with pytest.raises(ProgramRefused) as refused:
        TopicRuntime.start("X = 1\n", b"not a state")
    assert "stored state" in refused.value.reason


def test_module_level_constants_are_read_only_but_usable() -> None:
    prelude = "TABLE = {'a': (1, 2)}\nNAMES = ('x', 'y')\nLIMIT = 10\n"
    assert run_put("ctx.put('v', str(TABLE['a'][1] + LIMIT) + NAMES[0])", prelude=prelude).events == (
        Emitted("PUT", b"v", b"12x"),
    )
    outcome = run_put("TABLE['b'] = 1", prelude=prelude)
    assert not outcome.ok
    assert "read-only" in outcome.reason


def test_the_language_subset_works() -> None:
    body = """
    import json
    from json import dumps
    d = {"n": 0}
    d["n"] += 2
    n = 5
    n -= 1
    chained = 0 < n <= 4 < len(value) + 10
    lazy = [0]
    def bump():
        lazy[0] += 1
        return lazy[0]
    lazily = 0 < bump() < 5
    items = sorted([3, 1, 2], key=lambda x: -x)
    pairs = list(zip("ab", range(2)))
    squares = {f"{i}": i * i for i in range(4)}
    text = "%s-%05.1f-%r" % ("a", 2.25, "b")
    parts = "a,b,,c".split(",")
    total = sum(x for x in range(10) if x % 2)
    first, *rest = [1, 2, 3]
    flags = [isinstance(n, int), isinstance(value, bytes), isinstance(1.5, (int, float)), isinstance(d, dict)]
    try:
        {}["missing"]
    except KeyError as e:
        caught = str(e)
    out = [d["n"], n, chained, lazily, lazy[0], items, pairs, squares, text, parts, total, first, rest, flags, caught,
           max(items), min(items, key=lambda x: abs(x - 2)), list(reversed(items)), list(enumerate("ab", 1)),
           list(map(str, [1, 2])), list(filter(None, [0, 1, 2])), any([0, 1]), all([]), divmod(7, 2), round(2.675, 2),
           int("ff", 16), int.from_bytes(b"\\x01\\x00", "big"), bytes.fromhex("0a0b"), (255).to_bytes(2, "big"),
           "é".encode(), b"\\xc3\\xa9".decode("utf-8"), "abc".upper().center(7, "*"), " x ".strip(),
           "a-b".replace("-", "+"),
           2 ** 100 % 1000, 7 // 2, -7 % 3, 1 << 10, abs(-3), chr(97), ord("a"), hex(255), len({"a": 1}),
           dumps({"b": [1, 2.5, None, True]}), json.loads('{"x": "y"}'), tuple([1, 2]), bool([]), f"{3.14159:.2f}",
           "x" in "xyz", 2 in [1, 2], "a" in {"a": 1}, ("a", 1) in {"a": 1}.items(), not_in_check()]
    ctx.put("out", repr(out))
    """
    prelude = "def not_in_check():\n    return 5 not in (1, 2)\n"
    outcome = run_put(body, value=b"abc", prelude=prelude)
    assert outcome.ok, outcome.reason
    expected = [
        2, 4, True, True, 1, [3, 2, 1], [("a", 0), ("b", 1)], {"0": 0, "1": 1, "2": 4, "3": 9}, "a-002.2-'b'",
        ["a", "b", "", "c"], 25, 1, [2, 3], [True, True, True, True], "'missing'", 3, 2, [1, 2, 3],
        [(1, "a"), (2, "b")], ["1", "2"], [1, 2], True, True, (3, 1), 2.67, 255, 256, b"\n\x0b", b"\x00\xff",
        b"\xc3\xa9", "é", "**ABC**", "x", "a+b", 376, 3, 2, 1024, 3, "a", 97, "0xff", 1,
        '{"b":[1,2.5,null,true]}', {"x": "y"}, (1, 2), False, "3.14", True, True, True, True, True,
    ]  # fmt: skip
    assert outcome.events == (Emitted("PUT", b"out", repr(expected).encode()),)


def test_caught_exceptions_from_lambdas_do_not_leak_recursion_depth() -> None:
    # A lambda that raises skips its depth decrement; the next except clause repairs the count.
    body = """
    fail = lambda: 1 / 0
    for i in range(200):
        try:
            fail()
        except ZeroDivisionError:
            pass
    def down(n):
        return 0 if n == 0 else down(n - 1)
    ctx.put("depth", str(down(45)))
    """
    assert run_put(body).events == (Emitted("PUT", b"depth", b"0"),)


def test_non_str_dict_keys_are_refused_everywhere() -> None:
    for body in ("d = {1: 2}", "d = {}\nd[1] = 2", "d = {k: 1 for k in range(3)}", "d = dict([(1, 2)])", "{}.get(1)"):
        outcome = run_put(body)
        assert not outcome.ok and "dict keys must be str" in outcome.reason, body


def test_reasons_of_faults_name_the_exception_and_line() -> None:
    outcome = run_put("x = 1\ny = {}['missing']")
    assert outcome.reason == "KeyError: 'missing' (line 4)"
    assert run_put("raise ValueError('bad input')").reason == "ValueError: bad input (line 3)"


def test_json_is_compact_ordered_and_deterministic() -> None:
    outcome = run_put(
        "import json\nd = {'b': 1, 'a': [1.5, 'é']}\n"
        "ctx.put('j', json.dumps(d))\nctx.put('s', json.dumps(d, sort_keys=True))"
    )
    assert outcome.events == (
        Emitted("PUT", b"j", '{"b":1,"a":[1.5,"é"]}'.encode()),
        Emitted("PUT", b"s", '{"a":[1.5,"é"],"b":1}'.encode()),
    )
    assert not run_put("import json\njson.loads('NaN')").ok
    assert not run_put("import json\njson.dumps(b'x')").ok
    big = "9" * 700
    assert not run_put(f"import json\njson.loads('{big}')").ok


def test_outcomes_are_values_the_state_machine_can_rely_on() -> None:
    outcome = run_put("ctx.put(key, value)")
    assert isinstance(outcome, CallOutcome) and outcome.ok and outcome.reason == ""
    assert all(isinstance(e, Emitted) for e in outcome.events)
    with pytest.raises(AttributeError):
        outcome.ok = False  # type: ignore[misc]
    assert json.dumps([e.kind for e in outcome.events]) == '["PUT"]'


def test_reasons_always_encode_as_utf8() -> None:
    # A program can build str with lone surrogates; the node must still be able to store and send the reason.
    for body in (r'ctx.reject("bad \udc80 x")', r'raise ValueError("\ud800")', r'ctx.put("\ud800", "x")'):
        outcome = run_put(body)
        assert not outcome.ok
        outcome.reason.encode("utf-8")


def test_describing_a_failure_never_fails() -> None:
    from laminar.node.sandbox._runtime import describe

    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe(Weird()) == "Weird"
    assert describe(ValueError(object())).startswith("ValueError: <object>")
    assert describe(KeyError("x" * 100000)).startswith("KeyError: 'xxx")
    assert len(describe(ValueError("é" * 5000)).encode()) <= 1024
