"""Consumers on the read side (docs/consumers.md): where a durable consumer resumes, the stream of a
group member (the events leased to it), and what DescribeTopic says about a topic's consumers.

A member's stream (ListenService runs one `member_step` at a time, on a read thread) reads the
group's leases from the store after each applied entry that may have changed them (the apply thread
publishes the group's topic), and sends the events newly leased to this member, in grant order.
Nothing is buffered per member: the leases are the queue, bounded by limits.GROUP_LEASES_MAX, and a
reconnecting member is sent every lease it still holds again.
"""

from __future__ import annotations

from laminar import _rules, limits
from laminar.node.service._listen import encode_listen_frame
from laminar.node.store import DURABLE, ConsumerRecord, ConsumerRow, LeaseRecord, Store
from laminar.v1 import laminar_pb2 as pb


def request_problem(request: pb.ListenRequest) -> str | None:
    """Why a Listen naming a consumer (and maybe a member) is refused, or None."""
    if request.member and not request.consumer:
        return "a Listen with a member names its group in `consumer`"
    if request.consumer:
        op = pb.ConsumerOp(name=request.consumer, member=request.member or "m")
        return _rules.consumer_problem(pb.GROUP_JOIN, op)
    return None


def member_step(store: Store, request: pb.ListenRequest, sent_grant: int) -> tuple[bytes | None, int]:
    """One step of a group member's stream (on a read thread): a frame of the events newly leased to
    the member since grant `sent_grant`, in grant order, or None; and the last grant sent after it."""
    topic, group, member = request.topic, request.consumer, request.member
    mine = []
    for offset, data in store.group_leases(topic, group):
        lease = LeaseRecord.decode(data)
        if lease.member == member and lease.seq > sent_grant:
            mine.append((lease.seq, offset))
    mine.sort()
    mine = mine[: limits.LISTEN_FRAME_EVENTS_MAX]
    if not mine:
        return None, sent_grant
    events = store.events_at(topic, [offset for _, offset in mine])
    return (encode_listen_frame(events) if events else None), mine[-1][0]


def consumer_infos(rows: list[ConsumerRow]) -> list[pb.ConsumerInfo]:
    """The consumers and groups of a topic, by name, from their rows (Store.describe: read with the topic's record,
    from the same view)."""
    infos = []
    for name, data, members, leases in rows:
        record = ConsumerRecord.decode(data)
        info = pb.ConsumerInfo(name=name, acked_offset=record.acked_offset, updated_at=record.updated_at)
        if record.kind != DURABLE:
            oldest = min((offset for offset, _ in leases), default=record.acked_offset + 1)
            info.group = True
            info.acked_offset = oldest - 1
            info.delivered_offset = record.acked_offset
            info.members.extend(sorted(m.decode() for m in members))
            info.leases = len(leases)
            info.acked = record.acked
            info.redeliveries = record.redeliveries
            info.dead_lettered = record.dead_lettered
            info.settings.CopyFrom(
                pb.GroupSettings(
                    lease_ms=record.lease_ms,
                    unacked_max=record.unacked_max,
                    deliveries_max=record.deliveries_max,
                    dead_letter_topic=record.dead_letter_topic,
                )
            )
        infos.append(info)
    return infos


__all__ = ["consumer_infos", "member_step", "request_problem"]
