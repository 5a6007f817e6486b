"""An in-memory network for pysyncobj engines, and the transport each engine talks to it through.

The transport is the engine's own transport class (which makes the journal durable before a
follower acknowledges and stamps replies with their term) with its TCP parts replaced: no server, no
sockets; each peer gets a `SimConnection` whose `send` hands a pickled copy of the message to the
`Network`. pysyncobj's own `TCPTransport.send` still runs, so a message to a peer whose connection
is down is refused the same way.

Two kinds of network, chosen per run:
- "tcp" (pysyncobj's own assumption): per-connection FIFO and nothing lost or duplicated while a
  connection lives. A cut link (one way or both) holds what is sent on it; a cut longer than the
  connection timeout resets the connection: both ends see it drop, everything in flight is lost, and
  they reconnect once the link is back. Delays keep the order.
- "datagram": no order on any link (latencies vary, so messages overtake each other), and any
  message may be lost, duplicated or delayed, some of them for many seconds (`stale`); a cut link
  drops what is sent on it (as the nodes' own fault injection, `partitioned_from`, does). A message
  in flight arrives whatever became of its sender, at whichever process then listens at its address.

When a node stops, what it had sent is not simply gone. On tcp, a random prefix of what is still in
flight on each of its connections arrives (the part its kernel had put on the wire; the rest was
still in a send buffer). What a paused peer had already received but not yet read is read after a
power loss (no reset reaches it: the connection is half-open until it times out) and lost after a
process crash (the dying process's kernel resets the connection, which discards unread data). So a
paused node can wake up and answer a leader that has died and come back since, over its new
connection: a reply to an append of an older term.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj.tcp_connection import CONNECTION_STATE

from tests.sim._world import Scheduler, stream

NETWORKS = ("tcp", "datagram")
CONNECTION_TIMEOUT_S = 4.0  # RaftSettings.leader_fallback_s, which the engine uses as pysyncobj's connectionTimeout
LATENCY_S_MIN = 0.0002
LATENCY_S_MAX = 0.002
SEND_S = 0.00002  # CPU time a send costs the sender (pickling, a syscall)
RECONNECT_S_MIN = 0.2  # pysyncobj retries a connection every connectionRetryTime (0.5 s for us)
RECONNECT_S_MAX = 1.0


class SimConnection:
    """Stands in for pysyncobj's TcpConnection in the transport's `_connections`."""

    def __init__(self, network: Network, src: str, dst: str) -> None:
        self.network, self.src, self.dst = network, src, dst
        self.state = CONNECTION_STATE.DISCONNECTED

    def send(self, message: Any) -> None:
        self.network.send(self.src, self.dst, message)

    def disconnect(self) -> None:
        self.state = CONNECTION_STATE.DISCONNECTED

    def connect(self, host: str, port: int) -> bool:
        return False  # the network connects peers itself


def _peer(transport: Any, address: str) -> Any:
    """The transport's Node object for a peer (compared by value: node ids hash their own way)."""
    for node in transport._nodes:
        if node.address == address:
            return node
    return None


def make_transport_class(base: type, network: Network) -> type:
    """The engine's transport class with its TCP parts replaced by `network`."""

    class SimTransport(base):  # type: ignore[misc, valid-type]
        def _createServer(self) -> None:  # noqa: N802 - pysyncobj's names
            self._ready = True

        def _maybeBind(self) -> None:  # noqa: N802
            self._ready = True

        def _connectIfNecessary(self) -> None:  # noqa: N802
            pass

        def addNode(self, node: Any) -> None:  # noqa: N802
            self._nodes.add(node)
            self._nodeAddrToNode[node.address] = node
            self._connections[node] = SimConnection(network, str(self._selfNode.address), str(node.address))
            network.node_added(str(self._selfNode.address), str(node.address))

        def dropNode(self, node: Any) -> None:  # noqa: N802
            self._connections.pop(node, None)
            self._nodes.discard(node)
            self._nodeAddrToNode.pop(node.address, None)

        def destroy(self) -> None:
            self.setOnMessageReceivedCallback(None)
            self._connections.clear()

    return SimTransport


@dataclass
class LinkFaults:
    delay_s_max: float = 0.0  # extra delay, uniform in [0, delay_s_max]
    loss: float = 0.0  # datagram network only: probability a message is lost
    duplicate: float = 0.0  # datagram network only: probability a message is delivered twice
    stale: float = 0.0  # datagram network only: probability a message is held for STALE_S_MIN..STALE_S_MAX


STALE_S_MIN = 1.0
STALE_S_MAX = 15.0  # a datagram held this long arrives after elections and restarts have come and gone


class Network:
    def __init__(self, scheduler: Scheduler, seed: int, kind: str, trace: Callable[[str], None]) -> None:
        if kind not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, not {kind!r}")
        self.kind = kind
        self.scheduler = scheduler
        self.seed = seed
        self.trace = trace
        self.transports: dict[str, Any] = {}  # address -> the live engine's transport (absent: down)
        # The simulation runs a delivery: at once, or when the node is not paused any more.
        self.run_on: Callable[[str, Callable[[], None]], None] = lambda address, run: run()
        self.on_message: Callable[[str, str, Any], None] = lambda src, dst, message: None
        self.on_send: Callable[[str, str, Any], None] = lambda src, dst, message: None  # after it is on its way
        self.cut_until: dict[tuple[str, str], float] = {}  # (src, dst) -> when this link is back
        self.faults = LinkFaults()  # on every link
        self.ordered = kind == "tcp"  # per-link FIFO
        self.slow_until: dict[tuple[str, str], tuple[float, float]] = {}  # link -> (until, extra delay max)
        self.held_until: dict[tuple[str, str], tuple[float, float]] = {}  # link -> (until, probability held)
        self.message_filter: Callable[[Any], Any] | None = None  # changes every message sent (reverted fixes)
        self._epoch: dict[frozenset[str], int] = {}  # bumped by every connection reset
        self._fifo_at: dict[tuple[str, str], float] = {}
        # tcp: per link, the messages sent and not yet delivered, in order (their ids); and the ids that
        # arrive whatever happens to their sender or their connection (see detach).
        self._in_flight: dict[tuple[str, str], list[int]] = {}
        self._survivors: set[int] = set()
        self._received: set[int] = set()  # delivered to a node that was paused: waiting in its socket
        self._next_id = 0
        self._rng: dict[tuple[str, str], random.Random] = {}
        self.sent = self.delivered = self.dropped = 0

    # ---- nodes coming and going ---------------------------------------------------------------

    def attach(self, address: str, transport: Any) -> None:
        """A node (re)started: connect it to every live peer after a pause."""
        self.transports[address] = transport
        for peer in sorted(self.transports):
            if peer != address:
                self._schedule_connect(address, peer)

    def detach(self, address: str, power_loss: bool, sent_all: bool = False) -> None:
        """A node stopped: its connections drop at its peers. On tcp, what it sent arrives up to a random
        point of each connection (sent_all: all of it, except on a slow link), and what a peer had
        received but not read arrives only after a power loss (see the module's docstring). What was on
        its way to it is lost."""
        self.transports.pop(address, None)
        now_s = self.scheduler.clock.now_s
        for peer in sorted(self.transports):
            link = (address, peer)
            in_flight = self._in_flight.pop(link, [])
            on_the_wire = [i for i in in_flight if i not in self._received]
            kept = self._link_rng(link).randrange(len(on_the_wire) + 1) if on_the_wire else 0
            if sent_all and self.slow_until.get(link, (0.0, 0.0))[0] <= now_s:
                kept = len(on_the_wire)
            self._survivors.update(on_the_wire[:kept])
            if power_loss:
                self._survivors.update(i for i in in_flight if i in self._received)
            self._disconnect(peer, address)
            self._bump(address, peer)

    def node_added(self, src: str, dst: str) -> None:
        if src in self.transports or dst in self.transports:
            self._schedule_connect(src, dst)

    def is_cut(self, link: tuple[str, str]) -> bool:
        return self.cut_until.get(link, 0.0) > self.scheduler.clock.now_s

    def cut(self, links: set[tuple[str, str]], duration_s: float) -> None:
        """Cut these links for a while. On a tcp network a connection whose link stays cut past the
        connection timeout is reset."""
        until_s = self.scheduler.clock.now_s + duration_s
        for link in sorted(links):
            self.cut_until[link] = max(self.cut_until.get(link, 0.0), until_s)
        if self.kind == "tcp" and duration_s > CONNECTION_TIMEOUT_S:
            pairs = sorted({tuple(sorted(link)) for link in links})
            for a, b in pairs:
                self.scheduler.after(CONNECTION_TIMEOUT_S, f"link:{a}={b}", lambda a=a, b=b: self._timeout(a, b))

    def hold(self, link: tuple[str, str], probability: float, duration_s: float) -> None:
        """For a while, hold each message on one link with this probability for STALE_S_MIN..STALE_S_MAX
        (datagram network only: on tcp a connection would time out and reset)."""
        self.held_until[link] = (self.scheduler.clock.now_s + duration_s, probability)

    def slow(self, link: tuple[str, str], delay_s_max: float, duration_s: float) -> None:
        """Delay what is sent on one link by up to delay_s_max, for a while (the order is kept on tcp)."""
        self.slow_until[link] = (self.scheduler.clock.now_s + duration_s, delay_s_max)

    def heal(self) -> None:
        """Every fault ends, and a datagram network keeps order from now on: pysyncobj needs the chunks
        of a snapshot in order (it runs over TCP), so without it a node could never catch up."""
        self.ordered = True
        self.cut_until.clear()
        self.slow_until.clear()
        self.held_until.clear()
        self.faults = LinkFaults()

    def _timeout(self, a: str, b: str) -> None:
        if self.is_cut((a, b)) or self.is_cut((b, a)):
            self.trace(f"connection {a} <-> {b} timed out")
            self.reset(a, b)

    def reset(self, a: str, b: str) -> None:
        """A connection reset between a and b: both ends see it drop, then reconnect."""
        self._bump(a, b)
        self._disconnect(a, b)
        self._disconnect(b, a)
        self._schedule_connect(a, b)

    # ---- messages -----------------------------------------------------------------------------

    def send(self, src: str, dst: str, message: Any) -> None:
        self.sent += 1
        self.scheduler.clock.spend(SEND_S)
        if self.message_filter is not None:
            message = self.message_filter(message)
        data = pickle.dumps(message)
        link = (src, dst)
        rng = self._link_rng(link)
        faults = self.faults
        datagram = self.kind == "datagram"
        now_s = self.scheduler.clock.now_s
        if datagram and (self.is_cut(link) or rng.random() < faults.loss):
            self.dropped += 1
            return
        copies = 2 if datagram and rng.random() < faults.duplicate else 1
        epoch = self._epoch.get(frozenset(link), 0)
        for _ in range(copies):
            at_s = max(now_s, self.cut_until.get(link, 0.0)) + rng.uniform(LATENCY_S_MIN, LATENCY_S_MAX)
            if faults.delay_s_max:
                at_s += rng.uniform(0.0, faults.delay_s_max)
            slow = self.slow_until.get(link)
            if slow is not None and slow[0] > now_s:
                at_s += rng.uniform(0.0, slow[1])
            held = self.held_until.get(link)
            stale = max(faults.stale, held[1] if held is not None and held[0] > now_s else 0.0)
            if datagram and stale and rng.random() < stale:
                at_s += rng.uniform(STALE_S_MIN, STALE_S_MAX)
            if self.ordered:
                at_s = max(at_s, self._fifo_at.get(link, 0.0))
                self._fifo_at[link] = at_s
            self._next_id += 1
            message_id = self._next_id
            if not datagram:
                self._in_flight.setdefault(link, []).append(message_id)
            self.scheduler.at(
                at_s, f"link:{src}>{dst}", lambda d=data, i=message_id: self._deliver(src, dst, epoch, d, i), "deliver"
            )
        self.on_send(src, dst, message)

    def _gone(self, src: str, dst: str, epoch: int, message_id: int) -> bool:
        """Whether a message from src to dst was lost with its sender or its connection."""
        if self.kind == "datagram" or message_id in self._survivors:
            return False
        return src not in self.transports or self._epoch.get(frozenset((src, dst)), 0) != epoch

    def _deliver(self, src: str, dst: str, epoch: int, data: bytes, message_id: int) -> None:
        in_flight = self._in_flight.get((src, dst))
        transport = self.transports.get(dst)
        if (
            transport is None
            or self._gone(src, dst, epoch, message_id)
            or (self.kind == "datagram" and self.is_cut((src, dst)))
        ):
            self._lost(message_id, in_flight)
            return
        node = _peer(transport, src)
        connection = transport._connections.get(node)
        connected = connection is not None and connection.state == CONNECTION_STATE.CONNECTED
        if node is None or not (connected or self.kind == "datagram" or message_id in self._survivors):
            self._lost(message_id, in_flight)
            return
        message = pickle.loads(data)
        self._received.add(message_id)

        def receive() -> None:
            if self.transports.get(dst) is not transport or self._gone(src, dst, epoch, message_id):
                self._lost(message_id, self._in_flight.get((src, dst)))
                return
            self._forget(message_id, self._in_flight.get((src, dst)))
            self.delivered += 1
            self.on_message(src, dst, message)
            transport._onMessageReceived(node, message)

        self.run_on(dst, receive)

    def _lost(self, message_id: int, in_flight: list[int] | None) -> None:
        self.dropped += 1
        self._forget(message_id, in_flight)

    def _forget(self, message_id: int, in_flight: list[int] | None) -> None:
        self._survivors.discard(message_id)
        self._received.discard(message_id)
        if in_flight and message_id in in_flight:
            in_flight.remove(message_id)

    # ---- connections --------------------------------------------------------------------------

    def _link_rng(self, link: tuple[str, str]) -> random.Random:
        rng = self._rng.get(link)
        if rng is None:
            rng = self._rng[link] = stream(self.seed, "link", *link)
        return rng

    def _bump(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        self._epoch[pair] = self._epoch.get(pair, 0) + 1

    def _disconnect(self, at: str, peer: str) -> None:
        transport = self.transports.get(at)
        if transport is None:
            return
        node = _peer(transport, peer)
        connection = transport._connections.get(node)
        if connection is not None and connection.state == CONNECTION_STATE.CONNECTED:
            connection.state = CONNECTION_STATE.DISCONNECTED
            transport._onNodeDisconnected(node)

    def _schedule_connect(self, a: str, b: str) -> None:
        low, high = sorted((a, b))
        delay_s = self._link_rng((low, high)).uniform(RECONNECT_S_MIN, RECONNECT_S_MAX)
        epoch = self._epoch.get(frozenset((a, b)), 0)
        self.scheduler.after(delay_s, f"link:{low}={high}", lambda: self._connect(low, high, epoch), "connect")

    def _connect(self, a: str, b: str, epoch: int) -> None:
        if self._epoch.get(frozenset((a, b)), 0) != epoch:
            return  # reset again meanwhile; a later connect is scheduled
        ends = [(a, b), (b, a)]
        if any(self.transports.get(at) is None for at, _ in ends):
            return
        if self.kind == "tcp" and (self.is_cut((a, b)) or self.is_cut((b, a))):
            self._schedule_connect(a, b)  # the link is still down: try again later
            return
        for at, peer in ends:
            transport = self.transports[at]
            node = _peer(transport, peer)
            connection = transport._connections.get(node)
            if connection is None or connection.state == CONNECTION_STATE.CONNECTED:
                continue
            connection.state = CONNECTION_STATE.CONNECTED
            transport._onNodeConnected(node)
        self.trace(f"connected {a} {b}")
