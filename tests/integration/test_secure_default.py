"""Secure by default: a node exposed off loopback without raft_password or TLS refuses to start, in one line."""

from __future__ import annotations

import pathlib

import pytest
from test_cli_failures import run_cli, run_main

from laminar._cli._exits import Exit


def _config(tmp_path: pathlib.Path, name: str, client: str, raft: str) -> str:
    path = tmp_path / name
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n\n[[nodes]]\nid = 1\nclient = "{client}"\nraft = "{raft}"\n')
    return str(path)


def test_a_node_refuses_to_start_with_raft_or_client_port_exposed_unprotected(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`laminar node` with Raft off loopback and no password, or a plaintext client port off loopback, exits 78
    before binding anything, with one line saying why and which setting fixes it."""
    # 0.0.0.0 is never bound: the refusal comes before any socket is opened.
    raft_open = _config(tmp_path, "raft.toml", "127.0.0.1:7101", "0.0.0.0:7201")
    result, _ = run_cli("node", "--config", raft_open, "--id", "1")
    assert result.returncode == Exit.CONFIG, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"laminar: {raft_open}: node 1 refuses to start")
    assert "raft_password" in result.stderr and "accept_risk_raft_without_password = true" in result.stderr

    client_open = _config(tmp_path, "client.toml", "0.0.0.0:7101", "127.0.0.1:7201")
    code, _, stderr, _ = run_main(capsys, "node", "--config", client_open, "--id", "1")  # in-process: quicker
    assert code == Exit.CONFIG, stderr
    assert stderr.count("\n") == 1 and "client address 0.0.0.0:7101 is off loopback without TLS" in stderr
    assert "tls_cert and tls_key" in stderr and "accept_risk_client_without_tls = true" in stderr
    assert not (tmp_path / "data").exists(), "a refused node created its data directory"
