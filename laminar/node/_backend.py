"""NodeBackend: the node's side of `service.NodeApi`: the read path, status, digest, membership,
fault injection, and what sessions need from the log and the store.

It holds the parts the node wires together (store, state machine, Raft port, proposer, applier,
membership) and answers the service's questions from them; it owns no thread and no state.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc

from laminar import limits
from laminar.node._applier import Applier
from laminar.node._entry import READ_BARRIER
from laminar.node._membership import Membership, MembershipRefused
from laminar.node._metrics import NodeMetrics
from laminar.node.config import NodeConfig
from laminar.node.raft import Proposal, Proposer, RaftPort
from laminar.node.service import consumer_infos, describe_calls
from laminar.node.state_machine import StateMachine
from laminar.node.store import ClientRecord, Keys, Store
from laminar.v1 import laminar_pb2 as pb

log = logging.getLogger("laminar.node")

# A follower stops naming a leader it has not heard from for this long (5 heartbeats; half the shortest
# election timeout): a redirect then says "no leader known" rather than naming a dead node.
LEADER_HINT_SILENCE_S_MAX = 0.5


class NodeBackend:
    """Implements laminar.node.service.NodeApi. Built before the Raft port (the sessions that use it
    must exist before the applier that feeds them); `connect` hands it the rest before serving."""

    _raft: RaftPort
    _proposer: Proposer
    _applier: Applier
    _membership: Membership

    def __init__(self, config: NodeConfig, store: Store, machine: StateMachine, metrics: NodeMetrics) -> None:
        self._config = config
        self._store = store
        self._machine = machine
        self._metrics = metrics

    def connect(self, raft: RaftPort, proposer: Proposer, applier: Applier, membership: Membership) -> None:
        self._raft = raft
        self._proposer = proposer
        self._applier = applier
        self._membership = membership

    # ---- sessions ---------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._raft.is_leader()

    def offer(self, proposal: Proposal, timeout_s: float) -> bool:
        return self._proposer.offer(proposal, timeout_s)

    def topic_run_max(self) -> int:
        return self._proposer.topic_run_max()

    def nonce_max(self, client_id: bytes) -> int | None:
        data = self._store.get(Keys.client(client_id))
        return None if data is None else ClientRecord.decode(data).nonce_max

    def client_owner(self, client_id: bytes) -> str | None:
        """The user that owns a client id (authorization on), as applied here."""
        data = self._store.get(Keys.owner(client_id))
        return None if data is None else data.decode(errors="replace")

    def welcome(self) -> pb.Welcome:
        return pb.Welcome(node_id=str(self._config.node_id), term=self._raft.term(), peers=self._membership.peers())

    def observe_commit_latency(self, seconds: float) -> None:
        self._metrics.commit_latency.observe(seconds)

    def session_failed(self, code: grpc.StatusCode, message: str) -> None:
        self._metrics.session_failures.labels(code.name).inc()
        quiet = code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)
        log.log(logging.INFO if quiet else logging.WARNING, "client session failed: %s: %s", code.name, message)

    # ---- reads ------------------------------------------------------------------------------------

    def get(self, request: pb.GetRequest, timeout_s: float) -> pb.GetResponse | None:
        """The key's value; unless stale_ok, after a read barrier (None if it did not pass in time)."""
        if not request.stale_ok and not self.read_barrier(timeout_s):
            return None
        topic, view, mark = self._store.read_view(request.topic, bytes(request.key))
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

    def describe_topic(self, topic: str) -> pb.DescribeTopicResponse:
        """A topic as this node has applied it (no barrier: like a stale Get)."""
        record, keys, value_bytes, capped, mark, consumers = self._store.describe(
            topic, limits.DESCRIBE_KEYS_COUNTED_MAX
        )
        if record is None:
            return pb.DescribeTopicResponse(intention_offset=mark.intention_offset)
        return pb.DescribeTopicResponse(
            exists=record.live,
            program=record.program,
            args=record.args,
            created_at=record.created_at,
            last_offset=record.next_offset - 1,
            keys=keys,
            value_bytes=value_bytes,
            keys_capped=capped,
            intention_offset=mark.intention_offset,
            consumers=consumer_infos(consumers),
            retention=pb.Retention(
                max_events=record.retention.max_events,
                max_bytes=record.retention.max_bytes,
                max_age_ms=record.retention.max_age_ms,
            ),
            first_offset=record.first_offset,
            retained_bytes=record.retained_bytes,
        )

    def describe_calls(self, request: pb.DescribeCallsRequest) -> pb.DescribeCallsResponse:
        """A topic's calls in flight and counters, as this node has applied them (no barrier)."""
        return describe_calls(self._store, request)

    def read_barrier(self, timeout_s: float) -> bool:
        """Linearizable reads go through the log: an empty entry, proposed now and applied here,
        orders this read after every write committed before it began (and proves we still lead)."""
        deadline = time.monotonic() + timeout_s
        committed = threading.Event()
        outcome: list[bool] = []

        def on_result(ok: bool) -> None:
            outcome.append(ok)
            committed.set()

        self._raft.propose(READ_BARRIER, on_result)
        if not committed.wait(timeout_s) or not outcome[0]:
            return False
        return self._applier.wait_applied(max(0.0, deadline - time.monotonic()))

    # ---- cluster ----------------------------------------------------------------------------------

    def leader_hint(self) -> tuple[bool, str]:
        """(this node leads, the client address a redirect names). A follower names only a leader it
        heard from within LEADER_HINT_SILENCE_S_MAX: pysyncobj keeps a dead leader for its whole election
        timeout, and clients that followed that hint bounced between the dead node and the followers."""
        leader = self._raft.leader()
        if not leader or self._raft.leader_silence_s() > LEADER_HINT_SILENCE_S_MAX:
            return self._raft.is_leader(), ""
        return self._raft.is_leader(), self._membership.client_address(leader)

    def change_membership(self, request: pb.MembershipChange) -> tuple[str, str, list[pb.Peer]]:
        try:
            peers = self._membership.change(request)
        except MembershipRefused as refused:
            return refused.code, refused.message, []
        log.info("node %d: membership is now %s", self._config.node_id, [p.node_id for p in peers])
        return "", "", peers

    def inject_fault(self, request: pb.FaultRequest) -> bool:
        if not self._config.fault_injection:
            return False
        self._raft.partition(frozenset(request.partitioned_from))
        log.warning(
            "node %d: fault injection: partitioned from %s", self._config.node_id, sorted(request.partitioned_from)
        )
        return True

    def digest(self) -> pb.DigestResponse:
        offset, sha256, keys = self._store.digest()
        return pb.DigestResponse(intention_offset=offset, sha256=sha256, keys=keys)

    def status(self) -> pb.StatusResponse:
        raft = self._raft.status()
        book = self._membership.address_book()
        leader_peer = book.get(raft.leader) if raft.leader is not None else None
        mark = self._machine.applied_mark
        return pb.StatusResponse(
            node_id=str(self._config.node_id),
            role=raft.role.value,
            term=raft.term,
            commit_index=raft.commit_index,
            applied_index=raft.applied_index,
            intention_offset=mark.intention_offset,
            leader_id=leader_peer.node_id if leader_peer is not None else "",
            leader_address=leader_peer.client_address if leader_peer is not None else "",
            topics=self._machine.live_topics(),
            durability=self._config.durability,
            peers=self._membership.peers(),
            log_time_ms=mark.time_ms,
        )
