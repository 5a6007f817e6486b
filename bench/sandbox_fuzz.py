"""Calibration fuzzer for the sandbox's cost model: `python -m bench.sandbox_fuzz` (or `make fuzz-sandbox`).

The cost model (docs/programs.md, "Cost model"; the table in laminar/node/sandbox/_meter.py) charges every operation
a program can reach by its worst case in the sizes of its inputs. This keeps it honest: it generates programs from a
grammar of what programs may do (OPERATIONS: an operation, the values it works on, and the adversarial sizes to try:
long needles, repeated patterns, deep nesting, wide dicts, big ints, sizes at CPython's algorithm thresholds), runs
each operation in a loop until a budget ends the call, and compares the CPU time it took with the steps it was
charged. It reports, per operation, the worst CPU time per charged step and the worst call.

Bounds (tests/unit/sandbox/test_sandbox_fuzz.py asserts them on a short run, times a margin for a shared machine):
  STEP_US_MAX   no operation may cost more than 1 us of CPU per charged step on this machine (2 cores shared with
                other jobs). The cost of a step is set by the cheapest guarded operations (a guard call and the loop
                around it, ~0.3-0.6 us here); the expensive operations are charged so that they stay under it.
  CALL_MS_MAX   no call may use more than 50 ms of CPU, whatever the program (issue 12): PROGRAM_STEPS_MAX (40,000)
                steps at STEP_US_MAX, plus what a call does that its steps do not pay for, bounded by the limits
                instead (STATE_AND_EVENTS_MS_MAX: keeping ctx.state of PROGRAM_STATE_OBJECTS_MAX objects, decoding it
                again, handing back PROGRAM_EVENTS_MAX events). WHOLE_CALLS are the worst such calls; they are run
                and reported after the operations.
  CALL_MIB_MAX  no call may allocate more than 64 MiB at its peak (tracemalloc, with --memory).
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
import tracemalloc
from dataclasses import dataclass

from laminar.limits import (
    PROGRAM_EMITTED_BYTES_MAX,
    PROGRAM_EVENTS_MAX,
    PROGRAM_STATE_BYTES_MAX,
    PROGRAM_STATE_OBJECTS_MAX,
    PROGRAM_STEPS_MAX,
)
from laminar.node.sandbox import CallContext, ProgramRefused, TopicRuntime
from laminar.node.sandbox import _runtime as runtime_module
from laminar.node.sandbox._meter import Meter

STEP_US_MAX = 1.0
CALL_MS_MAX = 50.0
STATE_AND_EVENTS_MS_MAX = 10.0  # the part of CALL_MS_MAX left for work that steps do not pay for (measured: ~4 ms)
CALL_MIB_MAX = 64.0
_CONTEXT = CallContext(topic="t", offset=1, client_id="c", nonce=1)


@dataclass(frozen=True)
class Operation:
    """`setup` builds the operands from sizes {n} and {m} (in the handler, not at module level), `op` is the
    expression or statement run in a loop until a budget ends the call."""

    setup: str
    op: str
    sizes: tuple[tuple[int, int], ...]


# Adversarial sizes: CPython switches algorithms at haystacks of 2,500 and 30,000 characters and needles of 6 and 100
# (Objects/stringlib/fastsearch.h); the value budget is 2**20.
_SEARCH = ((2499, 1200), (2499, 99), (29999, 99), (29999, 5), (100000, 99), (100000, 50000), (1000000, 1000))
_LINEAR = ((10, 0), (1000, 0), (100000, 0), (1000000, 0))
_ITEMS = ((10, 0), (1000, 0), (100000, 0))
_NEEDLE = "s = 'a' * {n}\np = 'a' * ({m} // 2) + 'b' + 'a' * ({m} - {m} // 2 - 1)\n"
_WIDE = "u = '\\u0100' * {n}\nc = 'b' * {m} + '\\u0100'\n"
_INTS = "x = (1 << {n}) - 1\ny = (1 << {m}) - 3\n"
_BIG = ((2040, 2040), (2040, 1020), (2040, 64), (64, 64))
_NESTED = "a = []\nb = []\nfor i in range({n}):\n    a = [a, i]\n    b = [b, i]\n"
_DICT = "d = {{str(i): i for i in range({n})}}\ne = dict(d)\n"

OPERATIONS: dict[str, Operation] = {
    "str in (search)": Operation(_NEEDLE, "x = p in s", _SEARCH),
    "str.find": Operation(_NEEDLE, "x = s.find(p)", _SEARCH),
    "str.count": Operation(_NEEDLE, "x = s.count(p)", _SEARCH),
    "str.partition": Operation(_NEEDLE, "x = s.partition(p)", _SEARCH),
    "str.split(sep)": Operation(_NEEDLE, "x = s.split(p)", _SEARCH),
    "str.replace": Operation(_NEEDLE, "x = s.replace(p, 'x')", _SEARCH),
    "str.rfind": Operation(_NEEDLE, "x = s.rfind(p)", _SEARCH),
    "str.rpartition": Operation(_NEEDLE, "x = s.rpartition(p)", _SEARCH),
    "str.rsplit(sep)": Operation(_NEEDLE, "x = s.rsplit(p)", _SEARCH),
    "bytes.rfind": Operation(_NEEDLE + "s = s.encode()\np = p.encode()\n", "x = s.rfind(p)", _SEARCH),
    "bytes in (search)": Operation(_NEEDLE + "s = s.encode()\np = p.encode()\n", "x = p in s", _SEARCH),
    "str.strip(chars)": Operation(_WIDE, "x = u.strip(c)", ((1000, 1000), (60000, 60000), (200000, 5))),
    "str.rstrip(chars)": Operation(_WIDE, "x = u.rstrip(c)", ((1000, 1000), (60000, 60000))),
    "str.startswith(tuple)": Operation(_NEEDLE + "t = (p,) * 1000\n", "x = s.startswith(t)", ((100000, 1000),)),
    "str ==": Operation("s = 'a' * {n}\nt = 'a' * {n}\n", "x = s == t", _LINEAR),
    "str <": Operation("s = 'a' * {n}\nt = 'a' * {n} + 'b'\n", "x = s < t", _LINEAR),
    "str +": Operation("s = 'a' * {n}\n", "x = s + s", ((10, 0), (1000, 0), (500000, 0))),
    "str + (wide)": Operation("s = '\\u0100' * {n}\n", "x = s + s", ((10, 0), (100000, 0))),
    "str *": Operation("s = 'ab'\n", "x = s * {n}", _LINEAR),
    "str slice": Operation("s = 'a' * {n}\n", "x = s[1:]", _LINEAR),
    "str.upper": Operation("s = 'a' * {n}\n", "x = s.upper()", _LINEAR),
    "str.title (wide)": Operation("s = '\\u0101 ' * ({n} // 2)\n", "x = s.title()", _LINEAR),
    "str.splitlines": Operation("s = '\\n' * {n}\n", "x = s.splitlines()", _LINEAR),
    "str.split()": Operation("s = 'a ' * ({n} // 2)\n", "x = s.split()", _LINEAR),
    "str.join": Operation("l = ['ab'] * {n}\n", "x = ','.join(l)", _ITEMS),
    "str.encode": Operation("s = '\\u0100' * {n}\n", "x = s.encode()", ((10, 0), (200000, 0))),
    "bytes.decode": Operation("b = 'é'.encode() * {n}\n", "x = b.decode()", ((10, 0), (200000, 0))),
    "bytes.hex": Operation("b = b'a' * {n}\n", "x = b.hex()", _LINEAR[:3]),
    "str.center": Operation("s = 'a'\n", "x = s.center({n})", _LINEAR),
    "str.expandtabs": Operation("s = '\\t' * {n}\n", "x = s.expandtabs(8)", ((10, 0), (100000, 0))),
    "f-string": Operation("s = 'a' * {n}\n", "x = f'{{s}}{{s}}'", _LINEAR[:3]),
    "f-string width": Operation("", "x = f'{{1:>{n}}}'", _LINEAR),
    "% format": Operation("s = 'a' * {n}\n", "x = '%s,%s' % (s, s)", _LINEAR[:3]),
    "% format keys": Operation("f = '%(a)s' * {n}\nd = {{'a': 'x'}}\n", "x = f % d", ((10, 0), (10000, 0))),
    "% format parens": Operation(
        "f = '%(' * {n} + ')s'\n", "try:\n    x = f % {{}}\nexcept ValueError:\n    pass", ((10, 0), (30000, 0))
    ),
    "repr(list)": Operation("l = ['ab'] * {n}\n", "x = repr(l)", _ITEMS),
    "str(nested)": Operation(_NESTED, "x = str(a)", ((10, 0), (400, 0))),
    "json.loads": Operation("import json\ntext = '[' + '1,' * {n} + '1]'\n", "x = json.loads(text)", _ITEMS),
    "json.loads deep": Operation("import json\ntext = '[' * {n} + ']' * {n}\n", "x = json.loads(text)", ((400, 0),)),
    "json.dumps": Operation("import json\nl = [{{'a': 'b'}}] * {n}\n", "x = json.dumps(l)", _ITEMS),
    "int *": Operation(_INTS, "z = x * y", _BIG),
    "int //": Operation(_INTS, "z = x // y", _BIG),
    "int %": Operation(_INTS, "z = x % y", _BIG),
    "int divmod": Operation(_INTS, "z = divmod(x, y)", _BIG),
    "int **": Operation("x = 3\n", "z = x ** {n}", ((100, 0), (1290, 0))),
    "int <<": Operation("x = 3\n", "z = x << {n}", ((100, 0), (2040, 0))),
    "int &": Operation(_INTS, "z = x & y", _BIG),
    "int >>": Operation(_INTS, "z = x >> 7", _BIG),
    "str(int)": Operation(_INTS, "z = str(x)", _BIG),
    "int(str)": Operation("s = '9' * {n}\n", "z = int(s)", ((10, 0), (600, 0))),
    "bytes(list)": Operation("l = [255] * {n}\n", "z = bytes(l)", _ITEMS),
    "int.from_bytes": Operation("b = b'\\xff' * {n}\n", "z = int.from_bytes(b, 'big')", ((8, 0), (256, 0))),
    "int.to_bytes": Operation(_INTS, "z = x.to_bytes(256, 'big')", _BIG),
    "hex(int)": Operation(_INTS, "z = hex(x)", _BIG),
    "list ==": Operation("l = [0] * {n}\nk = [0] * {n}\n", "x = l == k", _ITEMS),
    "nested ==": Operation(_NESTED, "x = a == b", ((10, 0), (400, 0))),
    "list in": Operation("l = [0] * {n}\n", "x = -1 in l", _ITEMS),
    "list.index(str)": Operation("l = ['a' * 100] * {n}\n", "x = l.count('a' * 99 + 'b')", _ITEMS),
    "list +": Operation("l = [0] * {n}\n", "x = l + l", _ITEMS),
    "list *": Operation("l = [0, 1]\n", "x = l * {n}", _ITEMS),
    "list.sort": Operation(
        "l = [(i * 7919) % 10007 for i in range({n})]\n", "k = l.copy()\nk.sort()", ((10, 0), (1000, 0), (30000, 0))
    ),
    "sorted(str)": Operation("l = ['a' * 50 + str(i % 97) for i in range({n})]\n", "x = sorted(l)", ((1000, 0),)),
    "sorted(key)": Operation("l = list(range({n}))\n", "x = sorted(l, key=lambda v: -v)", ((1000, 0), (20000, 0))),
    "min/max": Operation("l = list(range({n}))\n", "x = min(l) + max(l)", _ITEMS),
    "sum": Operation("l = list(range({n}))\n", "x = sum(l)", _ITEMS),
    "list.insert/pop": Operation("l = [0] * {n}\n", "l.insert(0, 1)\nl.pop(0)", _ITEMS),
    "list(range)": Operation("", "x = list(range({n}))", _ITEMS),
    "dict(dict)": Operation(_DICT, "x = dict(d)", _ITEMS),
    "dict **": Operation(_DICT, "x = {{**d, 'z': 1}}", _ITEMS),
    "dict |": Operation(_DICT, "x = d | e", _ITEMS),
    "dict.update": Operation(_DICT, "x = {{'z': 1}}\nx.update(d)", _ITEMS),
    "dict.copy": Operation(_DICT, "x = d.copy()", _ITEMS),
    "dict ==": Operation(_DICT, "x = d == e", _ITEMS),
    "dict items ==": Operation(_DICT, "x = d.items() == e.items()", _ITEMS),
    "dict(pairs)": Operation("p = [(str(i), i) for i in range({n})]\n", "x = dict(p)", _ITEMS),
    "isinstance(tuple)": Operation("t = (str,) * {n} + (int,)\n", "x = isinstance(1, t)", ((10, 0), (5000, 0))),
    "zip": Operation("l = list(range({n}))\n", "x = list(zip(l, l))", _ITEMS),
    "any(list)": Operation("l = [0] * {n}\n", "x = any(l)", _ITEMS),
    "comprehension": Operation("", "x = [i for i in range({n})]", _ITEMS),
    "ctx.put": Operation("v = b'x' * {n}\n", "ctx.put('k', v)", ((1, 0), (1000, 0), (1000000, 0))),
    "ctx.state store": Operation("l = list(range({n}))\n", "ctx.state['l'] = l", ((10, 0), (1000, 0))),
}


# Whole calls that do, on top of a full step budget spent on the costliest operation per step (int divmod, see the
# table), the most work their steps do not pay for: each keeps the largest state a call can (aliased, so the next call
# decodes it afresh), or emits the most events. `{k}` is set so that the loop spends all the steps the rest leaves
# (whole_call_ms calibrates it). Each runs three times in a row, so the later calls decode the state the first kept.
_SPIN = "    x = (1 << 2040) - 1\n    y = (1 << 64) - 3\n    for i in range({k}):\n        z = divmod(x, y)\n"
_HANDLER = "def on_put(ctx, key, value):\n    s = ctx.state.get('x')\n"
WHOLE_CALLS: dict[str, str] = {
    "divmod spin, then the most state objects": (
        _HANDLER + f"    ctx.state['x'] = [[]] * {PROGRAM_STATE_OBJECTS_MAX - 16}\n" + _SPIN
    ),
    "divmod spin, then the most state bytes": (
        _HANDLER + f"    ctx.state['x'] = ['y' * 60] * {PROGRAM_STATE_BYTES_MAX // 66}\n" + _SPIN
    ),
    "divmod spin, then the most events": (
        _HANDLER
        + f"    v = b'x' * {PROGRAM_EMITTED_BYTES_MAX // PROGRAM_EVENTS_MAX - 8}\n"
        + f"    for i in range({PROGRAM_EVENTS_MAX}):\n        ctx.put('k', v)\n"
        + _SPIN
    ),
}
_SPIN_MARGIN_STEPS = 200  # left unspent, so that the call ends OK


def _steps_of(source: str) -> int:
    """Steps one call of `source` uses (on a fresh runtime)."""
    runtime = TopicRuntime.start(source, None)
    saved = runtime_module.Meter
    runtime_module.Meter = _RecordingMeter  # type: ignore[misc]
    try:
        outcome = runtime.on_put(_CONTEXT, b"k", b"v")
    finally:
        runtime_module.Meter = saved  # type: ignore[misc]
    assert outcome.ok, outcome.reason
    return _steps_used()


def whole_call_ms(template: str, calls: int = 3) -> tuple[float, int, str]:
    """The CPU of the slowest of `calls` calls in a row of `template` with its loop spending the steps left, each call
    followed by encoding its state; the steps a call used, and the last call's outcome."""
    base, hundred = _steps_of(template.format(k=0)), _steps_of(template.format(k=100))
    k = max(0, (PROGRAM_STEPS_MAX - _SPIN_MARGIN_STEPS - base) * 100 // max(hundred - base, 1))
    source = template.format(k=k)
    steps = _steps_of(source)
    runtime = TopicRuntime.start(source, None)
    worst, reason = 0.0, ""
    for i in range(calls):
        start = time.process_time()
        outcome = runtime.on_put(CallContext(topic="t", offset=i + 1, client_id="c", nonce=i + 1), b"k", b"v")
        runtime.state_bytes()
        worst = max(worst, (time.process_time() - start) * 1000)
        reason = "ok" if outcome.ok else outcome.reason
    return worst, steps, reason


def _program(operation: Operation, n: int, m: int) -> str:
    setup = operation.setup.format(n=n, m=m)
    op = operation.op.format(n=n, m=m)
    imports = "".join(line + "\n" for line in setup.splitlines() if line.startswith("import "))
    setup_lines = [line for line in setup.splitlines() if not line.startswith("import ")]
    body = "".join(f"    {line}\n" for line in setup_lines)
    loop = "".join(f"        {line}\n" for line in op.splitlines())
    handler = "def on_put(ctx, key, value):\n"
    return f"{imports}{handler}{body}    if value == b'setup':\n        return\n    while True:\n{loop}"


class _RecordingMeter(Meter):
    last: Meter | None = None

    def __init__(self, steps: int = PROGRAM_STEPS_MAX) -> None:
        super().__init__(steps)
        _RecordingMeter.last = self


def _steps_used() -> int:
    meter = _RecordingMeter.last
    assert meter is not None
    return PROGRAM_STEPS_MAX - max(meter.left, 0)


@dataclass
class Sample:
    name: str
    n: int
    m: int
    step_us: float  # CPU per charged step of the operation
    call_ms: float  # CPU of the whole call
    steps: int
    reason: str
    peak_mib: float = 0.0


class _Capped(Exception):
    """A sample ran past --cap-s of CPU (only for measuring code whose charges are far too low): the call ends
    there, and its CPU per step so far is a lower bound of the operation's."""


def _cap(signum: int, frame: object) -> None:
    raise _Capped


def _peak_mib(runtime: TopicRuntime, cap_s: float) -> float:
    """The peak of what the operation's call allocates, in MiB."""
    tracemalloc.start()
    if cap_s:
        signal.setitimer(signal.ITIMER_PROF, cap_s * 4)
    try:
        runtime.on_put(_CONTEXT, b"k", b"run")
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        peak = tracemalloc.get_traced_memory()[1] / (1 << 20)
        tracemalloc.stop()
    return peak


def measure(name: str, n: int, m: int, memory: bool = False, cap_s: float = 0.0) -> Sample | None:
    """Run OPERATIONS[name] at sizes (n, m): its CPU per charged step and its call's CPU (and peak memory)."""
    source = _program(OPERATIONS[name], n, m)
    try:
        runtime = TopicRuntime.start(source, None)
    except ProgramRefused as refused:
        return Sample(name, n, m, 0.0, 0.0, 0, f"refused: {refused.reason}")
    saved = runtime_module.Meter
    runtime_module.Meter = _RecordingMeter  # type: ignore[misc]
    try:
        start = time.process_time()
        ready = runtime.on_put(_CONTEXT, b"k", b"setup")
        setup_s, setup_steps = time.process_time() - start, _steps_used()
        if not ready.ok or setup_steps > PROGRAM_STEPS_MAX // 2:
            return None  # the operands cost most of the budget: too few steps left to measure the operation
        if cap_s:
            signal.setitimer(signal.ITIMER_PROF, cap_s)
        start = time.process_time()
        try:
            outcome = runtime.on_put(_CONTEXT, b"k", b"run")
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        call_s, steps = time.process_time() - start, _steps_used()
        peak = _peak_mib(runtime, cap_s) if memory else 0.0  # again: tracemalloc slows the call several times
    finally:
        runtime_module.Meter = saved  # type: ignore[misc]
    op_steps = max(steps - setup_steps, 1)
    step_us = max(call_s - setup_s, 0.0) * 1e6 / op_steps
    return Sample(name, n, m, step_us, call_s * 1000, steps, outcome.reason[:60], peak)


def _sizes(operation: Operation, rng: random.Random, extra: int) -> list[tuple[int, int]]:
    """The operation's adversarial sizes, and `extra` random ones around them."""
    sizes = list(operation.sizes)
    for _ in range(extra):
        n, m = rng.choice(operation.sizes)
        sizes.append((max(1, int(n * rng.uniform(0.5, 1.0))), max(0, int(m * rng.uniform(0.5, 1.0)))))
    return sizes


def run(
    names: list[str], extra: int, seed: int, memory: bool, out: bool = True, cap_s: float = 0.0
) -> dict[str, Sample]:
    """The worst sample (by CPU per step) of each operation, and, under "<op> (call)" and "<op> (peak)", its slowest
    call and its largest peak allocation."""
    rng = random.Random(seed)
    worst: dict[str, Sample] = {}
    for name in names:
        for n, m in _sizes(OPERATIONS[name], rng, extra):
            sample = measure(name, n, m, memory, cap_s)
            if sample is None:
                continue
            if name not in worst or sample.step_us > worst[name].step_us:
                worst[name] = sample
            call = f"{name} (call)"
            if call not in worst or sample.call_ms > worst[call].call_ms:
                worst[call] = sample
            peak = f"{name} (peak)"
            if peak not in worst or sample.peak_mib > worst[peak].peak_mib:
                worst[peak] = sample
        if out:
            w, c = worst[name], worst[f"{name} (call)"]
            mib = f" {worst[f'{name} (peak)'].peak_mib:9.1f}" if memory else ""
            print(
                f"{name:<24}{w.step_us:9.3f}  n={w.n:<8} m={w.m:<7}{c.call_ms:9.1f}{mib}  {c.reason}",
                flush=True,
            )
    return worst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", type=int, default=3, help="random sizes per operation beyond the fixed ones")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="also measure each call's peak allocation")
    parser.add_argument("--only", nargs="*", choices=sorted(OPERATIONS))
    parser.add_argument("--cap-s", type=float, default=0.0, help="end a call after this much CPU (lower bounds)")
    args = parser.parse_args(argv)
    names = args.only or list(OPERATIONS)
    mib = "  peak MiB" if args.memory else ""
    print(f"{'operation':<24}{'us/step':>9}  {'at sizes':<19}{'call ms':>9}{mib}  how the slowest call ended")
    signal.signal(signal.SIGPROF, _cap)
    worst = run(names, args.extra, args.seed, args.memory, cap_s=args.cap_s)
    step = max((s for k, s in worst.items() if not k.endswith((" (call)", " (peak)"))), key=lambda s: s.step_us)
    call = max(worst.values(), key=lambda s: s.call_ms)
    print(f"\nworst: {step.step_us:.3f} us/step ({step.name}, bound {STEP_US_MAX}); ", end="")
    print(f"slowest call {call.call_ms:.1f} ms ({call.name}, bound {CALL_MS_MAX})")
    if args.memory:
        peak = max(worst.values(), key=lambda s: s.peak_mib)
        print(f"largest peak allocation {peak.peak_mib:.1f} MiB ({peak.name}, bound {CALL_MIB_MAX})")
    print(f"\n{'whole call':<44}{'steps':>7}{'call ms':>9}  outcome (bound {CALL_MS_MAX} ms)")
    for name, template in WHOLE_CALLS.items():
        ms, steps, reason = whole_call_ms(template)
        print(f"{name:<44}{steps:>7}{ms:9.1f}  {reason[:60]}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
