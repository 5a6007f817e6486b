"""Consumers as replicated state: durable positions and group leases, applied without processes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from test_state_machine import Harness, entry, m

from laminar import limits
from laminar.node.state_machine._consumers import Consumers
from laminar.node.store import Keys, Store, WriteSet
from laminar.v1 import laminar_pb2 as pb

ALICE = uuid.UUID(int=11).bytes


def op(nonce: int, kind: int, topic: str, name: str, offset: int = 0, **fields: object) -> pb.Mutation:
    mutation = m(nonce, kind, topic)
    mutation.consumer.CopyFrom(pb.ConsumerOp(name=name, offset=offset, **fields))  # type: ignore[arg-type]
    return mutation


@pytest.fixture
def sm(tmp_path: Path) -> Harness:
    h = Harness(tmp_path / "a")
    h.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t")] + [m(n, pb.PUT, "t", b"k", b"v") for n in range(2, 12)])))
    return h  # topic t: events 1 (create) .. 11


def effects(out: list[tuple[int, int, int, str]]) -> list[int]:
    return [effect for _, effect, _, _ in out]


def test_ack_moves_forward_only_and_survives_reload(sm: Harness) -> None:
    """CONSUMER_ACK sets the position, a late older ack leaves it, past the end is an ERROR; a reload keeps it."""
    out = sm.apply(entry((ALICE, [op(12, pb.CONSUMER_ACK, "t", "c", 5), op(13, pb.CONSUMER_ACK, "t", "c", 3)])))
    assert effects(out) == [pb.VALID, pb.VALID]
    out = sm.apply(entry((ALICE, [op(14, pb.CONSUMER_ACK, "t", "c", 12)])))
    assert out[0][1] == pb.ERROR and "past the last event" in out[0][3]
    assert sm.machine._consumers.position("t", "c") == 5
    sm.machine.reload()
    assert sm.machine._consumers.position("t", "c") == 5
    out = sm.apply(entry((ALICE, [op(15, pb.CONSUMER_RESET, "t", "c", 2)])))
    assert effects(out) == [pb.VALID] and sm.machine._consumers.position("t", "c") == 2


def test_destroy_drops_consumers_and_limits_hold(sm: Harness) -> None:
    """Destroying a topic forgets its consumers; consumers per topic are bounded; delete of a missing one is INVALID."""
    names = [f"c{i}" for i in range(limits.CONSUMERS_PER_TOPIC_MAX + 1)]
    out = sm.apply(entry((ALICE, [op(12 + i, pb.CONSUMER_ACK, "t", n, 1) for i, n in enumerate(names)])))
    assert effects(out)[:-1] == [pb.VALID] * limits.CONSUMERS_PER_TOPIC_MAX
    assert out[-1][1] == pb.ERROR and "too many consumers" in out[-1][3]
    nonce = 12 + len(names)
    out = sm.apply(entry((ALICE, [m(nonce, pb.DESTROY_TOPIC, "t"), op(nonce + 1, pb.CONSUMER_ACK, "t", "c0", 1)])))
    assert out[1][1] == pb.ERROR and "does not exist" in out[1][3]
    assert list(sm.store.scan(Keys.CONSUMER_PREFIX)) == []
    out = sm.apply(entry((ALICE, [m(nonce + 2, pb.CREATE_TOPIC, "t"), op(nonce + 3, pb.CONSUMER_DELETE, "t", "c0")])))
    assert effects(out) == [pb.VALID, pb.INVALID]


class Groups:
    """Consumers driven directly, with log time given by the test."""

    def __init__(self, path: Path, last: int) -> None:
        self.store = Store(str(path))
        self.consumers = Consumers(self.store)
        self.consumers.reload()
        self.last = last
        self.first = 1  # the first kept offset: retention trimmed the events before it
        self.offset = 0
        self.dead: list[pb.Event] = []

    def topic_kept(self, name: str) -> tuple[int, int] | None:
        return (self.first, self.last) if name == "t" else ((1, 0) if name == "dlq" else None)

    def run(self, now_ms: int, *mutations: pb.Mutation) -> list[tuple[int, str]]:
        writes = WriteSet()
        results = []
        for mutation in mutations:
            self.offset += 1
            results.append(self.consumers.execute(writes, self.offset, now_ms, self.topic_kept, mutation))
        self.consumers.finish(writes, self.offset, now_ms, self.topic_kept, lambda n, e: bool(self.dead.append(e)))
        self.store.commit(writes, self.store.applied())
        return results

    def leases(self) -> dict[int, tuple[str, int]]:
        group = self.consumers._groups[("t", "g")]
        return {offset: (lease.member, lease.deliveries) for offset, lease in group.leases.items()}


def join(member: str, unacked: int = 0, lease_ms: int = 1000, deliveries: int = 3) -> pb.Mutation:
    settings = pb.GroupSettings(lease_ms=lease_ms, deliveries_max=deliveries, dead_letter_topic="dlq")
    return op(0, pb.GROUP_JOIN, "t", "g", member=member, unacked_max=unacked, settings=settings)


def ack(member: str, *offsets: int) -> pb.Mutation:
    return op(0, pb.GROUP_ACK, "t", "g", member=member, offsets=offsets)


def test_group_leases_bounded_per_member_and_redelivered_after_expiry(tmp_path: Path) -> None:
    """Each event goes to one member at a time, at most unacked_max each; an expired lease goes to the live member."""
    g = Groups(tmp_path / "g", last=10)
    assert g.run(0, join("a", unacked=3), join("b", unacked=2)) == [(pb.VALID, ""), (pb.VALID, "")]
    # The member with the most room gets the next event (ties: the first name).
    assert g.leases() == {1: ("a", 1), 2: ("a", 1), 3: ("b", 1), 4: ("a", 1), 5: ("b", 1)}
    assert g.run(500, ack("a", 1, 2), ack("b", 3)) == [(pb.VALID, ""), (pb.VALID, "")]
    assert g.leases() == {4: ("a", 1), 5: ("b", 1), 6: ("a", 1), 7: ("a", 1), 8: ("b", 1)}
    g.run(900, join("b"))  # b stays alive (its bound of 2 kept); a falls silent after its ack at 500
    g.run(1600)  # a is dropped (1000 ms silent), b's leases from 0 and 500 expire: b gets the two oldest again
    assert g.leases() == {4: ("b", 2), 5: ("b", 2), 6: ("", 1), 7: ("", 1), 8: ("", 1)}
    effect, reason = g.run(1700, ack("a", 5))[0]
    assert effect == pb.INVALID and "not leased" in reason
    assert g.run(1800, ack("b", 4, 5)) == [(pb.VALID, "")]
    assert g.leases() == {6: ("b", 2), 7: ("b", 2), 8: ("", 1)}
    record = g.consumers._groups[("t", "g")].record
    assert (record.acked, record.redeliveries, record.acked_offset) == (5, 4, 8)


def test_group_dead_letters_after_deliveries_max_and_reload_agrees(tmp_path: Path) -> None:
    """An event never acknowledged is delivered deliveries_max times, then dead-lettered; reload rebuilds the state."""
    g = Groups(tmp_path / "g", last=1)
    now = 0
    g.run(now, join("a", deliveries=2))
    for _ in range(6):
        now += 1100
        g.run(now, join("a"))  # alive, but never acknowledges: each lease expires
    record = g.consumers._groups[("t", "g")].record
    assert record.dead_lettered == 1 and record.redeliveries == 1 and len(g.dead) == 0  # no event 1 in this store
    before = (g.leases(), g.consumers._groups[("t", "g")].record)
    g.consumers.reload()
    assert (g.leases(), g.consumers._groups[("t", "g")].record) == before


def test_a_group_behind_retention_skips_the_trimmed_events(tmp_path: Path) -> None:
    """Events that retention trimmed before a member got them are skipped: a waiting lease below the first kept
    offset is dropped (not redelivered, not dead-lettered with nothing to copy), and new leases start at that
    offset, as a durable consumer's listener starts at the first kept event."""
    g = Groups(tmp_path / "g", last=10)
    g.run(0, join("a", unacked=3, lease_ms=1000, deliveries=2))
    assert g.leases() == {1: ("a", 1), 2: ("a", 1), 3: ("a", 1)}
    g.first = 6  # retention trimmed events 1-5, while a held 1-3 and fell silent
    g.run(1500, join("b", unacked=3, lease_ms=1000, deliveries=2))  # a is dropped; its leases wait, then are dropped
    assert g.leases() == {6: ("b", 1), 7: ("b", 1), 8: ("b", 1)}
    assert g.dead == [] and g.consumers._groups[("t", "g")].record.dead_lettered == 0
    g.consumers.reload()  # what was written agrees with what was held
    assert g.leases() == {6: ("b", 1), 7: ("b", 1), 8: ("b", 1)}
