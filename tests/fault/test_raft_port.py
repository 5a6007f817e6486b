"""The Raft port: it binds only where the config says, and with a password a stranger can neither
join nor make a node unpickle what it sends."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
import zlib
from pathlib import Path

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config


class _Touch:
    """Unpickling this creates a file: proof that a node ran a stranger's pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.path),))


def _pysyncobj_frame(obj: object) -> bytes:
    data = zlib.compress(pickle.dumps(obj), 3)
    return struct.pack("i", len(data)) + data


def test_with_a_password_a_stranger_cannot_make_a_node_unpickle(make_cluster, tmp_path) -> None:
    """A connection without the password is dropped before its bytes are unpickled; the cluster
    (which shares the password) keeps working."""
    c = make_cluster(3, extra_config='raft_password = "correct horse battery staple"')
    with laminar.Client(c.addresses) as client:
        assert client.create_topic("t").committed(timeout=10).ok
    marker = tmp_path / "pwned"
    with open(c.cluster.config_path) as f:
        raft_ports = [int(line.split(":")[-1].strip('"\n')) for line in f if line.startswith("raft =")]
    for port in raft_ports:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            try:
                s.sendall(_pysyncobj_frame(_Touch(str(marker))))  # as the key exchange's first message
                time.sleep(0.3)
                s.sendall(_pysyncobj_frame(["status"]))  # a utility command
                s.sendall(_pysyncobj_frame(_Touch(str(marker))))
                time.sleep(0.3)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the node hung up on us: what it should do
    time.sleep(1.0)
    assert not marker.exists(), "a node unpickled a stranger's bytes"
    for node in (1, 2, 3):
        assert c.cluster.alive(node)
    with laminar.Client(c.addresses) as client:
        assert client.put("t", "k", "still serving").committed(timeout=10).ok


def test_raft_port_binds_only_to_the_configured_address(tmp_path) -> None:
    """A node whose Raft address is 127.0.0.2:P listens there, and not on 127.0.0.1:P."""
    base = free_port_block(1)
    raft_port = base + 2
    config = tmp_path / "c.toml"
    write_config(str(config), 1, base, str(tmp_path / "data"))
    config.write_text(config.read_text().replace(f"127.0.0.1:{raft_port}", f"127.0.0.2:{raft_port}"))
    cluster = LocalCluster(str(config), [1], log_dir=str(tmp_path))
    cluster.start_all()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.2", raft_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("the Raft port never opened on 127.0.0.2")
        try:
            socket.create_connection(("127.0.0.1", raft_port), timeout=1).close()
            raise AssertionError("the Raft port also listens on 127.0.0.1")
        except ConnectionRefusedError:
            pass
        assert os.path.exists(str(tmp_path / "node-1.log"))
    finally:
        cluster.stop_all()
