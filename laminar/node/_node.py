"""One Laminar node: the composition root. It builds the parts and wires them together; the work
is done in the parts.

- `Store` (store/) and `StateMachine` (state_machine/): the replicated state and how an entry changes it.
- `Applier` (_applier.py): the apply pipeline: committed entries to store, event feed and acks, and
  the apply side of snapshots.
- `RaftAdapter` (raft/): the replicated log behind our own port, and `Proposer`, which packs client
  frames into entries.
- `NodeBackend` (_backend.py): what the gRPC service asks of the node (`service.NodeApi`).
- `SessionRouter`, `ListenService`, `LaminarServicer` (service/): the gRPC surface.
- Health and leader knowledge are watched here, since they join the Raft port and the server.

Threads: the Raft adapter's tick thread runs Raft and hands each committed entry to the applier
(which applies it in its own thread, or in place when it is one small intention); the proposer
thread packs client frames into entries (a frame that arrives when nothing is in flight is
proposed by the event loop as its session offers it); one asyncio gRPC server on its own event-loop
thread serves sessions, listeners and calls (blocking calls on small pools of its own); the watch
thread follows leader changes for health.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading

import grpc

from laminar import limits
from laminar.errors import ConfigError
from laminar.node._access import AuthAdmin
from laminar.node._applier import Applier
from laminar.node._backend import NodeBackend
from laminar.node._membership import Membership
from laminar.node._metrics import NodeMetrics, Sample
from laminar.node.auth import AuthInterceptor, Gate
from laminar.node.config import NodeConfig, read_pem
from laminar.node.raft import ClockMs, Proposer, RaftAdapter, RaftPort, RaftSettings, Role, SnapshotHooks, wall_clock_ms
from laminar.node.sandbox import program_thread_stacks
from laminar.node.service import (
    EventFeed,
    Health,
    LaminarServicer,
    ListenService,
    Offload,
    Server,
    SessionRouter,
    connection_limits,
    raise_nofile,
)
from laminar.node.state_machine import StateMachine
from laminar.node.store import Store

log = logging.getLogger("laminar.node")

SHUTDOWN_GRACE_S = 1.0
NODE_GIL_SWITCH_INTERVAL_S = 0.0005
WATCH_INTERVAL_S = 0.25  # how often health and leader knowledge are re-checked


def _claim_data_dir(data_dir: str, node_id: int) -> None:
    """Refuse to start on another node's data: joining as someone else corrupts the cluster."""
    os.makedirs(data_dir, exist_ok=True)
    marker = os.path.join(data_dir, "node-id")
    if os.path.exists(marker):
        with open(marker) as f:
            owner = f.read().strip()
        if owner != str(node_id):
            raise ConfigError(f"data directory {data_dir} belongs to node {owner}, not node {node_id}")
        return
    with open(marker + ".tmp", "w") as f:
        f.write(f"{node_id}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(marker + ".tmp", marker)


def _server_credentials(config: NodeConfig) -> grpc.ServerCredentials | None:
    """TLS for the client port when the node has a certificate; client certificates when a CA is set."""
    me = config.me
    if me.tls_cert is None or me.tls_key is None:
        return None
    chain, key = read_pem(me.tls_cert, "tls_cert"), read_pem(me.tls_key, "tls_key")
    client_ca = read_pem(config.tls_client_ca, "tls_client_ca") if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _clock_ms(offset_ms: int) -> ClockMs:
    """The clock this node stamps log entries with: the wall clock, moved by a test-only offset."""
    if not offset_ms:
        return wall_clock_ms
    log.warning("clock offset %+d ms: this node stamps log entries off the real clock (tests only)", offset_ms)
    return lambda: max(0, wall_clock_ms() + offset_ms)


def _raft_settings(config: NodeConfig) -> RaftSettings:
    return RaftSettings(
        self_address=config.me.raft,
        peer_addresses=tuple(n.raft for n in config.peers),
        journal_path=os.path.join(config.data_dir, "raft.journal"),
        snapshot_path=os.path.join(config.data_dir, "raft.snapshot"),
        durability=config.durability,
        log_entries_max=config.raft_log_entries_max,
        password=config.raft_password,
    )


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        _claim_data_dir(config.data_dir, config.node_id)
        self.store = Store(os.path.join(config.data_dir, "store"))
        self.machine = StateMachine(self.store)
        self.feed = EventFeed()
        self.metrics = NodeMetrics(self._sample)
        self.backend = NodeBackend(config, self.store, self.machine, self.metrics)
        calls = Offload("unary", limits.UNARY_THREADS, limits.UNARY_CALLS_WAITING_MAX)
        self.sessions = SessionRouter(self.backend, config.serving, calls)
        self.listens = ListenService(self.store, self.feed, config.serving)
        self.applier = Applier(
            config.node_id, self.store, self.machine, self.metrics, self.feed.publish, self.sessions.deliver
        )
        self._role = Role.FOLLOWER
        # Health state exists before the Raft port: its tick thread may report a role change at once.
        self.health = Health()
        self._leader_seen: str | None = None
        self._serving = False
        self._health_lock = threading.Lock()  # the watcher and the tick thread (role changes) both refresh
        self._stopping = threading.Event()
        # The Raft thread may apply a small entry itself (see Applier.on_commit), so it starts with the stack of a
        # thread that runs programs; pysyncobj starts it inside this constructor.
        with program_thread_stacks():
            self.raft: RaftPort = RaftAdapter(
                _raft_settings(config),
                on_apply=self.applier.on_commit,
                on_role=self._role_changed,
                snapshot_hooks=SnapshotHooks(
                    checkpoint=self.applier.checkpoint,
                    applied_index=self.applier.drained_applied_index,
                    install=self.applier.install_snapshot,
                    flush_start=self.store.flush_start,
                    flushing=self.store.flushing,
                ),
            )
        self.proposer = Proposer(self.raft, _clock_ms(config.clock_offset_ms), self.applier.when_applied)
        self.membership = Membership(config, self.raft, self.store, self.applier.wait_applied)
        self.backend.connect(self.raft, self.proposer, self.applier, self.membership)
        self.gate = Gate(
            lambda: self.machine.auth.state,
            lambda reason: self.metrics.auth_refusals.labels(reason).inc(),
            owner=self.backend.client_owner,
        )
        access = AuthAdmin(
            lambda: self.machine.auth.state, self.raft, self.applier.wait_applied, self.backend.leader_hint
        )
        servicer = LaminarServicer(self.sessions, self.listens, self.backend, calls)
        connections_max, connections_accepted_max = connection_limits(config.serving.connections_max, raise_nofile())
        self.server = Server(
            servicer,
            config.me.client,
            self.health,
            self.feed,
            config.serving,
            (connections_max, connections_accepted_max),
            _server_credentials(config),
            (AuthInterceptor(self.gate, {"Auth": access.handler()}),),
        )
        self._watcher = threading.Thread(target=self._watch_loop, name="watch", daemon=True)

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        if self.config.me.metrics:
            self.metrics.serve(self.config.me.metrics)
            log.info("node %d: metrics on http://%s/metrics", self.config.node_id, self.config.me.metrics)
        self._watcher.start()
        log.info(
            "node %d serving clients on %s, raft on %s", self.config.node_id, self.config.me.client, self.config.me.raft
        )

    def stop(self) -> None:
        self._stopping.set()
        self.health.set(False)
        self.metrics.stop()
        self.sessions.close_all(grpc.StatusCode.UNAVAILABLE, "node is shutting down")
        self.server.stop(SHUTDOWN_GRACE_S)
        self.proposer.stop()
        self.raft.stop()
        self.applier.stop()
        self.store.close()
        log.info("node %d stopped", self.config.node_id)

    # ---- role, leader and health (the tick thread and the watcher) --------------------------------

    def _role_changed(self, role: Role) -> None:
        if role == self._role:
            return
        term = self.raft.term() if hasattr(self, "raft") else 0
        log.info("node %d: %s -> %s (term %d)", self.config.node_id, self._role.value, role.value, term)
        self._role = role
        self._refresh_health()
        if role != Role.LEADER:
            self.sessions.close_all(grpc.StatusCode.UNAVAILABLE, "this node lost leadership")

    def _watch_loop(self) -> None:
        """Leader knowledge can change without a role change (a follower learns a new leader)."""
        while not self._stopping.wait(WATCH_INTERVAL_S):
            self._refresh_health()

    def _refresh_health(self) -> None:
        with self._health_lock:
            self._refresh_health_locked()

    def _refresh_health_locked(self) -> None:
        if not hasattr(self, "raft"):
            return  # a role change reported while the port is still being built; the watcher follows up
        leader = self.raft.leader()
        if leader != self._leader_seen:
            self._leader_seen = leader
            if leader is None:
                log.warning("node %d: no known leader (term %d)", self.config.node_id, self.raft.term())
            else:
                log.info("node %d: leader is now %s (term %d)", self.config.node_id, leader, self.raft.term())
        serving = leader is not None and not self._stopping.is_set()
        if serving != self._serving:
            self._serving = serving
            self.health.set(serving)
            log.info("node %d: health %s", self.config.node_id, "SERVING" if serving else "NOT_SERVING")

    # ---- metrics (at scrape time) -----------------------------------------------------------------

    def _sample(self) -> Sample:
        raft = self.raft.status()
        mark = self.machine.applied_mark
        lag = 0
        for topic, after in self.listens.positions():
            lag = max(lag, self.machine.topic_offset(topic) - after)
        return Sample(
            node_id=str(self.config.node_id),
            role=raft.role.value,
            term=raft.term,
            commit_index=raft.commit_index,
            applied_index=mark.raft_index,
            intention_offset=mark.intention_offset,
            sessions=self.sessions.count(),
            listeners=self.listens.count(),
            listener_lag_events_max=lag,
            proposal_queue_intentions=self.proposer.pending_intentions(),
            apply_queue_entries=self.applier.queued_entries(),
            journal_syncs=raft.journal_syncs,
            leader_known=raft.leader is not None,
            calls_in_flight=self.machine.calls_in_flight,
        )


def settle_heap() -> None:
    """Exempt what the node holds once started (modules, protobuf descriptors, its store, Raft and server objects:
    ~43,000 objects) from the cyclic collector's full passes. A full pass visits every tracked object and holds the
    GIL throughout: under 2,000 listeners that were opened at once the leader's took 75-105 ms (139,000 objects; the
    event loop and every ack stopped meanwhile), 14 ms idle. Frozen objects are still freed by reference counting;
    only cycles among them would stay, and what a started node holds lives as long as the node."""
    gc.collect()
    gc.freeze()


def run_node(config: NodeConfig) -> None:
    """Run a node in the foreground until SIGINT or SIGTERM."""
    # A thread woken by a socket or a condition waits for the GIL up to the switch interval
    # (5 ms by default) while another thread computes; acks pass through several threads.
    sys.setswitchinterval(NODE_GIL_SWITCH_INTERVAL_S)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node = Node(config)
    node.start()
    settle_heap()
    while not stop.wait(0.5):
        pass
    node.stop()
