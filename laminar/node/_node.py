"""One Laminar node: store, state machine, Raft engine, proposer and gRPC server, wired together.

Threads: pysyncobj's tick thread runs Raft and hands each committed entry to the apply thread,
which runs the state machine, writes one RocksDB batch, then sends acks and wakes listeners. Apply
has its own thread so that a big batch (or a costly topic program) never delays heartbeats and
votes: a node busy applying must not look dead to its peers. An entry of one intention, when the
apply thread is idle, is applied by the tick thread itself: its stall is one program call at most,
and a lone commit saves a thread handoff. The proposer thread packs client frames into entries
(a frame that arrives when nothing is in flight is proposed by its session's thread); gRPC threads
serve sessions, listeners and status calls.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable

import grpc

from laminar.errors import ConfigError
from laminar.node._entry import READ_BARRIER, one_intention_at_most
from laminar.node._membership import Membership, MembershipRefused
from laminar.node._metrics import NodeMetrics, Sample
from laminar.node.config import NodeConfig, read_pem
from laminar.node.raft import Proposer, RaftAdapter, RaftSettings, Role, SnapshotHooks
from laminar.node.service import (
    EventFeed,
    LaminarServicer,
    ListenService,
    SessionRouter,
    build_health,
    build_server,
    set_health,
)
from laminar.node.state_machine import StateMachine
from laminar.node.store import ClientRecord, Keys, Store, WriteSet
from laminar.v1 import laminar_pb2 as pb

log = logging.getLogger("laminar.node")

SHUTDOWN_GRACE_S = 1.0
APPLY_QUEUE_ENTRIES_MAX = 8  # committed entries waiting for the apply thread; the tick thread waits past this
APPLY_INLINE_BYTES_MAX = 4096  # a committed entry of one intention, this small, may be applied by the tick thread
NODE_GIL_SWITCH_INTERVAL_S = 0.0005
APPLY_SLOW_MS = 200  # an entry that takes longer than this to apply and store is logged
WATCH_INTERVAL_S = 0.25  # how often health and leader knowledge are re-checked
# A follower stops naming a leader it has not heard from for this long (5 heartbeats; half the shortest
# election timeout): a redirect then says "no leader known" rather than naming a dead node.
LEADER_HINT_SILENCE_S_MAX = 0.5


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


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        _claim_data_dir(config.data_dir, config.node_id)
        self.store = Store(os.path.join(config.data_dir, "store"))
        self.machine = StateMachine(self.store)
        self.feed = EventFeed()
        self.metrics = NodeMetrics(self._sample)
        self.sessions = SessionRouter(
            lambda proposal, timeout_s: self.proposer.offer(proposal, timeout_s),
            self._nonce_max,
            self._is_leader,
            self._welcome,
            on_commit_latency=self.metrics.commit_latency.observe,
            read_barrier=self._read_barrier,
        )
        self.listens = ListenService(self.store, self.feed)
        self.membership = Membership(config, lambda: self.raft, self.store, self._wait_applied)
        self._role = Role.FOLLOWER
        # Health state exists before the engine: its tick thread may report a role change at once.
        self.health = build_health()
        self._leader_seen: str | None = None
        self._serving = False
        self._health_lock = threading.Lock()  # the watcher and the tick thread (role changes) both refresh
        self._stopping = threading.Event()
        settings = RaftSettings(
            self_address=config.me.raft,
            peer_addresses=tuple(n.raft for n in config.peers),
            journal_path=os.path.join(config.data_dir, "raft.journal"),
            snapshot_path=os.path.join(config.data_dir, "raft.snapshot"),
            durability=config.durability,
            log_entries_max=config.raft_log_entries_max,
            password=config.raft_password,
        )
        # Items: an entry to apply, a callable to run once everything queued before it is applied
        # (read barriers), or None to stop.
        self._apply_queue: queue.Queue[tuple[int, bytes] | Callable[[], None] | None] = queue.Queue(
            maxsize=APPLY_QUEUE_ENTRIES_MAX
        )
        self._applier = threading.Thread(target=self._apply_loop, name="apply", daemon=True)
        self._applier.start()
        hooks = SnapshotHooks(
            checkpoint=self._checkpoint,
            applied_index=self._drained_applied_index,
            install=self._install_snapshot,
        )
        self.raft = RaftAdapter(settings, on_apply=self._apply, on_role=self._role_changed, snapshot_hooks=hooks)
        self.proposer = Proposer(self.raft)
        servicer = LaminarServicer(
            self.sessions,
            self.listens,
            self._status,
            self._digest,
            self._change_membership,
            self._leader_hint,
            get=self._get,
            on_session_failure=self._session_failed,
        )
        if config.fault_injection:
            servicer._inject_fault = self._inject_fault
        self.server = build_server(servicer, config.me.client, self.health, _server_credentials(config))
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
        set_health(self.health, False)
        self.metrics.stop()
        self.sessions.close_all(grpc.StatusCode.UNAVAILABLE, "node is shutting down")
        self.server.stop(SHUTDOWN_GRACE_S).wait()
        self.proposer.stop()
        self.raft.stop()
        self._apply_queue.put(None)
        self._applier.join()
        self.store.close()
        log.info("node %d stopped", self.config.node_id)

    # ---- applying (the apply thread) -------------------------------------------------------------

    def _apply_loop(self) -> None:
        while True:
            item = self._apply_queue.get()
            try:
                if item is None:
                    return
                if isinstance(item, tuple):
                    self._apply_now(*item)
                else:
                    item()
            except BaseException:
                where = item[0] if isinstance(item, tuple) else "(read barrier)"
                log.critical("applying raft entry %s failed; stopping this node", where, exc_info=True)
                logging.shutdown()
                os._exit(70)
            finally:
                self._apply_queue.task_done()

    def _apply_now(self, raft_index: int, payload: bytes) -> None:
        started = time.perf_counter()
        applied = self.machine.apply(raft_index, payload)
        if applied is None:
            return
        self.store.commit(applied.writes, applied.mark)
        self.feed.publish(applied.topic_offsets)
        self.sessions.deliver(applied.outcomes)
        elapsed_s = time.perf_counter() - started
        metrics = self.metrics
        metrics.apply_latency.observe(elapsed_s)
        intentions = applied.intentions
        if intentions:
            metrics.batch_intentions.observe(intentions)
            metrics.intentions.inc(intentions)
        if applied.events:
            metrics.events.inc(applied.events)
        if applied.program_errors:
            metrics.observe_program_errors(applied.program_errors)
        if elapsed_s * 1000 > APPLY_SLOW_MS:
            log.warning(
                "node %d: slow apply: raft entry %d (%d intentions, %d events) took %.0f ms (threshold %d ms)",
                self.config.node_id,
                raft_index,
                intentions,
                applied.events,
                elapsed_s * 1000,
                APPLY_SLOW_MS,
            )

    # ---- callbacks from the tick thread ---------------------------------------------------------

    def _apply(self, raft_index: int, payload: bytes) -> None:
        if self._apply_queue.unfinished_tasks == 0 and one_intention_at_most(payload, APPLY_INLINE_BYTES_MAX):
            # Nothing is queued or being applied (only this thread queues entries), so applying
            # here keeps the order, and a lone commit skips a thread handoff: about 0.1 ms of a
            # sequential commit on 3 nodes and 2 cores. One intention only, so the tick thread
            # stalls for at most one program call's budget (pysyncobj would apply everything here).
            # A failure stops the node, as in the apply thread (the Raft adapter sees to it).
            self._apply_now(raft_index, payload)
            return
        self._apply_queue.put((raft_index, payload))  # blocks only when the apply thread is far behind

    def _drained_applied_index(self) -> int:
        self._apply_queue.join()
        return self.machine.applied_mark.raft_index

    def _checkpoint(self, target_dir: str, raft_index: int) -> None:
        self._apply_queue.join()  # the store must hold every entry through raft_index
        # Entries without intentions (no-ops) do not move the store's mark; a snapshot at
        # `raft_index` must say it holds everything through it, or a restart would reinstall it.
        self.store.commit(WriteSet(), self.machine.skip(raft_index))
        self.store.checkpoint(target_dir)

    def _install_snapshot(self, checkpoint_dir: str) -> None:
        self._apply_queue.join()
        self.store.replace_with(checkpoint_dir)
        self.machine.reload()
        log.info("node %d: store replaced by a snapshot at %s", self.config.node_id, self.machine.applied_mark)
        self.feed.publish({"*": 0})

    def _role_changed(self, role: Role) -> None:
        if role == self._role:
            return
        term = self.raft.term() if hasattr(self, "raft") else 0
        log.info("node %d: %s -> %s (term %d)", self.config.node_id, self._role.value, role.value, term)
        self._role = role
        self._refresh_health()
        if role != Role.LEADER:
            self.sessions.close_all(grpc.StatusCode.UNAVAILABLE, "this node lost leadership")

    # ---- health, leader changes and client errors ------------------------------------------------

    def _watch_loop(self) -> None:
        """Leader knowledge can change without a role change (a follower learns a new leader)."""
        while not self._stopping.wait(WATCH_INTERVAL_S):
            self._refresh_health()

    def _refresh_health(self) -> None:
        with self._health_lock:
            self._refresh_health_locked()

    def _refresh_health_locked(self) -> None:
        if not hasattr(self, "raft"):
            return  # a role change reported while the adapter is still being built; the watcher follows up
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
            set_health(self.health, serving)
            log.info("node %d: health %s", self.config.node_id, "SERVING" if serving else "NOT_SERVING")

    def _session_failed(self, code: grpc.StatusCode, message: str) -> None:
        self.metrics.session_failures.labels(code.name).inc()
        quiet = code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)
        log.log(logging.INFO if quiet else logging.WARNING, "client session failed: %s: %s", code.name, message)

    # ---- reads ----------------------------------------------------------------------------------

    def _get(self, request: pb.GetRequest, timeout_s: float) -> pb.GetResponse | None:
        """The key's value; unless stale_ok, after a read barrier (None if it did not pass in time)."""
        if not request.stale_ok and not self._read_barrier(timeout_s):
            return None
        topic, view, mark = self.store.read_view(request.topic, bytes(request.key))
        response = pb.GetResponse(
            topic_exists=topic is not None and topic.live,
            topic_offset=topic.next_offset - 1 if topic is not None else 0,
            intention_offset=mark.intention_offset,
        )
        if view is not None:
            response.found = True
            response.value = view.value
            response.value_offset = view.consequence_offset
        return response

    def _read_barrier(self, timeout_s: float) -> bool:
        """Linearizable reads go through the log: an empty entry, proposed now and applied here,
        orders this read after every write committed before it began (and proves we still lead)."""
        deadline = time.monotonic() + timeout_s
        committed = threading.Event()
        outcome: list[bool] = []

        def on_result(ok: bool) -> None:
            outcome.append(ok)
            committed.set()

        self.raft.propose(READ_BARRIER, on_result)
        if not committed.wait(timeout_s) or not outcome[0]:
            return False
        return self._wait_applied(max(0.0, deadline - time.monotonic()))

    def _wait_applied(self, timeout_s: float) -> bool:
        """Wait until everything handed to the apply thread so far is applied and stored. pysyncobj
        reports an entry done once it is in the apply queue, so a marker queued now runs after it."""
        deadline = time.monotonic() + timeout_s
        applied = threading.Event()
        try:
            self._apply_queue.put(applied.set, timeout=timeout_s)
        except queue.Full:
            return False
        return applied.wait(max(0.0, deadline - time.monotonic()))

    # ---- metrics --------------------------------------------------------------------------------

    def _sample(self) -> Sample:
        raft = self.raft.status()
        mark = self.machine.applied_mark
        lag = 0
        for topic, after in self.listens.positions():
            lag = max(lag, self.machine.topic_offset(topic) - after)
        proposer = getattr(self, "proposer", None)
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
            # The proposer (laminar/node/raft) has no public depth accessor yet; read its counter.
            proposal_queue_intentions=int(getattr(proposer, "_pending_intentions", 0)),
            apply_queue_entries=self._apply_queue.qsize(),
            journal_syncs=raft.journal_syncs,
            leader_known=raft.leader is not None,
        )

    # ---- queries (any thread) -------------------------------------------------------------------

    def _is_leader(self) -> bool:
        return self.raft.is_leader()

    def _nonce_max(self, client_id: bytes) -> int | None:
        data = self.store.get(Keys.client(client_id))
        return None if data is None else ClientRecord.decode(data).nonce_max

    def _leader_hint(self) -> tuple[bool, str]:
        """(this node leads, the client address a redirect names). A follower names only a leader it
        heard from within LEADER_HINT_SILENCE_S_MAX: pysyncobj keeps a dead leader for its whole election
        timeout, and clients that followed that hint bounced between the dead node and the followers."""
        leader = self.raft.leader()
        if not leader or self.raft.leader_silence_s() > LEADER_HINT_SILENCE_S_MAX:
            return self._is_leader(), ""
        return self._is_leader(), self.membership.client_address(leader)

    def _change_membership(self, request: pb.MembershipChange) -> tuple[str, str, list[pb.Peer]]:
        """(status code name or "", message, peers after)."""
        try:
            peers = self.membership.change(request)
        except MembershipRefused as refused:
            return refused.code, refused.message, []
        log.info("node %d: membership is now %s", self.config.node_id, [p.node_id for p in peers])
        return "", "", peers

    def _inject_fault(self, request: pb.FaultRequest) -> None:
        self.raft.partition(frozenset(request.partitioned_from))
        log.warning(
            "node %d: fault injection: partitioned from %s", self.config.node_id, sorted(request.partitioned_from)
        )

    def _welcome(self) -> pb.Welcome:
        return pb.Welcome(node_id=str(self.config.node_id), term=self.raft.term(), peers=self.membership.peers())

    def _digest(self) -> pb.DigestResponse:
        offset, sha256, keys = self.store.digest()
        return pb.DigestResponse(intention_offset=offset, sha256=sha256, keys=keys)

    def _status(self) -> pb.StatusResponse:
        raft = self.raft.status()
        book = self.membership.address_book()
        leader_peer = book.get(raft.leader) if raft.leader is not None else None
        mark = self.machine.applied_mark
        return pb.StatusResponse(
            node_id=str(self.config.node_id),
            role=raft.role.value,
            term=raft.term,
            commit_index=raft.commit_index,
            applied_index=raft.applied_index,
            intention_offset=mark.intention_offset,
            leader_id=leader_peer.node_id if leader_peer is not None else "",
            leader_address=leader_peer.client_address if leader_peer is not None else "",
            topics=self.machine.live_topics(),
            durability=self.config.durability,
            peers=self.membership.peers(),
        )


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
    while not stop.wait(0.5):
        pass
    node.stop()
