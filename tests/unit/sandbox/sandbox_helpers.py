"""Helpers shared by the sandbox tests: build programs from handler bodies, call them, time them."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from laminar.node.sandbox import CallContext, CallOutcome, TopicRuntime

PROGRAMS = Path(__file__).resolve().parents[3] / "programs"
T = TypeVar("T")
CLIENT = "6f1c2a3e-0000-4000-8000-000000000001"
OTHER_CLIENT = "6f1c2a3e-0000-4000-8000-000000000002"


def program_source(name: str, **constants: int) -> str:
    """The source of programs/<name>.py, with module constants replaced (to test bounds quickly)."""
    source = (PROGRAMS / f"{name}.py").read_text()
    for constant, value in constants.items():
        lines = [f"{constant} = {value}" if line.startswith(f"{constant} = ") else line for line in source.splitlines()]
        source = "\n".join(lines) + "\n"
    return source


def put_program(body: str, prelude: str = "") -> str:
    """A program whose on_put runs `body` (indented for you)."""
    return (
        textwrap.dedent(prelude) + "\ndef on_put(ctx, key, value):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    )


def context(offset: int = 10, client_id: str = CLIENT, topic: str = "t", nonce: int | None = None) -> CallContext:
    return CallContext(topic=topic, offset=offset, client_id=client_id, nonce=offset if nonce is None else nonce)


def run_put(body: str, key: bytes = b"k", value: bytes = b"v", prelude: str = "") -> CallOutcome:
    """Start a fresh runtime for `body` and call its on_put once."""
    return TopicRuntime.start(put_program(body, prelude), None).on_put(context(), key, value)


def timed(fn: Callable[..., T], *args: object) -> tuple[T, float]:
    """(fn(*args), milliseconds of CPU it took: the box may be shared, so wall time would measure the others)."""
    start = time.process_time()
    result = fn(*args)
    return result, (time.process_time() - start) * 1000
