"""Calls from topic programs to services, as replicated state (docs/pipelines.md, seed 002).

A call lives from the transaction that made it (`ctx.call`, recorded only if that transaction commits) to its
result: a worker's CALL_COMPLETE or CALL_FAIL, a timeout, or giving up after CALL_DELIVERIES_MAX leases expired.
The first result of a call in flight finishes it, and the state machine runs the topic's on_result with it, once;
every later result finds no call (INVALID). Workers of a service join like the members of a consumer group (issue
16, state_machine/_consumers.py) and are leased calls in log time: a lease that expires, or a worker not heard from
for its lease_ms, puts the call back to wait for another worker (a redelivery, counted).

What is kept: every call in flight in the store (its request, under p/, and its lease, under w/), the workers
(j/), the counters of each topic (g/) and the last call id and grant number (m/calls); in memory only what the
decisions need (no request bytes). Every change is written through in the entry's write set, so a restarted node
(reload) rebuilds exactly what the others hold. Every decision iterates in a fixed order (services and workers by
name, calls by id, expiries by (log time, id)), never a dict's insertion order. Nothing here raises on bad input.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from laminar import _rules, limits
from laminar.node.sandbox import CallGate, CallMade
from laminar.node.store import CallKeys, CallLease, CallSeq, Store, WorkerRecord, WriteSet, u64
from laminar.v1 import laminar_pb2 as pb

VALID, INVALID, ERROR = pb.VALID, pb.INVALID, pb.ERROR
CALL_KINDS = _rules.CALL_KINDS
COMPLETED, FAILED, TIMED_OUT, GAVE_UP = "completed", "failed", "timed_out", "gave_up"  # how a call finished
_NAME = re.compile(limits.TOPIC_NAME_PATTERN)
_HEAP_SLACK = 1024  # stale heap entries tolerated beyond twice the live ones before a heap is rebuilt

TopicLive = Callable[[str], bool]


@dataclass(slots=True)
class _Call:
    topic: str
    service: str
    method: str
    issued_ms: int
    deadline_ms: int
    lease: CallLease  # who holds it now (worker "": waiting)


@dataclass
class _Service:
    workers: dict[str, WorkerRecord] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # worker -> calls leased to it now
    waiting: dict[str, set[int]] = field(default_factory=dict)  # method -> ids of calls waiting for a worker
    in_flight: int = 0
    due_ms: int = 0  # log time at which a worker may be dropped (0: no worker)

    def idle(self) -> bool:
        return not self.workers and not self.in_flight


@dataclass(slots=True)
class Finished:
    """A call that got its result: the state machine runs its topic's on_result with it."""

    call: pb.Call  # the fixed fields (id, topic, service, method, request, context, issued_ms, ...)
    response: bytes | None
    failure: str | None
    how: str  # COMPLETED, FAILED, TIMED_OUT or GAVE_UP
    latency_ms: int  # log time from issue to result


@dataclass
class CallsApplied:
    """What the calls did in one entry, for metrics (the node's, not replicated)."""

    issued: int = 0
    redeliveries: int = 0
    results: list[tuple[str, int]] = field(default_factory=list)  # (how, latency_ms) per finished call
    granted: bool = False  # leases were granted or released: workers' streams must look


class Calls:
    """The calls and workers of every topic and service. The state machine calls it from the apply thread only."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.applied = CallsApplied()

    # ---- loading ---------------------------------------------------------------------------------

    def reload(self) -> None:
        self._calls: dict[int, _Call] = {}
        self._by_topic: dict[str, set[int]] = {}
        self._services: dict[str, _Service] = {}
        self._stats: dict[str, pb.CallStats] = {}
        self._dirty_stats: set[str] = set()
        self._spent: set[int] = set()  # waiting calls that had their last delivery: they fail at the next entry end
        # Calls whose lease changed in this entry: written once, at its end (grant), however often it changed (a call
        # issued and leased in one entry wrote its lease twice).
        self._leases_dirty: set[int] = set()
        data = self._store.get(CallKeys.SEQ)
        self._seq = CallSeq.decode(data) if data is not None else CallSeq(0, 0)
        self._seq_dirty = False
        leases = {}
        for key, value in self._store.scan(CallKeys.LEASE_PREFIX):
            leases[int.from_bytes(key[-8:], "big")] = CallLease.decode(value)
        for _, value in self._store.scan(CallKeys.CALL_PREFIX):
            call = pb.Call.FromString(value)
            self._hold(call, leases[call.id])
        for key, value in self._store.scan(CallKeys.WORKER_PREFIX):
            service, worker = key[len(CallKeys.WORKER_PREFIX) :].decode().split("\x00", 1)
            entry = self._services.setdefault(service, _Service())
            entry.workers[worker] = WorkerRecord.decode(value)
            entry.held.setdefault(worker, 0)
        for call_id in sorted(self._calls):  # after the workers: a lease counts toward its worker's held calls
            self._count_lease(call_id, self._calls[call_id])
        for key, value in self._store.scan(CallKeys.STATS_PREFIX):
            self._stats[key[len(CallKeys.STATS_PREFIX) :].decode()] = pb.CallStats.FromString(value)
        for entry in self._services.values():
            entry.due_ms = _due(entry)
        self._rebuild_heaps()

    def _hold(self, call: pb.Call, lease: CallLease) -> None:
        held = _Call(call.topic, call.service, call.method, call.issued_ms, call.deadline_ms, lease)
        self._calls[call.id] = held
        self._by_topic.setdefault(call.topic, set()).add(call.id)
        self._services.setdefault(call.service, _Service()).in_flight += 1

    def _count_lease(self, call_id: int, call: _Call) -> None:
        entry = self._services[call.service]
        worker = call.lease.worker
        if worker and worker in entry.workers:
            entry.held[worker] += 1
        elif call.lease.deliveries >= limits.CALL_DELIVERIES_MAX:
            self._spent.add(call_id)
        else:
            entry.waiting.setdefault(call.method, set()).add(call_id)

    def _rebuild_heaps(self) -> None:
        """Heaps of (log time, id) of deadlines and lease ends; entries of finished calls go stale, skipped."""
        self._deadlines = sorted((c.deadline_ms, i) for i, c in self._calls.items())
        self._lease_ends = sorted(
            (c.lease.lease_deadline_ms, i, c.lease.seq) for i, c in self._calls.items() if c.lease.worker
        )

    # ---- queries (apply thread; the read side reads the store) -----------------------------------------

    def in_flight(self, topic: str | None = None) -> int:
        """Calls in flight of `topic`, or of the whole cluster."""
        if topic is None:
            return len(self._calls)
        return len(self._by_topic.get(topic, ()))

    def last_id(self) -> int:
        return self._seq.last_id

    def stats(self, topic: str) -> pb.CallStats:
        return self._stats.get(topic, pb.CallStats())

    def lease_of(self, call_id: int) -> CallLease | None:
        call = self._calls.get(call_id)
        return None if call is None else call.lease

    def gate(self, topic: str) -> CallGate:
        """What ctx.call may do in one handler call of `topic`, from the state now. The rooms of services are
        read once each, when first asked, and remembered: a handler call run again (the sandbox's rollback) sees
        the same values."""
        rooms: dict[str, int] = {}

        def service_room(service: str) -> int:
            room = rooms.get(service)
            if room is None:
                entry = self._services.get(service)
                room = rooms[service] = limits.CALLS_IN_FLIGHT_PER_SERVICE_MAX - (entry.in_flight if entry else 0)
            return room

        return CallGate(
            self._seq.last_id + 1,
            limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX - self.in_flight(topic),
            limits.CALLS_IN_FLIGHT_MAX - len(self._calls),
            service_room,
        )

    # ---- calls made ------------------------------------------------------------------------------------

    def record(
        self, writes: WriteSet, topic: str, made: tuple[CallMade, ...], offset: int, now_ms: int, first_id: int
    ) -> None:
        """Record the calls a committed handler call made (ids first_id, first_id + 1, ...)."""
        assert first_id == self._seq.last_id + 1, "call ids are gapless: the gate's first id is the next one"
        assert self.in_flight(topic) + len(made) <= limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX, "ctx.call checked the room"
        stats = self._stats_of(topic)
        for one in made:
            self._seq.last_id += 1
            call = pb.Call(
                id=self._seq.last_id,
                topic=topic,
                service=one.service,
                method=one.method,
                request=one.request,
                context=one.context,
                issued_ms=now_ms,
                deadline_ms=now_ms + one.timeout_ms,
                intention_offset=offset,
            )
            writes.put(CallKeys.call(topic, call.id), call.SerializeToString())
            lease = CallLease(topic, "", 0, 0, 0)
            self._leases_dirty.add(call.id)
            self._hold(call, lease)
            self._services[one.service].waiting.setdefault(one.method, set()).add(call.id)
            heapq.heappush(self._deadlines, (call.deadline_ms, call.id))
            stats.issued += 1
            stats.in_flight += 1
        self._seq_dirty = True
        self.applied.issued += len(made)

    def _stats_of(self, topic: str) -> pb.CallStats:
        stats = self._stats.get(topic)
        if stats is None:
            stats = self._stats[topic] = pb.CallStats()
        self._dirty_stats.add(topic)
        return stats

    # ---- results ---------------------------------------------------------------------------------------

    def result(self, writes: WriteSet, m: pb.Mutation, now_ms: int) -> tuple[int, str, Finished | None]:
        """A worker's CALL_COMPLETE or CALL_FAIL: the finished call (the caller runs on_result), or why not."""
        problem = _rules.call_problem(m)
        if problem:
            return ERROR, problem, None
        result = m.result
        call = self._calls.get(result.call_id)
        if call is None or call.topic != m.topic:
            reason = (
                f"call {result.call_id} is not in flight on topic {m.topic!r} (it has its result already, timed "
                "out, its topic was destroyed, or it was never issued): this result was ignored"
            )
            return INVALID, reason, None
        self._heard(writes, call.service, result.worker, now_ms)
        if m.kind == pb.CALL_COMPLETE:
            return VALID, "", self._finish(writes, result.call_id, now_ms, bytes(result.response), None, COMPLETED)
        return VALID, "", self._finish(writes, result.call_id, now_ms, None, result.failure, FAILED)

    def _heard(self, writes: WriteSet, service: str, worker: str, now_ms: int) -> None:
        """A result from a live worker says it is alive."""
        entry = self._services.get(service)
        record = entry.workers.get(worker) if entry is not None and worker else None
        if record is not None and record.last_seen_ms < now_ms:
            record.last_seen_ms = now_ms
            writes.put(CallKeys.worker(service, worker), record.encode())

    def _finish(
        self, writes: WriteSet, call_id: int, now_ms: int, response: bytes | None, failure: str | None, how: str
    ) -> Finished:
        """Take a call out of flight, everywhere it is counted; its fixed fields come back for on_result."""
        call = self._calls.pop(call_id)
        key = CallKeys.call(call.topic, call_id)
        decided, data = writes.lookup(key)
        if not decided:
            data = self._store.get_applying(key)
        assert data is not None, f"call {call_id} is in flight, so its record is stored"
        writes.delete(key)
        writes.delete(CallKeys.lease(call.service, call_id))
        self._leases_dirty.discard(call_id)
        self._by_topic[call.topic].discard(call_id)
        if not self._by_topic[call.topic]:
            del self._by_topic[call.topic]
        entry = self._services[call.service]
        entry.in_flight -= 1
        worker = call.lease.worker
        if worker:
            writes.delete(CallKeys.grant(call.service, worker, call.lease.seq))
        if worker and worker in entry.held:
            entry.held[worker] -= 1
        entry.waiting.get(call.method, set()).discard(call_id)
        self._spent.discard(call_id)
        if entry.idle():
            del self._services[call.service]
        stats = self._stats_of(call.topic)
        stats.in_flight -= 1
        setattr(stats, how, getattr(stats, how) + 1)  # each way a call ends is named as its CallStats counter
        latency_ms = max(0, now_ms - call.issued_ms)
        self.applied.results.append((how, latency_ms))
        fixed = pb.Call.FromString(data)
        fixed.deliveries = call.lease.deliveries
        return Finished(fixed, response, failure, how, latency_ms)

    def on_result_failed(self, topic: str) -> None:
        self._stats_of(topic).on_result_errors += 1

    # ---- workers ---------------------------------------------------------------------------------------

    def worker(self, writes: WriteSet, m: pb.Mutation, now_ms: int) -> tuple[int, str]:
        """WORKER_JOIN or WORKER_LEAVE of service `m.topic`."""
        op, service = m.worker, m.topic
        problem = _rules.worker_problem(op)
        if problem:
            return ERROR, problem
        entry = self._services.get(service)
        if m.kind == pb.WORKER_LEAVE:
            if entry is None or op.worker not in entry.workers:
                return INVALID, f"worker {op.worker!r} is not a worker of service {service!r}"
            self._drop_worker(writes, service, entry, op.worker)
            return VALID, ""
        if entry is None or not entry.workers:
            serving = sum(1 for e in self._services.values() if e.workers)
            if serving >= limits.WORKER_SERVICES_MAX:
                return ERROR, f"{serving} services have workers already (WORKER_SERVICES_MAX)"
        entry = self._services.setdefault(service, _Service())
        if op.worker not in entry.workers and len(entry.workers) >= limits.WORKERS_PER_SERVICE_MAX:
            return ERROR, f"service {service!r} has {len(entry.workers)} workers already (WORKERS_PER_SERVICE_MAX)"
        record = WorkerRecord(
            now_ms,
            op.calls_max or limits.WORKER_CALLS_DEFAULT,
            op.lease_ms or limits.WORKER_LEASE_MS_DEFAULT,
            op.method,
        )
        before = entry.workers.get(op.worker)
        if before is not None:
            record.last_seen_ms = max(now_ms, before.last_seen_ms)
        entry.workers[op.worker] = record
        entry.held.setdefault(op.worker, 0)
        entry.due_ms = _due(entry)
        writes.put(CallKeys.worker(service, op.worker), record.encode())
        if before is not None and before.method != record.method:
            self._release_all(writes, service, entry, op.worker)  # what it holds may not be its method's any more
        return VALID, ""

    def _drop_worker(self, writes: WriteSet, service: str, entry: _Service, worker: str) -> None:
        self._release_all(writes, service, entry, worker)
        del entry.workers[worker]
        entry.held.pop(worker, None)
        writes.delete(CallKeys.worker(service, worker))
        entry.due_ms = _due(entry)
        if entry.idle():
            del self._services[service]

    def _release_all(self, writes: WriteSet, service: str, entry: _Service, worker: str) -> None:
        """Every call leased to `worker` waits for another worker."""
        if not entry.held.get(worker):
            return
        for call_id in sorted(i for i in self._by_service_leased(service, worker)):
            self._release(writes, call_id, self._calls[call_id])

    def _by_service_leased(self, service: str, worker: str) -> list[int]:
        return [i for i, c in self._calls.items() if c.service == service and c.lease.worker == worker]

    def _release(self, writes: WriteSet, call_id: int, call: _Call) -> None:
        """A leased call waits for a worker again (its lease expired, or its worker left or was dropped); one
        that had its last delivery fails instead (at the end of the entry, see finish)."""
        entry = self._services[call.service]
        worker = call.lease.worker
        if worker in entry.held:
            entry.held[worker] -= 1
        writes.delete(CallKeys.grant(call.service, worker, call.lease.seq))
        call.lease.worker = ""
        call.lease.lease_deadline_ms = 0
        self._leases_dirty.add(call_id)
        if call.lease.deliveries >= limits.CALL_DELIVERIES_MAX:
            self._spent.add(call_id)
        else:
            entry.waiting.setdefault(call.method, set()).add(call_id)
        self.applied.granted = True

    # ---- topics ----------------------------------------------------------------------------------------

    def drop_topic(self, writes: WriteSet, topic: str) -> None:
        """A destroyed topic's calls are forgotten (a result for one is INVALID); its counters start again."""
        for call_id in sorted(self._by_topic.get(topic, ())):
            self._finish(writes, call_id, 0, None, None, FAILED)
            self.applied.results.pop()  # not a result: the call is dropped with its topic
        self._dirty_stats.discard(topic)
        # _stats holds every topic's stored counters (read at reload): a topic without any has nothing to delete.
        if self._stats.pop(topic, None) is not None:
            writes.delete(CallKeys.stats(topic))

    # ---- the end of each entry ---------------------------------------------------------------------------

    def expire(self, writes: WriteSet, now_ms: int) -> list[Finished]:
        """What log time ends: silent workers are dropped, expired leases released, calls past their deadline
        (and those whose last delivery expired) finished with a failure, oldest first, at most
        CALL_EXPIRIES_PER_ENTRY_MAX of them (the rest at the next entry). The caller runs their on_result."""
        self._expire_workers(writes, now_ms)
        while self._lease_ends and self._lease_ends[0][0] <= now_ms:
            _, call_id, seq = heapq.heappop(self._lease_ends)
            call = self._calls.get(call_id)
            if call is not None and call.lease.worker and call.lease.seq == seq:
                self._release(writes, call_id, call)
        finished: list[Finished] = []
        budget = limits.CALL_EXPIRIES_PER_ENTRY_MAX
        for call_id in sorted(self._spent)[:budget]:
            failure = f"gave up: no result after {limits.CALL_DELIVERIES_MAX} deliveries (each lease expired)"
            finished.append(self._finish(writes, call_id, now_ms, None, failure, GAVE_UP))
        budget -= len(finished)
        while budget > 0 and self._deadlines and self._deadlines[0][0] <= now_ms:
            deadline_ms, call_id = heapq.heappop(self._deadlines)
            call = self._calls.get(call_id)
            if call is None or call.deadline_ms != deadline_ms:
                continue  # finished already: a stale entry
            failure = f"timeout: no result within {deadline_ms - call.issued_ms} ms of log time"
            finished.append(self._finish(writes, call_id, now_ms, None, failure, TIMED_OUT))
            budget -= 1
        if len(self._deadlines) + len(self._lease_ends) > 4 * len(self._calls) + _HEAP_SLACK:
            self._rebuild_heaps()
        return finished

    def _expire_workers(self, writes: WriteSet, now_ms: int) -> None:
        for service in sorted(s for s, e in self._services.items() if e.due_ms and e.due_ms <= now_ms):
            entry = self._services[service]
            for worker in sorted(entry.workers):
                record = entry.workers[worker]
                if record.last_seen_ms + record.lease_ms <= now_ms:
                    self._drop_worker(writes, service, entry, worker)
            if service in self._services:
                entry.due_ms = _due(entry)

    def grant(self, writes: WriteSet, now_ms: int) -> None:
        """Lease waiting calls (by id, per method in name order) to the roomiest live workers that take them,
        at most CALL_GRANTS_PER_ENTRY_MAX over all services; then write what changed in the entry (leases, the
        sequence, counters). The state machine calls it at the end of every entry, after expire."""
        budget = limits.CALL_GRANTS_PER_ENTRY_MAX
        for service in sorted(s for s, e in self._services.items() if e.workers and any(e.waiting.values())):
            entry = self._services[service]
            for method in sorted(entry.waiting):
                budget = self._grant_method(writes, now_ms, service, entry, method, budget)
        for call_id in sorted(self._leases_dirty):
            call = self._calls[call_id]  # a call that finished was taken out of the set
            writes.put(CallKeys.lease(call.service, call_id), call.lease.encode())
        self._leases_dirty.clear()
        if self._seq_dirty:
            writes.put(CallKeys.SEQ, self._seq.encode())
            self._seq_dirty = False
        for topic in sorted(self._dirty_stats):
            writes.put(CallKeys.stats(topic), self._stats[topic].SerializeToString())
        self._dirty_stats.clear()

    def _lease(self, writes: WriteSet, now_ms: int, service: str, entry: _Service, worker: str, call_id: int) -> None:
        """Lease a waiting call to `worker` for its lease_ms of log time (a redelivery if it had a lease before)."""
        call = self._calls[call_id]
        self._seq.grants += 1
        self._seq_dirty = True
        lease = call.lease
        if lease.deliveries:
            self.applied.redeliveries += 1
            self._stats_of(call.topic).redeliveries += 1
        lease.worker, lease.seq = worker, self._seq.grants
        lease.lease_deadline_ms = now_ms + entry.workers[worker].lease_ms
        lease.deliveries += 1
        entry.held[worker] += 1
        self._leases_dirty.add(call_id)
        writes.put_blind(CallKeys.grant(service, worker, lease.seq), u64(call_id) + call.topic.encode())
        heapq.heappush(self._lease_ends, (lease.lease_deadline_ms, call_id, lease.seq))
        self.applied.granted = True

    def _grant_method(
        self, writes: WriteSet, now_ms: int, service: str, entry: _Service, method: str, budget: int
    ) -> int:
        waiting = entry.waiting[method]
        for call_id in sorted(waiting)[:budget]:
            worker = _roomiest(entry, method)
            if worker is None:
                break
            waiting.discard(call_id)
            self._lease(writes, now_ms, service, entry, worker, call_id)
            budget -= 1
        if not waiting:
            del entry.waiting[method]
        return budget


def _roomiest(entry: _Service, method: str) -> str | None:
    """The worker taking `method` with the most free room (ties: the first name), or None when none has room."""
    best, best_free = None, 0
    for worker in sorted(entry.workers):
        record = entry.workers[worker]
        if record.method and record.method != method:
            continue
        free = record.calls_max - entry.held.get(worker, 0)
        if free > best_free:
            best, best_free = worker, free
    return best


def _due(entry: _Service) -> int:
    """The earliest log time at which a worker of `entry` may be dropped (0: it has none)."""
    return min((r.last_seen_ms + r.lease_ms for r in entry.workers.values()), default=0)


__all__ = ["CALL_KINDS", "Calls", "CallsApplied", "Finished"]
