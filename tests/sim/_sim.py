"""The simulation: nodes, a client workload and a fault plan, run by one seed in simulated time.

A run has three phases. Faults: for `fault_seconds` the plan crashes, power-cuts, pauses and
restarts nodes and partitions, degrades and resets the network while a client proposes entries.
Heal: every fault ends; within `heal_seconds_max` a leader must be elected and a new proposal
must commit. Converge: every node must apply the same log, and then every acknowledged proposal
must be in every node's store exactly once, with equal store digests. Safety invariants are checked
after every event throughout; the first violation ends the run.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import random
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from laminar.v1 import laminar_pb2 as pb
from tests.sim import _checks, _consumers
from tests.sim._disk import Disk
from tests.sim._net import LinkFaults, Network
from tests.sim._wiring import SENT_TERM_KEY, DurableLog, SimNode, reverted, simulated_runtime
from tests.sim._world import Clock, Scheduler, stream

TICK_S = 0.05  # pysyncobj's autoTickPeriod: a node with nothing to do ticks this often
WAKE_S_MAX = 0.001  # a node ticks within this of receiving a message or a proposal
BACKGROUND_S_MAX = 0.3  # a snapshot is packed within this (the background thread of _snapshot.py)
# The leader's journal sync (its SyncThread) completes within SYNC_S_MAX, a few times the network's
# latency, so a follower's reply often arrives first; one in SYNC_STALL_1_IN stalls up to SYNC_STALL_S_MAX
# (a disk shared with other work).
SYNC_S_MAX = 0.004
SYNC_STALL_1_IN = 20
SYNC_STALL_S_MAX = 0.3
STEP_CHECK_S = 0.25  # log matching across nodes, this often
DIGEST_CHECK_S = 2.0  # store digests, this often
PROPOSALS_IN_FLIGHT_MAX = 64
PROBE_S = 0.5  # after healing, a probe proposal this often until one commits
TOPIC = "sim"
# --pipelines (off by default, so every seed's default run is unchanged): a second client drives a programmable
# topic that calls a service, workers that join and leave, and results (right, duplicate, late, unknown), with
# entries stamped with log time so that leases end and calls time out: every node must decide them alike.
CALLS_TOPIC = "calls"
CALLS_PROGRAM = """
def on_put(ctx, key, value):
    for i in range(int(value)):
        ctx.call("svc", "m", key, context={"i": i}, timeout_ms=2000 + 1000 * i)

def on_result(ctx, call, response, failure):
    ctx.put("r/" + str(call.id), response if failure is None else failure)
"""
PIPELINE_ACTIONS_PER_S = 10.0
LOG_TIME_BASE_MS = 1_700_000_000_000  # what the simulation's clock reads as log time at 0
SWARM_LOG_ENTRIES_MAX = (8, 16, 30, 60)
SWARM_PROPOSALS_PER_S = (5.0, 15.0, 40.0)
SWARM_FAULT_GAP_S_MEAN = (0.7, 1.5, 3.0)
# Each kind of fault and its weight in a plan that has them all. A seed keeps each kind with probability
# SWARM_FAULT_KEPT_P and multiplies its weight by one of SWARM_FAULT_WEIGHT_FACTORS (swarm testing: a run
# without crashes, or made mostly of pauses, reaches interleavings that an even mix rarely does).
FAULT_WEIGHTS = {"crash": 3, "power": 3, "pause": 2, "partition": 3, "one-way": 2, "degrade": 2, "slow": 3, "reset": 2}
MEMBERSHIP_FAULT_WEIGHT = 3
STALE_FAULT_WEIGHT = 3  # datagram network only (see _net.Network.hold)
SWARM_FAULT_KEPT_P = 0.7
SWARM_FAULT_WEIGHT_FACTORS = (1, 1, 3)
BUGGIFY_P = 0.2  # how often a node crashes at a moment that matters (see _buggify)
# The tail-loss mix (SimConfig.tail_loss): a leader loses power with entries it sent but has not synced.
TAIL_LOSS_ENTRIES_MIN = 8  # unsynced entries on the leader for the moment to count
TAIL_LOSS_PAUSE_S = (2.0, 6.0)  # how long the follower that reads them late stalls
TAIL_LOSS_LATE_S_MIN = 1.0  # it reads them this much later at least
TAIL_LOSS_SLOW_S = (0.1, 2.0)  # meanwhile the leader's links to the other followers delay up to this
TAIL_LOSS_RESTART_S = (0.2, 1.0)  # a power blip: the leader is back before its followers time out
TAIL_LOSS_BURSTS = (1, 4, 16)  # proposals the client sends at one instant (pipelined clients)
TAIL_LOSS_FAULT_WEIGHTS = {"tail-loss": 9, "crash": 1, "power": 1, "slow": 2, "one-way": 1}
MEMBERSHIP_ANSWER_S_MAX = 10.0  # a change not answered by then (its leader crashed) is given up
VIOLATIONS_SHOWN_MAX = 5  # per check: one broken index often breaks the next hundred the same way


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 3
    fault_seconds: float = 30.0
    heal_seconds_max: float = 30.0  # after healing: a leader and a new commit within this
    converge_seconds_max: float = 60.0  # after that commit: every node applied the same log
    # None: drawn from the seed (swarm testing: each run stresses its own mix)
    log_entries_max: int | None = None  # compaction past this many journal entries
    proposals_per_s: float | None = None
    faults: bool = True
    network: str = "tcp"  # or "datagram": see _net.py
    revert: frozenset[str] = frozenset()  # fixes to take back (_wiring.REVERTIBLE_FIXES)
    membership: bool = False  # also remove members and add them back (fresh) as faults
    pipelines: bool = False  # also drive calls, workers and results (CALLS_TOPIC), in stamped entries
    # Also drive durable consumers and consumer groups on a topic with retention (_consumers.py), in stamped entries.
    consumers: bool = False
    fault_gap_s_mean: float | None = None  # mean time between two faults
    # A mix aimed at the loss 6354a97 fixed (README, "The tail-loss mix"): bursts of proposals, pauses
    # weighted up, and a leader that loses power right after sending entries it has not synced.
    tail_loss: bool = False
    trace_lines: int = 200


@dataclass
class Result:
    seed: int
    config: SimConfig
    violations: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    simulated_s: float = 0.0
    calls: str = ""  # --pipelines: what the calls topic's counters say at the end, on one converged node
    consumers: str = ""  # --consumers: the jobs topic's consumers at the end, on one converged node, and the checks
    wall_s: float = 0.0
    events: int = 0
    proposals: int = 0
    acknowledged: int = 0
    faults: int = 0
    snapshots_installed: int = 0
    membership_changes: int = 0
    refused: int = 0  # proposals refused once the topic existed (a leader had been elected)
    messages: int = 0
    history: str = ""  # a hash of the whole trace: a seed replayed gives the same one
    mix: str = ""  # the parameters drawn for this seed
    # Replies of an older term that reached a leader and claim more than it counts the follower at (the
    # fix in place drops them), and of those, how many claim entries the follower does not hold.
    stale_replies: int = 0
    stale_replies_past_held: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {'ok' if self.ok else 'VIOLATION'}, {self.config.nodes} nodes, {self.mix}, "
            f"{self.simulated_s:.1f} simulated s in {self.wall_s:.1f} s, {self.events} events, "
            f"{self.messages} messages, {self.faults} faults, {self.proposals} proposals, "
            f"{self.acknowledged} acknowledged, {self.snapshots_installed} snapshot installs"
            + (f", {self.membership_changes} membership changes" if self.config.membership else "")
            + (
                f", {self.stale_replies} replies of an older term ({self.stale_replies_past_held} past what "
                "the follower holds)"
                if self.stale_replies
                else ""
            )
            + (f", calls: {self.calls}" if self.config.pipelines else "")
            + (f", consumers: {self.consumers}" if self.config.consumers else "")
        )

    def report(self) -> str:
        lines = [self.summary(), *(f"  violation: {v}" for v in self.violations)]
        if self.violations:
            lines.append(f"  last {len(self.trace)} events:")
            lines.extend(f"    {line}" for line in self.trace)
            config = self.config
            command = (
                f".venv/bin/python -m tests.sim --seed {self.seed} --nodes {config.nodes} --network {config.network} "
                f"--fault-seconds {config.fault_seconds:g}"
            )
            command += f" --revert {','.join(sorted(config.revert))}" if config.revert else ""
            command += " --membership" if config.membership else ""
            command += " --tail-loss" if config.tail_loss else ""
            command += " --pipelines" if config.pipelines else ""
            command += " --consumers" if config.consumers else ""
            command += f" --proposals-per-s {config.proposals_per_s:g}" if config.proposals_per_s else ""
            command += f" --log-entries-max {config.log_entries_max}" if config.log_entries_max else ""
            lines.append(f"  reproduce: {command}")
        return "\n".join(lines)


class Violation(Exception):
    pass


class _TraceHandler(logging.Handler):
    def __init__(self, note: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._note = note

    def emit(self, record: logging.LogRecord) -> None:
        if "slow apply" in record.msg:
            return  # measured in real time: it would make two runs of a seed differ
        text = f"log {record.name} {record.levelname}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f" ({type(error).__name__}: {error})"
        self._note(text)


def describe(message: Any) -> str:
    if not isinstance(message, dict):
        return repr(message)[:80]
    kind = message.get("type")
    if kind == "append_entries":
        if message.get("serialized") is not None:
            data, first, last = message["serialized"]
            return f"snapshot chunk t{message['term']} {len(data)}B first={first} last={last}"
        entries = message.get("entries", [])
        span = f" {entries[0][1]}..{entries[-1][1]}" if entries else ""
        return (
            f"append t{message['term']} prev {message.get('prevLogIdx')}/{message.get('prevLogTerm')} "
            f"{len(entries)} entries{span} commit {message['commit_index']}"
        )
    if kind == "next_node_idx":
        term = message.get("term", f"{message.get(SENT_TERM_KEY)} (not sent)")
        return f"reply t{term} next {message['next_node_idx']} success={message['success']} reset={message['reset']}"
    if kind == "request_vote":
        return f"vote? t{message['term']} last {message['last_log_index']}/{message['last_log_term']}"
    if kind == "response_vote":
        return f"vote! t{message['term']}"
    return str(kind)


def _swarm_faults(swarm: random.Random, config: SimConfig) -> dict[str, int]:
    """The kinds of fault this seed injects, and their weights (at least one kind)."""
    weights = dict(TAIL_LOSS_FAULT_WEIGHTS if config.tail_loss else FAULT_WEIGHTS)
    if config.network == "datagram":
        weights["stale"] = STALE_FAULT_WEIGHT
    if config.membership:
        weights["membership"] = MEMBERSHIP_FAULT_WEIGHT
    kept = {
        kind: weight * swarm.choice(SWARM_FAULT_WEIGHT_FACTORS)
        for kind, weight in weights.items()
        if swarm.random() < SWARM_FAULT_KEPT_P
    }
    if config.tail_loss:
        kept.setdefault("tail-loss", weights["tail-loss"])  # asked for: always part of the plan
    if config.membership and "membership" not in kept:
        kept["membership"] = MEMBERSHIP_FAULT_WEIGHT  # asked for: always part of the plan
    return kept or {"crash": FAULT_WEIGHTS["crash"]}


class Simulation:
    def __init__(self, seed: int, config: SimConfig, work_dir: str) -> None:
        self.seed, self.config, self.work_dir = seed, config, work_dir
        self.clock = Clock()
        self.scheduler = Scheduler(self.clock)
        self.plan = stream(seed, "plan")
        swarm = stream(seed, "swarm")
        # Drawn whether or not the config sets them, so a seed's other choices stay the same.
        log_entries_max = swarm.choice(SWARM_LOG_ENTRIES_MAX)
        proposals_per_s = swarm.choice(SWARM_PROPOSALS_PER_S)
        fault_gap_s_mean = swarm.choice(SWARM_FAULT_GAP_S_MEAN)
        self.log_entries_max = config.log_entries_max or log_entries_max
        self.proposals_per_s = config.proposals_per_s or proposals_per_s
        self.fault_gap_s_mean = config.fault_gap_s_mean or fault_gap_s_mean
        self.fault_weights = _swarm_faults(swarm, config)
        self.workload = stream(seed, "workload")
        self.pipeline = stream(seed, "pipelines")  # its own stream: the default workload draws the same
        self.calls_made = 0  # calls the pipeline client asked for (an upper bound on the ids issued)
        self.creates_asked = 0
        # --consumers: a third client, its own stream; the tracker checks every entry each node applies.
        self.consumer_client = _consumers.ConsumerClient(stream(seed, "consumers"), self._consumer_view)
        self.consumer_tracker = _consumers.Tracker()
        self._trace: collections.deque[tuple[float, str]] = collections.deque(maxlen=config.trace_lines)
        self.network = Network(self.scheduler, seed, config.network, self.note)
        self.network.run_on = self._run_delivery
        self.network.on_message = self._on_message
        self.network.on_send = self._on_send
        self.disk = Disk()
        self.checker = _checks.Checker()
        self.addresses = [f"n{i}:{7000 + i}" for i in range(1, config.nodes + 1)]
        self.node_random = {a: stream(seed, "node", a) for a in self.addresses}
        self.sync_random = {a: stream(seed, "sync", a) for a in self.addresses}
        self.nodes: dict[str, SimNode | None] = dict.fromkeys(self.addresses)
        self.members = set(self.addresses)  # the voting members, as the simulation last saw them change
        self.joining: str | None = None  # a node started fresh, to be added
        self.changing_until = 0.0  # a membership change is in flight until its answer, or this time
        self.incarnation = dict.fromkeys(self.addresses, 0)
        self.paused_until = dict.fromkeys(self.addresses, 0.0)
        self.stopped_logs: dict[str, DurableLog] = {}  # address -> what a stopped node's disk holds
        self.wake_at: dict[str, float] = {}
        self._tail_loss_decided: dict[str, int] = {}  # leader -> the event in which it last looked (tail_loss)
        self.tail_loss_armed: dict[str, int] = {}  # leader -> its incarnation, armed by _tail_loss
        self.current: str | None = None
        self.result = Result(seed, config)
        self.violations: list[str] = []
        self.found_in_apply: list[str] = []
        self.next_proposal = 0
        self.in_flight: dict[str, int] = dict.fromkeys(self.addresses, 0)  # proposals awaiting a result, per node
        self.acknowledged: set[bytes] = set()
        self.topic_ready = False
        self.healed_at: float | None = None
        self.probe_committed_at: float | None = None
        self.start_s = self.clock.now_s
        self._history = hashlib.blake2b(digest_size=16)  # of every trace line: equal runs, equal hashes

    # ---- the trace ----------------------------------------------------------------------------

    def note(self, text: str) -> None:
        at_s = self.clock.now_s - self.start_s
        self._trace.append((at_s, text))
        self._history.update(f"{at_s:.6f} {text}\n".encode())

    def _fail(self, found: list[str]) -> None:
        if found:
            shown = found[:VIOLATIONS_SHOWN_MAX]
            if len(found) > len(shown):
                shown.append(f"... and {len(found) - len(shown)} more of the same check")
            self.violations.extend(shown)
            raise Violation(found[0])

    # ---- running ------------------------------------------------------------------------------

    def run(self) -> Result:
        started = time.perf_counter()
        trace_handler = _TraceHandler(self.note)
        loggers = [logging.getLogger(name) for name in ("pysyncobj", "laminar")]
        saved = [(lg.level, lg.propagate) for lg in loggers]
        for lg in loggers:
            lg.addHandler(trace_handler)
            lg.setLevel(logging.WARNING)
            lg.propagate = False
        try:
            with (
                self.disk.installed(),
                simulated_runtime(self.clock.now, self._random, self._start_thread, self._start_sync),
                reverted(self.config.revert) as message_filter,
            ):
                self.network.message_filter = message_filter
                self._run()
        except Violation:
            pass
        except Exception:  # noqa: BLE001 - a crash of the code under test is a finding too
            self.violations.append(f"exception at {self.clock.now_s - self.start_s:.4f} s: {traceback.format_exc()}")
        finally:
            for lg, (level, propagate) in zip(loggers, saved, strict=True):
                lg.removeHandler(trace_handler)
                lg.setLevel(level)
                lg.propagate = propagate
            for address, node in self.nodes.items():
                if node is not None:
                    self.result.snapshots_installed += node.engine.snapshots.snapshots_installed
                    with contextlib.suppress(Exception):
                        node.crash()
                    self.nodes[address] = None
        result = self.result
        result.violations = self.violations
        result.trace = [f"{t:10.4f} {text}" for t, text in self._trace]
        result.simulated_s = self.clock.now_s - self.start_s
        result.wall_s = time.perf_counter() - started
        result.events = self.scheduler.events_run
        result.messages = self.network.delivered
        result.acknowledged = len(self.acknowledged)
        result.history = self._history.hexdigest()
        result.mix = (
            f"compaction {self.log_entries_max}, {self.proposals_per_s:g} proposals/s, "
            f"a fault every {self.fault_gap_s_mean:g} s: "
            + " ".join(f"{kind}x{weight}" for kind, weight in sorted(self.fault_weights.items()))
        )
        return result

    def _run(self) -> None:
        for address in self.addresses:
            self._start(address)
        self.scheduler.after(0.5, "client", self._propose_next, "propose")
        if self.config.pipelines:
            self.scheduler.after(0.6, "client", self._pipeline_next, "pipeline")
        if self.config.consumers:
            self.scheduler.after(0.7, "client", self._consumers_next, "consumers")
        if self.config.faults:
            self._schedule_fault()
        self.scheduler.after(STEP_CHECK_S, "check", self._periodic_logs)
        self.scheduler.after(DIGEST_CHECK_S, "check", self._periodic_digests)
        heal_at = self.start_s + self.config.fault_seconds
        self.scheduler.at(heal_at, "heal", self._heal, "heal")
        while self.probe_committed_at is None:
            self._step()
            if self.healed_at is not None and self.clock.now_s > self.healed_at + self.config.heal_seconds_max:
                self._fail([f"no new proposal committed within {self.config.heal_seconds_max} s after healing"])
        deadline = self.probe_committed_at + self.config.converge_seconds_max
        while not self._converged():
            self._step()
            if self.clock.now_s > deadline:
                self._fail([f"nodes did not converge within {self.config.converge_seconds_max} s: {self._positions()}"])
        self._final_checks()

    def _step(self) -> None:
        if self.scheduler.run_next() is None:
            self._fail(["nothing left to run"])

    # ---- nodes --------------------------------------------------------------------------------

    def _random(self) -> float:
        assert self.current is not None, "pysyncobj drew a random number outside any node"
        return self.node_random[self.current].random()

    def _start_thread(self, run: Callable[[], None]) -> None:
        address = self.current
        assert address is not None
        incarnation = self.incarnation[address]
        delay_s = self.node_random[address].uniform(0.0, BACKGROUND_S_MAX)

        def background() -> None:
            if self.incarnation[address] == incarnation:  # the process is gone, and its threads with it
                self._on(address, run)
                # Buggify: the snapshot is published, the journal not yet compacted (the next tick does it).
                self._buggify(address, "right after publishing a snapshot")

        self.scheduler.after(delay_s, f"node:{address}:background", background, "background")

    def _start_sync(self, run: Callable[[], None]) -> None:
        """The leader's sync thread: the fsync ends a while after it is asked for, then wakes the tick."""
        address = self.current
        assert address is not None
        incarnation = self.incarnation[address]
        rng = self.sync_random[address]
        delay_s = rng.uniform(0.0, SYNC_STALL_S_MAX if rng.randrange(SYNC_STALL_1_IN) == 0 else SYNC_S_MAX)

        def sync() -> None:
            if self.incarnation[address] != incarnation:
                return  # the process is gone, and its threads with it
            if self.paused_until[address] > self.clock.now_s:
                self.scheduler.at(self.paused_until[address], f"node:{address}:sync", sync, "sync")
                return
            self._on(address, run)
            self._wake(address)

        self.scheduler.after(delay_s, f"node:{address}:sync", sync, "sync")

    def _on(self, address: str, run: Callable[[], None]) -> None:
        """Run a node's code as that node, then check what it may have changed."""
        self.current = address
        try:
            run()
        finally:
            self.current = None
        self._fail(self.found_in_apply)
        node = self.nodes[address]
        if node is not None:
            log = node.log()
            self._fail(self.checker.leader(node))
            self._fail(self.checker.commits(node, log))
            self._fail(self.checker.completeness(node, log))
        self._check_committed_is_held()

    def _start(self, address: str) -> None:
        self.incarnation[address] += 1
        self.stopped_logs.pop(address, None)
        data_dir = os.path.join(self.work_dir, address.replace(":", "-"))
        os.makedirs(data_dir, exist_ok=True)
        self.disk.track(os.path.join(data_dir, "raft.journal"), journal=True)
        self.disk.track(os.path.join(data_dir, "raft.journal.meta"))
        self.disk.track(os.path.join(data_dir, "raft.snapshot"))
        peers = [a for a in self.addresses if a != address and (a in self.members or a == self.joining)]

        def build() -> None:
            node = SimNode(address, peers, data_dir, self.network, self.log_entries_max, self._applied)
            self.nodes[address] = node
            self.network.attach(address, node.transport)

        self._on(address, build)
        self.note(f"{address} started")
        self._schedule_tick(address, self.node_random[address].uniform(0.0, TICK_S))

    def _schedule_tick(self, address: str, delay_s: float) -> None:
        incarnation = self.incarnation[address]

        def tick() -> None:
            if self.incarnation[address] != incarnation or self.nodes[address] is None:
                return
            if self.paused_until[address] > self.clock.now_s:
                # The tail-loss mix wakes a paused node as a process stopped inside poll() wakes: it reads
                # what waits in its sockets before its next tick checks the election timer. (The other
                # runs tick first; their recorded seeds keep that order.)
                resume_s = self.paused_until[address] + (WAKE_S_MAX if self.config.tail_loss else 0.0)
                self.scheduler.at(resume_s, f"node:{address}", tick, "tick")
                return
            node = self.nodes[address]
            assert node is not None
            self._on(address, node.tick)
            self._schedule_tick(address, TICK_S)

        self.scheduler.after(delay_s, f"node:{address}", tick, "tick")

    def _wake(self, address: str) -> None:
        """An extra tick soon: pysyncobj's poll returns when a message or a proposal arrives."""
        at_s = self.clock.now_s + self.node_random[address].uniform(0.0, WAKE_S_MAX)
        if self.wake_at.get(address, -1.0) >= self.clock.now_s:
            return
        self.wake_at[address] = at_s
        incarnation = self.incarnation[address]

        def wake() -> None:
            node = self.nodes[address]
            running = self.incarnation[address] == incarnation and node is not None
            if running and node is not None and self.paused_until[address] <= self.clock.now_s:
                self._on(address, node.tick)

        self.scheduler.at(at_s, f"node:{address}:wake", wake, "wake")

    def _run_delivery(self, address: str, receive: Callable[[], None]) -> None:
        paused_until = self.paused_until[address]
        if paused_until > self.clock.now_s:
            self.scheduler.at(paused_until, f"node:{address}:inbox", lambda: self._run_delivery(address, receive))
            return
        self._on(address, receive)
        self._wake(address)

    def _on_message(self, src: str, dst: str, message: Any) -> None:
        self.note(f"{src}>{dst} {describe(message)}")
        if isinstance(message, dict) and message.get("type") == "next_node_idx":
            self._probe_reply(src, dst, message)
        chunk = message.get("serialized") if isinstance(message, dict) else None
        if chunk is not None and chunk[2]:
            # Buggify: the follower is installing the leader's snapshot; the leader may not live to
            # hear its reply.
            self.scheduler.after(0.0, "plan", lambda: self._buggify(src, "right after sending a snapshot"))

    def _probe_reply(self, src: str, dst: str, message: dict[str, Any]) -> None:
        """Counts replies of an older term that would raise the leader's matchIndex (6354a97 drops them),
        and those that claim entries the follower does not hold: the harm the fix prevents."""
        leader = self.nodes.get(dst)
        if not message.get("success") or leader is None or not leader.is_leader:
            return
        sent_term = message.get("term", message.get(SENT_TERM_KEY))
        claimed = message["next_node_idx"] - 1
        counted = leader.match_index(src)
        if sent_term is None or sent_term == leader.term or counted is None or claimed <= counted:
            return
        self.result.stale_replies += 1
        log = leader.log()
        follower = self.nodes.get(src)
        if claimed > log[-1][1]:
            held = False  # the leader's entries up to it are not even written yet
        elif claimed < log[0][1]:
            held = True
        else:
            term = log[claimed - log[0][1]][2]
            stopped = self.stopped_logs.get(src)
            if follower is not None:
                held = follower.holds(claimed, term)
            else:
                held = stopped is not None and stopped.holds(claimed, term)
        if not held:
            self.result.stale_replies_past_held += 1
        self.note(
            f"probe: {src}>{dst} reply of term {sent_term} in term {leader.term} claims {claimed}, counted at "
            f"{counted}, leader log ends at {log[-1][1]}: {'held' if held else 'NOT held'}"
        )

    def _tail_loss(self) -> None:
        """The tail-loss fault (SimConfig.tail_loss): a follower stalls (what reaches it waits in its socket),
        and the leader is armed to lose power right after its next tick that sends it entries it has not
        synced (see _on_send). Whether the others got those entries, who is elected next and when the
        follower reads and answers is left to the seed."""
        leader = self._leader()
        if leader is None:
            return
        followers = [a for a in sorted(self.members) if a != leader.address and self.nodes[a] is not None]
        if not followers:
            return
        follower = self.plan.choice(followers)
        duration_s = self.plan.uniform(*TAIL_LOSS_PAUSE_S)
        self.paused_until[follower] = max(self.paused_until[follower], self.clock.now_s + duration_s)
        delay_s_max = self.plan.uniform(*TAIL_LOSS_SLOW_S)
        for other in followers:
            if other != follower:
                self.network.slow((leader.address, other), delay_s_max, duration_s)
        self.tail_loss_armed[leader.address] = self.incarnation[leader.address]
        self.note(
            f"fault: {follower} paused for {duration_s:.2f} s, {leader.address}'s links to the others slow "
            f"(up to {delay_s_max:.2f} s); {leader.address} loses power after its next burst"
        )

    def _on_send(self, src: str, dst: str, message: Any) -> None:
        """An armed leader (see _tail_loss) that sends entries to a follower that reads them late loses
        power once the tick that sent them is over, if it has not synced them: at least
        TAIL_LOSS_ENTRIES_MIN of them, so its log ends before what that follower will acknowledge."""
        if self.tail_loss_armed.get(src) != self.incarnation[src] or not isinstance(message, dict):
            return
        if message.get("type") != "append_entries" or not message.get("entries"):
            return
        if self.paused_until[dst] <= self.clock.now_s + TAIL_LOSS_LATE_S_MIN:
            return
        if self._tail_loss_decided.get(src) == self.scheduler.events_run:
            return  # one look per event (a tick sends a burst as many appends)
        self._tail_loss_decided[src] = self.scheduler.events_run
        incarnation = self.incarnation[src]

        def lose_power() -> None:
            live = self.nodes[src]
            if self.incarnation[src] != incarnation or live is None or self.healed_at is not None:
                return
            durable = self.disk.durable_bytes(live.journal_path)
            unsynced = sum(1 for end in live.engine._journal._ends if end > durable)
            if unsynced < TAIL_LOSS_ENTRIES_MIN or not live.is_leader:
                return  # stays armed (a compaction in the tick rewrites and syncs the journal)
            self.tail_loss_armed.pop(src, None)
            self.result.faults += 1
            self.note(f"buggify: {src} loses power with {unsynced} unsynced entries sent to {dst}, which reads late")
            self._crash(src, power_loss=True, just_written=True)
            restart_s = self.plan.uniform(*TAIL_LOSS_RESTART_S)
            self.scheduler.after(restart_s, "plan", lambda: self._restart(src), "restart")

        self.scheduler.after(0.0, "plan", lose_power, "buggify")

    def _buggify(self, address: str, when: str) -> None:
        """Sometimes crash a node at a moment a random plan would rarely hit (FoundationDB's BUGGIFY)."""
        if not self.config.faults or self.healed_at is not None or self.nodes[address] is None:
            return
        if self.config.tail_loss:
            return  # the tail-loss mix has its own moment (see _on_send)
        if self.plan.random() >= BUGGIFY_P:
            return
        power_loss = self.plan.random() < 0.5
        self.result.faults += 1
        self.note(f"buggify: {address} {'loses power' if power_loss else 'crashes'} {when}")
        self._crash(address, power_loss=power_loss)
        self.scheduler.after(self.plan.uniform(0.2, 5.0), "plan", lambda: self._restart(address), "restart")

    def _crash(self, address: str, power_loss: bool, just_written: bool = False) -> None:
        """Stop a node. `just_written` (the tail-loss moment, a power loss within a millisecond of the
        writes and sends): nothing unsynced had been written back, and what it sent on links that are
        not slow was all on the wire."""
        node = self.nodes[address]
        if node is None:
            return
        node.crash()
        self.nodes[address] = None
        self.incarnation[address] += 1
        self.paused_until[address] = 0.0
        self.in_flight[address] = 0  # their results died with the process
        self.network.detach(address, power_loss, sent_all=just_written)
        self.result.snapshots_installed += node.engine.snapshots.snapshots_installed
        if not power_loss:
            self.note(f"{address} crashed (process)")
            self.stopped_logs[address] = DurableLog(node.data_dir, os.path.join(self.work_dir, "stopped.journal"))
            return
        notes = self.disk.power_loss(node.data_dir, self.plan, keep_unsynced=not just_written)
        if self.plan.random() < 0.5:
            node.lose_unsynced_store()
            notes.append("store: back to its last durable checkpoint")
        self.note(f"{address} lost power: {'; '.join(notes) or 'nothing unsynced'}")
        self.stopped_logs[address] = DurableLog(node.data_dir, os.path.join(self.work_dir, "stopped.journal"))

    def _applied(self, node: SimNode, index: int, payload: bytes) -> None:
        # Called inside the engine, which stops the process on any exception: note it, raise later.
        self.found_in_apply += self.checker.apply(node.address, index, payload)
        if self.config.consumers:
            try:
                self.found_in_apply += self.consumer_tracker.applied(node.address, node, node.store, payload)
            except Exception:  # noqa: BLE001 - the engine would stop the node: a finding, reported as one
                self.found_in_apply.append(f"consumer check on {node.address} raised: {traceback.format_exc()}")

    # ---- the client ---------------------------------------------------------------------------

    def _leader(self) -> SimNode | None:
        leaders = [n for n in self.nodes.values() if n is not None and n.is_leader]
        return max(leaders, key=lambda n: n.term) if leaders else None

    def _propose_next(self) -> None:
        rng = self.workload
        if self.healed_at is None:
            self.scheduler.after(rng.expovariate(self.proposals_per_s), "client", self._propose_next, "propose")
        burst = rng.choice(TAIL_LOSS_BURSTS) if self.config.tail_loss else 1
        for _ in range(burst):
            if sum(self.in_flight.values()) < PROPOSALS_IN_FLIGHT_MAX:
                self._propose()

    def _propose(self, probe: bool = False) -> None:
        rng = self.workload
        live = [n for n in self.nodes.values() if n is not None]
        target = self._leader() or (rng.choice(live) if live else None)
        if target is None:
            return
        client_id = rng.randbytes(16)
        if self.topic_ready:
            self.next_proposal += 1
            name = f"p{self.next_proposal}"
            mutation = pb.Mutation(nonce=1, kind=pb.PUT, topic=TOPIC, key=name.encode(), value=name.encode())
        else:
            name = "create"
            mutation = pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic=TOPIC)
        payload = pb.IntentionBatch(runs=[pb.ClientRun(client_id=client_id, mutations=[mutation])]).SerializeToString()
        self.result.proposals += 1
        address = target.address
        self.in_flight[address] += 1
        incarnation = self.incarnation[address]
        self.note(f"client: propose {name} to {address}")

        proposed_after_topic = self.topic_ready

        def on_result(ok: bool) -> None:
            self.in_flight[address] -= 1
            self.note(f"client: {name} {'acknowledged' if ok else 'refused'} by {address}")
            if not ok and proposed_after_topic:
                self.result.refused += 1
            if not ok or self.incarnation[address] != incarnation:
                return
            if name == "create":
                self.topic_ready = True
            else:
                self.acknowledged.add(name.encode())
            if probe and self.probe_committed_at is None:
                self.probe_committed_at = self.clock.now_s

        self._on(address, lambda: target.propose(payload, on_result))
        self._wake(address)

    def _pipeline_next(self) -> None:
        rng = self.pipeline
        if self.healed_at is None:
            self.scheduler.after(rng.expovariate(PIPELINE_ACTIONS_PER_S), "client", self._pipeline_next, "pipeline")
        live = [n for n in self.nodes.values() if n is not None]
        target = self._leader() or (rng.choice(live) if live else None)
        if target is None or sum(self.in_flight.values()) >= PROPOSALS_IN_FLIGHT_MAX:
            return
        mutation = self._pipeline_mutation(rng)
        at_ms = LOG_TIME_BASE_MS + int((self.clock.now_s - self.start_s) * 1000)
        run = pb.ClientRun(client_id=rng.randbytes(16), mutations=[mutation])
        payload = pb.IntentionBatch(runs=[run], time_ms=at_ms).SerializeToString()
        address = target.address
        self.in_flight[address] += 1
        self.note(f"pipeline: propose {pb.Kind.Name(mutation.kind)} {mutation.topic} to {address}")

        def on_result(ok: bool) -> None:
            self.in_flight[address] -= 1

        self._on(address, lambda: target.propose(payload, on_result))
        self._wake(address)

    def _pipeline_mutation(self, rng: random.Random) -> pb.Mutation:
        """One intention of the pipeline client: the topic (while it may not exist yet), calls, worker joins and
        leaves, and results for ids it may or may not have issued."""
        roll = rng.random()
        m = pb.Mutation(nonce=1, topic=CALLS_TOPIC)
        if roll < 0.05 or self.creates_asked < 3:  # again now and then: a create may be lost
            self.creates_asked += 1
            m.kind, m.program = pb.CREATE_TOPIC, CALLS_PROGRAM
        elif roll < 0.35:
            count = rng.randint(0, 3)
            self.calls_made += count
            m.kind, m.key, m.value = pb.PUT, f"k{rng.randrange(1 << 30)}".encode(), str(count).encode()
        elif roll < 0.55:
            settings = {"calls_max": rng.randint(1, 4), "lease_ms": rng.choice((300, 1000, 3000))}
            m.kind, m.topic = pb.WORKER_JOIN, "svc"
            m.worker.CopyFrom(pb.WorkerOp(worker=f"w{rng.randint(1, 3)}", **settings))  # type: ignore[arg-type]
        elif roll < 0.6:
            m.kind, m.topic = pb.WORKER_LEAVE, "svc"
            m.worker.CopyFrom(pb.WorkerOp(worker=f"w{rng.randint(1, 3)}"))
        else:
            # Mostly recent calls: the ids the leader issued (a worker learns them from its stream), some beyond.
            leader = self._leader()
            last = leader.machine._calls.last_id() if leader is not None else self.calls_made
            call_id = rng.randint(max(1, last - 12), last + 1)
            if rng.random() < 0.8:
                m.kind = pb.CALL_COMPLETE
                m.result.CopyFrom(pb.CallResult(call_id=call_id, response=b"ok", worker=f"w{rng.randint(1, 3)}"))
            else:
                m.kind = pb.CALL_FAIL
                m.result.CopyFrom(pb.CallResult(call_id=call_id, failure="no"))
        return m

    def _consumer_view(self) -> _consumers.ConsumerState | None:
        """The consumer state as the leader (else any running node) has applied it: what a member's stream shows."""
        node = self._leader() or next(iter(self._live()), None)
        return _consumers.read_state(node.store) if node is not None else None

    def _consumers_next(self) -> None:
        rng = self.consumer_client.rng
        if self.healed_at is None:
            delay_s = rng.expovariate(_consumers.ACTIONS_PER_S)
            self.scheduler.after(delay_s, "client", self._consumers_next, "consumers")
        live = self._live()
        target = self._leader() or (rng.choice(live) if live else None)
        if target is None or sum(self.in_flight.values()) >= PROPOSALS_IN_FLIGHT_MAX:
            return
        mutation = self.consumer_client.next(self.clock.now_s - self.start_s)
        if mutation is None:
            return  # a silent member
        at_ms = LOG_TIME_BASE_MS + int((self.clock.now_s - self.start_s) * 1000)
        run = pb.ClientRun(client_id=rng.randbytes(16), mutations=[mutation])
        payload = pb.IntentionBatch(runs=[run], time_ms=at_ms).SerializeToString()
        address = target.address
        self.in_flight[address] += 1
        op = mutation.consumer
        self.note(
            f"consumers: propose {pb.Kind.Name(mutation.kind)} {mutation.topic} {op.name} {op.member} to {address}"
        )

        def on_result(ok: bool) -> None:
            self.in_flight[address] -= 1

        self._on(address, lambda: target.propose(payload, on_result))
        self._wake(address)

    def _probe(self) -> None:
        if self.probe_committed_at is not None:
            return
        if self.topic_ready:
            self._propose(probe=True)
        else:
            self._propose()
        self.scheduler.after(PROBE_S, "client", self._probe, "probe")

    # ---- faults -------------------------------------------------------------------------------

    def _schedule_fault(self) -> None:
        self.scheduler.after(self.plan.expovariate(1.0 / self.fault_gap_s_mean), "plan", self._fault, "fault")

    def _fault(self) -> None:
        if self.healed_at is not None:
            return
        self._schedule_fault()
        rng = self.plan
        kinds = sorted(self.fault_weights)
        kind = rng.choices(kinds, weights=[self.fault_weights[k] for k in kinds])[0]
        up = [a for a in self.addresses if self.nodes[a] is not None]
        majority = len(self.addresses) // 2 + 1
        self.result.faults += 1
        if kind in ("crash", "power", "pause"):
            if not up or (len(up) <= majority and rng.random() < 0.8):
                return  # keep a majority up most of the time, so the run makes progress
            leader = self._leader()
            # Half the time the leader: most of what can go wrong happens around a change of leader.
            address = leader.address if leader is not None and rng.random() < 0.5 else rng.choice(up)
            if kind == "pause":
                duration_s = rng.uniform(0.2, 6.0)
                self.paused_until[address] = self.clock.now_s + duration_s
                self.note(f"fault: {address} paused for {duration_s:.2f} s")
                return
            self._crash(address, power_loss=kind == "power")
            self.scheduler.after(rng.uniform(0.2, 5.0), "plan", lambda: self._restart(address), "restart")
        elif kind == "partition":
            group = set(rng.sample(self.addresses, rng.randrange(1, len(self.addresses))))
            cut = {(a, b) for a in self.addresses for b in self.addresses if (a in group) != (b in group)}
            self._cut(cut, rng.uniform(0.5, 10.0), f"partition {sorted(group)} | rest")
        elif kind == "one-way":
            a, b = rng.sample(self.addresses, 2)
            self._cut({(a, b)}, rng.uniform(0.5, 10.0), f"one-way cut {a} -> {b}")
        elif kind == "degrade":
            faults = LinkFaults(delay_s_max=rng.choice([0.01, 0.05, 0.5]))
            if self.network.kind == "datagram":
                faults.loss = rng.choice([0.0, 0.05, 0.2])
                faults.duplicate = rng.choice([0.0, 0.05, 0.2])
                faults.stale = rng.choice([0.0, 0.0, 0.01, 0.05])
            self.network.faults = faults
            duration_s = rng.uniform(1.0, 10.0)
            self.note(f"fault: network degraded for {duration_s:.2f} s: {faults}")
            self.scheduler.after(duration_s, "plan", self._restore_network, "restore network")
        elif kind == "slow":
            a, b = rng.sample(self.addresses, 2)
            leader = self._leader()
            if leader is not None and rng.random() < 0.5:  # a follower's replies to the leader come late
                b = leader.address
                a = rng.choice([x for x in self.addresses if x != b])
            delay_s_max, duration_s = rng.uniform(0.1, 3.5), rng.uniform(1.0, 10.0)
            self.note(f"fault: link {a} -> {b} slow (up to {delay_s_max:.2f} s) for {duration_s:.2f} s")
            self.network.slow((a, b), delay_s_max, duration_s)
        elif kind == "stale":
            a, b = rng.sample(self.addresses, 2)
            leader = self._leader()
            if leader is not None and rng.random() < 0.5:  # a follower's replies reach the leader late
                b = leader.address
                a = rng.choice([x for x in self.addresses if x != b])
            probability, duration_s = rng.choice([0.05, 0.2, 0.5]), rng.uniform(1.0, 10.0)
            self.note(f"fault: link {a} -> {b} holds {probability:.0%} of its messages late, for {duration_s:.2f} s")
            self.network.hold((a, b), probability, duration_s)
        elif kind == "membership":
            self._change_membership()
        elif kind == "tail-loss":
            self._tail_loss()
        elif kind == "reset":
            a, b = rng.sample(self.addresses, 2)
            self.note(f"fault: connection reset {a} <-> {b}")
            self.network.reset(a, b)

    def _cut(self, links: set[tuple[str, str]], duration_s: float, text: str) -> None:
        self.note(f"fault: {text} for {duration_s:.2f} s")
        self.network.cut(links, duration_s)

    def _restore_network(self) -> None:
        self.network.faults = LinkFaults()
        self.note("network restored")

    def _restart(self, address: str) -> None:
        if self.nodes[address] is None and (address in self.members or address == self.joining):
            self._start(address)

    def _change_membership(self) -> None:
        """Remove a member that is not the leader, or add a removed one back with empty disks."""
        leader = self._leader()
        if self.changing_until > self.clock.now_s or leader is None:
            return
        outside = [a for a in self.addresses if a not in self.members]
        if outside:
            address, add = outside[0], True
            self.joining = address
            if self.nodes[address] is None:
                self._start(address)
        else:
            candidates = sorted(self.members - {leader.address})
            address, add = self.plan.choice(candidates), False
        self.changing_until = self.clock.now_s + MEMBERSHIP_ANSWER_S_MAX
        verb = "add" if add else "remove"
        self.note(f"membership: {leader.address} asked to {verb} {address}")

        def done(ok: bool, reason: str) -> None:
            self.changing_until = 0.0
            self.note(f"membership: {verb} {address}: {'done' if ok else 'refused: ' + reason}")
            self.result.membership_changes += ok
            if not ok and (address in {str(a) for a in leader.raft.members()}) == add:
                # pysyncobj refuses to add a member or remove a non-member: the change took effect
                # through an earlier request whose answer was lost (its leader died after appending it).
                # Retiring the node now would wipe the disks of a voting member.
                self.note(f"membership: {address} is already {'in' if add else 'out'} as {leader.address} sees it")
                ok = True
            if ok and add:
                self.members.add(address)
                self.joining = None
            elif ok:
                self.members.discard(address)
            if not (ok and add):
                self.scheduler.after(0.0, "plan", lambda: self._retire(address), "retire")

        self._on(leader.address, lambda: leader.change_membership(add, address, done))
        self._wake(leader.address)

    def _retire(self, address: str) -> None:
        """A node that is not a member (any more): stopped, its disks wiped."""
        if address in self.members:
            return
        if self.joining == address:
            self.joining = None
        self._crash(address, power_loss=False)
        data_dir = os.path.join(self.work_dir, address.replace(":", "-"))
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(data_dir + ".store-durable", ignore_errors=True)
        self.disk.forget(data_dir)
        self.stopped_logs.pop(address, None)
        self.checker.checked_through.pop(address, None)

    def _heal(self) -> None:
        self.healed_at = self.clock.now_s
        self.note("heal: every fault ends")
        self.network.heal()
        for address in self.addresses:
            self.paused_until[address] = 0.0
            self._restart(address)
        self._probe()

    # ---- checks -------------------------------------------------------------------------------

    def _live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n is not None]

    def _periodic_logs(self) -> None:
        logs = {n.address: n.log() for n in self._live()}
        self._fail(_checks.log_matching(logs))
        for node in self._live():
            self._fail(self.checker.commits(node, logs[node.address], full=True))
        self.scheduler.after(STEP_CHECK_S, "check", self._periodic_logs)

    def _periodic_digests(self) -> None:
        for node in self._live():
            self._fail(self.checker.digest(node.address, *node.digest()))
        self.scheduler.after(DIGEST_CHECK_S, "check", self._periodic_digests)

    def _check_committed_is_held(self) -> None:
        for leader in self._live():
            if not leader.is_leader:
                continue
            index = leader.commit_index
            journal = leader.engine._journal
            first = journal[0][1] if len(journal) else index + 1
            if not first <= index <= journal[-1][1]:
                continue
            term = journal[index - first][2]
            holds = {}
            for address in leader.raft.members():
                node = self.nodes.get(address)
                stopped = self.stopped_logs.get(address)
                if node is not None:
                    # Held on its disk: what a power loss would not take (a leader's unsynced tail would go).
                    holds[address] = node.holds(index, term) and self._durable_through(node, index)
                else:
                    holds[address] = stopped is not None and stopped.holds(index, term)
            self._fail(_checks.committed_is_held(leader.address, index, term, holds))

    def _durable_through(self, node: SimNode, index: int) -> bool:
        """Whether a running node's journal holds entry `index` in its durable part (or compacted it)."""
        journal = node.engine._journal
        first = journal[0][1] if len(journal) else index + 1
        if index < first:
            return True
        position = index - first
        if position >= len(journal):
            return False
        return bool(journal._ends[position] <= self.disk.durable_size(node.journal_path))

    def _positions(self) -> str:
        return ", ".join(
            f"{n.address} term {n.term} commit {n.commit_index} applied {n.last_applied}" for n in self._live()
        )

    def _members(self) -> set[str]:
        """The voting members as the leader sees them (its answer to a change may never have come)."""
        leader = self._leader()
        return {str(a) for a in leader.raft.members()} if leader is not None else set(self.members)

    def _converged(self) -> bool:
        members = self._members()
        if self._leader() is None or any(self.nodes[a] is None for a in members):
            return False
        live = [n for n in self._live() if n.address in members]
        ends = {(n.log()[-1][1], n.commit_index, n.last_applied) for n in live}
        return len(ends) == 1 and len(set(next(iter(ends)))) == 1

    def _final_checks(self) -> None:
        found = []
        members = [n for n in self._live() if n.address in self._members()]
        for node in members:
            found += self.checker.digest(node.address, *node.digest())
            found += _checks.exactly_once(node.address, node.events(TOPIC), self.acknowledged)
            if self.config.pipelines:
                found += _checks.one_result_per_call(node.address, node.events(CALLS_TOPIC))
                stats = node.machine._calls.stats(CALLS_TOPIC)
                self.result.calls = (
                    f"{stats.issued} issued, {stats.completed} completed, {stats.failed} failed, {stats.timed_out} "
                    f"timed out, {stats.gave_up} given up, {stats.redeliveries} redeliveries"
                )
        if self.config.consumers:
            found += self._final_consumer_checks(members)
        digests = {n.digest() for n in members}
        if len(digests) > 1:
            found.append(f"converged nodes hold different stores: {sorted(digests)}")
        self._fail(found)

    def _final_consumer_checks(self, members: list[SimNode]) -> list[str]:
        """Every converged node's consumers hold at rest and are equal (the store digests cover them too)."""
        found = []
        states = {n.address: _consumers.read_state(n.store) for n in members}
        for address, state in sorted(states.items()):
            found += _consumers.state_problems(address, state)
        first_address, first = sorted(states.items())[0]
        for address, state in sorted(states.items()):
            if not state.same_as(first):
                found.append(f"converged nodes {first_address} and {address} hold different consumers")
        tracker = self.consumer_tracker
        self.result.consumers = (
            f"{self.consumer_client.summary(first)}; {tracker.entries_checked} entries and {tracker.leases_checked} "
            f"new leases checked, {tracker.behind_retention} grants by a group behind retention"
        )
        return found


def run_seed(seed: int, config: SimConfig, work_root: str) -> Result:
    work_dir = os.path.join(work_root, f"seed-{seed}")
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    try:
        return Simulation(seed, config, work_dir).run()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
