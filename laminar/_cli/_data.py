"""The commands that read and write a topic: topic create/destroy/list, put, delete, get, listen.

Each first finds a node that answers within --timeout (`_reach`), so a cluster that is down is
reported in seconds with the addresses tried; then it hands the work to the client library with
what is left of the same deadline. Results go to stdout; failures to stderr with a distinct exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from laminar import limits
from laminar._cli._exits import CommandFailed, Exit
from laminar._cli._output import print_json, text
from laminar._cli._reach import Deadline, Probe, probe, require_answer
from laminar._cli._values import read_value
from laminar.client import TLS, Client, Commit, Event, Listener, Pending, Retention, TopicInfo, describe_topic
from laminar.errors import Timeout, Unavailable

DEFAULT_TIMEOUT_S = 3.0
TIMEOUT_ENV = "LAMINAR_TIMEOUT"
LISTEN_PROBE_TIMEOUT_S = 2.0  # `listen` waits for the cluster, but says so after this long


def default_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        return positive_seconds(raw)
    except argparse.ArgumentTypeError as e:
        raise CommandFailed(Exit.USAGE, f"{TIMEOUT_ENV}: {e}") from None


def positive_seconds(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not 0 < seconds <= 24 * 3600:
        raise argparse.ArgumentTypeError(f"must be > 0 and at most a day, got {raw}")
    return seconds


def tls_of(args: argparse.Namespace) -> TLS | None:
    """TLS settings from flags or the environment; None (plaintext) when none is given."""
    ca = args.tls_ca or os.environ.get("LAMINAR_TLS_CA")
    cert = args.tls_cert or os.environ.get("LAMINAR_TLS_CERT")
    key = args.tls_key or os.environ.get("LAMINAR_TLS_KEY")
    if not (ca or cert or key):
        return None
    return TLS.from_files(ca, cert, key)


def _timeout(args: argparse.Namespace) -> float:
    return float(args.timeout) if args.timeout is not None else default_timeout()


# ---- mutations ----------------------------------------------------------------------------------


def _commit(args: argparse.Namespace, what: str, send: Callable[[Client], Pending]) -> int:
    """Send one mutation to the leader and wait for its commit, all within --timeout."""
    timeout_s = _timeout(args)
    deadline = Deadline(timeout_s)
    found = require_answer(args.addresses, tls_of(args), timeout_s)
    client = Client(found.ordered(), tls=tls_of(args))
    try:
        commit = _await_commit(send(client), what, found, deadline)
    except BaseException:
        # The outcome is already reported (or the user pressed Ctrl-C): leave without waiting for
        # the session to settle; the process ends and the cluster forgets the connection.
        _abandon(client)
        raise
    client.close()
    return _report_commit(args, what, commit)


def _await_commit(pending: Pending, what: str, found: Probe, deadline: Deadline) -> Commit:
    try:
        pending.received(timeout=deadline.left())
    except Timeout:
        raise CommandFailed(Exit.UNAVAILABLE, found.no_leader_message(what, deadline.seconds)) from None
    try:
        return pending.committed(timeout=deadline.left())
    except Timeout:
        message = (
            f"the leader received the {what} but it did not commit within {deadline.seconds:g} s; it may still "
            "take effect (check with `laminar get` or `laminar listen`); a longer --timeout waits for it"
        )
        raise CommandFailed(Exit.TIMEOUT, message) from None


def _abandon(client: Client) -> None:
    """Leave a client whose mutation is reported as not committed, without closing it: close()
    waits for what is unacknowledged, which is what we just gave up on. The process is ending;
    the node sees the session go away and the client's threads are daemons."""
    del client


def _report_commit(args: argparse.Namespace, what: str, commit: Commit) -> int:
    if args.output == "json":
        record = {"effect": str(commit.effect), "intention_offset": commit.intention_offset, "reason": commit.reason}
        print_json(record)
    line = f"{commit.effect} at intention offset {commit.intention_offset}"
    if commit.ok:
        if args.output != "json":
            print(line)
        return Exit.OK
    print(f"laminar: {what} rejected: {line}: {commit.reason}", file=sys.stderr)
    return Exit.REJECTED


def cmd_topic_create(args: argparse.Namespace) -> int:
    program = None
    if args.program:
        source = read_value(
            args.program if args.program.startswith(("@", "-")) else "@" + args.program,
            "program",
            limits.PROGRAM_SOURCE_BYTES_MAX,
        )
        program = text(source)
    topic_args = read_value(args.args, "program args", limits.PROGRAM_ARGS_BYTES_MAX) if args.args else b""
    retention = _retention(args)
    return _commit(
        args,
        "topic create",
        lambda c: c.create_topic(args.topic, program=program, args=topic_args, retention=retention),
    )


def cmd_topic_configure(args: argparse.Namespace) -> int:
    return _commit(args, "topic configure", lambda c: c.configure_topic(args.topic, _retention(args)))


def _retention(args: argparse.Namespace) -> Retention:
    for flag, value in (("--max-events", args.max_events), ("--max-bytes", args.max_bytes)):
        if value < 0:
            raise CommandFailed(Exit.USAGE, f"{flag} must be >= 0 (0: no limit), got {value}")
    return Retention(args.max_events, args.max_bytes, args.max_age)


def cmd_topic_destroy(args: argparse.Namespace) -> int:
    return _commit(args, "topic destroy", lambda c: c.destroy_topic(args.topic))


def cmd_put(args: argparse.Namespace) -> int:
    value = read_value(args.value, "value")
    return _commit(args, "put", lambda c: c.put(args.topic, args.key, value))


def cmd_delete(args: argparse.Namespace) -> int:
    return _commit(args, "delete", lambda c: c.delete(args.topic, args.key))


# ---- reads --------------------------------------------------------------------------------------


def cmd_topic_list(args: argparse.Namespace) -> int:
    found = require_answer(args.addresses, tls_of(args), _timeout(args))
    leader = found.leader_address()
    status = found.answers[leader] if leader in found.answers else next(iter(found.answers.values()))
    topics = list(status.topics)
    if args.output == "json":
        print_json({"topics": topics})
    else:
        for topic in topics:
            print(topic)
    return Exit.OK


def cmd_topic_describe(args: argparse.Namespace) -> int:
    timeout_s = _timeout(args)
    deadline = Deadline(timeout_s)
    found = require_answer(args.addresses, tls_of(args), timeout_s)
    info = describe_topic(found.ordered(), args.topic, max(0.05, deadline.left()), tls_of(args))
    if args.output == "json":
        print_json(_topic_record(info))
    elif info.exists:
        _print_topic(info)
    if not info.exists:
        print(
            f"laminar: topic {args.topic!r} does not exist (as of intention offset {info.intention_offset})",
            file=sys.stderr,
        )
        return Exit.NOT_FOUND
    return Exit.OK


def _topic_record(info: TopicInfo) -> dict[str, Any]:
    return {
        "topic": info.topic,
        "exists": info.exists,
        "program": info.program,
        "args": text(info.args),
        "created_at": info.created_at,
        "last_offset": info.last_offset,
        "keys": info.keys,
        "value_bytes": info.value_bytes,
        "keys_capped": info.keys_capped,
        "intention_offset": info.intention_offset,
        "first_offset": info.first_offset,
        "retained_bytes": info.retained_bytes,
        "retention": {
            "max_events": info.retention.max_events,
            "max_bytes": info.retention.max_bytes,
            "max_age_ms": info.retention.max_age_ms,
        },
    }


def _print_topic(info: TopicInfo) -> None:
    if info.program:
        lines = info.program.count("\n") + (not info.program.endswith("\n"))
        program = f"yes: {lines} lines, {len(info.program.encode())} bytes (-o json shows the source)"
    else:
        program = "none (a plain topic)"
    keys = f"{'at least ' if info.keys_capped else ''}{info.keys} live keys, {info.value_bytes} bytes of values"
    rows = [
        ("topic", info.topic),
        ("program", program),
        ("args", text(info.args) or "-"),
        ("created at", f"intention offset {info.created_at}"),
        ("last offset", str(info.last_offset)),
        ("kept", f"offsets {info.first_offset}..{info.last_offset}, {info.retained_bytes} bytes"),
        ("retention", _retention_text(info)),
        ("size", keys),
        ("as of", f"intention offset {info.intention_offset}"),
    ]
    for name, value in rows:
        print(f"{name + ':':<13}{value}")


def _retention_text(info: TopicInfo) -> str:
    r = info.retention
    parts = [f"{r.max_events} events" if r.max_events else "", f"{r.max_bytes} bytes" if r.max_bytes else ""]
    parts.append(f"{r.max_age_ms} ms old" if r.max_age_ms else "")
    kept = ", ".join(p for p in parts if p)
    return f"at most {kept}" if kept else "none (keeps every event)"


def cmd_get(args: argparse.Namespace) -> int:
    timeout_s = _timeout(args)
    deadline = Deadline(timeout_s)
    found = require_answer(args.addresses, tls_of(args), timeout_s)
    client = Client(found.ordered(), tls=tls_of(args))
    try:
        value = client.get(args.topic, args.key, stale_ok=args.stale, timeout=max(0.05, deadline.left()))
    except Unavailable as e:
        what = "read" if args.stale else "read (linearizable: the leader answers; --stale reads any node)"
        raise CommandFailed(Exit.UNAVAILABLE, f"{found.no_leader_message(what, timeout_s)} Last error: {e}") from None
    finally:
        client.close()
    if args.output == "json":
        record = {
            "found": value.found,
            "value": text(value.value),
            "value_offset": value.value_offset,
            "topic_offset": value.topic_offset,
            "intention_offset": value.intention_offset,
            "topic_exists": value.topic_exists,
        }
        print_json(record)
    elif value.found:
        sys.stdout.buffer.write(value.value + b"\n")
        sys.stdout.flush()
    if not value.topic_exists:
        print(
            f"laminar: topic {args.topic!r} does not exist (as of intention offset {value.intention_offset})",
            file=sys.stderr,
        )
    elif not value.found:
        print(
            f"laminar: {args.key!r} is not set in {args.topic!r} (as of offset {value.topic_offset})", file=sys.stderr
        )
    return Exit.OK if value.found else Exit.NOT_FOUND


def _event_record(event: Event) -> dict[str, Any]:
    record: dict[str, Any] = {
        "offset": event.consequence_offset,
        "intention_offset": event.intention_offset,
        "kind": str(event.kind),
        "key": text(event.key),
        "value": text(event.value),
        "time_ms": event.time_ms,
    }
    if event.snapshot:
        record["snapshot"] = True
    return record


def cmd_listen(args: argparse.Namespace) -> int:
    reached = _say_what_listen_waits_for(args)
    tls = tls_of(args)
    state = {"lost": not reached}  # said once per outage, again after events flowed

    def on_retry(address: str, why: str) -> None:
        if not state["lost"]:
            state["lost"] = True
            print(f"laminar: no stream from {address} ({why}); waiting for the cluster", file=sys.stderr)

    consumer = getattr(args, "consumer", None)
    listener = Listener(
        args.addresses,
        args.topic,
        from_offset=args.from_offset,
        snapshot=args.snapshot,
        consumer=consumer,
        tls=tls,
        on_retry=on_retry,
    )
    with listener:
        for count, event in enumerate(listener, start=1):
            state["lost"] = False
            if args.output == "json":
                print_json(_event_record(event))
            else:
                kind = "SNAPSHOT" if event.snapshot else str(event.kind)
                print(f"{event.consequence_offset}\t{kind}\t{text(event.key)}\t{text(event.value)}", flush=True)
            if consumer:
                listener.ack(event)  # after printing: at-least-once
            if args.count and count >= args.count:
                return Exit.OK
    return Exit.OK


def _say_what_listen_waits_for(args: argparse.Namespace) -> bool:
    """`listen` waits for the cluster and for its topic; it says so on stderr, at the start.
    Whether some node answered."""
    found = probe(args.addresses, tls_of(args), min(_timeout(args), LISTEN_PROBE_TIMEOUT_S))
    if not found.answers:
        tried = ", ".join(found.addresses)
        print(f"laminar: no node answers at {tried}; waiting for the cluster (Ctrl-C stops)", file=sys.stderr)
        return False
    if all(args.topic not in status.topics for status in found.answers.values()):
        print(
            f"laminar: topic {args.topic!r} does not exist yet; waiting for it to be created (Ctrl-C stops)",
            file=sys.stderr,
        )
    return True
