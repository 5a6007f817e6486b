"""Starting nodes: `laminar node` (one, in the foreground) and `laminar cluster run` (all of a config).

A node that cannot start says why in one line and exits non-zero (sysexits codes, see _exits):
an unusable config (78), a port another process holds or a data directory another node has open
(71). `cluster run` relays its nodes' output, and when one dies it says which, with its exit status
and the last lines of its log, which it also keeps in a file beside the node's data.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from laminar._cli._exits import CommandFailed, Exit
from laminar.local_cluster import LocalCluster
from laminar.node.config import NodeConfig, load_config, node_ids

log = logging.getLogger("laminar.node")

LOG_TAIL_LINES = 20  # lines of a dead node's log that `cluster run` repeats
SUPERVISE_POLL_S = 0.2  # how often `cluster run` checks that its nodes live
LOCK_FILE = "node.lock"


def check_ports(config: NodeConfig) -> None:
    """Fail in one line if a port of this node is held by another process. gRPC would raise a
    traceback for the client port, and pysyncobj retries the Raft port forever without a word."""
    me = config.me
    ports = [("client", me.client), ("raft", me.raft)] + ([("metrics", me.metrics)] if me.metrics else [])
    for what, address in ports:
        host, port = address.rsplit(":", 1)
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError as e:
            raise CommandFailed(Exit.CONFIG, f"node {config.node_id}: {what} address {address}: {e}") from None
        family, kind, proto, _, sockaddr = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
            try:
                probe.bind(sockaddr)
            except OSError as e:
                why = "is in use by another process" if e.errno == 98 else f"cannot be bound: {e.strerror}"
                raise CommandFailed(
                    Exit.STARTUP, f"node {config.node_id} cannot start: its {what} port {address} {why}"
                ) from None


@contextmanager
def data_dir_lock(config: NodeConfig) -> Iterator[None]:
    """Hold an exclusive lock on the node's data directory while it runs: a second node on the same
    directory (a second `make cluster`) fails at once, naming the process that has it."""
    os.makedirs(config.data_dir, exist_ok=True)
    path = os.path.join(config.data_dir, LOCK_FILE)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "?"
            raise CommandFailed(
                Exit.STARTUP,
                f"node {config.node_id} cannot start: its data directory {config.data_dir} is in use by "
                f"another running node (pid {owner}); stop it first",
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield


def cmd_node(args: argparse.Namespace) -> int:
    from laminar.node import run_node

    config = load_config(args.config, args.id, args.durability)
    if args.fault_injection:
        config = dataclasses.replace(config, fault_injection=True)
    if args.clock_offset_ms:
        config = dataclasses.replace(config, clock_offset_ms=args.clock_offset_ms)
    check_ports(config)
    with data_dir_lock(config):
        log.info("node %d: config %s, data directory %s", config.node_id, os.path.abspath(args.config), config.data_dir)
        run_node(config)
    return Exit.OK


# ---- cluster run --------------------------------------------------------------------------------


class _Relay:
    """Copies one node's output to our stderr and its log file, keeping the last lines."""

    def __init__(self, node_id: int, source: IO[bytes], log_path: str) -> None:
        self.node_id = node_id
        self.log_path = log_path
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._source = source
        self._thread = threading.Thread(target=self._run, name=f"relay-{node_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open(self.log_path, "ab") as log_file:
            for raw in iter(self._source.readline, b""):
                log_file.write(raw)
                log_file.flush()
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                self.tail.append(line)
                print(line, file=sys.stderr, flush=True)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


def _exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def cmd_cluster_run(args: argparse.Namespace) -> int:
    """Start every node of a config as a child process; Ctrl-C stops them all."""
    ids = node_ids(args.config)
    data_root = os.path.dirname(load_config(args.config, ids[0]).data_dir)
    os.makedirs(data_root, exist_ok=True)
    cluster = LocalCluster(args.config, ids, capture=True)
    stopping = threading.Event()  # set on SIGTERM or Ctrl-C: nodes exiting then is no news

    def on_sigterm(*_: object) -> None:
        stopping.set()
        cluster.stop_all()

    def on_sigint(*_: object) -> None:
        # Ctrl-C sets a flag the supervising loop reads, instead of raising KeyboardInterrupt wherever the main
        # thread is: raised inside the print of a death report, it was lost with the rest of the report, and
        # the loop then counted the nodes Ctrl-C stopped as failures (exit 70 instead of 0).
        stopping.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigint)
    print(
        f"laminar: starting nodes {ids} of {args.config}; data and logs (node-N.log) in {data_root}; Ctrl-C stops them",
        file=sys.stderr,
    )
    cluster.start_all()
    relays = {}
    for node_id, process in cluster.processes.items():
        assert process.stdout is not None
        relays[node_id] = _Relay(node_id, process.stdout, os.path.join(data_root, f"node-{node_id}.log"))
    try:
        code = _supervise(cluster, relays, stopping)
        if stopping.is_set():
            print("laminar: stopping the cluster", file=sys.stderr)
        return code
    finally:
        cluster.stop_all()
        for relay in relays.values():
            relay.join(1.0)
        if stopping.is_set():
            print("laminar: stopped", file=sys.stderr)


def _supervise(cluster: LocalCluster, relays: dict[int, _Relay], stopping: threading.Event) -> int:
    """Report each node that exits; return once all have (non-zero if any failed)."""
    reported: dict[int, int] = {}
    while len(reported) < len(cluster.processes):
        if stopping.is_set():
            return Exit.OK
        for node_id, process in cluster.processes.items():
            code = process.poll()
            if code is None or node_id in reported:
                continue
            if stopping.is_set():
                return Exit.OK  # stopped by Ctrl-C or SIGTERM: nodes exiting now is no news
            reported[node_id] = code
            relays[node_id].join(2.0)  # its last words first
            _report_death(node_id, code, relays[node_id], len(cluster.processes) - len(reported))
        time.sleep(SUPERVISE_POLL_S)
    failed = [code for code in reported.values() if code != 0]
    if not failed or stopping.is_set():
        return Exit.OK
    return Exit.STARTUP if all(c == Exit.STARTUP for c in failed) else Exit.SOFTWARE


def _report_death(node_id: int, code: int, relay: _Relay, still_running: int) -> None:
    lines = [f"laminar: node {node_id} exited ({_exit_status(code)}); {still_running} node(s) still running."]
    if relay.tail:
        lines.append(f"laminar: the last {len(relay.tail)} lines of its log ({relay.log_path}):")
        lines += [f"  | {line}" for line in relay.tail]
    else:
        lines.append(f"laminar: it wrote nothing (log: {relay.log_path})")
    print("\n".join(lines), file=sys.stderr, flush=True)
