"""`laminar consumer list|describe|reset|delete`: a topic's durable consumers and groups (docs/consumers.md)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from laminar._cli._data import _commit, _timeout, tls_of
from laminar._cli._exits import Exit
from laminar._cli._output import print_json, print_table
from laminar._cli._reach import Deadline, require_answer
from laminar.client import ConsumerInfo, TopicInfo, describe_topic


def _described(args: argparse.Namespace) -> TopicInfo | None:
    timeout_s = _timeout(args)
    deadline = Deadline(timeout_s)
    found = require_answer(args.addresses, tls_of(args), timeout_s)
    info = describe_topic(found.ordered(), args.topic, max(0.05, deadline.left()), tls_of(args))
    if not info.exists:
        print(
            f"laminar: topic {args.topic!r} does not exist (as of intention offset {info.intention_offset})",
            file=sys.stderr,
        )
        return None
    return info


def _lag(info: TopicInfo, consumer: ConsumerInfo) -> int:
    return max(0, info.last_offset - consumer.acked_offset)


def cmd_consumer_list(args: argparse.Namespace) -> int:
    info = _described(args)
    if info is None:
        return Exit.NOT_FOUND
    if args.output == "json":
        print_json(
            {
                "topic": info.topic,
                "last_offset": info.last_offset,
                "consumers": [_record(info, c) for c in info.consumers],
            }
        )
        return Exit.OK
    rows = [
        (c.name, "group" if c.group else "durable", c.acked_offset, _lag(info, c), len(c.members) if c.group else "-")
        for c in info.consumers
    ]
    print_table(("name", "kind", "acked", "lag", "members"), rows)
    return Exit.OK


def cmd_consumer_describe(args: argparse.Namespace) -> int:
    info = _described(args)
    if info is None:
        return Exit.NOT_FOUND
    consumer = next((c for c in info.consumers if c.name == args.name), None)
    if consumer is None:
        print(f"laminar: topic {args.topic!r} has no consumer {args.name!r}", file=sys.stderr)
        return Exit.NOT_FOUND
    record = _record(info, consumer)
    if args.output == "json":
        print_json(record)
        return Exit.OK
    for name, value in record.items():
        if consumer.group or name in ("name", "group", "acked_offset", "updated_at", "lag"):
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{name.replace('_', ' ') + ':':<18}{shown}")
    return Exit.OK


def _record(info: TopicInfo, consumer: ConsumerInfo) -> dict[str, object]:
    record: dict[str, object] = dataclasses.asdict(consumer)
    record["members"] = list(consumer.members)
    record["lag"] = _lag(info, consumer)
    return record


def cmd_consumer_reset(args: argparse.Namespace) -> int:
    return _commit(args, "consumer reset", lambda c: c.reset_consumer(args.topic, args.name, args.to))


def cmd_consumer_delete(args: argparse.Namespace) -> int:
    return _commit(args, "consumer delete", lambda c: c.delete_consumer(args.topic, args.name))
