"""The consumer checks of the simulator (--consumers, tests/sim/_consumers.py), on hand-made states: each
names what it must, and passes what the state machine may do."""

from __future__ import annotations

from laminar.node.store import DURABLE, GROUP, ConsumerRecord, LeaseRecord, MemberRecord, TopicRecord
from laminar.v1 import laminar_pb2 as pb
from tests.sim._consumers import ConsumerState, GroupState, state_problems, transition_problems

NOW_MS = 10_000
LEASE_MS = 1000


def _state(first: int, last: int, time_ms: int = NOW_MS, offset: int = 1) -> ConsumerState:
    topic = TopicRecord(True, last + 1, 1, "", b"", first_offset=first)
    return ConsumerState(offset, time_ms, topic)


def _group(frontier: int, grants: int, leases: dict[int, LeaseRecord], members: tuple[str, ...]) -> GroupState:
    record = ConsumerRecord(GROUP, frontier, 1, grants=grants, lease_ms=LEASE_MS, unacked_max=4, deliveries_max=3)
    return GroupState(record, {m: MemberRecord(NOW_MS - 100, 4) for m in members}, leases)


def _check(before: ConsumerState, after: ConsumerState, mutation: pb.Mutation | None = None) -> list[str]:
    return transition_problems("n1", before, after, mutation, set())[0]


def test_a_lease_below_the_first_kept_offset_is_named_and_one_from_it_is_not() -> None:
    """A group behind retention (frontier 2, first kept 6) that leases 3 breaks the check (918dee6's bug); leasing
    6, the first kept, does not."""
    before = _state(6, 10)
    before.groups["g"] = _group(2, 2, {}, ("a",))
    wrong, right = _state(6, 10, offset=2), _state(6, 10, offset=2)
    wrong.groups["g"] = _group(3, 3, {3: LeaseRecord("a", 3, NOW_MS + LEASE_MS, 1)}, ("a",))
    right.groups["g"] = _group(6, 3, {6: LeaseRecord("a", 3, NOW_MS + LEASE_MS, 1)}, ("a",))
    assert any("below the topic's first kept offset 6" in p for p in _check(before, wrong))
    assert _check(before, right) == []


def test_a_durable_position_moves_back_only_by_reset() -> None:
    """A durable consumer going from 8 to 3 is named unless the entry was a CONSUMER_RESET of it."""
    before, after = _state(1, 10), _state(1, 10, offset=2)
    before.durable["d"] = ConsumerRecord(DURABLE, 8, 1)
    after.durable["d"] = ConsumerRecord(DURABLE, 3, 2)
    ack = pb.Mutation(kind=pb.CONSUMER_ACK, topic="jobs", consumer=pb.ConsumerOp(name="d", offset=3))
    reset = pb.Mutation(kind=pb.CONSUMER_RESET, topic="jobs", consumer=pb.ConsumerOp(name="d", offset=3))
    assert any("moved back from 8 to 3" in p for p in _check(before, after, ack))
    assert _check(before, after, reset) == []


def test_an_event_is_leased_again_only_once_its_lease_ended() -> None:
    """An event leased to a live member whose lease runs on may not go to another member; once the deadline has
    passed (in log time) it may."""
    before = _state(1, 10)
    before.groups["g"] = _group(5, 5, {5: LeaseRecord("a", 5, NOW_MS + 500, 1)}, ("a", "b"))
    after = _state(1, 10, offset=2)
    after.groups["g"] = _group(5, 6, {5: LeaseRecord("b", 6, NOW_MS + LEASE_MS, 2)}, ("a", "b"))
    assert any("leased to two members at once" in p for p in _check(before, after))
    later = _state(1, 10, time_ms=NOW_MS + 500, offset=2)
    later.groups["g"] = after.groups["g"]
    assert _check(before, later) == []


def test_an_acknowledged_event_is_not_leased_or_waiting() -> None:
    """An ack of an event leased to its member takes the lease away: one still there is named, and an event at or
    below the frontier with no lease, granted again, is named too."""
    before = _state(1, 10)
    before.groups["g"] = _group(5, 5, {5: LeaseRecord("a", 5, NOW_MS + 500, 1)}, ("a",))
    ack = pb.Mutation(kind=pb.GROUP_ACK, topic="jobs", consumer=pb.ConsumerOp(name="g", member="a", offsets=[5]))
    kept = _state(1, 10, offset=2)
    kept.groups["g"] = _group(5, 5, {5: LeaseRecord("", 5, NOW_MS + 500, 1)}, ("a",))
    assert any("acknowledged 5, which is still leased" in p for p in _check(before, kept, ack))
    done = _state(1, 10, offset=2)
    done.groups["g"] = _group(5, 5, {}, ("a",))
    again = _state(1, 10, offset=3)
    again.groups["g"] = _group(5, 6, {4: LeaseRecord("a", 6, NOW_MS + LEASE_MS, 1)}, ("a",))
    assert _check(before, done, ack) == []
    assert any("leased again" in p for p in _check(done, again))


def test_a_store_at_rest_holds_no_lease_of_a_member_that_left() -> None:
    """At rest every held lease belongs to a member and lies at or below the group's frontier."""
    state = _state(1, 10)
    state.groups["g"] = _group(5, 5, {5: LeaseRecord("gone", 5, NOW_MS, 1), 7: LeaseRecord("", 4, NOW_MS, 1)}, ())
    problems = state_problems("n1", state)
    assert any("leased to gone, not a member" in p for p in problems)
    assert any("lease of 7 past its frontier 5" in p for p in problems)


def test_a_group_with_members_keeps_nothing_waiting_below_the_first_kept_offset() -> None:
    """Once a group with members has granted, no lease of an event trimmed before that waits for redelivery
    (918dee6 drops them); one trimmed by this entry's own trim (after the grants) may still wait."""
    before = _state(6, 10)
    before.groups["g"] = _group(8, 3, {3: LeaseRecord("", 1, NOW_MS - 1, 1)}, ("a",))
    kept = _state(8, 10, offset=2)
    kept.groups["g"] = _group(8, 3, {3: LeaseRecord("", 1, NOW_MS - 1, 1), 7: LeaseRecord("", 2, NOW_MS, 1)}, ("a",))
    assert any("keeps [3] waiting, below the topic's first kept offset 6" in p for p in _check(before, kept))
    dropped = _state(8, 10, offset=2)
    dropped.groups["g"] = _group(8, 3, {7: LeaseRecord("", 2, NOW_MS, 1)}, ("a",))
    assert _check(before, dropped) == []
