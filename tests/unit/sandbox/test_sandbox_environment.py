"""Verdicts independent of the machine: the same programs give byte-identical outcomes in every environment."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import laminar

RUNNER = Path(__file__).resolve().parent / "environment_programs.py"
TIMEOUT_S = 240


def _limits(stack_bytes: int | None, memory_bytes: int | None) -> Callable[[], None]:
    def apply() -> None:
        if stack_bytes is not None:
            resource.setrlimit(resource.RLIMIT_STACK, (stack_bytes, stack_bytes))
        if memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    return apply


def _run(mode: str, env: dict[str, str] | None = None, stack: int | None = None, memory: int | None = None) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONHASHSEED")}
    environment["PYTHONPATH"] = str(Path(laminar.__file__).resolve().parents[1])  # the laminar this test imports
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, str(RUNNER), mode],
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=_limits(stack, memory),
        check=False,
    )
    assert done.returncode == 0, f"{mode} {env} stack={stack} memory={memory}: exit {done.returncode}\n{done.stderr}"
    return done.stdout


# (mode, environment variables, RLIMIT_STACK, RLIMIT_AS)
VARIANTS: dict[str, tuple[str, dict[str, str], int | None, int | None]] = {
    "hash seed 1": ("plain", {"PYTHONHASHSEED": "1"}, None, None),
    "hash seed 4242, int digits 640": ("plain", {"PYTHONHASHSEED": "4242", "PYTHONINTMAXSTRDIGITS": "640"}, None, None),
    "int digits 0 (unlimited)": ("plain", {"PYTHONINTMAXSTRDIGITS": "0"}, None, None),
    "beneath 300 frames and 40 C calls": ("frames", {}, None, None),
    "a thread, 2 MiB default stacks": ("thread", {"PYTHONHASHSEED": "7"}, 2 << 20, None),
    "a thread, 384 MiB of address space": ("thread", {}, None, 384 << 20),
    "a thread of 64 KiB of stack": ("small thread", {}, None, None),
}


@pytest.fixture(scope="module")
def reference() -> str:
    return _run("plain", {"PYTHONHASHSEED": "0"})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_outcomes_are_byte_identical_across_environments(reference: str, variant: str) -> None:
    """Deep data, recursion, big ints and dict order give the same outcomes and state bytes in every environment."""
    mode, env, stack, memory = VARIANTS[variant]
    output = _run(mode, env, stack, memory)
    expected, got = reference.splitlines(), output.splitlines()
    assert len(got) == len(expected)
    differing = [(e, g) for e, g in zip(expected, got, strict=True) if e != g]
    assert not differing, differing[:3]
