"""The replicated state machine: apply one committed log entry, deterministically.

Given the same entries in the same order, every node produces byte-identical events and store
contents. The machine reads committed state through the store and records what the entry changes
in a WriteSet; the caller commits that write set atomically with the applied index. It never
raises on bad input: every failure becomes an ERROR effect, decided the same way on every node
(pysyncobj retries an entry whose apply raised, forever).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
import zlib
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from laminar import limits
from laminar._rules import retention_problem
from laminar.node._entry import decode_entry
from laminar.node.sandbox import (
    STATE_COST_MAX,
    CallContext,
    CallGate,
    CallOutcome,
    CallView,
    ProgramRefused,
    TopicRuntime,
    call_context,
    call_cost,
    emitted_cost,
    state_cost,
)
from laminar.node.state_machine._auth import AuthBook
from laminar.node.state_machine._calls import CALL_KINDS, Calls, CallsApplied, Finished
from laminar.node.state_machine._consumers import CONSUMER_KINDS, Consumers
from laminar.node.state_machine._retention import (
    Kept,
    age_check_due,
    kept_events,
    over_limit,
    retention_from_wire,
    trim_point,
)
from laminar.node.state_machine._time import next_log_time
from laminar.node.store import (
    NO_RETENTION,
    VIEW_HEAD,
    AppliedMark,
    ClientRecord,
    Keys,
    ResultRecord,
    ResultRun,
    Store,
    TopicRecord,
    WriteSet,
    from_u64,
    u64,
)
from laminar.v1 import laminar_pb2 as pb

if TYPE_CHECKING:
    from laminar.node.sandbox import Emitted

VALID, INVALID, ERROR = pb.VALID, pb.INVALID, pb.ERROR
PUT, DELETE = pb.PUT, pb.DELETE
_EVENT_KINDS = {"PUT": PUT, "DELETE": DELETE}  # what a program emits -> the event's Kind
_TOPIC_NAME = re.compile(limits.TOPIC_NAME_PATTERN)
_CLIENT_ID_BYTES = 16
# What ctx.call meets in a program without on_result: a result would have nowhere to go.
_NO_RESULT_HANDLER = CallGate(
    0, 0, 0, lambda service: 0, "ctx.call needs an on_result(ctx, call, response, failure) handler in the program"
)
_crc32 = zlib.crc32


def _digest_seed(kind: int, topic: str) -> int:
    # The kind goes in as data, not as CRC-32's initial value: CRC is linear, so an initial value that
    # differs by d cancels a last byte that differs by d (create "a" and destroy "b" would agree).
    return _crc32(topic.encode(), _crc32(bytes((kind,))))


def contents_digest(m: pb.Mutation) -> int:
    """A 32-bit digest of what a mutation asks for (its kind and the fields that kind uses; the
    nonce and ignored fields aside), kept with its outcome so that a resend with other contents is
    told apart from the original. CRC-32 of fixed inputs: the same on every node. A write's digest
    is computed on the hot path as _write_digest with its topic's seed; this must agree with it."""
    kind = m.kind
    seed = _digest_seed(kind, m.topic)
    if kind == PUT:
        return _write_digest(seed, m.key, m.value)
    if kind == DELETE:
        return _write_digest(seed, m.key, b"")
    if kind == pb.CREATE_TOPIC:
        return _write_digest(seed, m.program.encode(), m.args)
    if kind in CONSUMER_KINDS:
        return _write_digest(seed, m.consumer.SerializeToString(deterministic=True), b"")
    if kind in CALL_KINDS:
        return _write_digest(seed, m.result.SerializeToString(deterministic=True), m.worker.SerializeToString())
    return seed


def _write_digest(seed: int, key: bytes, value: bytes) -> int:
    # The key's length goes into the seed, so the key/value split is part of the digest.
    return _crc32(value, _crc32(key, seed ^ len(key)))


@dataclass(slots=True)
class Outcome:
    """What `count` consecutive intentions of a client did; routed to that client's session if it
    is here. One Outcome stands for nonces nonce .. nonce+count-1, which all got the same effect
    and reason, at intention offsets intention_offset .. intention_offset+count-1 (or all 0): a
    frame of successful puts is one Outcome, not thousands."""

    client_id: bytes
    nonce: int
    effect: int
    intention_offset: int
    reason: str
    count: int = 1
    conflict: bool = False  # a resend whose contents differ from what was applied under its nonce
    # The session whose run this came from (ClientRun.session; 0: not named): only that session
    # reports it, so a second writer under the same client id never hears the first one's outcome.
    session: int = 0


@dataclass
class Applied:
    """Everything one log entry produced. The caller commits `writes` with `mark` atomically."""

    writes: WriteSet
    mark: AppliedMark
    outcomes: list[Outcome]  # in apply order; each stands for Outcome.count intentions
    topic_offsets: dict[str, int]  # topic -> its last consequence offset, for topics that got events
    events: int = 0  # events appended by this entry, over all topics (for metrics)
    program_errors: list[tuple[str, str]] = field(default_factory=list)  # (topic, reason) of ERROR effects of programs
    calls: CallsApplied = field(default_factory=CallsApplied)  # what pipelines did (for metrics and workers' streams)

    @property
    def intentions(self) -> int:
        """Intentions this entry carried (applied now or answered as resends)."""
        return sum(o.count for o in self.outcomes)


@dataclass(slots=True)
class _Topic:
    record: TopicRecord  # as stored; next_offset below is the live value while entries apply
    next_offset: int  # consequence offset of this topic's next event
    events_prefix: bytes  # Keys.events_of(name): the hot path appends events under it
    views_prefix: bytes  # Keys.views_of(name)
    put_seed: int  # contents-digest seeds of writes to this topic (see contents_digest)
    delete_seed: int
    runtime: TopicRuntime | None = None  # started lazily for programmable topics
    # The view changes of the entry being applied, written once per key when it ends: key -> (consequence offset,
    # intention offset, value) of its last PUT, or None after a DELETE. A hot key (an account, a counter) is
    # written many times in one entry, and only the last write survives anyway.
    views: dict[bytes, tuple[int, int, bytes] | None] = field(default_factory=dict)
    first_offset: int = 1  # live values of the record's retention counters (see _retention.py)
    retained_bytes: int = 0
    # Serialized sizes of the events this entry appended (offsets next_offset - len .. next_offset - 1):
    # the retention walk reads older events from the store, these from here.
    entry_sizes: list[int] = field(default_factory=list)

    @staticmethod
    def of(name: str, record: TopicRecord, runtime: TopicRuntime | None = None, before: _Topic | None = None) -> _Topic:
        """`before`: the topic this one replaces in the same entry (destroy, re-create): its keys and seeds are this
        one's (the same name), so a create and destroy pair computes them once."""
        if before is not None:
            keys = (before.events_prefix, before.views_prefix, before.put_seed, before.delete_seed)
        else:
            keys = (Keys.events_of(name), Keys.views_of(name), _digest_seed(PUT, name), _digest_seed(DELETE, name))
        topic = _Topic(
            record,
            record.next_offset,
            *keys,
            runtime,
            first_offset=record.first_offset,
            retained_bytes=record.retained_bytes,
        )
        if before is not None:
            topic.entry_sizes = before.entry_sizes
        return topic

    def write_views(self, writes: WriteSet) -> None:
        """Write the view changes of this entry, in the order their keys were first changed, and forget them."""
        prefix = self.views_prefix
        for key, view in self.views.items():
            if view is None:
                writes.delete(prefix + key)
            else:
                offset, intention_offset, value = view
                writes.put_blind(prefix + key, VIEW_HEAD.pack(offset, intention_offset) + value)
        self.views.clear()

    def stored(self) -> TopicRecord:
        """The record to write: the stored one with the live offsets and bytes."""
        r = self.record
        if (r.next_offset, r.first_offset, r.retained_bytes) != (
            self.next_offset,
            self.first_offset,
            self.retained_bytes,
        ):
            self.record = r = r.with_counters(self.next_offset, self.first_offset, self.retained_bytes)
        return r


@dataclass
class _Batch:
    """Working state while applying one entry."""

    writes: WriteSet
    offset: int  # last intention offset assigned
    time_ms: int  # log time of this entry (state_machine/_time.py): events carry it, programs read it
    # The intention offset before this entry's first: a topic whose record was created above it was created by this
    # entry, so nothing of it is stored yet (a destroy then has no stored views to look for).
    start_offset: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    topic_offsets: dict[str, int] = field(default_factory=dict)
    events: int = 0
    program_errors: list[tuple[str, str]] = field(default_factory=list)
    dirty_topics: set[str] = field(default_factory=set)
    dirty_states: set[str] = field(default_factory=set)
    new_results: dict[bytes, list[ResultRun]] = field(default_factory=dict)
    # The contents digest of each nonce applied in this entry, per client, in nonce order: the nonces
    # of one client applied in one entry are consecutive, so these line up with its new_results runs.
    new_digests: dict[bytes, array[int]] = field(default_factory=dict)
    touched_clients: dict[bytes, ClientRecord | None] = field(default_factory=dict)  # id -> record before
    new_clients: int = 0  # clients that got their first dedupe record in this entry
    # Result runs read from the store for resends in this entry: a client resending thousands of
    # messages after a fail-over hits the same few runs, which must be decoded once, not per nonce.
    stored_results: dict[bytes, list[ResultRun]] = field(default_factory=dict)
    client_names: dict[bytes, str] = field(default_factory=dict)  # client id -> its UUID string, for ctx.client_id
    session: int = 0  # ClientRun.session of the run being applied: its outcomes are that session's
    # What this entry's program calls emitted, as PROGRAM_ENTRY_EMITTED_BYTES_MAX counts it: each call gets what is
    # left, so the entry's events stay bounded however many calls it holds.
    program_emitted: int = 0
    # What the states this entry changed cost, as PROGRAM_ENTRY_STATE_BYTES_MAX counts them (see _state_limit): exact
    # per topic once counting began (None before), and the module-level values of the topics it created.
    state_costs: dict[str, int] | None = None
    module_bytes: dict[str, int] = field(default_factory=dict)

    def outcome(
        self,
        client_id: bytes,
        nonce: int,
        effect: int,
        intention_offset: int,
        reason: str,
        count: int = 1,
        conflict: bool = False,
    ) -> None:
        """Record the outcome of `count` consecutive intentions, extending the last Outcome when
        they continue it."""
        outcomes = self.outcomes
        if outcomes and intention_offset:
            last = outcomes[-1]
            if (
                last.nonce + last.count == nonce
                and last.intention_offset + last.count == intention_offset
                and last.effect == effect
                and last.client_id == client_id
                and last.reason == reason
                and last.session == self.session
            ):
                last.count += count
                return
        outcomes.append(Outcome(client_id, nonce, effect, intention_offset, reason, count, conflict, self.session))


def _cut(reason: str) -> str:
    data = reason.encode(errors="replace")
    if len(data) <= limits.REASON_BYTES_MAX:
        return reason
    return data[: limits.REASON_BYTES_MAX].decode(errors="ignore")


def _results_horizon(client: ClientRecord) -> int:
    """Every result run of `client` starting below this nonce is older than its dedupe window."""
    return client.nonce_max - limits.DEDUPE_RESULTS_PER_CLIENT_MAX - limits.BATCH_INTENTIONS_MAX


class StateMachine:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._consumers = Consumers(store)
        self._calls = Calls(store)  # pipelines: calls from programs to services (state_machine/_calls.py)
        self.auth = AuthBook(store)  # users, roles, client id owners (state_machine/_auth.py)
        self.reload()

    def reload(self) -> None:
        """(Re)read everything from the store: at start, and after a snapshot replaced it."""
        store = self._store
        mark = store.applied()
        self._raft_index = mark.raft_index
        self._offset = mark.intention_offset
        self._time_ms = mark.time_ms
        # Live topics only (and, while an entry applies, those it destroys): a destroyed topic's record
        # stays in the store for its next offset (offsets never reset), but costs no memory.
        self._topics: dict[str, _Topic] = {}
        self._retained: set[str] = set()  # topics with a retention limit (all live)
        self._topic_names = 0  # topics that ever existed: each keeps a record (TOPIC_NAMES_MAX)
        for key, value in store.scan(Keys.TOPIC_PREFIX):
            self._topic_names += 1
            record = TopicRecord.decode(value)
            if record.live:
                name = key[len(Keys.TOPIC_PREFIX) :].decode()
                self._topics[name] = _Topic.of(name, record)
                if record.retention:
                    self._retained.add(name)
        self._live_topics = len(self._topics)
        self._clients: dict[bytes, ClientRecord] = {}
        # No expiry key is below this offset (a hint for _expire_clients's scan, found by it; not replicated state:
        # every key at or above it is scanned, so every node expires the same clients whatever its hint).
        self._expiry_floor = 0
        # A lower bound on the log time (ms) at which any client with an expiry key was last heard from (0: none
        # known): the `heard` of the first key the last scan stopped at. Keys are added in log order, offsets and
        # log times never going back, so every key then and since has a `heard` at least this. Not replicated
        # state either: it only spares a scan that would find nothing to expire (see _expire_clients).
        self._expiry_heard_floor_ms = 0
        self._consumers.reload()
        self._calls.reload()
        # Clients with a dedupe record in the store: DEDUPE_CLIENTS_MAX bounds it (see _expire_clients).
        self._client_count = sum(1 for _ in store.scan(Keys.CLIENT_PREFIX))
        self.auth.reload()

    # ---- queries (any thread; values may be one entry old) ----------------------------------

    @property
    def applied_mark(self) -> AppliedMark:
        return AppliedMark(self._raft_index, self._offset, self._time_ms)

    @property
    def time_ms(self) -> int:
        """Log time of the last applied entry, ms since the Unix epoch (0 before the first stamped one)."""
        return self._time_ms

    def topic_offset(self, name: str) -> int:
        """The last consequence offset of a topic (0 if it never had an event)."""
        topic = self._topics.get(name)
        return 0 if topic is None else topic.next_offset - 1

    def live_topics(self) -> list[str]:
        return sorted(name for name, topic in list(self._topics.items()) if topic.record.live)

    @property
    def calls_in_flight(self) -> int:
        """Pipelines: calls issued and without a result, over the cluster (any thread: a length read)."""
        return self._calls.in_flight()

    @property
    def client_count(self) -> int:
        """Clients whose dedupe record the store holds (at most DEDUPE_CLIENTS_MAX once an entry applied)."""
        return self._client_count

    # ---- apply (the apply thread only) ------------------------------------------------------

    def apply(self, raft_index: int, payload: bytes, entry: pb.IntentionBatch | None = None) -> Applied | None:
        """Apply one entry. None when the store already holds it (replay after restart). `entry`: the payload
        decoded already, if the caller has it (the same message decode_entry would give)."""
        if raft_index <= self._raft_index:
            return None
        if entry is None:
            entry = decode_entry(payload)  # a corrupt entry applies nothing, the same way everywhere
        if len(self._clients) >= limits.DEDUPE_CLIENTS_CACHED_MAX:
            # A cache of what the store holds, so emptied between entries only (it then grows by the clients of one
            # entry at most). Emptied inside one, it forgot what this entry had done: a client's second run in the
            # entry applied its nonces again, its record was not saved, and nodes whose caches differed diverged.
            self._clients.clear()
        batch = _Batch(WriteSet(), self._offset, next_log_time(self._time_ms, entry.time_ms), self._offset)
        calls = self._calls.applied = CallsApplied()
        for run in entry.runs:
            self._apply_run(batch, run)
        for peer in entry.peer_upserts:
            batch.writes.put(Keys.peer(peer.node_id), peer.SerializeToString())
        for node_id in entry.peer_removals:
            batch.writes.delete(Keys.peer(node_id))
        if entry.auth_changes:
            self.auth.apply(entry.auth_changes, batch.writes)
        self._finish(batch)
        self._raft_index = raft_index
        self._offset = batch.offset
        self._time_ms = batch.time_ms
        mark = AppliedMark(raft_index, batch.offset, batch.time_ms)
        return Applied(
            batch.writes, mark, batch.outcomes, batch.topic_offsets, batch.events, batch.program_errors, calls
        )

    def skip(self, raft_index: int) -> AppliedMark:
        """Advance over an entry that carries no intentions (Raft no-ops, membership changes)."""
        self._raft_index = max(self._raft_index, raft_index)
        return self.applied_mark

    def _apply_run(self, batch: _Batch, run: pb.ClientRun) -> None:
        client_id = bytes(run.client_id)
        if len(client_id) != _CLIENT_ID_BYTES:
            return  # the leader never proposes this; applying nothing is the same on every node
        batch.session = run.session
        self.auth.bind(client_id, run.principal, batch.writes)
        record = self._client(batch, client_id)
        nonce_max = None if record is None else record.nonce_max
        topics = self._topics
        digests = batch.new_digests.get(client_id)
        if digests is None:
            digests = batch.new_digests[client_id] = array("I")
        streak = 0  # writes just applied that succeeded (all VALID, consecutive nonces and offsets)
        auth = self.auth if self.auth.state.enabled else None  # permissions are checked again at apply
        for mutation in run.mutations:
            nonce = mutation.nonce
            if nonce_max is not None:
                if nonce <= nonce_max:
                    streak = self._settle(batch, client_id, nonce_max, batch.offset, streak)
                    self._duplicate(batch, client_id, mutation)
                    continue
                if nonce > nonce_max + 1:
                    # Out of order: a stale entry from a session that is gone, whose earlier nonces
                    # never committed. Applying it would make those look like duplicates later; the
                    # client resends everything from its oldest uncommitted nonce instead.
                    continue
            nonce_max = nonce
            kind = mutation.kind
            denied = auth.denied(run.principal, kind, mutation.topic) if auth is not None else None
            name = mutation.topic if kind in (PUT, DELETE) and denied is None else ""
            topic = topics.get(name) if name else None
            if topic is not None and topic.record.live:
                # The hot paths: writes to a live topic. Those that succeed (a write to a plain topic
                # always does) are recorded with the rest of the streak, in one step.
                batch.offset += 1
                key = mutation.key
                value = mutation.value if kind == PUT else b""
                digests.append(
                    _crc32(value, _crc32(key, (topic.put_seed if kind == PUT else topic.delete_seed) ^ len(key)))
                )
                if not topic.record.program:
                    self._append(batch, name, topic, kind, key, value)
                    streak += 1
                    continue
                effect, reason = self._run_program(batch, client_id, name, topic, kind, mutation)
                if effect == VALID:
                    streak += 1
                    continue
                streak = self._settle(batch, client_id, nonce - 1, batch.offset - 1, streak)
            else:
                digests.append(contents_digest(mutation))
                batch.offset += 1
                effect, reason = (ERROR, denied) if denied else self._execute(batch, client_id, mutation)
                if effect == VALID and not reason:
                    # Joins the streak like a write: a worker's frame of results is one Outcome, not one each.
                    # Nothing in _execute records outcomes, so settling after it keeps them in nonce order.
                    streak += 1
                    continue
                streak = self._settle(batch, client_id, nonce - 1, batch.offset - 1, streak)
            reason = _cut(reason)
            batch.outcome(client_id, nonce, effect, batch.offset, reason)
            self._remember(batch, client_id, nonce, effect, batch.offset, reason)
        if nonce_max is not None:
            self._settle(batch, client_id, nonce_max, batch.offset, streak)
            if record is None or nonce_max != record.nonce_max:
                self._clients[client_id] = ClientRecord(nonce_max, batch.offset)

    def _settle(self, batch: _Batch, client_id: bytes, last_nonce: int, last_offset: int, streak: int) -> int:
        """Record the VALID outcomes of the `streak` writes that ended with `last_nonce`, at intention
        offset `last_offset`. Returns the new streak length: 0."""
        if streak:
            first_nonce, first_offset = last_nonce - streak + 1, last_offset - streak + 1
            batch.outcome(client_id, first_nonce, VALID, first_offset, "", streak)
            self._remember(batch, client_id, first_nonce, VALID, first_offset, "", streak)
        return 0

    # ---- dedupe -----------------------------------------------------------------------------

    def _client(self, batch: _Batch, client_id: bytes) -> ClientRecord | None:
        record = self._clients.get(client_id)
        if record is None:
            data = self._store.get_applying(Keys.client(client_id))
            if data is not None:
                record = ClientRecord.decode(data)
                self._clients[client_id] = record
        if client_id not in batch.touched_clients:
            batch.touched_clients[client_id] = record
        return record

    @staticmethod
    def _remember(
        batch: _Batch, client_id: bytes, nonce: int, effect: int, offset: int, reason: str, count: int = 1
    ) -> None:
        """Keep the outcomes of `count` intentions from `nonce` for answering resends."""
        runs = batch.new_results.get(client_id)
        if runs is None:
            runs = batch.new_results[client_id] = []
        if not runs or runs[-1].first_nonce + runs[-1].count != nonce:
            runs.append(ResultRun(nonce))
        runs[-1].add(effect, offset, reason, count)

    def _duplicate(self, batch: _Batch, client_id: bytes, mutation: pb.Mutation) -> None:
        """Report the original outcome of a nonce applied before (a resend), applying nothing."""
        nonce = mutation.nonce
        start = 0  # where this run's digests begin in new_digests
        for run in batch.new_results.get(client_id, []):
            if run.covers(nonce):
                digest = batch.new_digests[client_id][start + nonce - run.first_nonce]
                self._resend_outcome(batch, client_id, mutation, run.at(nonce), digest)
                return
            start += run.count
        for run in batch.stored_results.get(client_id, []):
            if run.covers(nonce):
                self._resend_outcome(batch, client_id, mutation, run.at(nonce), run.digest_at(nonce))
                return
        found = self._store.get_floor(Keys.result(client_id, nonce), Keys.results_of(client_id))
        if found is not None:
            run = ResultRun.decode(from_u64(found[0][-8:]), found[1])
            batch.stored_results.setdefault(client_id, []).append(run)
            if run.covers(nonce):
                self._resend_outcome(batch, client_id, mutation, run.at(nonce), run.digest_at(nonce))
                return
        reason = f"duplicate of nonce {nonce}, applied long ago; its outcome is no longer kept"
        batch.outcome(client_id, nonce, ERROR, 0, reason)

    @staticmethod
    def _resend_outcome(
        batch: _Batch, client_id: bytes, mutation: pb.Mutation, result: ResultRecord, digest: int | None
    ) -> None:
        """The original outcome, unless the resent contents are not the original's: then an ERROR
        that says so (nothing applies; the original stays applied)."""
        nonce = mutation.nonce
        if digest is not None and contents_digest(mutation) != digest:
            reason = (
                f"nonce {nonce} was applied before with other contents (at intention offset "
                f"{result.intention_offset}); a resend must repeat the original mutation: this one was not applied"
            )
            batch.outcome(client_id, nonce, ERROR, 0, reason, conflict=True)
            return
        batch.outcome(client_id, nonce, result.effect, result.intention_offset, result.reason)

    # ---- intentions -------------------------------------------------------------------------

    def _execute(self, batch: _Batch, client_id: bytes, m: pb.Mutation) -> tuple[int, str]:
        if m.topic not in self._topics and not _TOPIC_NAME.fullmatch(m.topic):  # known names are valid
            return ERROR, f"invalid topic name {m.topic[:64]!r}"
        if m.kind == pb.CREATE_TOPIC:
            return self._create(batch, client_id, m)
        if m.kind == pb.DESTROY_TOPIC:
            return self._destroy(batch, m.topic)
        if m.kind == pb.CONFIGURE_TOPIC:
            return self._configure(batch, m)
        if m.kind in (PUT, DELETE):  # writes to a live topic take the hot paths in _apply_run
            return ERROR, f"topic {m.topic!r} does not exist"
        if m.kind in CONSUMER_KINDS:
            return self._consumers.execute(batch.writes, batch.offset, batch.time_ms, self._live_kept, m)
        if m.kind in CALL_KINDS:
            return self._call_intention(batch, client_id, m)
        return ERROR, f"unknown intention kind {m.kind}"

    def _context(
        self, batch: _Batch, client_id: bytes, topic: str, nonce: int, runtime: TopicRuntime | None = None
    ) -> CallContext:
        client = batch.client_names.get(client_id) or self._client_name(batch, client_id)
        return self._program_context(batch, client, topic, nonce, runtime)

    def _program_context(
        self, batch: _Batch, client: str, topic: str, nonce: int, runtime: TopicRuntime | None
    ) -> CallContext:
        """`runtime`: the topic's, for a handler that may ctx.call (None: on_create, which may not)."""
        gate = None
        if runtime is not None:
            gate = self._calls.gate(topic) if runtime.handles_results() else _NO_RESULT_HANDLER
        return call_context(
            topic,
            batch.offset,
            client,
            nonce,
            limits.PROGRAM_ENTRY_EMITTED_BYTES_MAX - batch.program_emitted,
            self._state_limit(batch, topic),
            batch.time_ms,
            gate,
        )

    def _state_limit(self, batch: _Batch, name: str) -> int | None:
        """What `name`'s state may cost after its next call, given what the entry's other changed states and created
        modules cost (PROGRAM_ENTRY_STATE_BYTES_MAX); None while they could not reach the limit at their largest.
        Deterministic: exact sizes, counted from the same calls in the same order on every node."""
        costs = batch.state_costs
        if costs is None:
            topics = len(batch.dirty_states) + (name not in batch.dirty_states)
            if topics * (STATE_COST_MAX + limits.PROGRAM_MODULE_BYTES_MAX) <= limits.PROGRAM_ENTRY_STATE_BYTES_MAX:
                return None
            costs = batch.state_costs = {}
            for dirty in batch.dirty_states:  # counting begins: the exact cost of each state changed so far
                self._count_state(batch, dirty)
        others = sum(costs.values()) - costs.get(name, 0) + sum(batch.module_bytes.values())
        return limits.PROGRAM_ENTRY_STATE_BYTES_MAX - others

    def _count_state(self, batch: _Batch, name: str) -> None:
        """After a call changed `name`'s state, once counting began: its exact cost."""
        if batch.state_costs is not None:
            runtime = self._topics[name].runtime
            assert runtime is not None
            batch.state_costs[name] = state_cost(len(runtime.state_bytes()))

    @staticmethod
    def _client_name(batch: _Batch, client_id: bytes) -> str:
        """`ctx.client_id`: the client's UUID as a string, made once per client and entry."""
        name = batch.client_names[client_id] = str(uuid.UUID(bytes=client_id))
        return name

    def _create(self, batch: _Batch, client_id: bytes, m: pb.Mutation) -> tuple[int, str]:
        topic = self._topics.get(m.topic)
        if topic is not None and topic.record.live:
            return INVALID, f"topic {m.topic!r} already exists"
        if self._live_topics >= limits.TOPICS_LIVE_MAX:
            return ERROR, f"too many topics: {limits.TOPICS_LIVE_MAX:,} are live (destroy one first)"
        # A destroyed name keeps its record (offsets never reset): re-creating it continues its stream.
        before = topic.stored() if topic is not None else self._destroyed_record(m.topic)
        if before is None and self._topic_names >= limits.TOPIC_NAMES_MAX:
            return ERROR, (
                f"too many topic names: {limits.TOPIC_NAMES_MAX:,} topics have existed (a destroyed topic keeps a "
                "record so that its offsets never reset): re-create a destroyed topic's name instead"
            )
        problem = retention_problem(m.retention)
        if problem:
            return ERROR, problem
        retention = retention_from_wire(m.retention)
        runtime = None
        emitted: tuple[Emitted, ...] = ()
        if m.program:
            try:
                runtime = TopicRuntime.start(m.program, None)
            except ProgramRefused as refused:
                return ERROR, f"program refused: {refused.reason}"
            batch.module_bytes[m.topic] = runtime.module_bytes
            outcome = runtime.on_create(self._context(batch, client_id, m.topic, m.nonce), bytes(m.args))
            if not outcome.ok:
                del batch.module_bytes[m.topic]
                batch.program_errors.append((m.topic, outcome.reason))
                return ERROR, outcome.reason
            emitted = outcome.events
            batch.program_emitted += sum(emitted_cost(e.key, e.value) for e in emitted)
        record = TopicRecord(True, 1, batch.offset, m.program, bytes(m.args), retention)
        if before is not None:  # the stream goes on: offsets continue, what was kept is still kept
            record = dataclasses.replace(
                record,
                next_offset=before.next_offset,
                first_offset=before.first_offset,
                retained_bytes=before.retained_bytes,
            )
        created = self._topics[m.topic] = _Topic.of(m.topic, record, runtime, topic)
        self._live_topics += 1
        if before is None:
            self._topic_names += 1
        if retention:
            self._retained.add(m.topic)
        self._append(batch, m.topic, created, pb.CREATE_TOPIC, b"", bytes(m.args))
        for event in emitted:
            self._append(batch, m.topic, created, _EVENT_KINDS[event.kind], event.key, event.value)
        if runtime is not None:
            batch.dirty_states.add(m.topic)
            self._count_state(batch, m.topic)
        return VALID, ""

    def _destroy(self, batch: _Batch, name: str) -> tuple[int, str]:
        topic = self._topics.get(name)
        if topic is None or not topic.record.live:
            return INVALID, f"topic {name!r} does not exist"
        self._append(batch, name, topic, pb.DESTROY_TOPIC, b"", b"")
        record = topic.record
        destroyed = TopicRecord(
            False, topic.next_offset, record.created_at, "", b"", NO_RETENTION, topic.first_offset, topic.retained_bytes
        )
        self._topics[name] = _Topic.of(name, destroyed, None, topic)
        self._retained.discard(name)
        self._live_topics -= 1
        batch.dirty_states.discard(name)
        if batch.state_costs is not None:
            batch.state_costs.pop(name, None)
        if record.program:  # only a program's topic has a state: a plain topic's delete would be a needless tombstone
            batch.writes.delete(Keys.state(name))
        self._consumers.drop_topic(batch.writes, name)
        self._calls.drop_topic(batch.writes, name)
        return VALID, ""

    def _configure(self, batch: _Batch, m: pb.Mutation) -> tuple[int, str]:
        """A live topic's retention changes; what the new limits exclude is trimmed at the end of the entry."""
        topic = self._topics.get(m.topic)
        if topic is None or not topic.record.live:
            return ERROR, f"topic {m.topic!r} does not exist"
        problem = retention_problem(m.retention)
        if problem:
            return ERROR, problem
        retention = retention_from_wire(m.retention)
        topic.record = dataclasses.replace(topic.record, retention=retention)
        (self._retained.add if retention else self._retained.discard)(m.topic)
        batch.dirty_topics.add(m.topic)
        return VALID, ""

    def _run_program(
        self, batch: _Batch, client_id: bytes, name: str, topic: _Topic, kind: int, m: pb.Mutation
    ) -> tuple[int, str]:
        """A write to a live programmable topic: its program decides. Runs once per such write."""
        runtime = topic.runtime or self._runtime(name, topic)
        if runtime is None:
            return ERROR, "topic program cannot start on this node"  # never: it started at create
        ctx = self._context(batch, client_id, name, m.nonce, runtime)
        outcome = runtime.on_put(ctx, m.key, m.value) if kind == PUT else runtime.on_delete(ctx, m.key)
        if not outcome.ok:
            batch.program_errors.append((name, outcome.reason))
            return ERROR, outcome.reason
        self._take(batch, name, topic, ctx, outcome, runtime.handles(kind == PUT))
        return VALID, ""

    def _take(
        self, batch: _Batch, name: str, topic: _Topic, ctx: CallContext, outcome: CallOutcome, changed: bool
    ) -> None:
        """Keep what a successful handler call did: its events, its calls, and (`changed`: it may have) its state."""
        for event in outcome.events:
            self._append(batch, name, topic, _EVENT_KINDS[event.kind], event.key, event.value)
            batch.program_emitted += emitted_cost(event.key, event.value)
        if outcome.calls:
            assert ctx.calls is not None  # ctx.call refuses without a gate
            self._calls.record(batch.writes, name, outcome.calls, batch.offset, batch.time_ms, ctx.calls.first_id)
            batch.program_emitted += sum(call_cost(made) for made in outcome.calls)
        if changed:  # without a handler the state cannot have changed: nothing to write
            batch.dirty_states.add(name)
            self._count_state(batch, name)

    # ---- pipelines (state_machine/_calls.py) -------------------------------------------------

    def _call_intention(self, batch: _Batch, client_id: bytes, m: pb.Mutation) -> tuple[int, str]:
        if m.kind in (pb.WORKER_JOIN, pb.WORKER_LEAVE):
            return self._calls.worker(batch.writes, m, batch.time_ms)
        effect, reason, finished = self._calls.result(batch.writes, m, batch.time_ms)
        if finished is None:
            return effect, reason
        client = batch.client_names.get(client_id) or self._client_name(batch, client_id)
        return self._on_result(batch, finished, client, m.nonce)

    def _on_result(self, batch: _Batch, finished: Finished, client: str, nonce: int) -> tuple[int, str]:
        """Run the calling topic's on_result with a finished call: once, its own transaction. A failing on_result
        keeps nothing of what it did, and the call stays finished (it is never run again)."""
        call = finished.call
        name = call.topic
        topic = self._topics.get(name)
        assert topic is not None and topic.record.live, "a destroyed topic's calls are dropped with it"
        runtime = topic.runtime or self._runtime(name, topic)
        if runtime is None:
            return ERROR, "topic program cannot start on this node"  # never: it started at create
        ctx = self._program_context(batch, client, name, nonce, runtime)
        view = CallView(
            call.id, name, call.service, call.method, call.request, call.context, call.deliveries, call.issued_ms
        )
        outcome = runtime.on_result(ctx, view, finished.response, finished.failure)
        if not outcome.ok:
            batch.program_errors.append((name, outcome.reason))
            self._calls.on_result_failed(name)
            return ERROR, f"on_result of call {call.id} failed: {outcome.reason} (the call is finished)"
        self._take(batch, name, topic, ctx, outcome, True)
        return VALID, ""

    def _destroyed_record(self, name: str) -> TopicRecord | None:
        """The stored record of a topic that is not live: where its destroyed incarnation stopped
        (offsets never reset), or None for a name never used."""
        data = self._store.get_applying(Keys.topic(name))
        return None if data is None else TopicRecord.decode(data)

    def _delete_stored(self, writes: WriteSet, begin: bytes, end: bytes) -> None:
        """Delete the keys that earlier entries stored in [begin, end) (not those this entry wrote): one by one when
        there are at most STORE_POINT_DELETES_MAX, else with one range delete, which every later read pays for until
        RocksDB flushes it (see limits.py). The same keys on every node, so the same writes."""
        keys = self._store.keys_between(begin, end, limits.STORE_POINT_DELETES_MAX + 1)
        if len(keys) > limits.STORE_POINT_DELETES_MAX:
            writes.delete_range(begin, end)
            return
        for key in keys:
            writes.delete(key)

    def _runtime(self, name: str, topic: _Topic) -> TopicRuntime | None:
        if topic.runtime is None:
            try:
                topic.runtime = TopicRuntime.start(topic.record.program, self._store.get(Keys.state(name)))
            except ProgramRefused:
                return None
        return topic.runtime

    def _append(self, batch: _Batch, name: str, topic: _Topic, kind: int, key: bytes, value: bytes) -> None:
        """Append one event to `topic`'s stream, and keep its view (current value per live key) in
        the same write batch. Runs once per event: keep it lean."""
        offset = topic.next_offset
        topic.next_offset = offset + 1
        # A new message per event: a reused one would keep every value ever set in its arena.
        event = pb.Event(
            kind=kind,  # type: ignore[arg-type]
            key=key,
            value=value,
            intention_offset=batch.offset,
            consequence_offset=offset,
            time_ms=batch.time_ms,
        )
        data = event.SerializeToString()
        batch.writes.put_blind(topic.events_prefix + offset.to_bytes(8, "big"), data)
        topic.retained_bytes += len(data)
        topic.entry_sizes.append(len(data))
        if kind == PUT:
            topic.views[key] = (offset, batch.offset, value)
        elif kind == DELETE:
            topic.views[key] = None
        elif kind == pb.DESTROY_TOPIC:
            topic.views.clear()  # this _Topic is being replaced; a new one starts with no view
            # Only keys stored by earlier entries: this entry's views are written at its end (write_views). A topic
            # this entry created has none (its name's previous incarnation deleted its own when destroyed): no scan.
            if topic.record.created_at <= batch.start_offset:
                self._delete_stored(batch.writes, topic.views_prefix, Keys.views_end(name))
        batch.dirty_topics.add(name)
        batch.topic_offsets[name] = offset
        batch.events += 1

    # ---- end of entry -----------------------------------------------------------------------

    def _live_kept(self, name: str) -> tuple[int, int] | None:
        """A live topic's first kept and last consequence offsets (None: not live), for the consumers."""
        topic = self._topics.get(name)
        return (topic.first_offset, topic.next_offset - 1) if topic is not None and topic.record.live else None

    def _dead_letter(self, batch: _Batch, name: str, event: pb.Event) -> bool:
        """Append a copy of a group's given-up event to its dead-letter topic, if that is live (its
        program, if any, is not run: the event happened already)."""
        topic = self._topics.get(name)
        if topic is None or not topic.record.live:
            return False
        self._append(batch, name, topic, event.kind, event.key, event.value)
        return True

    def _finish(self, batch: _Batch) -> None:
        writes = batch.writes
        for finished in self._calls.expire(writes, batch.time_ms):  # timeouts, give-ups: their on_result runs now
            self._on_result(batch, finished, "", 0)  # a failure is counted there; no client waits for it
        self._calls.grant(writes, batch.time_ms)
        for name in self._consumers.finish(
            writes, batch.offset, batch.time_ms, self._live_kept, lambda n, e: self._dead_letter(batch, n, e)
        ):
            batch.topic_offsets.setdefault(name, self._topics[name].next_offset - 1)  # wakes the members' streams
        self._trim(batch)
        for name in sorted(batch.dirty_topics):
            topic = self._topics[name]
            writes.put(Keys.topic(name), topic.stored().encode())
            topic.write_views(writes)
            topic.entry_sizes.clear()
            if not topic.record.live:
                del self._topics[name]  # destroyed: its record above keeps its next offset, on disk only
        for name in sorted(batch.dirty_states):
            runtime = self._topics[name].runtime
            assert runtime is not None
            writes.put(Keys.state(name), runtime.state_bytes())
        for client_id, before in batch.touched_clients.items():
            self._save_client(batch, client_id, before)
        self._expire_clients(batch)

    def _trim(self, batch: _Batch) -> None:
        """Trim the oldest events of topics over a retention limit (see _retention.py)."""
        due = age_check_due(self._time_ms, batch.time_ms)
        budget = limits.RETENTION_TRIM_EVENTS_PER_ENTRY_MAX
        for name in sorted(self._retained):
            topic = self._topics[name]
            kept = Kept(topic.first_offset, topic.next_offset, topic.retained_bytes)
            retention = topic.record.retention
            if budget <= 0 or not over_limit(kept, retention, due):
                continue
            events = kept_events(self._store, topic.events_prefix, kept, topic.entry_sizes)
            first, trimmed, read = trim_point(kept, retention, batch.time_ms, events, budget, batch.time_ms)
            budget -= max(read, 1)
            if first > kept.first_offset:
                self._delete_events(batch.writes, topic.events_prefix, kept.first_offset, first)
                topic.first_offset, topic.retained_bytes = first, max(0, kept.retained_bytes - trimmed)
                batch.dirty_topics.add(name)

    @staticmethod
    def _delete_events(writes: WriteSet, prefix: bytes, first: int, end: int) -> None:
        """Delete the events at offsets [first, end) of one topic (this entry's too): one by one when they are at most
        STORE_POINT_DELETES_MAX (the steady trim of a capped topic), else with one range delete (see limits.py)."""
        if end - first > limits.STORE_POINT_DELETES_MAX:
            writes.delete_range(prefix + u64(first), prefix + u64(end))
            return
        for offset in range(first, end):
            writes.delete(prefix + u64(offset))

    def _save_client(self, batch: _Batch, client_id: bytes, before: ClientRecord | None) -> None:
        after = self._clients.get(client_id)
        if after is None or after == before:
            return
        writes = batch.writes
        writes.put(Keys.client(client_id), after.encode())
        if before is not None:
            writes.delete(Keys.expiry(before.last_offset, client_id))
        else:
            self._client_count += 1
            batch.new_clients += 1
        writes.put(Keys.expiry(after.last_offset, client_id), u64(batch.time_ms))  # when it was last heard from
        runs = batch.new_results.get(client_id, [])
        digests = batch.new_digests.get(client_id)
        assert digests is not None and len(digests) == sum(run.count for run in runs), "a digest per applied nonce"
        start = 0
        for run in runs:
            run.digests = digests[start : start + run.count]
            start += run.count
            writes.put_blind(Keys.result(client_id, run.first_nonce), run.encode())
        # Keep outcomes of the last DEDUPE_RESULTS_PER_CLIENT_MAX nonces at least: a run holds at
        # most BATCH_INTENTIONS_MAX results, so runs starting below this horizon are all older. They are
        # dropped when the horizon passes a multiple of DEDUPE_RESULTS_TRIM_STEP_NONCES: one range delete
        # per step, not one per entry (each costs later reads: see limits.STORE_POINT_DELETES_MAX).
        step = limits.DEDUPE_RESULTS_TRIM_STEP_NONCES
        horizon = _results_horizon(after) // step * step
        if horizon > 0 and (before is None or _results_horizon(before) < horizon):
            writes.delete_range(Keys.result(client_id, 0), Keys.result(client_id, horizon))

    def _expire_clients(self, batch: _Batch) -> None:
        """Forget clients (dedupe record, kept results, expiry key): every client not heard from for
        DEDUPE_CLIENT_EXPIRY_INTENTIONS or DEDUPE_CLIENT_EXPIRY_MS of log time, and the least recently
        heard from while more than DEDUPE_CLIENTS_MAX have a record. Oldest first: the expiry index
        orders clients by their last intention offset. At most DEDUPE_EXPIRED_PER_BATCH_MAX plus this
        entry's new clients per entry, so an entry's work is bounded and a flood of new client ids
        cannot outrun the bound."""
        threshold = batch.offset - limits.DEDUPE_CLIENT_EXPIRY_INTENTIONS
        time_threshold_ms = batch.time_ms - limits.DEDUPE_CLIENT_EXPIRY_MS
        if self._client_count <= limits.DEDUPE_CLIENTS_MAX and (
            (threshold <= 0 and time_threshold_ms <= 0)
            # Every key is at or above both floors, so none is idle: the scan below would stop at its first key.
            # (A RocksDB iterator per entry: ~10 us of each entry's apply on every node, measured on one-put entries.)
            or (self._expiry_floor >= threshold and self._expiry_heard_floor_ms >= time_threshold_ms)
        ):
            return
        prefix = Keys.EXPIRY_PREFIX
        budget = limits.DEDUPE_EXPIRED_PER_BATCH_MAX + batch.new_clients
        # From the floor, not the prefix: each entry deletes its clients' old expiry keys, and a scan from the
        # prefix would step over every such tombstone RocksDB still holds (one per entry: ~400 us after 100,000).
        for key, value in self._store.scan(prefix, start=prefix + u64(self._expiry_floor), limit=budget):
            last_offset = from_u64(key[len(prefix) : len(prefix) + 8])
            # Every key below this one is gone once this entry is written (expired here, or moved by it).
            self._expiry_floor = last_offset
            # Log time never goes backwards along the log, so offset order is also time order. A key written
            # before log time existed (no value, or 0) is expired by offsets and the count only.
            heard_ms = from_u64(value) if len(value) == 8 else 0
            idle = last_offset < threshold or 0 < heard_ms < time_threshold_ms
            if not idle and self._client_count <= limits.DEDUPE_CLIENTS_MAX:
                self._expiry_heard_floor_ms = heard_ms  # the first key left: every key has a `heard` at least this
                return
            client_id = key[len(prefix) + 8 :]
            decided, _ = batch.writes.lookup(key)
            if decided:
                continue  # this entry moved the client forward: not expired
            batch.writes.delete(key)
            batch.writes.delete(Keys.client(client_id))
            self.auth.unbind(client_id, batch.writes)
            # Not touched by this entry (above): its results are all stored. Usually a few runs: point deletes.
            self._delete_stored(batch.writes, Keys.results_of(client_id), Keys.results_of(client_id) + u64(2**64 - 1))
            self._clients.pop(client_id, None)
            self._client_count -= 1
