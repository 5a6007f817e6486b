"""Programs whose outcomes must not depend on the process that runs them, and a runner that prints those outcomes.

`python environment_programs.py MODE` runs every program of PROGRAMS (a fresh runtime each, one on_put) and prints
one JSON line per program: ok, reason, events and the state's bytes, or the refusal. MODE says how the calls are
made: "plain" (from the main thread), "frames" (beneath 300 Python frames and 40 C-level calls: comparisons that
call __eq__), "thread" (from a new thread, with the environment's default stack) or "small thread" (from a thread
started with a 64 KiB stack, too small for the native recursion a call may do: the sandbox must not run programs on
it). The test runs it under several environments (hash seeds, PYTHONINTMAXSTRDIGITS, stack and memory limits) and
compares the output byte for byte.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_programs import HOSTILE
from sandbox_helpers import context, put_program

from laminar.node.sandbox import ProgramRefused, TopicRuntime

_SMALL_STACK_BYTES = 64 << 10
_NESTED = "a = []\nb = []\nfor i in range({n}):\n    a = [a]\n    b = [b]\n"
_EDGES = (300, 399, 480, 520, 900, 980, 995, 1000, 1010, 2000, 20000)

PROGRAMS: dict[str, str] = {}
for _n in _EDGES:
    PROGRAMS[f"compare {_n}"] = put_program(_NESTED.format(n=_n) + "ctx.put('k', str(a == b))")
    PROGRAMS[f"repr {_n}"] = put_program(_NESTED.format(n=_n) + "ctx.put('k', str(len(repr(a))))")
    PROGRAMS[f"json.dumps {_n}"] = put_program("import json\n" + _NESTED.format(n=_n) + "ctx.put('k', json.dumps(a))")
    PROGRAMS[f"json.loads {_n}"] = put_program(
        f"import json\nx = json.loads('[' * {_n} + ']' * {_n})\nctx.put('k', str(len(x)))"
    )
    PROGRAMS[f"state {_n}"] = put_program(_NESTED.format(n=_n) + "ctx.state['a'] = a")
    PROGRAMS[f"sorted {_n}"] = put_program(_NESTED.format(n=_n) + "ctx.put('k', str(len(sorted([a, b]))))")
    PROGRAMS[f"caught {_n}"] = put_program(
        _NESTED.format(n=_n) + "try:\n    x = a == b\nexcept Exception as e:\n    ctx.put('k', str(e))"
    )
PROGRAMS["recursion"] = put_program("def f(n):\n    return f(n + 1)\nf(0)")
PROGRAMS["recursion caught"] = put_program(
    "def f(n):\n    try:\n        return f(n + 1)\n    except Exception:\n        return f(n + 1)\nf(0)"
)
PROGRAMS["big int text"] = put_program("x = 2 ** 2047 + 1\nctx.put('k', str(x) + f'{x:x}' + '%d' % x)")
PROGRAMS["int of 640 digits"] = put_program("ctx.put('k', str(int('9' * 640) % 1000))")
PROGRAMS["json big int"] = put_program("import json\nctx.put('k', str(json.loads('1' * 617) % 7))")
PROGRAMS["dict order"] = put_program(
    "d = {}\nfor i in range(100):\n    d[str(i * 7919 % 101)] = i\nctx.put('k', ','.join(d))\nctx.state['d'] = d"
)
PROGRAMS["from_bytes to text"] = put_program("x = int.from_bytes([255] * 2000, 'big')\nctx.put('k', str(x))")
PROGRAMS["a width behind a nested key"] = put_program("x = '%((x))300000000s' % {'(x)': 1}\nctx.put('k', x[:10])")
PROGRAMS["4 MiB of wide characters"] = put_program("x = '\\U0010ffff' * (1 << 20)\nctx.put('k', x[:10])")
PROGRAMS["deep tuple isinstance"] = put_program(
    "t = ()\nfor i in range(60000):\n    t = (t,)\nctx.put('k', str(isinstance(1, (t,))))"
)
for _name, _hostile in HOSTILE.items():
    if _hostile.verdict == "error" and ("deep" in _name or "recursion" in _name or "tuple" in _name):
        PROGRAMS[f"hostile {_name}"] = _hostile.source


def outcome(source: str) -> dict[str, object]:
    try:
        runtime = TopicRuntime.start(source, None)
    except ProgramRefused as refused:
        return {"refused": refused.reason}
    result = runtime.on_put(context(), b"k", b"v")
    events = [[e.kind, e.key.hex(), e.value.hex()] for e in result.events]
    return {"ok": result.ok, "reason": result.reason, "events": events, "state": runtime.state_bytes().hex()}


class _Deeper:
    """A comparison goes through C (PyObject_RichCompare), which counts against the recursion limit as a level of its
    own before it calls __eq__: a caller reached this way is deeper than its Python frames say."""

    def __init__(self, fn: Callable[[], None], python: int, c_calls: int) -> None:
        self.then = (fn, python, c_calls)

    def __eq__(self, other: object) -> bool:
        fn, python, c_calls = self.then
        _beneath_frames(fn, python - 1, c_calls - 1)
        return True

    __hash__ = None  # type: ignore[assignment]


def _beneath_frames(fn: Callable[[], None], python: int = 300, c_calls: int = 40) -> None:
    """Call fn beneath `python` Python frames, `c_calls` of them entered from C."""
    if python == 0:
        fn()
    elif c_calls:
        assert _Deeper(fn, python, c_calls) == 0
    else:
        _beneath_frames(fn, python - 1, 0)


def main(mode: str) -> None:
    lines: list[str] = []

    def run() -> None:
        for name, source in PROGRAMS.items():
            lines.append(json.dumps({"name": name, **outcome(source)}, sort_keys=True))

    if mode == "plain":
        run()
    elif mode == "frames":
        _beneath_frames(run)
    elif mode in ("thread", "small thread"):
        if mode == "small thread":
            threading.stack_size(_SMALL_STACK_BYTES)
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
