"""The `laminar` command: run a node, manage topics, write, listen, and show cluster status.

Addresses default to the local cluster (127.0.0.1:7101-7103); `--addresses a,b,c` or the
LAMINAR_ADDRESSES environment variable override them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Any

from laminar.client import TLS, Client, Listener, change_membership, cluster_status
from laminar.errors import LaminarError

COMMAND_TIMEOUT_S = 30.0


def _cmd_cluster_run(args: argparse.Namespace) -> int:
    """Start every node of a config as a child process; Ctrl-C stops them all."""
    import signal

    from laminar.local_cluster import LocalCluster
    from laminar.node.config import node_ids

    cluster = LocalCluster(args.config, node_ids(args.config))
    signal.signal(signal.SIGTERM, lambda *_: cluster.stop_all())
    print(f"laminar: starting nodes {list(cluster.node_ids)} of {args.config}; Ctrl-C stops them", file=sys.stderr)
    cluster.start_all()
    try:
        cluster.wait()
    except KeyboardInterrupt:
        print("laminar: stopping the cluster", file=sys.stderr)
    finally:
        cluster.stop_all()
    return 0


def _cmd_cluster_change(args: argparse.Namespace) -> int:
    action = args.cluster_command
    raft = getattr(args, "raft", "") or ""
    client = getattr(args, "client", "") or ""
    peers = change_membership(args.addresses, action, str(args.id), raft, client, tls=_tls(args))
    for peer in peers:
        print(f"{peer.get('node_id', '?')}\t{peer.get('client_address', '')}\t{peer.get('raft_address', '')}")
    return 0


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--addresses", help="comma-separated node addresses (default: $LAMINAR_ADDRESSES or local)")
    parser.add_argument("--tls-ca", help="TLS: CA certificate(s) of the nodes, PEM (default: $LAMINAR_TLS_CA)")
    parser.add_argument("--tls-cert", help="TLS: this client's certificate, PEM (default: $LAMINAR_TLS_CERT)")
    parser.add_argument("--tls-key", help="TLS: this client's private key, PEM (default: $LAMINAR_TLS_KEY)")


def _tls(args: argparse.Namespace) -> TLS | None:
    """TLS settings from flags or the environment; None (plaintext) when none is given."""
    ca = args.tls_ca or os.environ.get("LAMINAR_TLS_CA")
    cert = args.tls_cert or os.environ.get("LAMINAR_TLS_CERT")
    key = args.tls_key or os.environ.get("LAMINAR_TLS_KEY")
    if not (ca or cert or key):
        return None
    return TLS.from_files(ca, cert, key)


def _print_commit(commit: Any) -> int:
    line = f"{commit.effect} at intention offset {commit.intention_offset}"
    print(line + (f": {commit.reason}" if commit.reason else ""))
    return 0 if commit.effect == "VALID" else 1


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: {"time", "level", "logger", "node", "message"[, "exc"]}.

    The standard library is enough for this (a dozen lines), so the node needs no logging
    dependency; the field names follow what log shippers (Loki, Elasticsearch, Vector) map by default.
    """

    def __init__(self, node_id: int) -> None:
        super().__init__()
        self._node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": self._node_id,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _cmd_node(args: argparse.Namespace) -> int:
    from laminar.node import load_config, run_node

    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(JsonLogFormatter(args.id))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s node-{args.id} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), handlers=[handler])
    config = load_config(args.config, args.id, args.durability)
    if args.fault_injection:
        config = dataclasses.replace(config, fault_injection=True)
    run_node(config)
    return 0


def _cmd_topic(args: argparse.Namespace) -> int:
    with Client(args.addresses, tls=_tls(args)) as client:
        if args.action == "create":
            program = None
            if args.program:
                with open(args.program, encoding="utf-8") as f:
                    program = f.read()
            pending = client.create_topic(args.topic, program=program, args=(args.args or "").encode())
        else:
            pending = client.destroy_topic(args.topic)
        return _print_commit(pending.committed(timeout=COMMAND_TIMEOUT_S))


def _cmd_put(args: argparse.Namespace) -> int:
    with Client(args.addresses, tls=_tls(args)) as client:
        return _print_commit(client.put(args.topic, args.key, args.value).committed(timeout=COMMAND_TIMEOUT_S))


def _cmd_delete(args: argparse.Namespace) -> int:
    with Client(args.addresses, tls=_tls(args)) as client:
        return _print_commit(client.delete(args.topic, args.key).committed(timeout=COMMAND_TIMEOUT_S))


def _cmd_get(args: argparse.Namespace) -> int:
    with Client(args.addresses, tls=_tls(args)) as client:
        value = client.get(args.topic, args.key, stale_ok=args.stale, timeout=COMMAND_TIMEOUT_S)
    if args.json:
        record = {
            "found": value.found,
            "value": _text(value.value),
            "value_offset": value.value_offset,
            "topic_offset": value.topic_offset,
            "intention_offset": value.intention_offset,
        }
        print(json.dumps(record))
    elif value.found:
        print(_text(value.value))
    else:
        print(
            f"laminar: {args.key!r} is not set in {args.topic!r} (as of offset {value.topic_offset})", file=sys.stderr
        )
    return 0 if value.found else 1


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def _cmd_listen(args: argparse.Namespace) -> int:
    listener = Listener(
        args.addresses, args.topic, from_offset=args.from_offset, snapshot=args.snapshot, tls=_tls(args)
    )
    with listener:
        for count, event in enumerate(listener, start=1):
            if args.json:
                record = {
                    "offset": event.consequence_offset,
                    "intention_offset": event.intention_offset,
                    "kind": str(event.kind),
                    "key": _text(event.key),
                    "value": _text(event.value),
                }
                if event.snapshot:
                    record["snapshot"] = True
                print(json.dumps(record), flush=True)
            else:
                kind = "SNAPSHOT" if event.snapshot else str(event.kind)
                print(f"{event.consequence_offset}\t{kind}\t{_text(event.key)}\t{_text(event.value)}", flush=True)
            if args.count and count >= args.count:
                return 0
    return 0


_STATUS_COLUMNS = (
    "node_id",
    "address",
    "role",
    "term",
    "commit_index",
    "applied_index",
    "lag",
    "health",
    "intention_offset",
    "topics",
)


def _cmd_status(args: argparse.Namespace) -> int:
    nodes = cluster_status(args.addresses, tls=_tls(args))
    if args.json:
        print(json.dumps({"nodes": nodes}, indent=2))
    else:
        rows: list[tuple[str, ...]] = [_STATUS_COLUMNS]
        for node in nodes:
            if "error" in node:
                blank = ("",) * (len(_STATUS_COLUMNS) - 4)
                rows.append(("?", node["address"], "unreachable", *blank, node["error"][:40]))
                continue
            values = [node.get(c, "") for c in _STATUS_COLUMNS]
            values[6] = "?" if node.get("lag") is None else node["lag"]
            values[-1] = ",".join(node.get("topics", [])) or "-"
            rows.append(tuple(str(v) for v in values))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(_STATUS_COLUMNS))]
        for row in rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0 if any("error" not in n for n in nodes) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laminar", description="Laminar: a replicated, programmable event store.")
    sub = parser.add_subparsers(dest="command", required=True)

    node = sub.add_parser("node", help="run a node in the foreground")
    node.add_argument("--config", required=True, help="cluster TOML, e.g. cluster/local-3.toml")
    node.add_argument("--id", required=True, type=int, help="this node's id in the config")
    node.add_argument(
        "--durability",
        choices=["fsync", "none"],
        help="fsync (default): the journal is synced before entries are acknowledged; none: page cache only",
    )
    node.add_argument("--fault-injection", action="store_true", help="tests only: accept InjectFault calls")
    node.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    node.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object per line")
    node.set_defaults(func=_cmd_node)

    cluster = sub.add_parser("cluster", help="run a whole cluster on this machine")
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    run = cluster_sub.add_parser("run", help="start every node of a config in the foreground")
    run.add_argument("--config", required=True, help="cluster TOML, e.g. cluster/local-3.toml")
    run.set_defaults(func=_cmd_cluster_run)
    add = cluster_sub.add_parser("add", help="add a node to the running cluster (start it first)")
    add.add_argument("--id", required=True, type=int)
    add.add_argument("--raft", required=True, help="the new node's Raft host:port")
    add.add_argument("--client", required=True, help="the new node's client host:port")
    _client_args(add)
    add.set_defaults(func=_cmd_cluster_change)
    remove = cluster_sub.add_parser("remove", help="remove a node from the running cluster")
    remove.add_argument("--id", required=True, type=int)
    _client_args(remove)
    remove.set_defaults(func=_cmd_cluster_change)

    topic = sub.add_parser("topic", help="create or destroy a topic")
    topic.add_argument("action", choices=["create", "destroy"])
    topic.add_argument("topic")
    topic.add_argument("--program", help="path of a program source file (create only)")
    topic.add_argument("--args", help="arguments for the program's on_create, e.g. JSON")
    _client_args(topic)
    topic.set_defaults(func=_cmd_topic)

    put = sub.add_parser("put", help="put a value under a key of a topic")
    put.add_argument("topic")
    put.add_argument("key")
    put.add_argument("value")
    _client_args(put)
    put.set_defaults(func=_cmd_put)

    delete = sub.add_parser("delete", help="delete a key of a topic")
    delete.add_argument("topic")
    delete.add_argument("key")
    _client_args(delete)
    delete.set_defaults(func=_cmd_delete)

    listen = sub.add_parser("listen", help="print a topic's events as they commit, and keep following")
    listen.add_argument("topic")
    listen.add_argument("--from", dest="from_offset", type=int, default=0, help="start after this offset")
    listen.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
    listen.add_argument("--json", action="store_true", help="one JSON object per line")
    listen.add_argument("--snapshot", action="store_true", help="start with every live key's current value")
    _client_args(listen)
    listen.set_defaults(func=_cmd_listen)

    get = sub.add_parser("get", help="print the current value of a key (exit 1 if it is not set)")
    get.add_argument("topic")
    get.add_argument("key")
    get.add_argument("--stale", action="store_true", help="read any node's applied state (no read barrier)")
    get.add_argument("--json", action="store_true", help="value and offsets as one JSON object")
    _client_args(get)
    get.set_defaults(func=_cmd_get)

    status = sub.add_parser("status", help="show every node's role, term, indexes and topics")
    status.add_argument("--json", action="store_true", help='print {"nodes": [...]} for scripts')
    _client_args(status)
    status.set_defaults(func=_cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except LaminarError as e:
        print(f"laminar: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
