"""NodeApi: everything the gRPC service asks of the node it runs in, and the only way it calls up.

The service decodes, validates and streams; what needs the log, the store or the cluster's state
it asks through this one interface (the node implements it; a test may fake it). Methods may be
called from any gRPC thread.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from laminar.node.raft import Proposal
from laminar.v1 import laminar_pb2 as pb


class NodeApi(Protocol):
    # ---- client sessions (the leader) -----------------------------------------------------------

    def is_leader(self) -> bool: ...

    def offer(self, proposal: Proposal, timeout_s: float) -> bool:
        """Queue validated mutations for the log; False if the queue stayed full for timeout_s."""

    def topic_run_max(self) -> int:
        """Topic creates and destroys one proposal may hold now (the proposer's pace): more are offered in runs."""

    def nonce_max(self, client_id: bytes) -> int | None:
        """The client's last applied nonce, or None for a client this node has never applied."""

    def welcome(self) -> pb.Welcome: ...

    def read_barrier(self, timeout_s: float) -> bool:
        """True once everything committed before the call is applied here (False: not within timeout_s,
        or this node no longer leads)."""

    def observe_commit_latency(self, seconds: float) -> None: ...

    def session_failed(self, code: grpc.StatusCode, message: str) -> None: ...

    # ---- unary calls ----------------------------------------------------------------------------

    def leader_hint(self) -> tuple[bool, str]:
        """(this node leads, client address of the leader or "")."""

    def get(self, request: pb.GetRequest, timeout_s: float) -> pb.GetResponse | None:
        """The key's value; None if a linearizable read's barrier did not commit within timeout_s."""

    def status(self) -> pb.StatusResponse: ...

    def describe_topic(self, topic: str) -> pb.DescribeTopicResponse:
        """The topic as this node has applied it (no barrier); exists = false when it is missing."""

    def describe_calls(self, request: pb.DescribeCallsRequest) -> pb.DescribeCallsResponse:
        """A topic's calls in flight and counters as this node has applied them (no barrier)."""

    def digest(self) -> pb.DigestResponse: ...

    def change_membership(self, request: pb.MembershipChange) -> tuple[str, str, list[pb.Peer]]:
        """(status code name or "", message, peers after)."""

    def inject_fault(self, request: pb.FaultRequest) -> bool:
        """Apply a test fault; False when the node runs without fault injection."""
