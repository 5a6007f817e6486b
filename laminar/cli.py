"""The `laminar` command: run a node, manage topics, write, listen, and show cluster status.

Addresses default to the local cluster (127.0.0.1:7101-7103); `--addresses a,b,c` or the
LAMINAR_ADDRESSES environment variable override them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from laminar.client import Client, Listener, change_membership, cluster_status
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
    peers = change_membership(args.addresses, action, str(args.id), raft, client)
    for peer in peers:
        print(f"{peer.get('node_id', '?')}\t{peer.get('client_address', '')}\t{peer.get('raft_address', '')}")
    return 0


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--addresses", help="comma-separated node addresses (default: $LAMINAR_ADDRESSES or local)")


def _print_commit(commit: Any) -> int:
    line = f"{commit.effect} at intention offset {commit.intention_offset}"
    print(line + (f": {commit.reason}" if commit.reason else ""))
    return 0 if commit.effect == "VALID" else 1


def _cmd_node(args: argparse.Namespace) -> int:
    from laminar.node import load_config, run_node

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format=f"%(asctime)s node-{args.id} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    run_node(load_config(args.config, args.id, args.durability))
    return 0


def _cmd_topic(args: argparse.Namespace) -> int:
    with Client(args.addresses) as client:
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
    with Client(args.addresses) as client:
        return _print_commit(client.put(args.topic, args.key, args.value).committed(timeout=COMMAND_TIMEOUT_S))


def _cmd_delete(args: argparse.Namespace) -> int:
    with Client(args.addresses) as client:
        return _print_commit(client.delete(args.topic, args.key).committed(timeout=COMMAND_TIMEOUT_S))


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def _cmd_listen(args: argparse.Namespace) -> int:
    with Listener(args.addresses, args.topic, from_offset=args.from_offset) as listener:
        for count, event in enumerate(listener, start=1):
            if args.json:
                record = {
                    "offset": event.consequence_offset,
                    "intention_offset": event.intention_offset,
                    "kind": str(event.kind),
                    "key": _text(event.key),
                    "value": _text(event.value),
                }
                print(json.dumps(record), flush=True)
            else:
                print(f"{event.consequence_offset}\t{event.kind}\t{_text(event.key)}\t{_text(event.value)}", flush=True)
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
    "intention_offset",
    "durability",
    "topics",
)


def _cmd_status(args: argparse.Namespace) -> int:
    nodes = cluster_status(args.addresses)
    if args.json:
        print(json.dumps({"nodes": nodes}, indent=2))
    else:
        rows: list[tuple[str, ...]] = [_STATUS_COLUMNS]
        for node in nodes:
            if "error" in node:
                rows.append(("?", node["address"], "unreachable", "", "", "", "", "", node["error"][:40]))
                continue
            values = [node.get(c, "") for c in _STATUS_COLUMNS]
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
    node.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
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
    _client_args(listen)
    listen.set_defaults(func=_cmd_listen)

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
