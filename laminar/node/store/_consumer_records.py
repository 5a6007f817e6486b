"""Records of consumers and consumer groups (docs/consumers.md). Fixed binary layouts, struct, no pickle.

k/<topic>\\x00<name>                   -> ConsumerRecord (a durable consumer or a group)
q/<topic>\\x00<group>\\x00<member>       -> MemberRecord (one live member of a group)
l/<topic>\\x00<group>\\x00<offset:8>     -> LeaseRecord (an event delivered and not acknowledged yet)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

_CONSUMER = struct.Struct(">BQQQQQQIIIH")
_MEMBER = struct.Struct(">QI")
_LEASE = struct.Struct(">QQI")

DURABLE, GROUP = 0, 1


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    """A durable consumer (acked_offset: acknowledged through) or a group (acked_offset: the newest
    offset ever handed to a member; the events after it have never been delivered)."""

    kind: int  # DURABLE or GROUP
    acked_offset: int
    updated_at: int  # intention offset of the last change
    acked: int = 0  # groups: events acknowledged over the group's life
    redeliveries: int = 0  # groups: deliveries after an event's first
    dead_lettered: int = 0  # groups: events given up on after deliveries_max
    grants: int = 0  # groups: leases granted so far; each lease carries its grant's number
    lease_ms: int = 0
    unacked_max: int = 0
    deliveries_max: int = 0
    dead_letter_topic: str = ""

    def encode(self) -> bytes:
        dead = self.dead_letter_topic.encode()
        head = _CONSUMER.pack(
            self.kind,
            self.acked_offset,
            self.updated_at,
            self.acked,
            self.redeliveries,
            self.dead_lettered,
            self.grants,
            self.lease_ms,
            self.unacked_max,
            self.deliveries_max,
            len(dead),
        )
        return head + dead

    @staticmethod
    def decode(data: bytes) -> ConsumerRecord:
        (
            kind,
            acked_offset,
            updated_at,
            acked,
            redeliveries,
            dead_lettered,
            grants,
            lease_ms,
            unacked,
            deliveries,
            size,
        ) = _CONSUMER.unpack_from(data)
        dead = bytes(data[_CONSUMER.size : _CONSUMER.size + size]).decode()
        return ConsumerRecord(
            kind,
            acked_offset,
            updated_at,
            acked,
            redeliveries,
            dead_lettered,
            grants,
            lease_ms,
            unacked,
            deliveries,
            dead,
        )

    def but(self, **changes: int | str) -> ConsumerRecord:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(slots=True)
class MemberRecord:
    last_seen_ms: int  # log time of the member's last join (its heartbeat)
    unacked_max: int  # events leased to it at once

    def encode(self) -> bytes:
        return _MEMBER.pack(self.last_seen_ms, self.unacked_max)

    @staticmethod
    def decode(data: bytes) -> MemberRecord:
        return MemberRecord(*_MEMBER.unpack(data))


@dataclass(slots=True)
class LeaseRecord:
    """One event of a group not acknowledged yet: leased to `member` until deadline_ms, or waiting
    for a member (member "") after its lease expired or its member left."""

    member: str
    seq: int  # the group's grant number: a member's stream sends its leases in this order
    deadline_ms: int
    deliveries: int  # times handed to a member so far

    def encode(self) -> bytes:
        return _LEASE.pack(self.seq, self.deadline_ms, self.deliveries) + self.member.encode()

    @staticmethod
    def decode(data: bytes) -> LeaseRecord:
        seq, deadline_ms, deliveries = _LEASE.unpack_from(data)
        return LeaseRecord(bytes(data[_LEASE.size :]).decode(), seq, deadline_ms, deliveries)
