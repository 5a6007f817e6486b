"""`laminar calls list|describe TOPIC`: a topic's calls to services in flight, and its call counters
(docs/pipelines.md)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from laminar._cli._data import _timeout, tls_of
from laminar._cli._exits import Exit
from laminar._cli._output import print_json, print_table, text
from laminar._cli._reach import Deadline, require_answer
from laminar.client import CallInfo, CallsInfo, describe_calls


def _described(args: argparse.Namespace, call_id: int = 0) -> CallsInfo | None:
    timeout_s = _timeout(args)
    deadline = Deadline(timeout_s)
    found = require_answer(args.addresses, tls_of(args), timeout_s)
    info = describe_calls(found.ordered(), args.topic, call_id, max(0.05, deadline.left()), tls_of(args))
    if not info.exists:
        print(
            f"laminar: topic {args.topic!r} does not exist (as of intention offset {info.intention_offset})",
            file=sys.stderr,
        )
        return None
    return info


def cmd_calls_list(args: argparse.Namespace) -> int:
    info = _described(args)
    if info is None:
        return Exit.NOT_FOUND
    if args.output == "json":
        print_json(_summary(info) | {"calls": [_record(info, c) for c in info.calls]})
        return Exit.OK
    stats = info.stats
    print(
        f"{info.topic}: {stats.in_flight} in flight; issued {stats.issued}, completed {stats.completed}, "
        f"failed {stats.failed}, timed out {stats.timed_out}, gave up {stats.gave_up}, "
        f"redeliveries {stats.redeliveries} (as of intention offset {info.intention_offset})"
    )
    rows = [
        (
            c.id,
            f"{c.service}.{c.method}",
            c.worker or "(waiting)",
            c.deliveries,
            _seconds(info.log_time_ms - c.issued_ms),
            _seconds(c.lease_deadline_ms - info.log_time_ms) if c.lease_deadline_ms else "-",
            _seconds(c.deadline_ms - info.log_time_ms),
        )
        for c in info.calls
    ]
    if rows:
        print_table(("id", "call", "worker", "deliveries", "age", "lease left", "timeout in"), rows)
    return Exit.OK


def cmd_calls_describe(args: argparse.Namespace) -> int:
    """One call in full (CALL_ID given), else the topic's counters."""
    info = _described(args, args.call_id or 0)
    if info is None:
        return Exit.NOT_FOUND
    if not args.call_id:
        record: dict[str, Any] = _summary(info)
    elif info.calls:
        record = _record(info, info.calls[0])
    else:
        print(
            f"laminar: call {args.call_id} is not in flight on {args.topic!r} (it finished, or was never issued; "
            f"as of intention offset {info.intention_offset})",
            file=sys.stderr,
        )
        return Exit.NOT_FOUND
    if args.output == "json":
        print_json(record)
        return Exit.OK
    for name, value in _flat(record):
        print(f"{name.replace('_', ' ') + ':':<20}{value}")
    return Exit.OK


def _summary(info: CallsInfo) -> dict[str, Any]:
    return {
        "topic": info.topic,
        "intention_offset": info.intention_offset,
        "log_time_ms": info.log_time_ms,
        "stats": dataclasses.asdict(info.stats),
    }


def _record(info: CallsInfo, call: CallInfo) -> dict[str, Any]:
    record = dataclasses.asdict(call)
    record["request"] = text(call.request)
    record["age_ms"] = max(0, info.log_time_ms - call.issued_ms)
    return record


def _flat(record: dict[str, Any]) -> list[tuple[str, Any]]:
    """Nested dicts (the counters) as `stats in flight: 3` lines."""
    lines: list[tuple[str, Any]] = []
    for name, value in record.items():
        if isinstance(value, dict):
            lines.extend((f"{name}_{inner}", v) for inner, v in value.items())
        else:
            lines.append((name, value))
    return lines


def _seconds(ms: int) -> str:
    return f"{max(0, ms) / 1000:.1f}s"
