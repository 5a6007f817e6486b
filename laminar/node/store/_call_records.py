"""Records of pipelines: calls in flight, their leases, workers, counters (docs/pipelines.md). No pickle.

p/<topic>\\x00<call_id:8>               -> serialized laminar.v1.Call, its fixed fields (what the call asks)
w/<service>\\x00<call_id:8>             -> CallLease (who holds the call now, until when, deliveries so far)
j/<service>\\x00<worker>                -> WorkerRecord (one live worker of a service)
y/<service>\\x00<worker>\\x00<grant:8>   -> <call_id:8><topic> (a worker's leased calls by grant: its stream's index)
g/<topic>                              -> serialized laminar.v1.CallStats of the topic's live incarnation
m/calls                                -> CallSeq (the last call id and lease grant number)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from laminar.node.store._keys import u64

_LEASE = struct.Struct(">QQIH")
_WORKER = struct.Struct(">QII")
_SEQ = struct.Struct(">QQ")


class CallKeys:
    CALL_PREFIX = b"p/"
    LEASE_PREFIX = b"w/"
    WORKER_PREFIX = b"j/"
    STATS_PREFIX = b"g/"
    GRANT_PREFIX = b"y/"
    SEQ = b"m/calls"

    @staticmethod
    def calls_of(topic: str) -> bytes:
        return CallKeys.CALL_PREFIX + topic.encode() + b"\x00"

    @staticmethod
    def call(topic: str, call_id: int) -> bytes:
        return CallKeys.calls_of(topic) + u64(call_id)

    @staticmethod
    def leases_of(service: str) -> bytes:
        return CallKeys.LEASE_PREFIX + service.encode() + b"\x00"

    @staticmethod
    def lease(service: str, call_id: int) -> bytes:
        return CallKeys.leases_of(service) + u64(call_id)

    @staticmethod
    def workers_of(service: str) -> bytes:
        return CallKeys.WORKER_PREFIX + service.encode() + b"\x00"

    @staticmethod
    def worker(service: str, worker: str) -> bytes:
        return CallKeys.workers_of(service) + worker.encode()

    @staticmethod
    def grants_of(service: str, worker: str) -> bytes:
        return CallKeys.GRANT_PREFIX + service.encode() + b"\x00" + worker.encode() + b"\x00"

    @staticmethod
    def grant(service: str, worker: str, seq: int) -> bytes:
        return CallKeys.grants_of(service, worker) + u64(seq)

    @staticmethod
    def stats(topic: str) -> bytes:
        return CallKeys.STATS_PREFIX + topic.encode()


@dataclass(slots=True)
class CallLease:
    """A call in flight as its service sees it: leased to `worker` until lease_deadline_ms (grant number
    `seq`), or waiting for a worker (worker "", lease_deadline_ms 0)."""

    topic: str
    worker: str
    seq: int
    lease_deadline_ms: int
    deliveries: int

    def encode(self) -> bytes:
        topic = self.topic.encode()
        head = _LEASE.pack(self.seq, self.lease_deadline_ms, self.deliveries, len(topic))
        return head + topic + self.worker.encode()

    @staticmethod
    def decode(data: bytes) -> CallLease:
        seq, deadline_ms, deliveries, size = _LEASE.unpack_from(data)
        start = _LEASE.size
        topic = bytes(data[start : start + size]).decode()
        return CallLease(topic, bytes(data[start + size :]).decode(), seq, deadline_ms, deliveries)


@dataclass(slots=True)
class WorkerRecord:
    last_seen_ms: int  # log time of the worker's last join or result (its heartbeat)
    calls_max: int  # calls leased to it at once
    lease_ms: int  # how long its leases last, and how long it may stay silent
    method: str  # "" : every method of its service

    def encode(self) -> bytes:
        return _WORKER.pack(self.last_seen_ms, self.calls_max, self.lease_ms) + self.method.encode()

    @staticmethod
    def decode(data: bytes) -> WorkerRecord:
        last_seen_ms, calls_max, lease_ms = _WORKER.unpack_from(data)
        return WorkerRecord(last_seen_ms, calls_max, lease_ms, bytes(data[_WORKER.size :]).decode())


@dataclass(slots=True)
class CallSeq:
    last_id: int  # the newest call id issued (ids are 1-based, gapless, never reused)
    grants: int  # leases granted so far, over every service: each lease carries its grant's number

    def encode(self) -> bytes:
        return _SEQ.pack(self.last_id, self.grants)

    @staticmethod
    def decode(data: bytes) -> CallSeq:
        return CallSeq(*_SEQ.unpack(data))
