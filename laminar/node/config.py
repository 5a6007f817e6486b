"""Node configuration: a TOML file naming every node of the cluster, and which one this is.

    data_dir = "var/local-3"            # node N keeps its data in <data_dir>/node-N
    # durability = "fsync"              # default; "none" keeps the journal in the page cache only
    # raft_password = "..."             # optional: encrypts and authenticates Raft traffic
    # raft_log_entries_max = 2000       # compact the Raft journal (snapshot) past this many entries
    # tls_cert = "certs/node.pem"       # optional: serve the client port over TLS with this chain (PEM)
    # tls_key = "certs/node.key"        #   and this private key; both may also be set per node
    # tls_client_ca = "certs/ca.pem"    # optional: require client certificates signed by this CA

    [[nodes]]
    id = 1
    client = "127.0.0.1:7101"           # gRPC for clients and listeners
    raft = "127.0.0.1:7201"             # Raft between nodes; binds only to this address
    # metrics = "127.0.0.1:9101"        # optional: Prometheus metrics over HTTP (absent: disabled)

Relative paths are relative to the directory the node is started from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass

from laminar import limits
from laminar.errors import ConfigError


@dataclass(frozen=True)
class NodeAddress:
    id: int
    client: str
    raft: str
    metrics: str | None = None  # Prometheus HTTP endpoint, host:port; None: no metrics server
    tls_cert: str | None = None  # PEM certificate chain of the client port; None: plaintext
    tls_key: str | None = None  # PEM private key of that certificate


@dataclass(frozen=True)
class NodeConfig:
    node_id: int
    nodes: tuple[NodeAddress, ...]
    data_dir: str  # this node's own directory
    raft_password: str | None
    durability: str = "fsync"
    raft_log_entries_max: int = limits.RAFT_LOG_ENTRIES_MAX
    tls_client_ca: str | None = None  # PEM CA bundle; set: clients must present a certificate it signed
    fault_injection: bool = False  # tests only: answer InjectFault (cut Raft links on request)

    @property
    def me(self) -> NodeAddress:
        return next(n for n in self.nodes if n.id == self.node_id)

    @property
    def peers(self) -> tuple[NodeAddress, ...]:
        return tuple(n for n in self.nodes if n.id != self.node_id)


def _address(value: object, what: str) -> str:
    if not isinstance(value, str) or value.count(":") != 1 or not value.rsplit(":", 1)[1].isdigit():
        raise ConfigError(f"{what} must be 'host:port', got {value!r}")
    return value


DURABILITY_MODES = ("fsync", "none")


def load_config(path: str, node_id: int, durability: str | None = None) -> NodeConfig:
    """Read a cluster TOML; `durability` (from the command line) overrides the file's."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    nodes = []
    for i, entry in enumerate(raw.get("nodes", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise ConfigError(f"{path}: nodes[{i}] needs an integer id")
        nodes.append(
            NodeAddress(
                entry["id"],
                _address(entry.get("client"), f"{path}: nodes[{i}].client"),
                _address(entry.get("raft"), f"{path}: nodes[{i}].raft"),
                _address(entry["metrics"], f"{path}: nodes[{i}].metrics") if "metrics" in entry else None,
                _path(entry.get("tls_cert", raw.get("tls_cert")), f"{path}: tls_cert"),
                _path(entry.get("tls_key", raw.get("tls_key")), f"{path}: tls_key"),
            )
        )
    if not nodes:
        raise ConfigError(f"{path}: no [[nodes]]")
    if len({n.id for n in nodes}) != len(nodes):
        raise ConfigError(f"{path}: node ids must be unique")
    if node_id not in {n.id for n in nodes}:
        raise ConfigError(f"{path}: no node with id {node_id}")
    data_root = raw.get("data_dir", "var")
    password = raw.get("raft_password") or None
    durability = durability or str(raw.get("durability", "fsync"))
    if durability not in DURABILITY_MODES:
        raise ConfigError(f"{path}: durability must be one of {DURABILITY_MODES}, not {durability!r}")
    data_dir = os.path.join(str(data_root), f"node-{node_id}")
    entries_max = raw.get("raft_log_entries_max", limits.RAFT_LOG_ENTRIES_MAX)
    if not isinstance(entries_max, int) or not 2 <= entries_max <= limits.RAFT_LOG_ENTRIES_MAX:
        raise ConfigError(f"{path}: raft_log_entries_max must be an integer in 2..{limits.RAFT_LOG_ENTRIES_MAX}")
    for n in nodes:
        if (n.tls_cert is None) != (n.tls_key is None):
            raise ConfigError(f"{path}: node {n.id} needs both tls_cert and tls_key, or neither")
    client_ca = _path(raw.get("tls_client_ca"), f"{path}: tls_client_ca")
    return NodeConfig(node_id, tuple(nodes), data_dir, password, durability, entries_max, tls_client_ca=client_ca)


def _path(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a file path, got {value!r}")
    return value


def read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e}") from e


def node_ids(path: str) -> list[int]:
    """The ids of every node a config names."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    return [int(entry["id"]) for entry in raw.get("nodes", [])]
