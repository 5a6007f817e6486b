"""One Laminar node: store, state machine, Raft engine, proposer and gRPC server, wired together.

Threads: pysyncobj's tick thread runs Raft and hands each committed entry to the apply thread,
which runs the state machine, writes one RocksDB batch, then sends acks and wakes listeners. Apply
has its own thread so that a big batch (or a costly topic program) never delays heartbeats and
votes: a node busy applying must not look dead to its peers. The proposer thread packs client
frames into entries; gRPC threads serve sessions, listeners and status calls.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading

import grpc

from laminar.errors import ConfigError
from laminar.node._membership import Membership, MembershipRefused
from laminar.node.config import NodeConfig
from laminar.node.raft import Proposer, RaftEngine, RaftSettings, SnapshotHooks
from laminar.node.service import EventFeed, LaminarServicer, ListenService, SessionRouter, build_server
from laminar.node.state_machine import StateMachine
from laminar.node.store import ClientRecord, Keys, Store, WriteSet
from laminar.v1 import laminar_pb2 as pb

log = logging.getLogger("laminar.node")

SHUTDOWN_GRACE_S = 1.0
APPLY_QUEUE_ENTRIES_MAX = 8  # committed entries waiting for the apply thread; the tick thread waits past this
NODE_GIL_SWITCH_INTERVAL_S = 0.0005


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


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        _claim_data_dir(config.data_dir, config.node_id)
        self.store = Store(os.path.join(config.data_dir, "store"))
        self.machine = StateMachine(self.store)
        self.feed = EventFeed()
        self.sessions = SessionRouter(
            lambda proposal, timeout_s: self.proposer.offer(proposal, timeout_s),
            self._nonce_max,
            self._is_leader,
            self._welcome,
        )
        self.listens = ListenService(self.store, self.feed)
        self.membership = Membership(config, lambda: self.engine, self.store)
        self._role = "follower"
        settings = RaftSettings(
            self_address=config.me.raft,
            peer_addresses=tuple(n.raft for n in config.peers),
            journal_path=os.path.join(config.data_dir, "raft.journal"),
            snapshot_path=os.path.join(config.data_dir, "raft.snapshot"),
            durability=config.durability,
            log_entries_max=config.raft_log_entries_max,
            password=config.raft_password,
        )
        self._apply_queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=APPLY_QUEUE_ENTRIES_MAX)
        self._applier = threading.Thread(target=self._apply_loop, name="apply", daemon=True)
        self._applier.start()
        hooks = SnapshotHooks(
            checkpoint=self._checkpoint,
            applied_index=self._drained_applied_index,
            install=self._install_snapshot,
        )
        self.engine = RaftEngine(settings, on_apply=self._apply, on_role=self._role_changed, snapshot_hooks=hooks)
        self.proposer = Proposer(self.engine)
        servicer = LaminarServicer(
            self.sessions, self.listens, self._status, self._digest, self._change_membership, self._leader_hint
        )
        self.server = build_server(servicer, config.me.client)

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        log.info(
            "node %d serving clients on %s, raft on %s", self.config.node_id, self.config.me.client, self.config.me.raft
        )

    def stop(self) -> None:
        self.sessions.close_all(grpc.StatusCode.UNAVAILABLE, "node is shutting down")
        self.server.stop(SHUTDOWN_GRACE_S).wait()
        self.proposer.stop()
        self.engine.destroy_synchronous()
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
                self._apply_now(*item)
            except BaseException:
                log.critical("applying raft entry %s failed; stopping this node", item and item[0], exc_info=True)
                logging.shutdown()
                os._exit(70)
            finally:
                self._apply_queue.task_done()

    def _apply_now(self, raft_index: int, payload: bytes) -> None:
        applied = self.machine.apply(raft_index, payload)
        if applied is None:
            return
        self.store.commit(applied.writes, applied.mark)
        self.feed.publish(applied.topic_offsets)
        self.sessions.deliver(applied.outcomes)

    # ---- callbacks from the tick thread ---------------------------------------------------------

    def _apply(self, raft_index: int, payload: bytes) -> None:
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

    def _role_changed(self, role: str) -> None:
        if role == self._role:
            return
        log.info("node %d: %s -> %s (term %d)", self.config.node_id, self._role, role, self.engine.raftCurrentTerm)
        self._role = role
        if role != "leader":
            self.sessions.close_all(grpc.StatusCode.UNAVAILABLE, "this node lost leadership")

    # ---- queries (any thread) -------------------------------------------------------------------

    def _is_leader(self) -> bool:
        return bool(self.engine._isLeader())

    def _nonce_max(self, client_id: bytes) -> int | None:
        data = self.store.get(Keys.client(client_id))
        return None if data is None else ClientRecord.decode(data).nonce_max

    def _leader_hint(self) -> tuple[bool, str]:
        leader = self.engine.leader_address()
        return self._is_leader(), self.membership.client_address(leader) if leader else ""

    def _change_membership(self, request: pb.MembershipChange) -> tuple[str, str, list[pb.Peer]]:
        """(status code name or "", message, peers after)."""
        try:
            peers = self.membership.change(request)
        except MembershipRefused as refused:
            return refused.code, refused.message, []
        log.info("node %d: membership is now %s", self.config.node_id, [p.node_id for p in peers])
        return "", "", peers

    def _welcome(self) -> pb.Welcome:
        return pb.Welcome(
            node_id=str(self.config.node_id), term=self.engine.raftCurrentTerm, peers=self.membership.peers()
        )

    def _digest(self) -> pb.DigestResponse:
        offset, sha256, keys = self.store.digest()
        return pb.DigestResponse(intention_offset=offset, sha256=sha256, keys=keys)

    def _status(self) -> pb.StatusResponse:
        raw = self.engine.status()
        leader = raw.get("leader")
        leader_raft = str(leader.address) if leader is not None else ""
        book = self.membership.address_book()
        leader_peer = book.get(leader_raft)
        mark = self.machine.applied_mark
        return pb.StatusResponse(
            node_id=str(self.config.node_id),
            role=self.engine.role(),
            term=int(raw.get("raft_term", 0)),
            commit_index=int(raw.get("commit_idx", 0)),
            applied_index=int(raw.get("last_applied", 0)),
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
