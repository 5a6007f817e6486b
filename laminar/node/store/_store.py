"""The node's RocksDB store and the write set one applied entry produces."""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterator

from rocksdict import BlockBasedOptions, Cache, Checkpoint, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from laminar import limits
from laminar.node.store._call_records import CallKeys
from laminar.node.store._keys import Keys, from_u64, u64
from laminar.node.store._pins import ClosedDb, Pin, Pins, StoreClosed
from laminar.node.store._records import VIEW_HEAD, AppliedMark, TopicRecord, ViewRecord
from laminar.v1 import laminar_pb2 as pb

_OFFSET_MAX = 2**64 - 1  # consequence offsets are stored as 8 big-endian bytes
# A consumer of a topic: (name, ConsumerRecord bytes, member names, (event offset, LeaseRecord bytes) of its leases)
ConsumerRow = tuple[str, bytes, list[bytes], list[tuple[int, bytes]]]


class WriteSet:
    """Ordered writes produced by applying one entry, with read-your-writes for the applier.

    The state machine records what it would write here; the node commits it in one atomic batch.
    Writes go straight into a RocksDB write batch (in order: a put followed by a range delete of
    the same key leaves nothing). `lookup` sees what `put` and `delete` wrote; `put_blind` skips
    that bookkeeping for the bulk of an entry (events and views), which nothing reads back.
    """

    __slots__ = ("_batch", "_overlay", "range_deletes")

    def __init__(self) -> None:
        self._batch = WriteBatch(raw_mode=True)
        self._overlay: dict[bytes, bytes | None] = {}
        self.range_deletes = 0  # delete_range calls: each costs later reads (limits.STORE_POINT_DELETES_MAX)

    def put(self, key: bytes, value: bytes) -> None:
        self._batch.put(key, value)
        self._overlay[key] = value

    def put_blind(self, key: bytes, value: bytes) -> None:
        """A put that lookup() will not report (for keys no later read of this entry asks for)."""
        self._batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self._batch.delete(key)
        self._overlay[key] = None

    def delete_range(self, begin: bytes, end: bytes) -> None:
        """Delete keys in [begin, end). Not reflected in reads through the overlay."""
        self._batch.delete_range(begin, end)
        self.range_deletes += 1

    def lookup(self, key: bytes) -> tuple[bool, bytes | None]:
        """(True, value) if this write set decides the key through put or delete, else (False, None)."""
        if key in self._overlay:
            return True, self._overlay[key]
        return False, None

    def to_batch(self) -> WriteBatch:
        return self._batch


class SharedLock:
    """Many readers at once, or one writer: `with lock.reading:` / `with lock.writing:`. A waiting writer
    (a snapshot install, close) keeps new readers out, so it is never starved; readers never wait for
    each other. Not re-entrant (neither was the plain lock it replaces)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False  # a writer holds it, or waits for the readers to leave
        self.reading = _Side(self._enter_read, self._exit_read)
        self.writing = _Side(self._enter_write, self._exit_write)

    def _enter_read(self) -> None:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1

    def _exit_read(self) -> None:
        with self._cond:
            self._readers -= 1
            assert self._readers >= 0, "a read left that never entered"
            if not self._readers:
                self._cond.notify_all()

    def _enter_write(self) -> None:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._writer = True  # from here no new reader enters
            while self._readers:
                self._cond.wait()

    def _exit_write(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class _Side:
    """One side of a SharedLock, as a context manager (no generator: store reads are a hot path)."""

    __slots__ = ("_enter", "_exit")

    def __init__(self, enter: Callable[[], None], exit_: Callable[[], None]) -> None:
        self._enter = enter
        self._exit = exit_

    def __enter__(self) -> None:
        self._enter()

    def __exit__(self, *exc: object) -> None:
        self._exit()


class Store:
    """RocksDB in raw-bytes mode. Writes come from the apply thread only; reads from any thread.

    A snapshot install swaps the whole database directory, so readers from other threads hold
    `_lock.reading` (for the duration of one read) and never see a closed handle. Readers share it:
    a listener's scan of a MiB of events must not keep the apply thread's lookups, a Hello's check or
    a Get waiting (with one exclusive lock, 2,000 listeners' scans kept a new client's create from
    committing for 10 s). A read that outlives the lock (a digest, a snapshot listener) reads a pin
    (see _pins.py): an install releases it, and the read raises StoreReplaced. Once closed (or after an
    install that could not open the new store), every read raises StoreClosed.
    """

    def __init__(self, path: str, statistics: bool = False) -> None:
        """`statistics`: RocksDB counts its work (costs some CPU; for tests and benches, see statistic())."""
        self._path = path
        self._statistics = statistics
        self._options: Options | None = None
        self._lock = SharedLock()
        self._pins = Pins()
        self._recover_interrupted_install()
        self._db: Rdict | ClosedDb = self._open()
        self._write_options = WriteOptions()
        # Range deletes committed since this store opened: what makes RocksDB's reads cost more as entries apply
        # (see limits.STORE_POINT_DELETES_MAX); counted so that tests and benches can see how many apply writes.
        self.range_deletes_committed = 0

    def _open(self) -> Rdict:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(limits.STORE_WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(limits.STORE_WRITE_BUFFERS_MAX)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(limits.STORE_BLOCK_CACHE_BYTES))
        options.set_block_based_table_factory(table)
        if self._statistics:
            options.enable_statistics()
        self._options = options
        return Rdict(self._path, options)

    def statistic(self, name: str) -> int:
        """A RocksDB ticker of the open database (e.g. "rocksdb.number.iter.skip": deleted or overwritten keys
        iterators stepped over), if the store was opened with statistics; an iterator adds its own when freed."""
        assert self._statistics and self._options is not None, "opened without statistics"
        for line in (self._options.get_statistics() or "").splitlines():
            ticker, _, count = line.partition(" COUNT : ")
            if ticker == name:
                return int(count)
        raise KeyError(name)

    @property
    def path(self) -> str:
        return self._path

    def close(self) -> None:
        with self._lock.writing:
            self._pins.release_all()  # or a pin would keep the database open (and its LOCK file held)
            db, self._db = self._db, ClosedDb("the store is closed (the node is stopping)")
            db.close()

    def _pin(self) -> Pin:
        """A view of the store as it is now, for reads that outlive `_lock.reading` or must agree with each other:
        every read through one pin sees the same committed entries (see _pins.py)."""
        with self._lock.reading:
            return self._pins.add(self._db.iter())

    # ---- snapshots ------------------------------------------------------------------------------

    def checkpoint(self, target_dir: str) -> None:
        """A consistent copy of the store as it is now (hard links to immutable files; fast)."""
        with self._lock.reading:
            db = self._db
            if isinstance(db, ClosedDb):
                raise StoreClosed(db.why)
            Checkpoint(db).create_checkpoint(target_dir)

    def flush_start(self) -> None:
        """Start writing the memtable to disk in the background (returns at once); see SnapshotHooks.flush_start."""
        with self._lock.reading:
            db = self._db
            if not isinstance(db, ClosedDb):
                db.flush(False)

    def flushing(self) -> bool:
        """Whether a memtable flush is running or waiting to run."""
        with self._lock.reading:
            db = self._db
            if isinstance(db, ClosedDb):
                return False
            return bool(
                db.property_int_value("rocksdb.num-running-flushes")
                or db.property_int_value("rocksdb.mem-table-flush-pending")
            )

    def replace_with(self, checkpoint_dir: str) -> None:
        """Become the store in `checkpoint_dir` (a snapshot from the leader). Crash-safe: see below.

        Raises StoreClosed when the old store is closed and the new one could not be opened: the store
        then answers nothing (every read raises StoreClosed), and the node must stop; a restart finishes
        the install (_recover_interrupted_install) or keeps the old store, and Raft resends the snapshot."""
        if isinstance(self._db, ClosedDb):  # closed, or an install failed before: it stays so (the node stops)
            raise StoreClosed(self._db.why)
        new, old = self._path + ".new", self._path + ".old"
        shutil.rmtree(new, ignore_errors=True)
        os.replace(checkpoint_dir, new)
        with self._lock.writing:
            # Reads that outlive the lock (a digest, a snapshot listener) hold pins: released here, not
            # waited for (this is the Raft thread), or the old database would stay open.
            self._pins.release_all()
            db, self._db = self._db, ClosedDb("a snapshot install closed the store and could not open the new one")
            try:
                db.close()
                del db
                # A crash between these two renames leaves `.old` and `.new`: reopening finishes it.
                os.replace(self._path, old)
                os.replace(new, self._path)
                self._db = self._open()
            except Exception as e:
                raise StoreClosed(f"a snapshot install closed the store and could not open the new one: {e}") from e
        shutil.rmtree(old, ignore_errors=True)

    def _recover_interrupted_install(self) -> None:
        new, old = self._path + ".new", self._path + ".old"
        if os.path.isdir(new) and not os.path.isdir(self._path):
            os.replace(new, self._path)  # crashed after moving the old store away: finish
        shutil.rmtree(new, ignore_errors=True)  # crashed before the swap: the old store stands
        shutil.rmtree(old, ignore_errors=True)

    def get(self, key: bytes) -> bytes | None:
        with self._lock.reading:
            return self.get_applying(key)

    def get_applying(self, key: bytes) -> bytes | None:
        """get() for the apply thread, without the read lock: only the apply side writes or replaces the store
        (an install runs with the apply queue drained, on the thread that would apply), so nothing can close the
        database under this read. Saves the lock's two round trips on the per-intention paths."""
        value = self._db.get(key)
        assert value is None or isinstance(value, bytes)
        return value

    def get_floor(self, key: bytes, prefix: bytes) -> tuple[bytes, bytes] | None:
        """The entry with the greatest key <= `key` that starts with `prefix`. Apply thread only."""
        it = self._db.iter()
        it.seek_for_prev(key)
        if it.valid():
            found = it.key()
            if found.startswith(prefix):
                return found, it.value()
        return None

    def scan(
        self, prefix: bytes, start: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with `prefix`, from `start` on, in key order. Apply thread only
        (or under `_lock.reading`): a snapshot install could otherwise close the database under it."""
        it = self._db.iter()
        it.seek(start if start is not None else prefix)
        count = 0
        while it.valid() and (limit is None or count < limit):
            key = it.key()
            if not key.startswith(prefix):
                return
            yield key, it.value()
            count += 1
            it.next()

    def keys_between(self, begin: bytes, end: bytes, count_max: int) -> list[bytes]:
        """Up to `count_max` stored keys in [begin, end), in order, without their values. Apply thread only.

        RocksDB is told the end: without it, a seek into an empty range walks on over whatever deleted keys follow
        it (after 100,000 entries of one client, the expiry index's ~100,000 point tombstones: ~400 us a seek)."""
        options = ReadOptions()
        options.set_iterate_upper_bound(end)
        it = self._db.iter(options)
        it.seek(begin)
        keys: list[bytes] = []
        while it.valid() and len(keys) < count_max:
            keys.append(it.key())
            it.next()
        return keys

    def applied(self) -> AppliedMark:
        data = self.get(Keys.APPLIED)
        return AppliedMark.decode(data) if data is not None else AppliedMark(0, 0)

    def commit(self, writes: WriteSet, mark: AppliedMark) -> None:
        """Write everything one applied entry produced, and its mark, in one atomic batch."""
        batch = writes.to_batch()
        batch.put(Keys.APPLIED, mark.encode())
        self._db.write(batch, self._write_options)
        self.range_deletes_committed += writes.range_deletes

    def peers(self) -> list[bytes]:
        """The address book (serialized Peers), from any thread."""
        with self._lock.reading:
            return [value for _, value in self.scan(Keys.PEER_PREFIX)]

    def digest(self) -> tuple[int, str, int]:
        """(intention offset, sha256 hex, key count) of the replicated state, from one consistent view.

        The Raft index in the applied mark is left out: nodes compact at different times, and a
        snapshot moves the mark over no-op entries, so it differs between identical replicas.
        """
        import hashlib

        digest = hashlib.sha256()
        offset = keys = 0
        # From a pinned snapshot, outside the lock: a scan of the whole store takes seconds on a big
        # one, and every other read (listeners, gets, session checks) waits for the lock.
        for key, value in self._pin().scan(b""):
            if key == Keys.APPLIED:
                offset = AppliedMark.decode(value).intention_offset
            else:
                digest.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
                keys += 1
        return offset, digest.hexdigest(), keys

    def read_events(self, topic: str, after_offset: int, count_max: int, bytes_max: int) -> list[bytes]:
        """Serialized events of `topic` with consequence offset > after_offset, in order."""
        if after_offset >= _OFFSET_MAX:
            return []  # no event can come after the largest offset (and after_offset + 1 has no key)
        prefix = Keys.events_of(topic)
        events: list[bytes] = []
        size = 0
        with self._lock.reading:
            for _, value in self.scan(prefix, start=Keys.event(topic, after_offset + 1), limit=count_max):
                if events and size + len(value) > bytes_max:
                    break
                events.append(value)
                size += len(value)
        return events

    # ---- views: the current value of each live key --------------------------------------------

    def read_view(self, topic: str, key: bytes) -> tuple[TopicRecord | None, ViewRecord | None, AppliedMark]:
        """The topic, the key's current value and the applied mark, from one consistent view."""
        pin = self._pin()
        topic_data = pin.get(Keys.topic(topic))
        view_data = pin.get(Keys.view(topic, key))
        applied = pin.get(Keys.APPLIED)
        return (
            TopicRecord.decode(topic_data) if topic_data is not None else None,
            ViewRecord.decode(view_data) if view_data is not None else None,
            AppliedMark.decode(applied) if applied is not None else AppliedMark(0, 0),
        )

    def describe(
        self, topic: str, keys_max: int
    ) -> tuple[TopicRecord | None, int, int, bool, AppliedMark, list[ConsumerRow]]:
        """(topic record, live keys, their value bytes, whether counting stopped at `keys_max`, applied mark, the
        consumers' rows (ConsumerRow; none unless the topic is live)), from one consistent view. Any thread.
        The consumers too: read from a second view, a consumer could be acked past the topic's last offset."""
        pin = self._pin()
        topic_data = pin.get(Keys.topic(topic))
        applied = pin.get(Keys.APPLIED)
        keys = value_bytes = 0
        views = pin.scan(Keys.views_of(topic))
        capped = False
        for _, value in views:
            if keys == keys_max:
                capped = True
                break
            keys += 1
            value_bytes += len(value) - VIEW_HEAD.size
        record = TopicRecord.decode(topic_data) if topic_data is not None else None
        return (
            record,
            keys,
            value_bytes,
            capped,
            AppliedMark.decode(applied) if applied is not None else AppliedMark(0, 0),
            _consumer_rows(pin, topic) if record is not None and record.live else [],
        )

    def view_snapshot(self, topic: str) -> tuple[int, Iterator[tuple[bytes, ViewRecord]]]:
        """(N, live keys with values) of `topic` from one RocksDB snapshot: the values reflect every
        event of the topic through consequence offset N, and no later one. From a pin: should a snapshot
        install replace the store meanwhile, the iterator raises StoreReplaced (the listener starts over)."""
        pin = self._pin()
        topic_data = pin.get(Keys.topic(topic))
        through = TopicRecord.decode(topic_data).next_offset - 1 if topic_data is not None else 0
        prefix = Keys.views_of(topic)

        def items() -> Iterator[tuple[bytes, ViewRecord]]:
            for key, value in pin.scan(prefix):
                yield key[len(prefix) :], ViewRecord.decode(value)

        return through, items()

    # ---- consumers (docs/consumers.md); any thread -------------------------------------------------

    def consumer_record(self, topic: str, name: str) -> bytes | None:
        return self.get(Keys.consumer(topic, name))

    def events_at(self, topic: str, offsets: list[int]) -> list[bytes]:
        """Serialized events of `topic` at the given consequence offsets (missing ones skipped). Any thread."""
        with self._lock.reading:
            found = [self._db.get(Keys.event(topic, offset)) for offset in offsets]
        return [data for data in found if data is not None]

    def group_leases(self, topic: str, group: str) -> list[tuple[int, bytes]]:
        """(offset, LeaseRecord bytes) of every lease of a group (at most limits.GROUP_LEASES_MAX). Any thread."""
        prefix = Keys.leases_of(topic, group)
        with self._lock.reading:
            return [(from_u64(k[len(prefix) :]), v) for k, v in self.scan(prefix, limit=limits.GROUP_LEASES_MAX)]

    # ---- pipelines (docs/pipelines.md); any thread -------------------------------------------------

    def worker_calls(
        self, service: str, worker: str, after_grant: int, count_max: int
    ) -> list[tuple[int, bytes, bytes | None]]:
        """(grant, Call bytes, CallLease bytes) of up to count_max calls leased to `worker` of `service` by grants
        after `after_grant`, in grant order, from one view (an index written at each grant: no scan of the service)."""
        prefix = CallKeys.grants_of(service, worker)
        rows: list[tuple[int, bytes, bytes | None]] = []
        start = prefix + u64(after_grant + 1) if after_grant < _OFFSET_MAX else prefix + b"\xff" * 9
        with self._lock.reading:
            # One iterator for the index, the calls and their leases: read live one by one, a lease re-granted to
            # another worker after the index was read went to this worker (its deliveries, its worker, its
            # deadline). Under the read lock no install can come, so this pin is never released (nor registered).
            view = Pin(self._db.iter())
            for key, value in itertools.islice(view.scan(prefix, start=start), count_max):
                call_id, topic = from_u64(value[:8]), bytes(value[8:]).decode()
                call = view.get(CallKeys.call(topic, call_id))
                if call is not None:
                    rows.append((from_u64(key[len(prefix) :]), call, view.get(CallKeys.lease(service, call_id))))
        return rows

    def calls_page(
        self, topic: str, after_id: int, count_max: int
    ) -> tuple[TopicRecord | None, bytes | None, list[tuple[bytes, bytes | None]], AppliedMark]:
        """From one consistent view: the topic's record, its CallStats bytes, (Call bytes, CallLease bytes) of up
        to count_max calls in flight with id > after_id, in id order, and the applied mark."""
        pin = self._pin()
        topic_data = pin.get(Keys.topic(topic))
        stats = pin.get(CallKeys.stats(topic))
        mark_data = pin.get(Keys.APPLIED)
        rows: list[tuple[bytes, bytes | None]] = []
        prefix = CallKeys.calls_of(topic)
        start = prefix + u64(after_id + 1) if after_id < _OFFSET_MAX else prefix + b"\xff" * 9
        for _, value in pin.scan(prefix, start=start):
            if len(rows) >= count_max:
                break
            call = pb.Call.FromString(value)
            rows.append((value, pin.get(CallKeys.lease(call.service, call.id))))
        record = None if topic_data is None else TopicRecord.decode(topic_data)
        mark = AppliedMark(0, 0) if mark_data is None else AppliedMark.decode(mark_data)
        return record, stats, rows, mark


def _consumer_rows(pin: Pin, topic: str) -> list[ConsumerRow]:
    """Every consumer of `topic` as read through `pin`; leases and members are bounded per group (limits.py)."""
    rows = []
    prefix = Keys.consumers_of(topic)
    for key, value in pin.scan(prefix):
        name = key[len(prefix) :].decode()
        members = [k[len(Keys.members_of(topic, name)) :] for k, _ in pin.scan(Keys.members_of(topic, name))]
        leases_prefix = Keys.leases_of(topic, name)
        leases = [(from_u64(k[len(leases_prefix) :]), v) for k, v in pin.scan(leases_prefix)]
        rows.append((name, value, members, leases))
    return rows
