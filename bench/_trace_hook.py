"""Timestamps along the commit path, in every process of a run (nodes and client), for bench/commit_trace.py.

`install(out_dir)` wraps a few functions of the client, the session service, the proposer, the Raft engine,
its journal and connection, and the applier, so that each call records (CLOCK_MONOTONIC ns, thread name,
event). Every process on the machine shares that clock, so events of the client and of the three nodes
merge into one timeline. The records go to `<out_dir>/<pid>.txt` when the process exits. A function that
is missing (renamed by a later change) is skipped, not an error: its step is then absent from the budget.
Never imported by Laminar itself; the wrapping costs a few microseconds per event.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

EVENTS_MAX = 2_000_000  # records kept per process (about 100 MiB at most); later events are dropped

_events: list[tuple[int, str, str]] = []


def record(event: str) -> None:
    if len(_events) < EVENTS_MAX:
        _events.append((time.monotonic_ns(), threading.current_thread().name, event))


def _dump(out_dir: str) -> None:
    with open(os.path.join(out_dir, f"{os.getpid()}.txt"), "w", encoding="utf-8") as f:
        f.write(" ".join(sys.argv) + "\n")
        for ns, thread, event in _events:
            f.write(f"{ns} {thread.replace(' ', '_')} {event}\n")


Label = str | Callable[..., str] | None


def _wrap(module: str, owner: str, name: str, before: Label = None, after: Label = None) -> None:
    try:
        cls = getattr(importlib.import_module(module), owner)
        original = getattr(cls, name)
    except (ImportError, AttributeError):
        return

    @functools.wraps(original)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            record(before if isinstance(before, str) else before(*args, **kwargs))
        result = original(*args, **kwargs)
        if after is not None:
            record(after if isinstance(after, str) else after(result, *args, **kwargs))
        return result

    setattr(cls, name, traced)


def _message_type(_connection: Any, message: Any) -> str:
    body = message[1] if isinstance(message, tuple) else message
    kind = body.get("type", "?") if isinstance(body, dict) else "?"
    return f"n.send-{kind}"


def _received_type(_engine: Any, _node: Any, message: dict[str, Any]) -> str:
    kind = str(message.get("type"))
    heartbeat = kind == "append_entries" and not message.get("entries")
    return f"r.msg-{kind}{'-hb' if heartbeat else ''}"


def _client_points() -> None:
    client = "laminar.client._client"
    _wrap(client, "Client", "_send", before="c.put")
    _wrap(client, "Client", "_next_frame", after=lambda frame, *_: "c.frame" if frame else "c.frame-none")
    _wrap(
        client,
        "Client",
        "_on_frame",
        before=lambda _c, _a, _conn, frame: "c.ack-commit" if frame.acks.commits else "c.ack-other",
    )
    _wrap(client, "Pending", "committed", after="c.committed")


def _node_points() -> None:
    sessions = "laminar.node.service._sessions"
    _wrap(sessions, "SessionRouter", "_accept", before="s.accept")
    _wrap(sessions, "_Session", "committed", before="s.deliver")
    _wrap(sessions, "_Session", "received", before="s.received")
    _wrap(sessions, "_Session", "next_acks", after=lambda acks, *_: "s.writer" if acks is not None else "s.writer-none")
    _wrap("laminar.node.raft._proposer", "Proposer", "_propose", before="p.propose")
    engine = "laminar.node.raft._engine"
    _wrap(engine, "RaftEngine", "_onTick", before="r.tick", after="r.tickend")
    _wrap(engine, "RaftEngine", "_dispatch", before=_received_type)
    journal = "laminar.node.raft._journal"
    sync_label = lambda j: "j.sync" if j.needs_sync else "j.nosync"  # noqa: E731
    _wrap(journal, "DurableJournal", "sync", before=sync_label, after="j.synced")
    _wrap(journal, "DurableJournal", "add", before="j.add")
    _wrap("laminar.node.raft._connection", "FastTcpConnection", "send", before=_message_type)
    _wrap("laminar.node._applier", "Applier", "on_commit", before="a.commit", after="a.done")


def install(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    _client_points()
    if "node" in sys.argv:
        _node_points()
    atexit.register(_dump, out_dir)
