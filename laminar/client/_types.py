"""The values the public API hands out: kinds, effects, commits and events."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from laminar.v1 import laminar_pb2 as pb


@dataclass(frozen=True)
class Retention:
    """How much of a topic's stream the cluster keeps (docs/protocol.md, "Retention"). 0: no limit of
    that kind. The oldest events past any limit are trimmed; offsets are never reused."""

    max_events: int = 0
    max_bytes: int = 0  # serialized event bytes
    max_age_ms: int = 0  # by log time (Event.time_ms)

    def to_wire(self) -> pb.Retention:
        return pb.Retention(max_events=self.max_events, max_bytes=self.max_bytes, max_age_ms=self.max_age_ms)

    @staticmethod
    def from_wire(r: pb.Retention) -> Retention:
        return Retention(r.max_events, r.max_bytes, r.max_age_ms)


class Kind(StrEnum):
    """What produced an event (and what a mutation asks for)."""

    CREATE_TOPIC = "CREATE_TOPIC"
    DESTROY_TOPIC = "DESTROY_TOPIC"
    PUT = "PUT"
    DELETE = "DELETE"

    @staticmethod
    def from_wire(value: int) -> Kind:
        return Kind(pb.Kind.Name(value))


class Effect(StrEnum):
    """What a committed intention did."""

    VALID = "VALID"  # events were produced
    INVALID = "INVALID"  # create of an existing topic, destroy of a missing one
    ERROR = "ERROR"  # write to a missing topic, or the topic's program rejected it or faulted

    @staticmethod
    def from_wire(value: int) -> Effect:
        return Effect(pb.Effect.Name(value))


@dataclass(frozen=True)
class Commit:
    effect: Effect
    intention_offset: int  # global, 1-based; 0 only for a resend whose outcome is no longer kept
    reason: str  # empty when VALID

    @property
    def ok(self) -> bool:
        return self.effect is Effect.VALID


@dataclass(frozen=True)
class Event:
    topic: str
    kind: Kind
    key: bytes
    value: bytes
    intention_offset: int
    consequence_offset: int  # per topic, 1-based, gapless, never reset
    # True for the live keys a snapshot listener receives first: each is the key's current value,
    # with the offsets of the event that set it (so snapshot offsets are neither ordered nor gapless).
    snapshot: bool = False
    # Log time of the entry that produced the event (ms since the Unix epoch; the same on every node,
    # never below an earlier event's). 0 for snapshot items and for events older than log time.
    time_ms: int = 0


@dataclass(frozen=True)
class Value:
    """What `Client.get` read: the current value of one key, and how far the read reflects."""

    topic: str
    key: bytes
    found: bool  # False: the key is not set now (never put, deleted, or the topic does not exist)
    value: bytes  # b"" when not found
    value_offset: int  # consequence offset of the event that set the value (0 when not found)
    topic_offset: int  # the read reflects every event of the topic through this consequence offset
    intention_offset: int  # and every intention through this global offset
    topic_exists: bool = True  # False: the topic does not exist (so `found` is False too)


@dataclass(frozen=True)
class GroupSettings:
    """How a consumer group hands out events; fixed by the join that creates it (0: the default)."""

    lease_ms: int = 0  # an event's lease, and a member's silence before it is dropped (default 30 s)
    unacked_max: int = 0  # events leased to one member at once (default 256)
    deliveries_max: int = 0  # deliveries before an event is dead-lettered (default 5)
    dead_letter_topic: str = ""  # where dead-lettered events are appended ("": dropped, counted)

    def to_wire(self) -> pb.GroupSettings:
        return pb.GroupSettings(
            lease_ms=self.lease_ms,
            unacked_max=self.unacked_max,
            deliveries_max=self.deliveries_max,
            dead_letter_topic=self.dead_letter_topic,
        )


@dataclass(frozen=True)
class ConsumerInfo:
    """One consumer of a topic as `describe_topic` read it (docs/consumers.md)."""

    name: str
    group: bool  # a consumer group; else a durable consumer
    acked_offset: int  # every event through this offset is acknowledged
    updated_at: int  # intention offset of the last change
    delivered_offset: int = 0  # groups: newest offset handed to a member at least once
    members: tuple[str, ...] = ()  # groups: live members, sorted
    leases: int = 0  # groups: events leased or waiting for redelivery now
    acked: int = 0  # groups: events acknowledged over the group's life
    redeliveries: int = 0  # groups: deliveries after an event's first
    dead_lettered: int = 0  # groups: events given up on after deliveries_max
    lease_ms: int = 0
    unacked_max: int = 0
    deliveries_max: int = 0
    dead_letter_topic: str = ""

    @staticmethod
    def from_wire(c: pb.ConsumerInfo) -> ConsumerInfo:
        s = c.settings
        return ConsumerInfo(
            c.name,
            c.group,
            c.acked_offset,
            c.updated_at,
            c.delivered_offset,
            tuple(c.members),
            c.leases,
            c.acked,
            c.redeliveries,
            c.dead_lettered,
            s.lease_ms,
            s.unacked_max,
            s.deliveries_max,
            s.dead_letter_topic,
        )


@dataclass(frozen=True)
class TopicInfo:
    """What `describe_topic` read: one topic as the answering node has applied it."""

    topic: str
    exists: bool  # the topic is live now
    program: str  # its program's source; "" for a plain topic
    args: bytes  # the arguments its program's on_create received
    created_at: int  # intention offset of the create of this incarnation (0: never created)
    last_offset: int  # newest consequence offset (0: no event yet)
    keys: int  # live keys (a lower bound when keys_capped)
    value_bytes: int  # bytes of their current values
    keys_capped: bool  # counting stopped at limits.DESCRIBE_KEYS_COUNTED_MAX
    intention_offset: int  # the answer reflects every intention through this offset
    consumers: tuple[ConsumerInfo, ...] = ()  # durable consumers and groups, by name
    retention: Retention = Retention()  # the topic's limits (all 0: it keeps everything)
    first_offset: int = 1  # oldest consequence offset still kept (earlier ones were trimmed)
    retained_bytes: int = 0  # serialized bytes of the events kept
