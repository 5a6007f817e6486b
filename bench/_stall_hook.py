"""Timings of what can stall commits while a node builds a snapshot, for bench/snapshot_stall.py.

`install(out_dir)` (in a node process, through bench/trace_site/sitecustomize.py with LAMINAR_STALL_DIR set)
wraps the journal's fsync, the Raft tick, the snapshot's steps, the journal's compaction and the applier,
and starts a thread that sleeps SLEEP_PROBE_S in a loop: how late it wakes is how long a Python thread
waited for the GIL (or the CPU). Calls slower than SLOW_NS, and every snapshot step, are written at once
to `<out_dir>/<pid>.txt` as `<CLOCK_MONOTONIC ns at start> <duration ns> <thread> <event>` (that clock is
shared by every process on the machine, so the client's samples line up with them). Never imported by
Laminar itself.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import time
from typing import Any

SLOW_NS = 20_000_000  # calls shorter than this are not written (except snapshot steps)
SLEEP_PROBE_S = 0.002
SLEEP_LATE_NS = 10_000_000  # a probe sleep that ends this late is written

_out: Any = None
_out_lock = threading.Lock()


def _write(start_ns: int, duration_ns: int, event: str) -> None:
    line = f"{start_ns} {duration_ns} {threading.current_thread().name.replace(' ', '_')} {event}\n"
    with _out_lock:
        _out.write(line)
        _out.flush()


def _wrap(module: str, owner: str | None, name: str, event: str, always: bool = False) -> None:
    try:
        mod = importlib.import_module(module)
        holder: Any = getattr(mod, owner) if owner else mod
        original = getattr(holder, name)
    except (ImportError, AttributeError):
        return

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic_ns()
        try:
            return original(*args, **kwargs)
        finally:
            took = time.monotonic_ns() - start
            if always or took >= SLOW_NS:
                _write(start, took, event)

    setattr(holder, name, timed)


def _sleep_probe() -> None:
    while True:
        start = time.monotonic_ns()
        time.sleep(SLEEP_PROBE_S)
        late = time.monotonic_ns() - start - int(SLEEP_PROBE_S * 1e9)
        if late >= SLEEP_LATE_NS:
            _write(start, late, "gil.late")


def install(out_dir: str) -> None:
    global _out
    if "node" not in sys.argv:
        return
    os.makedirs(out_dir, exist_ok=True)
    _out = open(os.path.join(out_dir, f"{os.getpid()}.txt"), "a", encoding="utf-8")  # noqa: SIM115
    _out.write(" ".join(sys.argv) + "\n")
    journal = "laminar.node.raft._journal"
    _wrap(journal, "DurableJournal", "sync", "journal.sync")
    _wrap(journal, "DurableJournal", "deleteEntriesTo", "journal.compact", always=True)
    engine = "laminar.node.raft._engine"
    _wrap(engine, "RaftEngine", "_onTick", "raft.tick")
    snapshot = "laminar.node.raft._snapshot"
    _wrap(snapshot, "Snapshotter", "serialize", "snap.serialize", always=True)
    _wrap(snapshot, "Snapshotter", "_build", "snap.build", always=True)
    _wrap(snapshot, "Snapshotter", "_publish", "snap.publish", always=True)
    _wrap(snapshot, None, "_append_trailer", "snap.trailer", always=True)
    _wrap(snapshot, None, "_fsync_path", "snap.fsync", always=True)
    _wrap(snapshot, None, "_pack", "snap.pack", always=True)
    _wrap(snapshot, None, "_sync_step", "snap.sync_step")
    _wrap("laminar.node._applier", "Applier", "_apply_now", "apply")
    _wrap("laminar.node._applier", "Applier", "checkpoint", "snap.checkpoint", always=True)
    threading.Thread(target=_sleep_probe, name="gil-probe", daemon=True).start()
