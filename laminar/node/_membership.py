"""Membership changes on the leader: one node added or removed at a time, never losing quorum.

Two facts change together: the Raft membership (pysyncobj's own log entry) and the cluster's
address book (node id -> client and Raft addresses, replicated in our state so every node can
redirect clients and report peers). Adding records the address first, then the member; removing
drops the member first, then the address. A crash between the two leaves an address-book entry
without a member (harmless: `peers()` lists members only) and the operator simply repeats the
command.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from laminar.node._entry import encode_peer_removal, encode_peer_upsert
from laminar.node.config import NodeConfig
from laminar.node.raft import RaftPort
from laminar.node.store import Store
from laminar.v1 import laminar_pb2 as pb

MEMBERSHIP_CHANGE_TIMEOUT_S = 20.0
MEMBERSHIP_QUORUM_WAIT_S = 3.0


class MembershipRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # "unavailable", "failed_precondition", "invalid_argument"
        self.message = message


@dataclass
class _Waiter:
    event: threading.Event
    ok: bool = False
    reason: str = ""

    def done(self, ok: bool, reason: str = "") -> None:
        self.ok, self.reason = ok, reason
        self.event.set()


class Membership:
    def __init__(
        self,
        config: NodeConfig,
        raft: RaftPort,
        store: Store,
        wait_applied: Callable[[float], bool] | None = None,
    ) -> None:
        self._config = config
        # pysyncobj reports an entry done once it is handed to the apply thread, not once it is
        # stored: wait for the store before answering with the address book.
        self._wait_applied = wait_applied
        self._raft = raft
        self._store = store
        self._lock = threading.Lock()

    # ---- queries ------------------------------------------------------------------------------

    def address_book(self) -> dict[str, pb.Peer]:
        """Raft address -> Peer: the config's nodes, overridden by what the cluster recorded."""
        book = {
            n.raft: pb.Peer(node_id=str(n.id), client_address=n.client, raft_address=n.raft) for n in self._config.nodes
        }
        for data in self._store.peers():
            peer = pb.Peer.FromString(data)
            book[peer.raft_address] = peer
        return book

    def peers(self) -> list[pb.Peer]:
        """The current voting members, this node first."""
        book = self.address_book()
        return [book.get(raft, pb.Peer(node_id="?", raft_address=raft)) for raft in self._raft.members()]

    def client_address(self, raft_address: str) -> str:
        peer = self.address_book().get(raft_address)
        return peer.client_address if peer is not None else ""

    # ---- changes (leader only) --------------------------------------------------------------

    def change(self, request: pb.MembershipChange) -> list[pb.Peer]:
        if not self._lock.acquire(blocking=False):
            raise MembershipRefused("failed_precondition", "another membership change is in progress")
        try:
            if request.action == pb.MembershipChange.ADD:
                self._add(request)
            elif request.action == pb.MembershipChange.REMOVE:
                self._remove(request.node_id)
            else:
                raise MembershipRefused("invalid_argument", "action must be ADD or REMOVE")
            return self.peers()
        finally:
            self._lock.release()

    def _add(self, request: pb.MembershipChange) -> None:
        raft = self._raft
        members = raft.members()
        if not request.node_id or not request.raft_address or not request.client_address:
            raise MembershipRefused("invalid_argument", "adding a node needs its id, Raft and client addresses")
        if request.raft_address in members:
            raise MembershipRefused("failed_precondition", f"{request.raft_address} is already a member")
        if any(p.node_id == request.node_id for p in self.peers()):
            raise MembershipRefused("failed_precondition", f"node id {request.node_id} is already a member")
        self._check_quorum_after([*members, request.raft_address])
        peer = pb.Peer(
            node_id=request.node_id, client_address=request.client_address, raft_address=request.raft_address
        )
        self._propose(encode_peer_upsert(peer))
        self._raft_change(add=True, raft_address=request.raft_address)

    def _remove(self, node_id: str) -> None:
        raft = self._raft
        members = raft.members()
        target = next((p for p in self.peers() if p.node_id == node_id), None)
        if target is None:
            raise MembershipRefused("failed_precondition", f"node {node_id} is not a member")
        if target.raft_address == members[0]:
            raft.transfer_leadership()
            raise MembershipRefused("unavailable", f"node {node_id} leads: leadership is being handed over; retry")
        self._check_quorum_after([m for m in members if m != target.raft_address])
        self._raft_change(add=False, raft_address=target.raft_address)
        self._propose(encode_peer_removal(node_id))

    def _check_quorum_after(self, members: list[str]) -> None:
        raft = self._raft
        deadline = time.monotonic() + MEMBERSHIP_QUORUM_WAIT_S
        while True:  # a node that just restarted may take a moment to reconnect
            live = sum(1 for m in members if m == members[0] or raft.is_connected(m))
            if (members and live > len(members) // 2) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not members or live <= len(members) // 2:
            raise MembershipRefused(
                "failed_precondition",
                f"the change would leave {live} of {len(members)} members reachable: no quorum",
            )

    def _propose(self, payload: bytes) -> None:
        waiter = _Waiter(threading.Event())
        self._raft.propose(payload, lambda ok: waiter.done(ok))
        self._wait(waiter, "recording the address book")
        if self._wait_applied is not None and not self._wait_applied(MEMBERSHIP_CHANGE_TIMEOUT_S):
            raise MembershipRefused("unavailable", "the address book entry committed but was not applied in time")

    def _raft_change(self, add: bool, raft_address: str) -> None:
        waiter = _Waiter(threading.Event())
        self._raft.change_membership(add, raft_address, waiter.done)
        self._wait(waiter, "changing the Raft membership")

    @staticmethod
    def _wait(waiter: _Waiter, what: str) -> None:
        if not waiter.event.wait(MEMBERSHIP_CHANGE_TIMEOUT_S):
            raise MembershipRefused("unavailable", f"{what} did not commit within {MEMBERSHIP_CHANGE_TIMEOUT_S} s")
        if not waiter.ok:
            code = "failed_precondition" if waiter.reason == "REQUEST_DENIED" else "unavailable"
            raise MembershipRefused(code, f"{what} failed: {waiter.reason}")
