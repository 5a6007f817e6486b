"""Consumers of a topic, as replicated state: durable positions and consumer groups (docs/consumers.md).

A durable consumer is a name and an acknowledged offset: CONSUMER_ACK moves it forward (never back:
a late ack of an older offset changes nothing), CONSUMER_RESET sets it anywhere up to the topic's last
event. A group hands each event to one member at a time under a lease measured in log time. Leases,
members and counters live in memory (loaded by reload()) and every change is written through to the
store in the entry's write set, so a restarted node rebuilds exactly the state the others hold.

Every decision iterates in sorted order (members by name, leases by offset) and reads only replicated
state and the entry's log time, never a dict's insertion order (which a restarted node would not share).
Like the rest of the state machine this never raises on bad input: every refusal is an effect.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from laminar import limits
from laminar.node.store import (
    DURABLE,
    GROUP,
    ConsumerRecord,
    Keys,
    LeaseRecord,
    MemberRecord,
    Store,
    WriteSet,
    from_u64,
    u64,
)
from laminar.v1 import laminar_pb2 as pb

VALID, INVALID, ERROR = pb.VALID, pb.INVALID, pb.ERROR
CONSUMER_KINDS = frozenset(
    {pb.CONSUMER_ACK, pb.CONSUMER_RESET, pb.CONSUMER_DELETE, pb.GROUP_JOIN, pb.GROUP_ACK, pb.GROUP_LEAVE}
)
# What a join that leaves a setting at 0 gets. Part of the replicated contract, like the limits.
GROUP_LEASE_MS_DEFAULT = 30_000
GROUP_UNACKED_DEFAULT = 256
GROUP_DELIVERIES_DEFAULT = 5
_NAME = re.compile(limits.TOPIC_NAME_PATTERN)

# A topic's first kept and last consequence offsets (retention trims below the first), None unless it is live.
TopicKept = Callable[[str], "tuple[int, int] | None"]
AppendFn = Callable[[str, pb.Event], bool]  # append a copy of an event to a live topic (False: not live)


@dataclass
class _Group:
    topic: str
    name: str
    record: ConsumerRecord
    members: dict[str, MemberRecord] = field(default_factory=dict)
    leases: dict[int, LeaseRecord] = field(default_factory=dict)  # offset -> lease (member "" waits)
    waiting: set[int] = field(default_factory=set)  # offsets whose lease waits for a member
    held: dict[str, int] = field(default_factory=dict)  # member -> leases it holds
    due_ms: int = 0  # log time at which a lease or a member may expire (0: nothing can)

    def lease_key(self, offset: int) -> bytes:
        return Keys.leases_of(self.topic, self.name) + u64(offset)

    def member_key(self, member: str) -> bytes:
        return Keys.members_of(self.topic, self.name) + member.encode()


def _end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix` (which ends in NUL)."""
    return prefix[:-1] + b"\x01"


class Consumers:
    """The consumers of every topic. The state machine calls it from the apply thread only."""

    def __init__(self, store: Store) -> None:
        self._store = store  # reload() (the state machine's) reads what it holds

    # ---- loading ---------------------------------------------------------------------------------

    def reload(self) -> None:
        self._durable: dict[tuple[str, str], ConsumerRecord] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._per_topic: dict[str, int] = {}
        for key, value in self._store.scan(Keys.CONSUMER_PREFIX):
            topic, name = key[len(Keys.CONSUMER_PREFIX) :].decode().split("\x00", 1)
            record = ConsumerRecord.decode(value)
            self._per_topic[topic] = self._per_topic.get(topic, 0) + 1
            if record.kind == GROUP:
                self._groups[(topic, name)] = _Group(topic, name, record)
            else:
                self._durable[(topic, name)] = record
        for key, value in self._store.scan(Keys.MEMBER_PREFIX):
            topic, name, member = key[len(Keys.MEMBER_PREFIX) :].decode().split("\x00", 2)
            group = self._groups.get((topic, name))
            if group is not None:
                group.members[member] = MemberRecord.decode(value)
                group.held.setdefault(member, 0)
        for key, value in self._store.scan(Keys.LEASE_PREFIX):
            topic, name = key[len(Keys.LEASE_PREFIX) : -9].decode().split("\x00", 1)
            group = self._groups.get((topic, name))
            if group is not None:
                self._hold(group, from_u64(key[-8:]), LeaseRecord.decode(value))
        for group in self._groups.values():
            group.due_ms = _due(group)

    @staticmethod
    def _hold(group: _Group, offset: int, lease: LeaseRecord) -> None:
        group.leases[offset] = lease
        if lease.member:
            group.held[lease.member] = group.held.get(lease.member, 0) + 1
        else:
            group.waiting.add(offset)

    # ---- intentions ------------------------------------------------------------------------------

    def execute(
        self, writes: WriteSet, offset: int, now_ms: int, topic_kept: TopicKept, m: pb.Mutation
    ) -> tuple[int, str]:
        """Apply one consumer intention at intention offset `offset` and log time `now_ms`."""
        op = m.consumer
        if not _NAME.fullmatch(op.name):
            return ERROR, f"invalid consumer name {op.name[:64]!r}"
        kept = topic_kept(m.topic)
        if kept is None:
            return ERROR, f"topic {m.topic!r} does not exist"
        last = kept[1]
        key = (m.topic, op.name)
        if m.kind == pb.CONSUMER_DELETE:
            return self._delete(writes, key)
        if m.kind in (pb.CONSUMER_ACK, pb.CONSUMER_RESET):
            if key in self._groups:
                return ERROR, f"{op.name!r} is a consumer group: its members acknowledge events one by one"
            return self._position(writes, offset, key, last, op.offset, m.kind == pb.CONSUMER_RESET)
        if key in self._durable:
            return ERROR, f"{op.name!r} is a durable consumer, not a group"
        if not _NAME.fullmatch(op.member):
            return ERROR, f"invalid member name {op.member[:64]!r}"
        if m.kind == pb.GROUP_JOIN:
            return self._join(writes, offset, now_ms, key, op)
        group = self._groups.get(key)
        if group is None:
            return ERROR, f"group {op.name!r} does not exist on topic {m.topic!r}"
        if m.kind == pb.GROUP_ACK:
            return self._ack(writes, offset, now_ms, group, op)
        return self._leave(writes, group, op.member)

    def _counted(self, topic: str) -> str:
        if self._per_topic.get(topic, 0) >= limits.CONSUMERS_PER_TOPIC_MAX:
            return f"too many consumers on topic {topic!r} (limit {limits.CONSUMERS_PER_TOPIC_MAX})"
        self._per_topic[topic] = self._per_topic.get(topic, 0) + 1
        return ""

    def _position(
        self, writes: WriteSet, offset: int, key: tuple[str, str], last: int, to: int, reset: bool
    ) -> tuple[int, str]:
        if to > last:
            return ERROR, f"offset {to} is past the last event of {key[0]!r} ({last})"
        record = self._durable.get(key)
        if record is None:
            problem = self._counted(key[0])
            if problem:
                return ERROR, problem
            record = ConsumerRecord(DURABLE, 0, offset)
        elif to <= record.acked_offset and not reset:
            return VALID, ""  # acks are cumulative: an older one arriving late changes nothing
        record = self._durable[key] = record.but(acked_offset=to, updated_at=offset)
        writes.put(Keys.consumer(*key), record.encode())
        return VALID, ""

    def _delete(self, writes: WriteSet, key: tuple[str, str]) -> tuple[int, str]:
        if self._durable.pop(key, None) is None and self._groups.pop(key, None) is None:
            return INVALID, f"consumer {key[1]!r} does not exist on topic {key[0]!r}"
        self._per_topic[key[0]] -= 1
        writes.delete(Keys.consumer(*key))
        writes.delete_range(Keys.members_of(*key), _end(Keys.members_of(*key)))
        writes.delete_range(Keys.leases_of(*key), _end(Keys.leases_of(*key)))
        return VALID, ""

    def drop_topic(self, writes: WriteSet, topic: str) -> None:
        """A destroyed topic loses its consumers and groups (a new incarnation starts with none)."""
        if not self._per_topic.pop(topic, 0):
            return
        for table in (self._durable, self._groups):
            for key in [k for k in table if k[0] == topic]:
                del table[key]
        consumers = Keys.consumers_of(topic)
        writes.delete_range(consumers, _end(consumers))
        for prefix in (Keys.MEMBER_PREFIX, Keys.LEASE_PREFIX):
            start = prefix + topic.encode() + b"\x00"
            writes.delete_range(start, _end(start))

    # ---- groups: members -------------------------------------------------------------------------

    def _join(
        self, writes: WriteSet, offset: int, now_ms: int, key: tuple[str, str], op: pb.ConsumerOp
    ) -> tuple[int, str]:
        group = self._groups.get(key)
        if group is None:
            record, problem = _new_group(key[0], op.settings, offset)
            if record is None:
                return ERROR, problem
            problem = self._counted(key[0])
            if problem:
                return ERROR, problem
            group = self._groups[key] = _Group(key[0], key[1], record)
            writes.put(Keys.consumer(*key), record.encode())
        if op.unacked_max > limits.GROUP_MEMBER_UNACKED_MAX:
            return ERROR, f"unacked_max {op.unacked_max} is over the limit of {limits.GROUP_MEMBER_UNACKED_MAX}"
        member = group.members.get(op.member)
        if member is None and len(group.members) >= limits.GROUP_MEMBERS_MAX:
            return ERROR, f"group {key[1]!r} has {limits.GROUP_MEMBERS_MAX} members already (the limit)"
        unacked_max = op.unacked_max or (member.unacked_max if member is not None else group.record.unacked_max)
        member = MemberRecord(max(now_ms, member.last_seen_ms if member is not None else 0), unacked_max)
        group.members[op.member] = member
        group.held.setdefault(op.member, 0)
        writes.put(group.member_key(op.member), member.encode())
        return VALID, ""

    def _leave(self, writes: WriteSet, group: _Group, member: str) -> tuple[int, str]:
        if group.members.pop(member, None) is None:
            return INVALID, f"{member!r} is not a member of group {group.name!r}"
        group.held.pop(member, None)
        writes.delete(group.member_key(member))
        for offset in sorted(group.leases):
            lease = group.leases[offset]
            if lease.member == member:
                self._release(writes, group, offset, lease)
        return VALID, ""

    @staticmethod
    def _release(writes: WriteSet, group: _Group, offset: int, lease: LeaseRecord) -> None:
        """A leased event waits for another member (its lease expired or its member left)."""
        if lease.member in group.held:
            group.held[lease.member] -= 1
        lease.member = ""
        group.waiting.add(offset)
        writes.put(group.lease_key(offset), lease.encode())

    def _ack(self, writes: WriteSet, offset: int, now_ms: int, group: _Group, op: pb.ConsumerOp) -> tuple[int, str]:
        if len(op.offsets) > limits.GROUP_ACK_OFFSETS_MAX:
            return ERROR, f"{len(op.offsets)} offsets in one ack; the limit is {limits.GROUP_ACK_OFFSETS_MAX}"
        member = group.members.get(op.member)
        if member is not None:
            member.last_seen_ms = max(member.last_seen_ms, now_ms)  # an ack says the member is alive
            writes.put(group.member_key(op.member), member.encode())
        acked = 0
        for event_offset in sorted(set(op.offsets)):
            lease = group.leases.get(event_offset)
            if lease is None or lease.member != op.member:
                continue
            del group.leases[event_offset]
            group.held[op.member] -= 1
            writes.delete(group.lease_key(event_offset))
            acked += 1
        if acked:
            group.record = group.record.but(acked=group.record.acked + acked, updated_at=offset)
            writes.put(Keys.consumer(group.topic, group.name), group.record.encode())
        stale = len(set(op.offsets)) - acked
        if stale:
            return INVALID, (
                f"{stale} of {len(set(op.offsets))} offsets were not leased to {op.member!r} (acknowledged already, "
                "or its lease expired and the event went to another member): those acks were ignored"
            )
        return VALID, ""

    # ---- groups: leases, at the end of each entry --------------------------------------------------

    def finish(self, writes: WriteSet, offset: int, now_ms: int, topic_kept: TopicKept, append: AppendFn) -> list[str]:
        """Expire what log time says is over and grant waiting and new events to members with room.
        Returns the topics whose groups granted leases (their members' streams must look)."""
        if not self._groups:
            return []
        budget = limits.GROUP_GRANTS_PER_ENTRY_MAX
        granted: list[str] = []
        for key in sorted(self._groups):
            group = self._groups[key]
            kept = topic_kept(group.topic)
            if kept is None:
                continue
            first, last = kept
            if group.due_ms and now_ms >= group.due_ms:
                self._expire(writes, group, now_ms)
            if not group.members or (last <= group.record.acked_offset and not group.waiting):
                continue
            count = self._grant(writes, offset, now_ms, group, (first, last), budget, append)
            if count:
                budget -= count
                granted.append(group.topic)
            group.due_ms = _due(group)
        return granted

    def _expire(self, writes: WriteSet, group: _Group, now_ms: int) -> None:
        lease_ms = group.record.lease_ms
        for member in sorted(group.members):
            if group.members[member].last_seen_ms + lease_ms <= now_ms:
                self._leave(writes, group, member)
        for offset in sorted(group.leases):
            lease = group.leases[offset]
            if lease.member and lease.deadline_ms <= now_ms:
                self._release(writes, group, offset, lease)
        group.due_ms = _due(group)

    def _grant(
        self,
        writes: WriteSet,
        offset: int,
        now_ms: int,
        group: _Group,
        kept: tuple[int, int],
        budget: int,
        append: AppendFn,
    ) -> int:
        """Lease waiting events (oldest first), then new ones, to the least loaded members with room. Events that
        retention trimmed before a member got them are skipped (docs/consumers.md): a waiting lease below the first
        kept offset is dropped, and new leases start at that offset. Leased to a member, they were never delivered
        and would only come back, redelivered and dead-lettered with no event to copy, each holding a member's
        room for lease_ms times deliveries_max."""
        first, last = kept
        record = group.record
        granted = 0
        for event_offset in sorted(group.waiting):
            if event_offset < first:
                group.waiting.discard(event_offset)
                del group.leases[event_offset]
                writes.delete(group.lease_key(event_offset))
                continue
            if granted >= budget:
                break
            lease = group.leases[event_offset]
            if lease.deliveries >= record.deliveries_max:
                self._dead_letter(writes, group, event_offset, append)
                continue
            member = _roomiest(group)
            if member is None:
                break
            group.waiting.discard(event_offset)
            self._lease(writes, group, event_offset, lease.deliveries + 1, member, now_ms)
            granted += 1
        delivered = max(group.record.acked_offset, first - 1)
        while delivered < last and granted < budget and len(group.leases) < limits.GROUP_LEASES_MAX:
            member = _roomiest(group)
            if member is None:
                break
            delivered += 1
            self._lease(writes, group, delivered, 1, member, now_ms)
            granted += 1
        if granted or group.record is not record or delivered != record.acked_offset:
            group.record = group.record.but(acked_offset=delivered, updated_at=offset)
            writes.put(Keys.consumer(group.topic, group.name), group.record.encode())
        return granted

    @staticmethod
    def _lease(writes: WriteSet, group: _Group, event_offset: int, deliveries: int, member: str, now_ms: int) -> None:
        record = group.record
        redelivery = 1 if deliveries > 1 else 0
        group.record = record.but(grants=record.grants + 1, redeliveries=record.redeliveries + redelivery)
        lease = LeaseRecord(member, group.record.grants, now_ms + record.lease_ms, deliveries)
        group.leases[event_offset] = lease
        group.held[member] += 1
        writes.put(group.lease_key(event_offset), lease.encode())

    def _dead_letter(self, writes: WriteSet, group: _Group, event_offset: int, append: AppendFn) -> None:
        """An event delivered deliveries_max times without an ack: copied to the dead-letter topic
        (if it is live) and given up on."""
        group.waiting.discard(event_offset)
        del group.leases[event_offset]
        writes.delete(group.lease_key(event_offset))
        group.record = group.record.but(dead_lettered=group.record.dead_lettered + 1)
        target = group.record.dead_letter_topic
        data = self._store.get(Keys.event(group.topic, event_offset))
        if target and data is not None:
            append(target, pb.Event.FromString(data))

    # ---- queries (any thread reads the store instead; these are for tests) ---------------------------

    def position(self, topic: str, name: str) -> int | None:
        record = self._durable.get((topic, name))
        return None if record is None else record.acked_offset


def _roomiest(group: _Group) -> str | None:
    """The member holding the fewest leases relative to its bound (ties: the first name), or None."""
    best, best_free = None, 0
    for member in sorted(group.members):
        free = group.members[member].unacked_max - group.held.get(member, 0)
        if free > best_free:
            best, best_free = member, free
    return best


def _due(group: _Group) -> int:
    """The earliest log time at which a lease of `group` expires or a member is dropped (0: never)."""
    lease_ms = group.record.lease_ms
    times = [lease.deadline_ms for lease in group.leases.values() if lease.member]
    times.extend(member.last_seen_ms + lease_ms for member in group.members.values())
    return min(times) if times else 0


def _new_group(topic: str, settings: pb.GroupSettings, offset: int) -> tuple[ConsumerRecord | None, str]:
    """A group's record from a creating join's settings (0: the default), or why they are refused."""
    lease_ms = settings.lease_ms or GROUP_LEASE_MS_DEFAULT
    unacked = settings.unacked_max or GROUP_UNACKED_DEFAULT
    deliveries = settings.deliveries_max or GROUP_DELIVERIES_DEFAULT
    dead = settings.dead_letter_topic
    if not limits.GROUP_LEASE_MS_MIN <= lease_ms <= limits.GROUP_LEASE_MS_MAX:
        return None, f"lease_ms {lease_ms} is outside {limits.GROUP_LEASE_MS_MIN}..{limits.GROUP_LEASE_MS_MAX}"
    if unacked > limits.GROUP_MEMBER_UNACKED_MAX:
        return None, f"unacked_max {unacked} is over the limit of {limits.GROUP_MEMBER_UNACKED_MAX}"
    if deliveries > limits.GROUP_DELIVERIES_MAX:
        return None, f"deliveries_max {deliveries} is over the limit of {limits.GROUP_DELIVERIES_MAX}"
    if dead and (dead == topic or not _NAME.fullmatch(dead)):
        return None, f"dead_letter_topic {dead[:64]!r} must be a valid topic name other than the group's topic"
    return ConsumerRecord(
        GROUP, 0, offset, lease_ms=lease_ms, unacked_max=unacked, deliveries_max=deliveries, dead_letter_topic=dead
    ), ""
