"""The cluster config: unknown keys are refused with the closest known one; paths are relative to the file."""

from __future__ import annotations

import os
import pathlib

import pytest

from laminar.errors import ConfigError
from laminar.node.config import load_config, node_ids

NODES = '[[nodes]]\nid = 1\nclient = "127.0.0.1:7101"\nraft = "127.0.0.1:7201"\n'


def _write(path: pathlib.Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_a_misspelt_top_level_key_is_refused_naming_the_right_one(tmp_path: pathlib.Path) -> None:
    """`raft_pasword` would have run the Raft port unencrypted: it is an error that names raft_password."""
    config = _write(tmp_path / "c.toml", 'data_dir = "d"\nraft_pasword = "secret"\n' + NODES)
    with pytest.raises(ConfigError) as caught:
        load_config(config, 1)
    assert str(caught.value) == f"{config}: unknown key 'raft_pasword'; did you mean 'raft_password'?"
    with pytest.raises(ConfigError, match="raft_pasword"):
        node_ids(config)  # what `laminar cluster run` reads first


def test_an_unknown_node_key_is_refused_and_a_key_like_no_other_lists_the_known_ones(tmp_path: pathlib.Path) -> None:
    """A typo inside [[nodes]] names the closest node key; a key like nothing known lists them all."""
    config = _write(tmp_path / "c.toml", NODES.replace("raft =", "rafts ="))
    with pytest.raises(ConfigError, match=r"nodes\[0\]: unknown key 'rafts'; did you mean 'raft'\?"):
        load_config(config, 1)
    config = _write(tmp_path / "d.toml", "zzz = 1\n" + NODES)
    with pytest.raises(ConfigError, match="unknown key 'zzz'; known keys: data_dir, durability"):
        load_config(config, 1)


def test_relative_paths_are_relative_to_the_config_file_not_the_working_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data_dir and TLS files resolve against the config's directory, from whatever directory the node starts."""
    (tmp_path / "etc").mkdir()
    config = _write(
        tmp_path / "etc" / "c.toml", 'data_dir = "../data"\ntls_cert = "n.pem"\ntls_key = "/abs/n.key"\n' + NODES
    )
    for cwd in (tmp_path, tmp_path / "etc", pathlib.Path("/")):
        monkeypatch.chdir(cwd)
        loaded = load_config(os.path.relpath(config) if cwd != pathlib.Path("/") else config, 1)
        assert loaded.data_dir == str(tmp_path / "data" / "node-1")
        assert loaded.me.tls_cert == str(tmp_path / "etc" / "n.pem")
        assert loaded.me.tls_key == "/abs/n.key"


def test_a_top_level_key_written_after_the_nodes_is_explained(tmp_path: pathlib.Path) -> None:
    """TOML puts a key written below a [[nodes]] table into that node: the error says to move it up."""
    config = _write(tmp_path / "c.toml", NODES + 'raft_pasword = "secret"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config, 1)
    assert str(caught.value) == (
        f"{config}: nodes[0]: unknown key 'raft_pasword'; 'raft_password' is a top-level key: "
        "put it before the first [[nodes]]"
    )


def _exposed(tmp_path: pathlib.Path, top: str, client: str, raft: str) -> str:
    node = f'[[nodes]]\nid = 1\nclient = "{client}"\nraft = "{raft}"\n'
    return _write(tmp_path / "exposed.toml", f'data_dir = "d"\n{top}\n{node}')


def test_a_raft_port_off_loopback_needs_a_password_or_the_risk_accepted_in_so_many_words(
    tmp_path: pathlib.Path,
) -> None:
    """Raft off loopback without raft_password is refused in one line naming the fix; either fix lets it load."""
    config = _exposed(tmp_path, "", "127.0.0.1:7101", "10.1.2.3:7201")
    with pytest.raises(ConfigError) as caught:
        load_config(config, 1)
    message = str(caught.value)
    assert "\n" not in message and "Raft address 10.1.2.3:7201 is off loopback" in message
    assert "run code on this node" in message and "raft_password =" in message
    assert "accept_risk_raft_without_password = true" in message
    assert load_config(_exposed(tmp_path, 'raft_password = "s3cret"', "127.0.0.1:7101", "10.1.2.3:7201"), 1)
    accepted = load_config(
        _exposed(tmp_path, "accept_risk_raft_without_password = true", "127.0.0.1:7101", "0.0.0.0:7201"), 1
    )
    assert accepted.accept_risk_raft_without_password and accepted.raft_password is None
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(_exposed(tmp_path, 'accept_risk_raft_without_password = "yes"', "127.0.0.1:1", "1.2.3.4:2"), 1)


def test_a_client_port_off_loopback_needs_tls_or_the_risk_accepted_in_so_many_words(tmp_path: pathlib.Path) -> None:
    """A plaintext client port off loopback is refused; TLS or accept_risk_client_without_tls lets it load."""
    for host in ("0.0.0.0", "node1.example.com", "192.168.1.5"):
        with pytest.raises(ConfigError, match=f"client address {host}:7101 is off loopback without TLS"):
            load_config(_exposed(tmp_path, "", f"{host}:7101", "127.0.0.1:7201"), 1)
    tls = 'tls_cert = "n.pem"\ntls_key = "n.key"'
    assert load_config(_exposed(tmp_path, tls, "0.0.0.0:7101", "127.0.0.1:7201"), 1).me.tls_cert
    assert load_config(_exposed(tmp_path, "accept_risk_client_without_tls = true", "0.0.0.0:7101", "127.0.0.1:7201"), 1)
    for host in ("127.0.0.1", "127.9.9.9", "localhost"):  # loopback needs neither
        assert load_config(_exposed(tmp_path, "", f"{host}:7101", f"{host}:7201"), 1)
