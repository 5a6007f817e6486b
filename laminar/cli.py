"""The `laminar` command: run a node or a local cluster, manage topics, write, read, listen, status.

Addresses default to the local cluster (127.0.0.1:7101-7103); `--addresses a,b,c` or the
LAMINAR_ADDRESSES environment variable override them. Every command that talks to a cluster gives
up within --timeout (default 3 s) when no node answers, and says which addresses it tried. The
commands live in laminar/_cli/; this module builds the parser and maps failures to exit codes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from laminar._cli import _auth, _calls, _consumers, _data, _status, _supervise
from laminar._cli._completion import script as completion_script
from laminar._cli._exits import EPILOG, CommandFailed, Exit, exit_code_of
from laminar._cli._output import add_output_flag, print_json, print_table
from laminar._cli._reach import require_answer
from laminar._cli._values import duration_ms
from laminar.client import TOKEN_ENV, change_membership
from laminar.errors import LaminarError

MEMBERSHIP_TIMEOUT_S = 60.0  # a membership change waits for a leader and a config commit


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("laminar")
    except PackageNotFoundError:
        ours = "unknown"
    return f"laminar {ours} (wire protocol laminar.v1, Python {sys.version.split()[0]})"


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
    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(JsonLogFormatter(args.id))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s node-{args.id} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), handlers=[handler])
    return _supervise.cmd_node(args)


def _cmd_cluster_change(args: argparse.Namespace) -> int:
    tls = _data.tls_of(args)
    found = require_answer(args.addresses, tls, args.timeout or _data.DEFAULT_TIMEOUT_S)
    peers = change_membership(
        found.ordered(),
        args.cluster_command,
        str(args.id),
        getattr(args, "raft", "") or "",
        getattr(args, "client", "") or "",
        timeout_s=args.timeout or MEMBERSHIP_TIMEOUT_S,
        tls=tls,
    )
    if args.output == "json":
        print_json({"peers": peers})
    else:
        rows = [[p.get("node_id", "?"), p.get("client_address", ""), p.get("raft_address", "")] for p in peers]
        print_table(["node_id", "client", "raft"], rows)
    return Exit.OK


def _cmd_completion(args: argparse.Namespace) -> int:
    print(completion_script(build_parser(), args.shell), end="")
    return Exit.OK


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--addresses", help="comma-separated node addresses (default: $LAMINAR_ADDRESSES or local)")
    parser.add_argument(
        "--timeout",
        type=_data.positive_seconds,
        metavar="SECONDS",
        help=f"give up after this long without an answer (default: ${_data.TIMEOUT_ENV} or "
        f"{_data.DEFAULT_TIMEOUT_S:g}; exit 69 if no node or leader answers, 75 if a write did not commit)",
    )
    parser.add_argument("--tls-ca", help="TLS: CA certificate(s) of the nodes, PEM (default: $LAMINAR_TLS_CA)")
    parser.add_argument("--tls-cert", help="TLS: this client's certificate, PEM (default: $LAMINAR_TLS_CERT)")
    parser.add_argument("--tls-key", help="TLS: this client's private key, PEM (default: $LAMINAR_TLS_KEY)")
    parser.add_argument("--token", help="<user>:<secret> when authorization is on (default: $LAMINAR_TOKEN)")


def _sub(
    parent: Any, name: str, help_text: str, func: Any = None, client: bool = True, output: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = parent.add_parser(
        name, help=help_text, description=help_text, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if func is not None:
        parser.set_defaults(func=func)
    if client:
        _client_args(parser)
    if output:
        add_output_flag(parser)
    return parser


VALUE_HELP = "the value: text, `-` for stdin, `@path` for a file's bytes (`@@x` for the text `@x`)"


def _node_parsers(sub: Any) -> None:
    node = _sub(sub, "node", "run a node in the foreground", _cmd_node, client=False)
    node.add_argument("--config", required=True, help="cluster TOML, e.g. cluster/local-3.toml")
    node.add_argument("--id", required=True, type=int, help="this node's id in the config")
    node.add_argument(
        "--durability",
        choices=["fsync", "none"],
        help="fsync (default): the journal is synced before entries are acknowledged; none: page cache only",
    )
    node.add_argument("--fault-injection", action="store_true", help="tests only: accept InjectFault calls")
    node.add_argument(
        "--clock-offset-ms",
        type=int,
        default=0,
        help="tests only: stamp log entries with this node's clock moved by this many ms (a skewed leader)",
    )
    node.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    node.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object per line")

    cluster = _sub(sub, "cluster", "run a whole cluster on this machine, or change its members", client=False)
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True, metavar="{run,add,remove}")
    run = _sub(
        cluster_sub, "run", "start every node of a config in the foreground", _supervise.cmd_cluster_run, client=False
    )
    run.add_argument("--config", required=True, help="cluster TOML, e.g. cluster/local-3.toml")
    add = _sub(
        cluster_sub, "add", "add a node to the running cluster (start it first)", _cmd_cluster_change, output=True
    )
    add.add_argument("--id", required=True, type=int)
    add.add_argument("--raft", required=True, help="the new node's Raft host:port")
    add.add_argument("--client", required=True, help="the new node's client host:port")
    remove = _sub(cluster_sub, "remove", "remove a node from the running cluster", _cmd_cluster_change, output=True)
    remove.add_argument("--id", required=True, type=int)


def _retention_arguments(parser: Any) -> None:
    group = parser.add_argument_group("retention (the oldest events past any limit are trimmed; default: keep all)")
    group.add_argument("--max-events", type=int, default=0, metavar="N", help="keep at most N events")
    group.add_argument("--max-bytes", type=int, default=0, metavar="N", help="keep at most N bytes of events")
    group.add_argument(
        "--max-age", type=duration_ms, default=0, metavar="AGE", help="keep events at most AGE old (e.g. 90s, 10m, 7d)"
    )


def _topic_parsers(sub: Any) -> None:
    topic = _sub(sub, "topic", "create, destroy, list or describe topics", client=False)
    topic_sub = topic.add_subparsers(
        dest="topic_command", required=True, metavar="{create,configure,destroy,list,describe}"
    )
    create = _sub(topic_sub, "create", "create a topic, plain or with a program", _data.cmd_topic_create, output=True)
    create.add_argument("topic")
    create.add_argument("--program", help="path of a program source file (`-`: stdin)")
    create.add_argument("--args", help="arguments for the program's on_create, e.g. JSON (`@path`, `-` as values)")
    _retention_arguments(create)
    configure = _sub(
        topic_sub,
        "configure",
        "change a topic's retention (no limit given: keep everything)",
        _data.cmd_topic_configure,
        output=True,
    )
    configure.add_argument("topic")
    _retention_arguments(configure)
    destroy = _sub(topic_sub, "destroy", "destroy a topic", _data.cmd_topic_destroy, output=True)
    destroy.add_argument("topic")
    _sub(topic_sub, "list", "list the live topics", _data.cmd_topic_list, output=True)
    describe = _sub(topic_sub, "describe", "a topic's program, offsets and size", _data.cmd_topic_describe, output=True)
    describe.add_argument("topic")


def _consumer_parsers(sub: Any) -> None:
    consumer = _sub(sub, "consumer", "a topic's durable consumers and groups (docs/consumers.md)", client=False)
    names = "{list,describe,reset,delete}"
    consumer_sub = consumer.add_subparsers(dest="consumer_command", required=True, metavar=names)
    listing = _sub(
        consumer_sub, "list", "a topic's consumers: position and lag", _consumers.cmd_consumer_list, output=True
    )
    listing.add_argument("topic")
    describe = _sub(consumer_sub, "describe", "one consumer or group", _consumers.cmd_consumer_describe, output=True)
    describe.add_argument("topic")
    describe.add_argument("name")
    reset = _sub(
        consumer_sub,
        "reset",
        "set a durable consumer's position (back or forth)",
        _consumers.cmd_consumer_reset,
        output=True,
    )
    reset.add_argument("topic")
    reset.add_argument("name")
    reset.add_argument(
        "--to", type=int, required=True, help="the new position: the next event read is the one after it"
    )
    delete = _sub(consumer_sub, "delete", "forget a consumer or group", _consumers.cmd_consumer_delete, output=True)
    delete.add_argument("topic")
    delete.add_argument("name")


def _calls_parsers(sub: Any) -> None:
    calls = _sub(sub, "calls", "a topic's calls to services in flight (docs/pipelines.md)", client=False)
    calls_sub = calls.add_subparsers(dest="calls_command", required=True, metavar="{list,describe}")
    listing = _sub(
        calls_sub, "list", "a topic's call counters and its calls in flight", _calls.cmd_calls_list, output=True
    )
    listing.add_argument("topic")
    describe = _sub(
        calls_sub,
        "describe",
        "one call in flight, or the topic's call counters",
        _calls.cmd_calls_describe,
        output=True,
    )
    describe.add_argument("topic")
    describe.add_argument("call_id", type=int, nargs="?", help="a call id (as `calls list` shows); none: the counters")


def _data_parsers(sub: Any) -> None:
    put = _sub(sub, "put", "put a value under a key of a topic", _data.cmd_put, output=True)
    put.add_argument("topic")
    put.add_argument("key")
    put.add_argument("value", help=VALUE_HELP)

    delete = _sub(sub, "delete", "delete a key of a topic", _data.cmd_delete, output=True)
    delete.add_argument("topic")
    delete.add_argument("key")

    get = _sub(sub, "get", "print the current value of a key (exit 1 if it is not set)", _data.cmd_get, output=True)
    get.add_argument("topic")
    get.add_argument("key")
    get.add_argument("--stale", action="store_true", help="read any node's applied state (no read barrier)")

    listen = _sub(
        sub, "listen", "print a topic's events as they commit, and keep following", _data.cmd_listen, output=True
    )
    listen.add_argument("topic")
    listen.add_argument("--from", dest="from_offset", type=int, default=0, help="start after this offset")
    listen.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
    listen.add_argument("--snapshot", action="store_true", help="start with every live key's current value")
    listen.add_argument(
        "--consumer", help="a durable consumer: start after its position, acknowledge each event once printed"
    )

    status = _sub(
        sub,
        "status",
        "every member's role, term, indexes and topics, and a summary line",
        _status.cmd_status,
        output=True,
    )
    del status  # flags only


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laminar",
        description="Laminar: a replicated, programmable event store.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _node_parsers(sub)
    _topic_parsers(sub)
    _consumer_parsers(sub)
    _calls_parsers(sub)
    _data_parsers(sub)
    _auth.add_parsers(sub, _sub)
    completion = _sub(
        sub,
        "completion",
        'print a shell completion script: eval "$(laminar completion bash)"',
        _cmd_completion,
        client=False,
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token_before = os.environ.get(TOKEN_ENV)
    if getattr(args, "token", None):
        os.environ[TOKEN_ENV] = args.token  # every channel this command opens sends it (client/_connect.py)
    try:
        return _run(args)
    finally:
        if token_before is None:  # main() may run inside a longer-lived process (tests): leave no trace
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = token_before


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except CommandFailed as failed:
        print(f"laminar: {failed.message}", file=sys.stderr)
        return failed.code
    except LaminarError as e:
        print(f"laminar: {e}", file=sys.stderr)
        return exit_code_of(e)
    except BrokenPipeError:  # `laminar listen ... | head`: the reader left
        return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
