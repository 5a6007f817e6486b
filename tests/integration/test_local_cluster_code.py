"""LocalCluster starts its nodes on the code the harness imported, not on whatever `laminar` package sits in
the working directory: an A/B of two revisions (one tree on PYTHONPATH, the harness started from another
checkout) measured one revision twice while `python -m` put the working directory first on sys.path."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config

START_TIMEOUT_S = 30.0


def test_nodes_run_the_imported_laminar_not_a_laminar_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoy `laminar` package in the working directory would leave a marker file and exit; the node must
    instead be the real one (it answers a client) and the decoy must never run."""
    decoy = tmp_path / "cwd" / "laminar"
    decoy.mkdir(parents=True)
    marker = tmp_path / "decoy-ran"
    (decoy / "__init__.py").write_text("")
    (decoy / "__main__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(decoy.parent)
    base = free_port_block(1)
    write_config(str(tmp_path / "c.toml"), 1, base, str(tmp_path / "data"))
    nodes = LocalCluster(str(tmp_path / "c.toml"), [1], log_dir=str(tmp_path))
    nodes.start_all()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts(base + 1):
            assert not os.path.exists(marker) and nodes.alive(1), "the node ran the working directory's laminar"
            assert time.monotonic() < deadline, "the node did not start listening"
            time.sleep(0.05)
        with laminar.Client([f"127.0.0.1:{base + 1}"]) as client:
            assert client.create_topic("t").committed(timeout=START_TIMEOUT_S).ok
        assert nodes.alive(1) and not os.path.exists(marker)
    finally:
        nodes.stop_all()


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
