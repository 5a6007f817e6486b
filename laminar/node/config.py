"""Node configuration: a TOML file naming every node of the cluster, and which one this is.

    data_dir = "var/local-3"            # node N keeps its data in <data_dir>/node-N (relative: to this file)
    # durability = "fsync"              # default; "none" keeps the journal in the page cache only
    # raft_password = "..."             # encrypts and authenticates Raft traffic (required off loopback)
    # raft_log_entries_max = 50         # also compact the Raft journal past this many entries (tests)
    # tls_cert = "certs/node.pem"       # optional: serve the client port over TLS with this chain (PEM)
    # tls_key = "certs/node.key"        #   and this private key; both may also be set per node
    # tls_client_ca = "certs/ca.pem"    # optional: require client certificates signed by this CA
    # accept_risk_raft_without_password = true   # run a Raft port off loopback without raft_password
    # accept_risk_client_without_tls = true      # serve a client port off loopback in plaintext
    # [serving]                         # optional: per-node serving limits (docs/operations.md)
    # sessions_max = 4096               #   client sessions; listeners_max, connections_max likewise
    # session_idle_s = 60.0             #   idle session reclaimed; stream_send_stall_s = 30.0
    # listen_bytes_per_s = 33554432     #   what every listener together may send per second

    [[nodes]]
    id = 1
    client = "127.0.0.1:7101"           # gRPC for clients and listeners
    raft = "127.0.0.1:7201"             # Raft between nodes; binds only to this address
    # metrics = "127.0.0.1:9101"        # optional: Prometheus metrics over HTTP (absent: disabled)

Relative paths (data_dir, TLS files) are relative to the directory of the config file, so a node
finds the same data whatever directory it is started from. Unknown keys are refused, naming the
closest known one: a misspelt `raft_pasword` must not run the Raft port unencrypted.

Secure by default: the Raft port speaks pickle, so whoever reaches it without `raft_password` can run
code on the node; a plaintext client port off loopback lets anyone on the network read and forge its
traffic. A node whose Raft address is off loopback without `raft_password`, or whose client address is
off loopback without TLS, refuses to start, unless the config accepts that risk in so many words
(the two `accept_risk_*` keys above). Threat model: docs/security.md.
"""

from __future__ import annotations

import difflib
import ipaddress
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
class ServingLimits:
    """What an operator may tune of how a node serves clients (the [serving] table); defaults in limits.py."""

    sessions_max: int = limits.SESSIONS_MAX_DEFAULT
    listeners_max: int = limits.LISTENERS_MAX_DEFAULT
    connections_max: int = limits.CONNECTIONS_MAX_DEFAULT
    session_idle_s: float = limits.SESSION_IDLE_S_DEFAULT
    stream_send_stall_s: float = limits.STREAM_SEND_STALL_S_DEFAULT
    listen_bytes_per_s: float = limits.LISTEN_BYTES_PER_S_DEFAULT


@dataclass(frozen=True)
class NodeConfig:
    node_id: int
    nodes: tuple[NodeAddress, ...]
    data_dir: str  # this node's own directory
    raft_password: str | None
    durability: str = "fsync"
    raft_log_entries_max: int = limits.RAFT_LOG_ENTRIES_MAX
    tls_client_ca: str | None = None  # PEM CA bundle; set: clients must present a certificate it signed
    accept_risk_raft_without_password: bool = False  # the config says so in so many words
    accept_risk_client_without_tls: bool = False
    fault_injection: bool = False  # tests only: answer InjectFault (cut Raft links on request)
    serving: ServingLimits = ServingLimits()
    clock_offset_ms: int = 0  # tests only: this node, as leader, stamps log entries this far off the real clock

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
TOP_LEVEL_KEYS = (
    "data_dir",
    "durability",
    "raft_password",
    "raft_log_entries_max",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "accept_risk_raft_without_password",
    "accept_risk_client_without_tls",
    "serving",
    "nodes",
)
SERVING_KEYS = tuple(ServingLimits.__dataclass_fields__)
NODE_KEYS = ("id", "client", "raft", "metrics", "tls_cert", "tls_key")


def _refuse_unknown_keys(table: dict[str, object], known: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            if not close and known is NODE_KEYS:
                top = difflib.get_close_matches(key, TOP_LEVEL_KEYS, n=1)
                if top:  # TOML puts every key after a [[nodes]] header into that node
                    hint = f"; {top[0]!r} is a top-level key: put it before the first [[nodes]]"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")


def _resolve(path: str, base_dir: str) -> str:
    """`path` as written if absolute, else relative to the config file's directory."""
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def load_config(path: str, node_id: int, durability: str | None = None) -> NodeConfig:
    """Read a cluster TOML; `durability` (from the command line) overrides the file's."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    base_dir = os.path.dirname(os.path.abspath(path))
    _refuse_unknown_keys(raw, TOP_LEVEL_KEYS, path)
    if not isinstance(raw.get("nodes", []), list):
        raise ConfigError(f"{path}: nodes must be a list of [[nodes]] tables")
    nodes = []
    for i, entry in enumerate(raw.get("nodes", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
            raise ConfigError(f"{path}: nodes[{i}] needs an integer id")
        _refuse_unknown_keys(entry, NODE_KEYS, f"{path}: nodes[{i}]")
        nodes.append(
            NodeAddress(
                entry["id"],
                _address(entry.get("client"), f"{path}: nodes[{i}].client"),
                _address(entry.get("raft"), f"{path}: nodes[{i}].raft"),
                _address(entry["metrics"], f"{path}: nodes[{i}].metrics") if "metrics" in entry else None,
                _path(entry.get("tls_cert", raw.get("tls_cert")), f"{path}: tls_cert", base_dir),
                _path(entry.get("tls_key", raw.get("tls_key")), f"{path}: tls_key", base_dir),
            )
        )
    if not nodes:
        raise ConfigError(f"{path}: no [[nodes]]")
    if len({n.id for n in nodes}) != len(nodes):
        raise ConfigError(f"{path}: node ids must be unique")
    if node_id not in {n.id for n in nodes}:
        raise ConfigError(f"{path}: no node with id {node_id}")
    data_root = raw.get("data_dir", "var")
    if not isinstance(data_root, str) or not data_root:
        raise ConfigError(f"{path}: data_dir must be a directory path, got {data_root!r}")
    password = raw.get("raft_password") or None
    durability = durability or str(raw.get("durability", "fsync"))
    if durability not in DURABILITY_MODES:
        raise ConfigError(f"{path}: durability must be one of {DURABILITY_MODES}, not {durability!r}")
    data_dir = os.path.join(_resolve(data_root, base_dir), f"node-{node_id}")
    entries_max = raw.get("raft_log_entries_max", limits.RAFT_LOG_ENTRIES_MAX)
    if not isinstance(entries_max, int) or not 2 <= entries_max <= limits.RAFT_LOG_ENTRIES_MAX:
        raise ConfigError(f"{path}: raft_log_entries_max must be an integer in 2..{limits.RAFT_LOG_ENTRIES_MAX}")
    for n in nodes:
        if (n.tls_cert is None) != (n.tls_key is None):
            raise ConfigError(f"{path}: node {n.id} needs both tls_cert and tls_key, or neither")
    client_ca = _path(raw.get("tls_client_ca"), f"{path}: tls_client_ca", base_dir)
    config = NodeConfig(
        node_id,
        tuple(nodes),
        data_dir,
        password,
        durability,
        entries_max,
        tls_client_ca=client_ca,
        accept_risk_raft_without_password=_flag(raw, "accept_risk_raft_without_password", path),
        accept_risk_client_without_tls=_flag(raw, "accept_risk_client_without_tls", path),
        serving=_serving(raw.get("serving", {}), path),
    )
    refusal = exposure_refusal(config)
    if refusal is not None:
        raise ConfigError(f"{path}: {refusal}")
    return config


def _flag(raw: dict[str, object], key: str, path: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: {key} must be true or false, got {value!r}")
    return value


def on_loopback(address: str) -> bool:
    """True if `host:port` names a loopback host (127.0.0.0/8 or localhost). A name other than
    localhost counts as off loopback: what it resolves to may change after the node starts."""
    host = address.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_refusal(config: NodeConfig) -> str | None:
    """Why this node must not start as configured (one line saying how to fix it), or None."""
    me = config.me
    if not on_loopback(me.raft) and config.raft_password is None and not config.accept_risk_raft_without_password:
        return (
            f"node {me.id} refuses to start: its Raft address {me.raft} is off loopback and raft_password is "
            "not set, so whoever reaches that port can run code on this node (Raft messages are pickles); "
            'set raft_password = "<a long random secret, the same on every node>" at the top of the config, '
            "or write accept_risk_raft_without_password = true to run so anyway"
        )
    if not on_loopback(me.client) and me.tls_cert is None and not config.accept_risk_client_without_tls:
        return (
            f"node {me.id} refuses to start: its client address {me.client} is off loopback without TLS, so "
            "anyone on that network can read and forge its clients' traffic; set tls_cert and tls_key "
            "(docs/security.md), or write accept_risk_client_without_tls = true to serve plaintext anyway"
        )
    return None


def _serving(table: object, path: str) -> ServingLimits:
    """The [serving] table: positive numbers only (a zero limit would refuse every client)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: serving must be a table ([serving])")
    _refuse_unknown_keys(table, SERVING_KEYS, f"{path}: [serving]")
    values: dict[str, int | float] = {}
    for key, value in table.items():
        wants_int = key.endswith("_max")
        ok = isinstance(value, int) if wants_int else isinstance(value, (int, float))
        if not ok or isinstance(value, bool) or value <= 0:
            unit = " of seconds" if key.endswith("_s") else ""
            kind = "a positive integer" if wants_int else f"a positive number{unit}"
            raise ConfigError(f"{path}: [serving] {key} must be {kind}, got {value!r}")
        values[key] = value if wants_int else float(value)
    return ServingLimits(**values)  # type: ignore[arg-type]


def _path(value: object, what: str, base_dir: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a file path, got {value!r}")
    return _resolve(value, base_dir)


def read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e}") from e


def node_ids(path: str) -> list[int]:
    """The ids of every node a config names (the whole config is checked first)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    entries = raw.get("nodes", [])
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise ConfigError(f"{path}: no [[nodes]]")
    first = entries[0].get("id")
    if not isinstance(first, int):
        raise ConfigError(f"{path}: nodes[0] needs an integer id")
    return [n.id for n in load_config(path, first).nodes]
