"""--consumers: a client that drives durable consumers and consumer groups on a topic with retention, and the
checks of what every node's state machine makes of them (docs/consumers.md, docs/protocol.md "Retention").

The client (`ConsumerClient`) proposes the intentions the client library sends (laminar/client/_consumer.py):
GROUP_JOIN (a member's heartbeat, every quarter lease in the library), GROUP_ACK of the offsets leased to a
member, GROUP_LEAVE, CONSUMER_ACK and CONSUMER_RESET of durable consumers, CONSUMER_DELETE, and the topic's
CREATE_TOPIC (with a small `max_events`, so retention trims often), CONFIGURE_TOPIC and DESTROY_TOPIC. Members
fall silent for a while (they stop renewing: their leases expire, they are dropped), and a second group's
members join rarely, so it falls behind retention (where 918dee6's bug lived).

The checks read each node's store after every entry it applies (`Tracker`), and compare it with the store
before that entry (when the node applied the one before it itself): a durable consumer's position moves back
only by CONSUMER_RESET (or a delete), a new lease is never below the topic's first kept offset as it stood when
the lease was granted (nor past its last event), an event leased to a member is leased again only after that
lease ended (deadline passed, member left or dropped), and an event that is not leased or waiting at or below the
group's delivered frontier (acknowledged, dead-lettered or dropped) is never leased again. `state_problems` holds
for every store at rest; the simulation runs it on the converged nodes at the end.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from laminar.node.store import (
    GROUP,
    ConsumerRecord,
    Keys,
    LeaseRecord,
    MemberRecord,
    Store,
    TopicRecord,
    from_u64,
)
from laminar.v1 import laminar_pb2 as pb

JOBS_TOPIC = "jobs"
DEAD_TOPIC = "jobs.dead"  # the groups' dead-letter topic (no retention)
ACTIONS_PER_S = 10.0
RETENTION_EVENTS = (10, 20, 40)  # the jobs topic keeps this many events (drawn at each create or configure)
GROUPS = ("g", "slow")  # "slow": its members join rarely, so it lags behind retention
MEMBERS = ("m1", "m2", "m3")
DURABLES = ("d1", "d2")
LEASE_MS = (1000, 2000, 4000)  # the group's, fixed by its first join
SILENT_S = (1.0, 8.0)  # a member that stops renewing stays silent this long
VIOLATIONS_SHOWN_MAX = 5


# ---- one node's consumer state, read from its store ------------------------------------------------------------


@dataclass
class GroupState:
    record: ConsumerRecord
    members: dict[str, MemberRecord] = field(default_factory=dict)
    leases: dict[int, LeaseRecord] = field(default_factory=dict)


@dataclass
class ConsumerState:
    """What one store holds of the jobs topic's consumers, with the topic's kept range and the applied mark."""

    offset: int  # the applied intention offset
    time_ms: int  # log time of the last applied entry
    topic: TopicRecord | None
    durable: dict[str, ConsumerRecord] = field(default_factory=dict)
    groups: dict[str, GroupState] = field(default_factory=dict)
    dead_live: bool = False  # whether the dead-letter topic is live

    @property
    def live(self) -> bool:
        return self.topic is not None and self.topic.live

    @property
    def first(self) -> int:
        return self.topic.first_offset if self.topic is not None else 1

    @property
    def last(self) -> int:
        return self.topic.next_offset - 1 if self.topic is not None else 0

    def same_as(self, other: ConsumerState) -> bool:
        return (self.topic, self.durable, self.groups) == (other.topic, other.durable, other.groups)


def read_state(store: Store, topic: str = JOBS_TOPIC) -> ConsumerState:
    mark = store.applied()
    data = store.get(Keys.topic(topic))
    state = ConsumerState(mark.intention_offset, mark.time_ms, TopicRecord.decode(data) if data is not None else None)
    dead = store.get(Keys.topic(DEAD_TOPIC))
    state.dead_live = dead is not None and TopicRecord.decode(dead).live
    for key, value in store.scan(Keys.consumers_of(topic)):
        name = key[len(Keys.consumers_of(topic)) :].decode()
        record = ConsumerRecord.decode(value)
        if record.kind == GROUP:
            state.groups[name] = GroupState(record)
        else:
            state.durable[name] = record
    for name, group in state.groups.items():
        members = Keys.members_of(topic, name)
        for key, value in store.scan(members):
            group.members[key[len(members) :].decode()] = MemberRecord.decode(value)
        for key, value in store.scan(Keys.leases_of(topic, name)):
            group.leases[from_u64(key[-8:])] = LeaseRecord.decode(value)
    return state


def state_problems(address: str, state: ConsumerState) -> list[str]:
    """What must hold of any store at rest: consumers only on a live topic, a durable position never past the last
    event, every lease at or below its group's delivered frontier, and every held lease held by a member."""
    found = []
    if not state.live and (state.durable or state.groups):
        found.append(
            f"{address}: topic {JOBS_TOPIC} is not live but has consumers {sorted(state.durable)} "
            f"and groups {sorted(state.groups)}"
        )
    for name, record in sorted(state.durable.items()):
        if record.acked_offset > state.last:
            found.append(f"{address}: durable {name} at {record.acked_offset}, past the last event {state.last}")
    for name, group in sorted(state.groups.items()):
        frontier = group.record.acked_offset
        for offset, lease in sorted(group.leases.items()):
            if offset > frontier:
                found.append(f"{address}: group {name} holds a lease of {offset} past its frontier {frontier}")
            if lease.member and lease.member not in group.members:
                found.append(f"{address}: group {name}: {offset} leased to {lease.member}, not a member")
            if lease.seq > group.record.grants:
                found.append(
                    f"{address}: group {name}: lease of {offset} has grant {lease.seq} > {group.record.grants}"
                )
    return found


# ---- what one entry may change -----------------------------------------------------------------------------------


def _ends(mutation: pb.Mutation | None, kind: int, name: str) -> bool:
    """Whether the entry's mutation is `kind` on the jobs topic for consumer `name`."""
    return (
        mutation is not None
        and mutation.topic == JOBS_TOPIC
        and mutation.kind == kind
        and mutation.consumer.name == name
    )


def transition_problems(
    address: str, before: ConsumerState, after: ConsumerState, mutation: pb.Mutation | None, acked: set[tuple[str, int]]
) -> tuple[list[str], int, int]:
    """What is wrong with one applied entry's change from `before` to `after` (the entry held `mutation`). Adds the
    offsets it acknowledged to `acked` (group, offset). Returns the problems, how many new leases were checked, and
    how many groups granted from behind retention (their frontier below the first kept offset: 918dee6's case)."""
    found: list[str] = []
    now_ms = after.time_ms
    at = f"{address} at intention offset {after.offset} (log time {now_ms})"
    for name, record in sorted(after.durable.items()):
        old = before.durable.get(name)
        if old is None or record.acked_offset >= old.acked_offset:
            continue
        if not (_ends(mutation, pb.CONSUMER_RESET, name) or _ends(mutation, pb.CONSUMER_DELETE, name)):
            kind = pb.Kind.Name(mutation.kind) if mutation is not None else "no intention"
            found.append(f"{at}: durable {name} moved back from {old.acked_offset} to {record.acked_offset} by {kind}")
    granted = behind = 0
    for name, group in sorted(after.groups.items()):
        old_group = before.groups.get(name)  # None: created by this entry's join, everything it holds is new
        found += _note_acks(at, name, old_group, group, mutation, acked)
        problems, count = _group_problems(at, name, before, after, old_group, group, mutation, acked)
        found += problems
        granted += count
        frontier = old_group.record.acked_offset if old_group is not None else 0
        behind += count > 0 and frontier < before.first - 1
    for name in sorted(set(before.groups) - set(after.groups)):
        acked.difference_update({(g, o) for g, o in acked if g == name})  # its next incarnation starts afresh
    return found, granted, behind


def _note_acks(
    at: str,
    name: str,
    old: GroupState | None,
    new: GroupState | None,
    mutation: pb.Mutation | None,
    acked: set[tuple[str, int]],
) -> list[str]:
    """A GROUP_ACK of an offset leased to its member (in the state before the entry: acks run before the entry's
    expiries) acknowledges it: it must be gone from the group's leases after the entry, and is noted in `acked`."""
    if old is None or new is None or mutation is None or not _ends(mutation, pb.GROUP_ACK, name):
        return []
    found = []
    member = mutation.consumer.member
    for offset in sorted(set(mutation.consumer.offsets)):
        lease = old.leases.get(offset)
        if lease is not None and lease.member == member:
            acked.add((name, offset))
            if offset in new.leases:
                found.append(f"{at}: group {name}: {member} acknowledged {offset}, which is still leased or waiting")
    return found


def _group_problems(
    at: str,
    name: str,
    before: ConsumerState,
    after: ConsumerState,
    old: GroupState | None,
    new: GroupState,
    mutation: pb.Mutation | None,
    acked: set[tuple[str, int]],
) -> tuple[list[str], int]:
    found = []
    now_ms = after.time_ms
    grants_before = old.record.grants if old is not None else 0
    frontier_before = old.record.acked_offset if old is not None else 0
    if old is not None and (new.record.grants < grants_before or new.record.acked_offset < frontier_before):
        found.append(
            f"{at}: group {name}'s grants or frontier went back: {grants_before}/{frontier_before} to "
            f"{new.record.grants}/{new.record.acked_offset}"
        )
    if new.members:  # the entry's grants ran (members are dropped before them): they drop what waits trimmed
        stale = [o for o, lease in sorted(new.leases.items()) if not lease.member and o < before.first]
        if stale:
            found.append(
                f"{at}: group {name} has members but keeps {stale[:5]} waiting, below the topic's first kept offset "
                f"{before.first} when it granted: trimmed events waiting to be redelivered"
            )
    granted = 0
    for offset, lease in sorted(new.leases.items()):
        if not lease.member or lease.seq <= grants_before:
            continue  # not granted by this entry
        granted += 1
        what = f"{at}: group {name} leased {offset} to {lease.member}"
        if offset < before.first:
            found.append(f"{what}, below the topic's first kept offset {before.first} (retention trimmed it)")
        if offset > after.last:
            found.append(f"{what}, past the topic's last event {after.last}")
        if (name, offset) in acked:
            found.append(f"{what}, though it was acknowledged")
        previous = old.leases.get(offset) if old is not None else None
        if old is None or previous is None:
            if offset <= frontier_before:
                found.append(
                    f"{what}: it was neither leased nor waiting, at or below the delivered frontier {frontier_before} "
                    "(acknowledged, dead-lettered or dropped): leased again"
                )
        elif previous.member and not _lease_ended(old, previous, mutation, name, now_ms, new):
            found.append(
                f"{what} while {previous.member}'s lease of it (grant {previous.seq}) runs until "
                f"{previous.deadline_ms} and {previous.member} is still a member: leased to two members at once"
            )
    return found, granted


def _lease_ended(
    old: GroupState, previous: LeaseRecord, mutation: pb.Mutation | None, name: str, now_ms: int, new: GroupState
) -> bool:
    """Whether a member's lease could end in this entry: its deadline passed, or its member left or was dropped."""
    member = previous.member
    if previous.deadline_ms <= now_ms or member not in new.members:
        return True
    if mutation is not None and _ends(mutation, pb.GROUP_LEAVE, name) and mutation.consumer.member == member:
        return True  # left and joined again in one entry: the library never does, a client may
    seen = old.members.get(member)
    return seen is None or seen.last_seen_ms + old.record.lease_ms <= now_ms


class Tracker:
    """Checks every entry a node applies against the state it left before that entry (see the module's doc)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[object, ConsumerState]] = {}  # address -> (node incarnation, state)
        self._acked: dict[str, set[tuple[str, int]]] = {}  # address -> (group, offset) acknowledged, as it saw
        self.entries_checked = 0
        self.leases_checked = 0
        self.behind_retention = 0  # grants by a group whose frontier was below the first kept offset (918dee6's case)

    def applied(self, address: str, node: object, store: Store, payload: bytes) -> list[str]:
        after = read_state(store)
        seen = self._last.get(address)
        self._last[address] = (node, after)
        if seen is None or seen[0] is not node:
            self._acked[address] = set()
            return []
        before = seen[1]
        mutations = _mutations(payload)
        if after.offset != before.offset + len(mutations) or len(mutations) > 1:
            return []  # a snapshot installed in between, or an entry this node had applied already
        self.entries_checked += 1
        mutation = mutations[0] if mutations else None
        found, granted, behind = transition_problems(address, before, after, mutation, self._acked[address])
        self.leases_checked += granted
        self.behind_retention += behind
        return found[:VIOLATIONS_SHOWN_MAX]


def _mutations(payload: bytes) -> list[pb.Mutation]:
    try:
        batch = pb.IntentionBatch.FromString(payload)
    except Exception:  # noqa: BLE001 - not a batch (a membership change, a no-op): no intention
        return []
    return [m for run in batch.runs for m in run.mutations]


# ---- the client --------------------------------------------------------------------------------------------------


class ConsumerClient:
    """Draws the consumer client's next intention from its own stream. `view()` reads the consumer state of a node
    (the leader if there is one), as a member's stream would show it what it holds."""

    def __init__(self, rng: random.Random, view: Callable[[], ConsumerState | None]) -> None:
        self.rng = rng
        self._view = view
        self.creates_asked = 0
        self.silent_until: dict[tuple[str, str], float] = {}  # (group, member) -> simulated time it speaks again

    def next(self, now_s: float) -> pb.Mutation | None:
        rng = self.rng
        roll = rng.random()
        m = pb.Mutation(nonce=1, topic=JOBS_TOPIC)
        state = self._view()
        missing = [
            t for t, live in ((JOBS_TOPIC, state and state.live), (DEAD_TOPIC, state and state.dead_live)) if not live
        ]
        if (
            self.creates_asked < 2 or roll < 0.02 or (missing and roll < 0.2)
        ):  # a create may be lost: again now and then
            self.creates_asked += 1
            m.kind = pb.CREATE_TOPIC
            m.topic = missing[0] if missing else rng.choice((JOBS_TOPIC, DEAD_TOPIC))
            if m.topic == JOBS_TOPIC:
                m.retention.CopyFrom(pb.Retention(max_events=rng.choice(RETENTION_EVENTS)))
        elif roll < 0.025:
            m.kind = pb.DESTROY_TOPIC
        elif roll < 0.04:
            m.kind = pb.CONFIGURE_TOPIC
            m.retention.CopyFrom(pb.Retention(max_events=rng.choice(RETENTION_EVENTS)))
        elif roll < 0.32:
            m.kind, m.key, m.value = pb.PUT, f"j{rng.randrange(1 << 20)}".encode(), b"job"
        elif roll < 0.82:
            return self._member(rng, state, now_s, m)
        elif roll < 0.9:
            last = state.last if state is not None else 0
            m.kind = pb.CONSUMER_ACK
            m.consumer.CopyFrom(pb.ConsumerOp(name=rng.choice(DURABLES), offset=max(0, last - rng.randint(-2, 30))))
        elif roll < 0.96:
            last = state.last if state is not None else 0
            m.kind = pb.CONSUMER_RESET
            m.consumer.CopyFrom(pb.ConsumerOp(name=rng.choice(DURABLES), offset=rng.randint(0, last + 1)))
        else:
            m.kind = pb.CONSUMER_DELETE
            m.consumer.CopyFrom(pb.ConsumerOp(name=rng.choice((*DURABLES, *GROUPS))))
        return m

    def _member(
        self, rng: random.Random, state: ConsumerState | None, now_s: float, m: pb.Mutation
    ) -> pb.Mutation | None:
        """A member's join (heartbeat), ack or leave; a silent member sends nothing."""
        group = "slow" if rng.random() < 0.15 else "g"
        member = rng.choice(MEMBERS)
        if self.silent_until.get((group, member), 0.0) > now_s:
            return None
        roll = rng.random()
        if roll < 0.08:  # stops renewing: its leases expire and it is dropped
            self.silent_until[(group, member)] = now_s + rng.uniform(*SILENT_S)
            return None
        if roll < 0.45 or (group == "slow" and roll < 0.9):
            settings = pb.GroupSettings(
                lease_ms=rng.choice(LEASE_MS),
                unacked_max=rng.randint(1, 4),
                deliveries_max=rng.randint(2, 4),
                dead_letter_topic=DEAD_TOPIC,
            )
            m.kind = pb.GROUP_JOIN
            m.consumer.CopyFrom(
                pb.ConsumerOp(name=group, member=member, settings=settings, unacked_max=rng.randint(0, 4))
            )
        elif roll < 0.93:
            m.kind = pb.GROUP_ACK
            m.consumer.CopyFrom(
                pb.ConsumerOp(name=group, member=member, offsets=self._to_ack(rng, state, group, member))
            )
        else:
            m.kind = pb.GROUP_LEAVE
            m.consumer.CopyFrom(pb.ConsumerOp(name=group, member=member))
        return m

    def _to_ack(self, rng: random.Random, state: ConsumerState | None, group: str, member: str) -> list[int]:
        """Most of what the member holds as a node sees it, and now and then an offset it does not (a stale ack)."""
        held = []
        if state is not None and group in state.groups:
            held = [o for o, lease in sorted(state.groups[group].leases.items()) if lease.member == member]
        offsets = [o for o in held if rng.random() < 0.7]
        if rng.random() < 0.2 and state is not None:
            offsets.append(rng.randint(max(1, state.first - 3), state.last + 2))
        return offsets

    def summary(self, state: ConsumerState) -> str:
        groups = ", ".join(
            f"{name}: {g.record.grants} grants, {g.record.acked} acked, {g.record.redeliveries} redelivered, "
            f"{g.record.dead_lettered} dead-lettered, frontier {g.record.acked_offset}, {len(g.members)} members"
            for name, g in sorted(state.groups.items())
        )
        durable = ", ".join(f"{name} at {r.acked_offset}" for name, r in sorted(state.durable.items()))
        return (
            f"{JOBS_TOPIC} kept {state.first}..{state.last}"
            + (f"; {groups}" if groups else "")
            + (f"; {durable}" if durable else "")
        )
