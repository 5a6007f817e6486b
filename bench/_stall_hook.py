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
    _wrap("laminar.node.store._store", "Store", "commit", "store.commit")
    _wrap("laminar.node.store._store", "Store", "checkpoint", "store.checkpoint", always=True)
    _count_rocksdb()
    _follow_entries()
    threading.Thread(target=_sleep_probe, name="gil-probe", daemon=True).start()


_stores: list[Any] = []
ROCKSDB_PERIOD_S = 0.5  # statistic() formats every ticker: ~10 ms a call under load
# RocksDB tickers whose growth is written as an event each ROCKSDB_PERIOD_S (name -> event)
ROCKSDB_TICKERS = {
    "rocksdb.stall.micros": "rocksdb.stall_us",
    "rocksdb.flush.write.bytes": "rocksdb.flush_bytes",
    "rocksdb.compact.write.bytes": "rocksdb.compact_bytes",
}


def _count_rocksdb() -> None:
    """Open every store with RocksDB statistics, and write what its write stalls, flushes and compactions did
    in each ROCKSDB_PERIOD_S as events (`<start> <period ns> <thread> <event>=<growth>`)."""
    try:
        from laminar.node.store import _store
    except ImportError:
        return
    original = _store.Store.__init__

    def init(self: Any, path: str, statistics: bool = False) -> None:
        original(self, path, statistics=True)
        _stores.append(self)

    _store.Store.__init__ = init  # type: ignore[method-assign]
    threading.Thread(target=_rocksdb_loop, name="rocksdb-probe", daemon=True).start()


def _rocksdb_loop() -> None:
    last: dict[str, int] = {}
    while True:
        start = time.monotonic_ns()
        time.sleep(ROCKSDB_PERIOD_S)
        if not _stores:
            continue
        try:
            counts = {name: _stores[-1].statistic(name) for name in ROCKSDB_TICKERS}
        except Exception:  # noqa: BLE001 - a store being replaced
            continue
        for name, count in counts.items():
            grown = count - last.get(name, count)
            if grown > 0:
                _write(start, time.monotonic_ns() - start, f"{ROCKSDB_TICKERS[name]}={grown}")
        last = counts


GOOD_MARK = b"good-"  # in the hostile suite's good client's keys (bench/hostile.py)
GOOD_BYTES_MAX = 64 * 1024  # payloads longer than this are not searched for GOOD_MARK (a scan of MiBs costs)


def _good(payload: bytes) -> bool:
    return len(payload) <= GOOD_BYTES_MAX and GOOD_MARK in payload


def _follow_entries() -> None:
    """Every entry the leader proposes (`e.propose#<n>=<bytes>[,good]`), when the log reports it done
    (`e.result#<n>`), when its apply ends (`p.applied`, in order), and the good client's frames as offered
    (`p.offer.good`) and applied (`apply.good`, with its duration)."""
    try:
        from laminar.node._applier import Applier
        from laminar.node.raft._engine import RaftEngine
        from laminar.node.raft._proposer import Proposer
    except ImportError:
        return
    numbers = iter(range(1, 2**62))
    propose, offer, entry_done, apply_now = RaftEngine.propose, Proposer.offer, Proposer._entry_done, Applier._apply_now

    def proposed(self: Any, payload: bytes, on_result: Any) -> None:
        n = next(numbers)
        _write(time.monotonic_ns(), 0, f"e.propose#{n}={len(payload)}{',good' if _good(payload) else ''}")

        def result(applied: bool) -> None:
            _write(time.monotonic_ns(), 0, f"e.result#{n}")
            on_result(applied)

        propose(self, payload, result)

    def offered(self: Any, proposal: Any, timeout_s: float) -> bool:
        if _good(proposal.run):
            _write(time.monotonic_ns(), 0, "p.offer.good")
        return bool(offer(self, proposal, timeout_s))

    def done(self: Any, *args: Any) -> None:
        _write(time.monotonic_ns(), 0, "p.applied")
        entry_done(self, *args)

    def applying(self: Any, raft_index: int, payload: bytes, *rest: Any) -> None:
        start = time.monotonic_ns()
        apply_now(self, raft_index, payload, *rest)
        if _good(payload):
            _write(start, time.monotonic_ns() - start, f"apply.good#{raft_index}={len(payload)}")

    take = Proposer._take

    def taking(self: Any, *args: Any) -> Any:
        heads = sorted(self._heads, key=lambda h: h[:3])
        good = [h for h in heads if _good(self._queues[h[3]][0].proposal.run)]
        batch = take(self, *args)
        if good:
            top = ";".join(f"{h[1] - self._virtual}/{h[0] - h[1]}" for h in heads[:4])
            _write(
                time.monotonic_ns(),
                0,
                f"p.take:V={self._virtual},good_start={good[0][1]},heads={top},"
                f"batch={len(batch)}x{sum(len(p.run) for p in batch)},good_in={any(_good(p.run) for p in batch)}",
            )
        return batch

    Proposer._take = taking  # type: ignore[method-assign]
    RaftEngine.propose = proposed  # type: ignore[method-assign]
    Proposer.offer = offered  # type: ignore[method-assign]
    Proposer._entry_done = done  # type: ignore[method-assign]
    Applier._apply_now = applying  # type: ignore[method-assign]
