"""The Makefile: `make help` lists every target, and `make cluster` installs only the runtime dependencies."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _phony_targets() -> list[str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE)
    assert match, "no .PHONY line in the Makefile"
    return match.group(1).split()


def _make(*args: str) -> str:
    result = subprocess.run(["make", "-s", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_help_lists_every_target_with_its_description() -> None:
    """`make help` (also plain `make`) prints one line per .PHONY target, each with a description."""
    listed = {}
    for line in _make("help").splitlines():
        name, _, description = line.strip().partition(" ")
        listed[name] = description.strip()
    assert set(listed) == set(_phony_targets())
    assert all(listed.values()), listed
    assert _make() == _make("help")


def test_make_cluster_installs_runtime_dependencies_only(tmp_path: pathlib.Path) -> None:
    """Into a fresh venv, `make cluster` installs the project without extras; `make test` adds the dev extras."""
    venv = f"VENV={tmp_path / 'venv'}"
    cluster = _make("-n", "cluster", venv)
    installs = [line for line in cluster.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs and all(line.rstrip().endswith("-e .") for line in installs), cluster
    assert "[dev]" not in cluster
    assert "-e '.[dev]'" in _make("-n", "test", venv)
