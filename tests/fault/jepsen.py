"""A Jepsen-style harness: workloads that record a history, a nemesis that injects faults, a checker.

    run = Run(seed=7, seconds=60, root=tmp_dir); summary = run.execute(); assert summary.anomalies == []

- The cluster is 3 (or 5) real node processes. With network="netns" (the default wherever network
  namespaces work: root on Linux) each node runs in a network namespace of its own, with its own
  address, joined to the others by a veth pair and a bridge (tests/netns.py); the bridge has an
  address in the root namespace, so this process (the workloads, the nemesis, the checker) reaches
  every node as a client on the same Ethernet segment would. With network="hook" (the fallback)
  the nodes share loopback and are started with --fault-injection.
- Workloads (each with its own clients, bounded in count and time) record every operation as
  invoke / ok / fail / info (info: outcome unknown, e.g. a timeout):
    append   unique values put by several clients into several topics;
    bank     transfers through programs/balance.py with the CAS retry loop;
    register a programs/work_units.py counter that several clients race on.
  Listeners follow every topic and record what they see.
- The nemesis, driven by the seed, kills (-9) and restarts one node, the leader, a majority or
  all; pauses (SIGSTOP/SIGCONT) a node or the leader long enough to lose leadership; cuts a node
  off; and delays every packet to and from a node by a few hundred ms. It deals the fault kinds
  like cards, each kind once per round in a seeded order, so a long run injects every kind.
  How a node is cut off depends on the network mode: netns takes the node's link down (nothing
  reaches it or leaves it, clients included, and nobody is told: a pulled cable); hook makes the
  node's Raft transport drop its peers' traffic both ways (clients still reach it). Delays need
  netns (tc netem, or a user-space frame relay on kernels without sch_netem); with the hook there
  is no delay fault, and the summary lists the kinds the run could inject.
- The checker reads the history and every node's final streams, and reports anomalies: an
  acknowledged message missing, a message present twice or never sent, streams that differ between
  nodes, a listener that saw a gap, a duplicate or an event going backwards, a bank whose total is
  not what mint issued or with a negative balance, two clients holding the same ticket, and any
  CRITICAL line or traceback in the nodes' logs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import grpc

import laminar
from laminar.client import cluster_digests
from laminar.local_cluster import LocalCluster, free_port_block, write_config
from laminar.recipes.balance import MINT, BalanceView, transfer
from laminar.v1 import laminar_pb2 as pb

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import netns

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APPEND_TOPICS = ("append-0", "append-1", "append-2")
BANK_TOPIC, BANK_ACCOUNTS, BANK_MINTED_EACH = "bank", ("a", "b", "c", "d"), 1000
REGISTER_TOPIC = "tickets"
OP_TIMEOUT_S = 10.0
CONVERGE_TIMEOUT_S = 60.0
OPS_PER_WORKER_MAX = 100_000  # every load loop is bounded in count as well as in time
EVENTS_PER_LISTENER_MAX = 10_000_000  # what one listener thread reads in a run, at most
EVENTS_PER_CATCH_UP_MAX = 100_000  # events a register worker reads to find the counter's value
EVENTS_PER_STREAM_READ_MAX = 10_000_000  # events the checker reads from one node's topic
FAULTS_PER_RUN_MAX = 100_000
NEMESIS_JOIN_TIMEOUT_S = 60.0  # a fault or a heal in progress (a restart waits for the node to exec)
NEMESIS_PAUSE_S_MIN, NEMESIS_PAUSE_S_MAX = 1.0, 3.0  # between one fault's heal and the next fault
FAULT_DURATION_S_MIN, FAULT_DURATION_S_MAX = 2.5, 5.0  # long enough to lose leadership
DELAY_MS_MIN, DELAY_MS_MAX = 100, 400  # added to each packet, each way, by a delay fault
NETWORK_MODES = ("auto", "netns", "hook")
FAULTS = (
    "kill_one",
    "kill_leader",
    "kill_majority",
    "kill_all",
    "pause_one",
    "pause_leader",
    "partition_one",
    "partition_leader",
    "delay_one",
    "delay_leader",
)
HOOK_FAULTS = tuple(f for f in FAULTS if not f.startswith("delay"))  # the fault hook cannot delay


# ---- history ---------------------------------------------------------------------------------


class History:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: list[dict[str, Any]] = []
        self._start = time.monotonic()

    def record(self, process: str, kind: str, f: str, value: Any, **extra: Any) -> None:
        elapsed_s = round(time.monotonic() - self._start, 4)
        op = {"process": process, "type": kind, "f": f, "value": value, "time": elapsed_s}
        op.update(extra)
        with self._lock:
            self.ops.append(op)

    def of(self, f: str) -> list[dict[str, Any]]:
        with self._lock:
            return [op for op in self.ops if op["f"] == f]


# ---- the run ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    seed: int
    seconds: float
    nodes: int
    operations: Counter
    faults: Counter
    anomalies: list[str]
    network: str = "hook"  # how partitions (and delays) were made: "netns" or "hook"
    network_detail: str = ""
    fault_kinds: tuple[str, ...] = HOOK_FAULTS

    def as_text(self) -> str:
        lines = [
            f"seed: {self.seed}",
            f"seconds: {self.seconds:.0f}",
            f"nodes: {self.nodes}",
            f"network: {self.network} ({self.network_detail})",
            f"fault kinds: {', '.join(self.fault_kinds)}",
            f"operations: {dict(sorted(self.operations.items()))}",
            f"faults injected: {dict(sorted(self.faults.items()))}",
            f"anomalies: {len(self.anomalies)}",
        ]
        lines += [f"  - {a}" for a in self.anomalies]
        return "\n".join(lines)


class Run:
    """One seeded run. `network`: "netns" (each node in its own network namespace; faults on its
    link), "hook" (loopback; partitions through the nodes' fault hook), or "auto": netns wherever
    network namespaces can be created, else hook (the summary says which, and why)."""

    def __init__(
        self, seed: int, seconds: float, root: str, nodes: int = 3, workers: int = 2, network: str = "auto"
    ) -> None:
        assert network in NETWORK_MODES, f"network must be one of {NETWORK_MODES}, not {network!r}"
        self.seed, self.seconds, self.root, self.node_count, self.workers = seed, seconds, root, nodes, workers
        self.rng = random.Random(seed)
        self.history = History()
        self.stop = threading.Event()
        self.faults: Counter = Counter()
        self.listener_anomalies: list[str] = []
        self.nemesis_errors: list[str] = []
        # The nemesis holds this while it changes nodes or links; teardown takes it once and marks
        # the run torn down, so no fault and no restart can happen after the cleanup.
        self._nemesis_lock = threading.Lock()
        self._torn_down = False
        self.config = os.path.join(root, "cluster.toml")
        self.ids = list(range(1, nodes + 1))
        data, extra = os.path.join(root, "data"), "raft_log_entries_max = 200"
        self.topology: netns.Topology | None = None
        self.cluster: LocalCluster
        self.fault_kinds: tuple[str, ...]
        unavailable = None
        if network != "hook":
            try:
                self.topology = netns.Topology(hosts=nodes, root_access=True)  # names and subnet only, so far
            except netns.NetnsUnavailable as e:
                if network == "netns":
                    raise netns.NetnsUnavailable(f"network='netns' asked for, but: {e}") from e
                unavailable = str(e)
        if self.topology is not None:
            self.network = "netns"
            pairs = netns.node_addresses(self.topology, self.ids)
            netns.write_cluster_config(self.config, data, pairs, extra=extra)
            self.addresses = [pairs[n][0] for n in self.ids]
            self.raft = [pairs[n][1] for n in self.ids]
            self.cluster = netns.NamespacedCluster(self.config, self.ids, log_dir=root, topology=self.topology)
            self.fault_kinds = FAULTS
            self.network_detail = f"a namespace per node on {self.topology.subnet}; partition: the node's link down"
        else:
            self.network = "hook"
            base = free_port_block(nodes)
            write_config(self.config, nodes, base, data, extra=extra)
            self.addresses = [f"127.0.0.1:{base + n}" for n in range(1, nodes + 1)]
            self.raft = [f"127.0.0.1:{base + nodes + n}" for n in range(1, nodes + 1)]
            self.cluster = LocalCluster(self.config, self.ids, log_dir=root, extra_args=("--fault-injection",))
            self.fault_kinds = HOOK_FAULTS
            why = "asked for" if network == "hook" else f"network namespaces unavailable: {unavailable}"
            self.network_detail = f"{why}; loopback; partition: the nodes' InjectFault hook; no delay fault"

    # ---- driver -----------------------------------------------------------------------------

    def execute(self) -> Summary:
        try:
            if self.topology is not None:
                self.topology.create()
                self.network_detail += f"; delay: {self.topology.delay_method}"
            self.cluster.start_all()
            self._setup()
            threads = self._start_workloads()
            nemesis = threading.Thread(target=self._nemesis, name="nemesis")
            nemesis.start()
            self.stop.wait(self.seconds)
            self.stop.set()
            nemesis.join(NEMESIS_JOIN_TIMEOUT_S)
            self._heal()
            for t in threads:
                t.join(OP_TIMEOUT_S * 6)
            anomalies = Checker(self).check()
        finally:
            self.stop.set()
            with self._nemesis_lock:  # a fault or heal in progress finishes; none starts after this
                self._torn_down = True
            self.cluster.stop_all()  # SIGCONT first, so paused nodes stop too
            if self.topology is not None:
                self.topology.destroy()  # stops delay relays, deletes the namespaces and the bridge
        operations = Counter(f"{op['f']}:{op['type']}" for op in self.history.ops)
        summary = Summary(
            self.seed,
            self.seconds,
            self.node_count,
            operations,
            self.faults,
            anomalies,
            self.network,
            self.network_detail,
            self.fault_kinds,
        )
        with open(os.path.join(self.root, "history.jsonl"), "w") as f:
            for op in self.history.ops:
                f.write(json.dumps(op) + "\n")
        return summary

    def _setup(self) -> None:
        with laminar.Client(self.addresses) as client:
            for topic in APPEND_TOPICS:
                assert client.create_topic(topic).committed(timeout=30).ok
            with open(os.path.join(ROOT, "programs", "balance.py")) as f:
                created = client.create_topic(BANK_TOPIC, program=f.read(), args='{"cache_size": 8}')
            assert created.committed(timeout=30).ok, created.committed(0)
            with open(os.path.join(ROOT, "programs", "work_units.py")) as f:
                assert client.create_topic(REGISTER_TOPIC, program=f.read()).committed(timeout=30).ok
            view = BalanceView(self.addresses, BANK_TOPIC)
            try:
                for account in BANK_ACCOUNTS:
                    assert transfer(client, view, BANK_TOPIC, MINT, account, BANK_MINTED_EACH).ok
            finally:
                view.close()

    def _start_workloads(self) -> list[threading.Thread]:
        targets: list[tuple[str, Callable[[int], None]]] = []
        for i in range(self.workers):
            targets += [(f"append-{i}", self._append), (f"bank-{i}", self._bank), (f"register-{i}", self._register)]
        for topic in (*APPEND_TOPICS, BANK_TOPIC, REGISTER_TOPIC):
            targets.append((f"listen-{topic}", lambda i, topic=topic: self._listen(topic)))
        threads = []
        for n, (name, target) in enumerate(targets):
            t = threading.Thread(target=target, args=(n,), name=name, daemon=True)
            t.start()
            threads.append(t)
        return threads

    # ---- workloads --------------------------------------------------------------------------

    def _append(self, worker: int) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        process = f"append-{worker}"
        with laminar.Client(self.addresses) as client:
            for n in range(OPS_PER_WORKER_MAX):
                if self.stop.is_set():
                    return
                batch = []
                for k in range(10):
                    topic, value = rng.choice(APPEND_TOPICS), f"{process}-{n}-{k}"
                    self.history.record(process, "invoke", "append", value, topic=topic)
                    batch.append((topic, value, client.put(topic, process, value)))
                for topic, value, pending in batch:
                    self._complete(process, "append", value, pending, topic=topic)

    def _complete(self, process: str, f: str, value: Any, pending: laminar.Pending, **extra: Any) -> None:
        try:
            commit = pending.committed(timeout=OP_TIMEOUT_S)
        except laminar.LaminarError as e:
            self.history.record(process, "info", f, value, error=str(e), **extra)
            return
        kind = "ok" if commit.ok else "fail"
        self.history.record(process, kind, f, value, offset=commit.intention_offset, reason=commit.reason, **extra)

    def _bank(self, worker: int) -> None:
        rng = random.Random(self.seed * 2000 + worker)
        process = f"bank-{worker}"
        view = BalanceView(self.addresses, BANK_TOPIC)
        try:
            with laminar.Client(self.addresses) as client:
                for _ in range(OPS_PER_WORKER_MAX):
                    if self.stop.is_set():
                        return
                    source, target = rng.sample(BANK_ACCOUNTS, 2)
                    value = {"from": source, "to": target, "amount": rng.randint(1, 100)}
                    self.history.record(process, "invoke", "transfer", value)
                    try:
                        result = transfer(
                            client, view, BANK_TOPIC, source, target, value["amount"], timeout=OP_TIMEOUT_S
                        )
                    except laminar.LaminarError as e:
                        self.history.record(process, "info", "transfer", value, error=str(e))
                        continue
                    kind = "ok" if result.ok else "fail"
                    self.history.record(process, kind, "transfer", value, reason=result.commit.reason)
        finally:
            view.close()

    def _register(self, worker: int) -> None:
        process = f"register-{worker}"
        with laminar.Client(self.addresses) as client, laminar.Listener(self.addresses, REGISTER_TOPIC) as listener:
            last = 0
            for _ in range(OPS_PER_WORKER_MAX):
                if self.stop.is_set():
                    return
                self.history.record(process, "invoke", "ticket", last + 1)
                self._complete(process, "ticket", last + 1, client.put(REGISTER_TOPIC, "job", str(last + 1)))
                try:  # catch up with the counter before the next try
                    for _ in range(EVENTS_PER_CATCH_UP_MAX):
                        event = listener.next_event(timeout=OP_TIMEOUT_S)
                        if event.kind is laminar.Kind.PUT and int(event.value) > last:
                            last = int(event.value)
                            break
                except laminar.Timeout:
                    continue

    def _listen(self, topic: str) -> None:
        after = 0
        with laminar.Listener(self.addresses, topic) as listener:
            for _ in range(EVENTS_PER_LISTENER_MAX):
                if self.stop.is_set():
                    return
                try:
                    event = listener.next_event(timeout=1.0)
                except laminar.Timeout:
                    continue
                except laminar.LaminarError as e:
                    self.listener_anomalies.append(f"listener on {topic} failed: {e}")
                    return
                if event.consequence_offset != after + 1:
                    gap = f"listener on {topic}: offset {after} then {event.consequence_offset}"
                    self.listener_anomalies.append(gap)
                after = event.consequence_offset

    # ---- nemesis ----------------------------------------------------------------------------

    def _nemesis(self) -> None:
        deck: list[str] = []
        for _ in range(FAULTS_PER_RUN_MAX):
            if self.stop.wait(self.rng.uniform(NEMESIS_PAUSE_S_MIN, NEMESIS_PAUSE_S_MAX)):
                return
            if not deck:  # a new round: every kind once, in a seeded order
                deck = list(self.fault_kinds)
                self.rng.shuffle(deck)
            fault = deck.pop()
            with self._nemesis_lock:
                if self._torn_down:
                    return
                try:
                    heal, detail = self._inject(fault)
                except Exception as e:  # noqa: BLE001 - reported as an anomaly: a run must inject what it claims
                    self.nemesis_errors.append(f"nemesis: {fault} failed: {type(e).__name__}: {e}")
                    continue
            self.faults[fault] += 1
            self.history.record("nemesis", "info", "fault", fault, **detail)
            self.stop.wait(self.rng.uniform(FAULT_DURATION_S_MIN, FAULT_DURATION_S_MAX))
            with self._nemesis_lock:
                if self._torn_down:
                    return
                try:
                    heal()
                except Exception as e:  # noqa: BLE001 - as above; _heal() at the end retries everything
                    self.nemesis_errors.append(f"nemesis: healing {fault} failed: {type(e).__name__}: {e}")
            self.history.record("nemesis", "info", "heal", fault, **detail)

    def _leader(self) -> int | None:
        for status in laminar.cluster_status(self.addresses, 1.0):
            if status.get("role") == "leader":
                return int(status["node_id"])
        return None

    def _inject(self, fault: str) -> tuple[Callable[[], None], dict[str, Any]]:
        """Inject `fault`; returns how to heal it and what to record about it."""
        live = [n for n in self.ids if self.cluster.alive(n)]
        leader = self._leader()
        target = leader if fault.endswith("leader") and leader is not None else self.rng.choice(live)
        if fault.startswith("kill"):
            count = {"kill_majority": len(self.ids) // 2 + 1, "kill_all": len(self.ids)}.get(fault, 1)
            victims = [target, *self.rng.sample([n for n in self.ids if n != target], count - 1)]
            for node in victims:
                self.cluster.kill(node)

            def restart() -> None:
                for node in victims:
                    if not self.cluster.alive(node):
                        self.cluster.start(node)

            return restart, {"nodes": victims}
        if fault.startswith("pause"):
            self.cluster.signal(target, signal.SIGSTOP)
            return lambda: self.cluster.signal(target, signal.SIGCONT), {"nodes": [target]}
        topology = self.topology
        if fault.startswith("delay"):
            assert topology is not None, "delay faults need network namespaces"
            delay_ms = self.rng.randint(DELAY_MS_MIN, DELAY_MS_MAX)
            topology.delay(target, delay_ms)
            return lambda: topology.restore(target), {"nodes": [target], "delay_ms": delay_ms}
        if topology is not None:
            topology.cut(target)
            return lambda: topology.restore(target), {"nodes": [target]}
        self._partition({target: [r for n, r in zip(self.ids, self.raft, strict=True) if n != target]})
        return lambda: self._partition({}), {"nodes": [target]}

    def _partition(self, cut: dict[int, list[str]]) -> None:
        """Cut the given nodes off from the given peers, symmetrically; {} heals everything."""
        blocked: dict[int, set[str]] = defaultdict(set)
        for node, peers in cut.items():
            blocked[node] |= set(peers)
            for n, raft in zip(self.ids, self.raft, strict=True):
                if raft in peers:
                    blocked[n].add(self.raft[node - 1])
        for node in self.ids:
            self._fault(node, sorted(blocked.get(node, set())))

    def _fault(self, node: int, partitioned_from: list[str]) -> None:
        with grpc.insecure_channel(self.addresses[node - 1]) as channel:
            method = channel.unary_unary(
                "/laminar.v1.Laminar/InjectFault",
                request_serializer=pb.FaultRequest.SerializeToString,
                response_deserializer=pb.FaultResponse.FromString,
            )
            try:
                method(pb.FaultRequest(partitioned_from=partitioned_from), timeout=2.0)
            except grpc.RpcError:
                pass  # a dead or paused node: it has no partition to heal

    def _heal(self) -> None:
        with self._nemesis_lock:  # in case the nemesis outlived its join
            for node in self.ids:
                if self.cluster.alive(node):
                    self.cluster.signal(node, signal.SIGCONT)
                else:
                    self.cluster.start(node)
            if self.topology is not None:
                self.topology.restore_all()
            else:
                self._partition({})


# ---- checker ---------------------------------------------------------------------------------


class Checker:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.anomalies: list[str] = []

    def check(self) -> list[str]:
        self._converge()
        streams = self._streams()
        if streams is not None:
            self._append(streams)
            self._bank(streams[self.run.addresses[0]][BANK_TOPIC])
            self._register(streams[self.run.addresses[0]][REGISTER_TOPIC])
        self.anomalies += self.run.listener_anomalies
        self.anomalies += self.run.nemesis_errors
        self._logs()
        return self.anomalies

    def _converge(self) -> None:
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while time.monotonic() < deadline:
            digests = cluster_digests(self.run.addresses, timeout_s=10.0)
            offsets = {d.get("intention_offset") for d in digests}
            if all("error" not in d for d in digests) and len(offsets) == 1:
                if len({d["sha256"] for d in digests}) != 1:
                    self.anomalies.append(f"replicas differ at the same offset: {digests}")
                return
            time.sleep(0.5)
        self.anomalies.append(f"nodes did not converge within {CONVERGE_TIMEOUT_S} s: {digests}")

    def _streams(self) -> dict[str, dict[str, list[laminar.Event]]] | None:
        streams: dict[str, dict[str, list[laminar.Event]]] = {}
        for address in self.run.addresses:
            streams[address] = {}
            for topic in (*APPEND_TOPICS, BANK_TOPIC, REGISTER_TOPIC):
                events: list[laminar.Event] = []
                with laminar.Listener([address], topic) as listener:
                    try:
                        for _ in range(EVENTS_PER_STREAM_READ_MAX):
                            events.append(listener.next_event(timeout=2.0))
                    except laminar.Timeout:
                        pass
                streams[address][topic] = events
        first = streams[self.run.addresses[0]]
        for address, topics in streams.items():
            for topic, events in topics.items():
                if events != first[topic]:
                    self.anomalies.append(f"{topic} on {address} differs from {self.run.addresses[0]}")
        return streams

    def _append(self, streams: dict[str, dict[str, list[laminar.Event]]]) -> None:
        present = Counter(
            (topic, e.value.decode())
            for topic in APPEND_TOPICS
            for e in streams[self.run.addresses[0]][topic]
            if e.kind is laminar.Kind.PUT
        )
        invoked = {(op["topic"], op["value"]) for op in self.run.history.of("append") if op["type"] == "invoke"}
        acked = {(op["topic"], op["value"]) for op in self.run.history.of("append") if op["type"] == "ok"}
        for item, count in present.items():
            if count > 1:
                self.anomalies.append(f"append {item} present {count} times")
            if item not in invoked:
                self.anomalies.append(f"append {item} present but never sent")
        for item in acked - set(present):
            self.anomalies.append(f"append {item} acknowledged but missing")

    def _bank(self, events: list[laminar.Event]) -> None:
        balances: dict[str, int] = {}
        for e in events:
            if e.kind is laminar.Kind.PUT:
                balance = int(e.value)
                if balance < 0:
                    self.anomalies.append(f"bank: negative balance {e}")
                balances[e.key.decode()] = balance
        total, minted = sum(balances.values()), BANK_MINTED_EACH * len(BANK_ACCOUNTS)
        if total != minted:
            self.anomalies.append(f"bank: total {total} but mint issued {minted}")

    def _register(self, events: list[laminar.Event]) -> None:
        values = [int(e.value) for e in events if e.kind is laminar.Kind.PUT]
        if values != list(range(1, len(values) + 1)):
            self.anomalies.append(f"register: the counter did not go 1, 2, 3 ...: {values[:20]}")
        holders: dict[int, list[str]] = defaultdict(list)
        for op in self.run.history.of("ticket"):
            if op["type"] == "ok":
                holders[op["value"]].append(op["process"])
        for ticket, processes in holders.items():
            if len(processes) > 1:
                self.anomalies.append(f"register: ticket {ticket} held by {processes}")
            if ticket > len(values):
                self.anomalies.append(f"register: ticket {ticket} acknowledged but not in the stream")

    def _logs(self) -> None:
        for name in sorted(os.listdir(self.run.root)):
            if not name.endswith(".log"):
                continue
            with open(os.path.join(self.run.root, name), errors="replace") as f:
                for line in f:
                    if "CRITICAL" in line or "Traceback" in line or "truncating already-applied" in line:
                        self.anomalies.append(f"{name}: {line.strip()[:300]}")
