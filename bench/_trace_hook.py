"""Timestamps along the commit path, in every process of a run (nodes and client), for bench/commit_trace.py.

`install(out_dir)` wraps a few functions of the client, the session service, the proposer, the Raft engine,
its journal and connection, and the applier, so that each call records (CLOCK_MONOTONIC ns, thread name,
event; an event that names what it carries reads `<event>:<detail>` (a nonce, a Raft index, a due time),
by which the open-loop budget (bench/commit_trace.py --open-loop-rate) follows each message). Every
process on the machine shares that clock, so events of the client and of the three nodes
merge into one timeline. The records go to `<out_dir>/<pid>.txt` when the process exits. A function that
is missing (renamed by a later change) is skipped, not an error: its step is then absent from the budget.
Never imported by Laminar itself; the wrapping costs a few microseconds per event.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import signal
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


def _dump_and_exit(out_dir: str) -> None:
    _dump(out_dir)
    os._exit(128 + signal.SIGTERM)


Label = str | Callable[..., str | None] | None


def _wrap(module: str, owner: str, name: str, before: Label = None, after: Label = None) -> None:
    try:
        cls = getattr(importlib.import_module(module), owner)
        getattr(cls, name)
    except (ImportError, AttributeError):
        return
    _wrap_in(cls, name, before, after)


def _wrap_in(cls: Any, name: str, before: Label, after: Label) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    def traced(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            record(before if isinstance(before, str) else before(*args, **kwargs))
        result = original(*args, **kwargs)
        if after is not None:
            label = after if isinstance(after, str) else after(result, *args, **kwargs)
            if label is not None:  # None: nothing worth a record
                record(label)
        return result

    setattr(cls, name, traced)


def _wrap_function(module: str, name: str, before: Label = None, after: Label = None) -> None:
    """_wrap for a module's function (callers that look it up in the module at call time see the wrapper)."""
    try:
        namespace = importlib.import_module(module)
    except ImportError:
        return
    if hasattr(namespace, name):
        _wrap_in(namespace, name, before, after)


def _message_type(_connection: Any, message: Any) -> str:
    body = message[1] if isinstance(message, tuple) else message
    kind = body.get("type", "?") if isinstance(body, dict) else "?"
    return f"n.send-{kind}"


def _received_type(_engine: Any, _node: Any, message: dict[str, Any]) -> str:
    kind = str(message.get("type"))
    heartbeat = kind == "append_entries" and not message.get("entries")
    return f"r.msg-{kind}{'-hb' if heartbeat else ''}"


def _cid(client_id: bytes) -> str:
    return bytes(client_id)[:3].hex()


def _frame_label(frame: bytes | None, client: Any, connection: Any) -> str:
    """c.frame:<client id>:<last nonce in it>"""
    if not frame:
        return "c.frame-none"
    return f"c.frame:{_cid(client.client_id.bytes)}:{connection.frame_ends[-1]}"


def _ack_label(_client: Any, _address: Any, _connection: Any, frame: Any) -> str:
    """c.ack-commit:<last nonce committed by it>"""
    commits = frame.acks.commits
    if not commits:
        return "c.ack-other"
    return f"c.ack-commit:{max(c.nonce + max(1, c.count) - 1 for c in commits)}"


def _listener_label(_listener: Any, item: Any, *_: Any, **__: Any) -> str:
    """l.recv:<events handed to the caller's queue>"""
    return f"l.recv:{len(item) if type(item) is list else 0}"


def _client_points() -> None:
    client = "laminar.client._client"
    _wrap(client, "Client", "_send", before="c.put")
    _wrap(client, "Client", "_next_frame", after=_frame_label)
    _wrap(client, "Client", "_on_frame", before=_ack_label)
    _wrap(client, "Pending", "committed", after="c.committed")
    _wrap(client, "_Connection", "window_open", after=lambda is_open, *_: None if is_open else "c.window-shut")
    listener = "laminar.client._listener"
    _wrap(listener, "Listener", "_put", before=_listener_label)


def _open_loop_points() -> None:
    """The open-loop generator (bench/open_loop.py): each message's due time as it is built, and as a listener reads it
    (tagged by load() with the process it ran in)."""
    _wrap_function("bench.open_loop", "encode_value", before=lambda due_s, *_: f"o.due:{round(due_s * 1e9)}")
    _wrap_function(
        "bench.open_loop",
        "decode_value",
        after=lambda result, *_: f"o.got:{round(result[0] * 1e9)}:{result[1]}:{result[2]}",
    )


def _accept_label(_router: Any, session: Any, frame: Any, _raw: Any) -> str:
    """s.accept:<client id>:<first nonce>:<mutations>"""
    return f"s.accept:{_cid(session.client_id)}:{session.expected_nonce}:{len(frame.mutations.mutations)}"


def _deliver_label(session: Any, outcomes: Any) -> str:
    """s.deliver:<client id>:<last nonce committed>"""
    last = max((o.nonce + max(1, o.count) - 1 for o in outcomes), default=0)
    return f"s.deliver:{_cid(session.client_id)}:{last}"


def _writer_label(acks: Any, session: Any) -> str:
    """s.writer:<client id>:<last nonce acknowledged>"""
    if acks is None:
        return "s.writer-none"
    last = max((c.nonce + max(1, c.count) - 1 for c in acks.commits), default=0)
    return f"s.writer:{_cid(session.client_id)}:{last}"


def _propose_label(_proposer: Any, batch: Any, *_: Any) -> str:
    """p.propose:<client id>/<intentions>,... (each run of the entry, in order)"""
    runs = ",".join(f"{_cid(p.session.client_id) if p.session is not None else '-'}/{p.intentions}" for p in batch)
    return f"p.propose:{runs}"


def _node_points() -> None:
    sessions = "laminar.node.service._sessions"
    _wrap(sessions, "SessionRouter", "_room", before="s.room")  # the reader's loop turns: it reads the next frame
    _wrap_function(sessions, "_decoded", before="s.read")  # a frame's bytes reached the session's reader
    _wrap(sessions, "SessionRouter", "_accept", before=_accept_label)
    _wrap(sessions, "_Session", "committed", before=_deliver_label)
    _wrap(sessions, "_Session", "received", before="s.received")
    _wrap(sessions, "_Session", "next_acks", after=_writer_label)
    _wrap("laminar.node.raft._proposer", "Proposer", "_propose", before=_propose_label)
    engine = "laminar.node.raft._engine"
    _wrap(engine, "RaftEngine", "_onTick", before="r.tick", after="r.tickend")
    _wrap(engine, "RaftEngine", "_dispatch", before=_received_type)
    journal = "laminar.node.raft._journal"
    sync_label = lambda j: "j.sync" if j.needs_sync else "j.nosync"  # noqa: E731
    _wrap(journal, "DurableJournal", "sync", before=sync_label, after="j.synced")
    _wrap(journal, "DurableJournal", "add", before=lambda _j, _command, idx, _term: f"j.add:{idx}")
    _wrap("laminar.node.raft._connection", "FastTcpConnection", "send", before=_message_type)
    _wrap("laminar.node._applier", "Applier", "on_commit", before=lambda _a, idx, _p: f"a.commit:{idx}", after="a.done")
    listen = "laminar.node.service._listen"
    _wrap(listen, "EventFeed", "publish", before="l.publish")
    _wrap(listen, "_Outbox", "send", before="l.send")


def install(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    _client_points()
    if "node" in sys.argv:
        _node_points()
    else:
        _open_loop_points()
        # Benchmark client processes are stopped with SIGTERM as soon as their report is in, which skips atexit
        # (a node sets its own handler and exits normally).
        signal.signal(signal.SIGTERM, lambda *_: _dump_and_exit(out_dir))
    atexit.register(_dump, out_dir)
