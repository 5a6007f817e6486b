"""The simulated network's faults, on stand-in transports: what a stopped node had sent, and what its
peers had received but not read, arrives or not as TCP and UDP would have it (tests/sim/_net.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pysyncobj.tcp_connection import CONNECTION_STATE

from tests.sim._net import Network, SimConnection
from tests.sim._world import Clock, Scheduler

A, B = "a:1", "b:2"


class _Peer:
    def __init__(self, address: str) -> None:
        self.address = address


class _Transport:
    """What the network touches of pysyncobj's transport: its nodes, its connections, its callbacks."""

    def __init__(self, network: Network, me: str, peer: str) -> None:
        node = _Peer(peer)
        self._nodes = {node}
        self._connections: dict[Any, SimConnection] = {node: SimConnection(network, me, peer)}
        self.received: list[Any] = []

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802 - pysyncobj's names
        self.received.append(message)

    def _onNodeConnected(self, node: Any) -> None:  # noqa: N802
        pass

    def _onNodeDisconnected(self, node: Any) -> None:  # noqa: N802
        pass


def _connected_pair(kind: str, paused_until_s: float = 0.0, seed: int = 1) -> tuple[Network, Scheduler, _Transport]:
    scheduler = Scheduler(Clock())
    network = Network(scheduler, seed, kind, lambda _: None)
    start_s = scheduler.clock.now_s

    def run_on(address: str, receive: Any) -> None:  # B reads nothing until its pause ends
        if address == B and scheduler.clock.now_s < start_s + paused_until_s:
            scheduler.at(start_s + paused_until_s, "inbox", lambda: run_on(address, receive))
            return
        receive()

    network.run_on = run_on
    a, b = _Transport(network, A, B), _Transport(network, B, A)
    network.attach(A, a)
    network.attach(B, b)
    while any(c.state != CONNECTION_STATE.CONNECTED for t in (a, b) for c in t._connections.values()):
        scheduler.run_next()
    return network, scheduler, b


def _run_until(scheduler: Scheduler, at_s: float) -> None:
    while (next_at := scheduler.next_at()) is not None and next_at <= at_s:
        scheduler.run_next()


@pytest.mark.parametrize("power_loss", [False, True])
def test_a_crashed_senders_messages_arrive_up_to_a_point(power_loss: bool) -> None:
    """On tcp, of what a node had in flight when it stopped, its peer reads a prefix, in order: what its
    kernel had put on the wire. Over many crashes, every cut point happens, nothing and everything too."""
    kept = set()
    for seed in range(40):
        network, scheduler, b = _connected_pair("tcp", seed=seed)
        sent = list(range(6))
        for i in sent:
            network.send(A, B, i)
        network.detach(A, power_loss=power_loss)
        _run_until(scheduler, scheduler.clock.now_s + 1.0)
        assert b.received == sent[: len(b.received)]
        kept.add(len(b.received))
    assert {0, len(sent)} <= kept and len(kept) >= 4


@pytest.mark.parametrize(("power_loss", "read_after_pause"), [(True, True), (False, False)])
def test_what_a_paused_peer_received_is_read_after_a_power_loss_only(power_loss: bool, read_after_pause: bool) -> None:
    """Messages already in a paused peer's socket are read when it resumes if their sender lost power (no
    reset reaches the peer), and lost if the sender's process crashed (its kernel resets the connection)."""
    network, scheduler, b = _connected_pair("tcp", paused_until_s=5.0)
    for i in range(3):
        network.send(A, B, i)
    _run_until(scheduler, scheduler.clock.now_s + 1.0)  # arrived; B is paused and reads nothing
    assert b.received == []
    network.detach(A, power_loss=power_loss)
    _run_until(scheduler, scheduler.clock.now_s + 10.0)
    assert b.received == ([0, 1, 2] if read_after_pause else [])


def test_a_datagram_outlives_its_sender() -> None:
    """On the datagram network a message in flight arrives whatever became of its sender."""
    network, scheduler, b = _connected_pair("datagram")
    network.send(A, B, "late")
    network.detach(A, power_loss=False)
    _run_until(scheduler, scheduler.clock.now_s + 1.0)
    assert b.received == ["late"]


def test_a_held_datagram_arrives_seconds_late() -> None:
    """A link that holds its messages delivers them after the others, seconds later (a reply of an old term
    can reach a leader elected since)."""
    network, scheduler, b = _connected_pair("datagram")
    network.hold((A, B), 1.0, 10.0)
    network.send(A, B, "held")
    network.held_until.clear()
    network.send(A, B, "on time")
    _run_until(scheduler, scheduler.clock.now_s + 0.9)
    assert b.received == ["on time"]
    _run_until(scheduler, scheduler.clock.now_s + 20.0)
    assert b.received == ["on time", "held"]
