"""Every ```python block in README.md and docs/*.md runs as written against a real cluster."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOCK_TIMEOUT_S = 60
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_LOCAL_ADDRESS = re.compile(r"127\.0\.0\.1:710(\d)")  # the addresses of `make cluster` (cluster/local-N.toml)


def python_blocks() -> list[tuple[str, int, str]]:
    """(file, line, source) of each python block, README first, then docs/ in name order."""
    blocks = []
    for path in [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]:
        with open(path) as f:
            text = f.read()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            blocks.append((os.path.relpath(path, ROOT), line, match.group(1)))
    return blocks


def test_the_docs_have_python_blocks_to_run() -> None:
    """The extraction finds the README's client example (so the test below cannot pass vacuously)."""
    sources = [source for path, _, source in python_blocks() if path == "README.md"]
    assert any("laminar.Client(addresses)" in source for source in sources)


def test_every_python_block_in_the_docs_runs_as_written(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """Each block, with `make cluster`'s addresses pointed at a test cluster, exits 0 within its timeout:
    the README's example finishes, and leaving `with` loses no write."""
    cluster = make_cluster(3)
    for path, line, source in python_blocks():
        runnable = _LOCAL_ADDRESS.sub(lambda m: cluster.address_of(int(m.group(1))), source)
        result = subprocess.run(
            [sys.executable, "-c", runnable], cwd=ROOT, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S
        )
        assert result.returncode == 0, f"{path}:{line} failed:\n{result.stderr[-3000:]}"
