"""Log compaction by RocksDB checkpoint, instead of pysyncobj's fork-and-pickle of the whole object.

pysyncobj compacts by handing a serializer the metadata of the last applied entry; whatever file
the serializer leaves at `fileName` is what it later streams to a follower that is too far behind,
and what it hands back to the deserializer on that follower (and on every restart).

Our snapshot file is an uncompressed tar holding `meta` (pysyncobj's own metadata: the last two
applied entries and the membership, pickled as pysyncobj pickles all its traffic) and the files of
a RocksDB checkpoint of the store at exactly that applied index. Building it is split in two:
- in the tick thread, `serialize` takes the checkpoint (hard links; milliseconds), so it matches
  the applied index exactly;
- a background thread packs it into the tar, syncs it and moves it into place; until then
  `check` answers SERIALIZING, so pysyncobj neither streams the file nor truncates its log.
  The tar is written back to disk in steps of at most SNAPSHOT_SYNC_STEP_BYTES_MAX, each waited for
  (`_SteppedWriter`), and its checksum is computed as it is written. Packing it whole and then
  syncing it once made every journal fsync on the same disk wait behind hundreds of MiB of dirty
  pages: measured (bench/snapshot_stall.py) the journal's fsyncs took 250-380 ms each, back to back,
  for the 1.2-1.5 s the tar's fsync ran, on every node at once, and the commits of every client
  stalled that long.
pysyncobj renames `<file>.tmp` onto `<file>` as soon as `serialize` returns; we leave a hard link
of the previous snapshot there, so the file on disk is always a complete snapshot.

Installing (`deserialize`): a node whose store is already at or past the snapshot's index (every
normal restart) keeps its store and only reads `meta`; a node behind it (a new or lagging node)
replaces its store with the checkpoint.

A snapshot from the leader can arrive while a local one is still being packed. The local one is
then stale: it must neither replace the file pysyncobj just received nor report SUCCESS, because
pysyncobj answers SUCCESS by deleting journal entries up to the local snapshot's index, which would
empty the journal it has just rebuilt around the received snapshot. A generation number, bumped by
every install, tells the packing thread that its snapshot was superseded.

Integrity. Every snapshot file ends with a trailer after the tar (tar readers ignore it): a magic,
the tar's length, the snapshot's last (index, term) and a CRC-32 of the tar. A snapshot from the
leader arrives in chunks (pysyncobj's transfer has no notion of which leader, term or file a chunk
belongs to, and two transfers can interleave into one file: a leader that loses and regains
leadership resumes its old transfer mid-file, a chunk lost with a dropped connection leaves a gap).
`SnapshotReceiver` accepts a chunk only if it continues the transfer it holds: same sender, same
leader term, at exactly the offset received so far (the sender's transport tags each chunk); the
first chunk of a transfer starts a new one. A complete file is installed only if its trailer and
checksum verify (`verify`); anything else is refused, and the leader, finding the follower still
behind, sends the snapshot again from its start.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import shutil
import struct
import tarfile
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from pysyncobj.config import SERIALIZER_STATE

from laminar import limits
from laminar.node.raft._port import SnapshotHooks

log = logging.getLogger("laminar.snapshot")

_META = "meta"
_STORE_PREFIX = "store/"
# magic, tar length, last index, last term, crc32 of the tar
_TRAILER = struct.Struct(">8sQQQI")
_TRAILER_MAGIC = b"LAMSNAP1"
_READ_CHUNK_BYTES = 1 << 20


class SnapshotCorrupt(ValueError):
    """A snapshot file that is incomplete, mixed or damaged: it must not be installed."""


def _fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY if directory else os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_meta(tar: tarfile.TarFile, file_name: str) -> tuple[Any, ...]:
    """pysyncobj's metadata, the first member: (last applied entry, the entry before it, membership)."""
    member = tar.next()
    if member is None or member.name != _META:
        raise ValueError(f"{file_name} is not a Laminar snapshot")
    extracted = tar.extractfile(member)
    assert extracted is not None
    return tuple(pickle.loads(extracted.read()))


def _crc_of(file_name: str, length: int) -> int:
    crc = 0
    with open(file_name, "rb") as f:
        remaining = length
        while remaining:
            block = f.read(min(_READ_CHUNK_BYTES, remaining))
            if not block:
                raise SnapshotCorrupt(f"{file_name}: shorter than its trailer says")
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
    return crc


def _trailer(file_name: str) -> tuple[int, int, int, int] | None:
    """(tar length, last index, last term, crc32) from the file's trailer, or None if it has none."""
    size = os.path.getsize(file_name)
    if size < _TRAILER.size:
        return None
    with open(file_name, "rb") as f:
        f.seek(size - _TRAILER.size)
        magic, length, index, term, crc = _TRAILER.unpack(f.read(_TRAILER.size))
    if magic != _TRAILER_MAGIC:
        return None
    return length, index, term, crc


def verify(file_name: str, require_trailer: bool = True) -> tuple[Any, ...]:
    """pysyncobj's metadata of a snapshot file that is whole: the trailer is present, the tar has exactly
    the length it names and its checksum, and the metadata inside ends at the (index, term) it names.
    Raises SnapshotCorrupt otherwise. `require_trailer=False` accepts a file written before trailers
    existed (a local file only: it was synced and renamed into place whole)."""
    try:
        trailer = _trailer(file_name)
        if trailer is None:
            if require_trailer:
                raise SnapshotCorrupt(f"{file_name}: no snapshot trailer (incomplete or not a snapshot)")
        else:
            length, _index, _term, crc = trailer
            if os.path.getsize(file_name) != length + _TRAILER.size:
                raise SnapshotCorrupt(f"{file_name}: size does not match its trailer")
            if _crc_of(file_name, length) != crc:
                raise SnapshotCorrupt(f"{file_name}: checksum mismatch")
        with tarfile.open(file_name, "r") as tar:
            meta = _read_meta(tar, file_name)
        if trailer is not None and (meta[0][1], meta[0][2]) != (trailer[1], trailer[2]):
            raise SnapshotCorrupt(f"{file_name}: metadata does not end at the entry its trailer names")
        return meta
    except SnapshotCorrupt:
        raise
    except (OSError, ValueError, tarfile.TarError, pickle.UnpicklingError, EOFError, IndexError, TypeError) as e:
        raise SnapshotCorrupt(f"{file_name}: {e}") from e


def snapshot_entries(file_name: str) -> tuple[Any, Any] | None:
    """The (entry before the last applied one, last applied entry) a snapshot file ends with, or None if
    there is no readable snapshot. Entries as the journal holds them: (command, raft index, term)."""
    try:
        with tarfile.open(file_name, "r") as tar:
            meta = _read_meta(tar, file_name)
    except (OSError, ValueError, tarfile.TarError, pickle.UnpicklingError, EOFError):
        return None
    return meta[1], meta[0]


class _SteppedWriter:
    """A new file written so that at most `step_bytes` of it are ever dirty in the page cache: each
    time that many have been written since the last step, they are synced (fdatasync) before more
    are written. A later fsync of the whole file, and any other file's fsync on the same disk that
    the kernel orders behind it, then waits for one step at most. Keeps the CRC-32 of what it wrote
    (`checksum=True`). Written steps are dropped from the page cache: a snapshot is read back only
    to install it or send it to a lagging follower, and must not push the store's pages out."""

    def __init__(self, path: str, step_bytes: int, checksum: bool = False) -> None:
        assert step_bytes > 0, step_bytes
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._step_bytes = step_bytes
        self._checksum = checksum
        self.crc = 0
        self.written_bytes = 0
        self.synced_bytes = 0  # bytes known on disk (the end of the last step)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        if self._checksum:
            self.crc = zlib.crc32(view, self.crc)
        while view:
            room = self._step_bytes - (self.written_bytes - self.synced_bytes)
            written = os.write(self._fd, view[:room])
            self.written_bytes += written
            view = view[written:]
            if self.written_bytes - self.synced_bytes >= self._step_bytes:
                self._sync_step()
        return len(data)

    def tell(self) -> int:
        return self.written_bytes  # tarfile asks once, at its start

    def read(self, size: int, /) -> bytes:
        raise io.UnsupportedOperation("a snapshot being written is not read")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("a snapshot is written in order")

    def sync(self) -> None:
        """Everything written so far is on disk, and so is the file's size."""
        os.fsync(self._fd)
        self._drop_cached(self.synced_bytes, self.written_bytes)
        self.synced_bytes = self.written_bytes

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> _SteppedWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _sync_step(self) -> None:
        os.fdatasync(self._fd)
        self._drop_cached(self.synced_bytes, self.written_bytes)
        self.synced_bytes = self.written_bytes

    def _drop_cached(self, start: int, end: int) -> None:
        if end > start and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, start, end - start, os.POSIX_FADV_DONTNEED)


def _pack(file_name: str, checkpoint_dir: str, meta: bytes) -> None:
    """Write the snapshot file: the tar of `meta` and the checkpoint's files, then its trailer, synced."""
    with _SteppedWriter(file_name, limits.SNAPSHOT_SYNC_STEP_BYTES_MAX, checksum=True) as out:
        with tarfile.TarFile(fileobj=out, mode="w", copybufsize=_READ_CHUNK_BYTES) as tar:
            info = tarfile.TarInfo(_META)
            info.size = len(meta)
            tar.addfile(info, io.BytesIO(meta))
            for name in sorted(os.listdir(checkpoint_dir)):
                tar.add(os.path.join(checkpoint_dir, name), arcname=_STORE_PREFIX + name)
        last_entry = pickle.loads(meta)[0]
        out.write(_TRAILER.pack(_TRAILER_MAGIC, out.written_bytes, last_entry[1], last_entry[2], out.crc))
        out.sync()


class SnapshotReceiver:
    """Reassembles a snapshot sent in chunks, refusing any chunk that does not continue the transfer
    it holds (tick thread only). A transfer is (sender, leader term); each chunk carries its offset."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: _SteppedWriter | None = None
        self._source: tuple[str, int] | None = None
        self._received_bytes = 0
        self.refused = 0  # chunks or whole transfers refused, for tests and logs

    def take(self, sender: str, term: int, offset: Any, chunk: Any) -> str | None:
        """Write one chunk; the path of the complete, verified file after the last one, else None."""
        if not (isinstance(chunk, tuple) and len(chunk) == 3 and isinstance(chunk[0], bytes)):
            self._refuse(f"malformed chunk from {sender}")
            return None
        data, first, last = chunk
        if first:
            self._start(sender, term)
        elif self._source != (sender, term):
            self._refuse(f"chunk from {sender} (term {term}) does not continue the transfer held")
            return None
        if offset != self._received_bytes:
            self._refuse(f"chunk from {sender} at offset {offset!r}, expected {self._received_bytes}")
            return None
        if self._received_bytes + len(data) > limits.SNAPSHOT_RECEIVED_BYTES_MAX:
            self._refuse(f"snapshot from {sender} exceeds SNAPSHOT_RECEIVED_BYTES_MAX")
            return None
        assert self._file is not None
        self._file.write(data)
        self._received_bytes += len(data)
        if not last:
            return None
        self._file.sync()
        self._close()
        try:
            verify(self._path)
        except SnapshotCorrupt as e:
            self._refuse(str(e))
            return None
        return self._path

    def _start(self, sender: str, term: int) -> None:
        self._close()
        # Synced in steps as it arrives, as a local snapshot is (see _SteppedWriter): a follower's
        # journal fsyncs must not wait behind the whole snapshot's fsync either.
        self._file = _SteppedWriter(self._path, limits.SNAPSHOT_SYNC_STEP_BYTES_MAX)
        self._source = (sender, term)
        self._received_bytes = 0

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._source = None

    def _refuse(self, why: str) -> None:
        if self._source is not None or os.path.exists(self._path):
            log.warning("snapshot transfer refused: %s", why)
        self._close()
        self._received_bytes = 0
        if os.path.exists(self._path):
            os.unlink(self._path)
        self.refused += 1
        return None


class Snapshotter:
    def __init__(
        self, work_dir: str, hooks: SnapshotHooks, prepare_compaction: Callable[[int], None] | None = None
    ) -> None:
        self._work_dir = work_dir
        self._hooks = hooks
        # The journal's prepare_compaction: once a snapshot is packed, and before pysyncobj hears of it and
        # compacts the journal in its tick, the entries it will keep are copied ahead (see _journal.py).
        self._prepare_compaction = prepare_compaction
        self._state = SERIALIZER_STATE.NOT_SERIALIZING
        self._lock = threading.Lock()
        self._generation = 0  # bumped by every install: a local snapshot begun before it is stale
        self._build_pending: threading.Thread | None = None  # tick thread only
        os.makedirs(work_dir, exist_ok=True)
        self.snapshots_built = 0
        self.snapshots_installed = 0
        self._build_started_s = 0.0  # time.monotonic() when the snapshot being built was begun
        self.snapshot_bytes = 0  # size of the snapshot file in place (set by the engine at start), for compaction

    # ---- building (pysyncobj's serializer and serializeChecker) ----------------------------

    def serialize(self, tmp_file: str, data: Any) -> None:
        self._build_started_s = time.monotonic()
        final_file = tmp_file[: -len(".tmp")]
        checkpoint_dir = os.path.join(self._work_dir, "checkpoint")
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        self._hooks.checkpoint(checkpoint_dir, data[0][1])
        meta = pickle.dumps(tuple(data))
        if os.path.exists(tmp_file):
            os.unlink(tmp_file)  # left by a crash
        if os.path.exists(final_file):
            os.link(final_file, tmp_file)
        else:
            open(tmp_file, "wb").close()
        with self._lock:
            self._state = SERIALIZER_STATE.SERIALIZING
            generation = self._generation
        # The packing thread starts from the next check(), not here: pysyncobj renames `tmp_file` onto
        # the final file only after this returns, and a thread started here could publish the new
        # snapshot first, to be overwritten by that rename (seen in tests: the old or an empty file in
        # place, and the journal compacted as if the new one were there).
        self._build_pending = threading.Thread(
            target=self._build,
            args=(final_file, checkpoint_dir, meta, generation, data[1][1]),
            name="snapshot-build",
            daemon=True,
        )

    @property
    def busy(self) -> bool:
        """A snapshot is being built, or built and not yet taken by pysyncobj (which then compacts)."""
        with self._lock:
            return self._build_pending is not None or self._state != SERIALIZER_STATE.NOT_SERIALIZING

    @property
    def idle(self) -> bool:
        """Tick thread: no snapshot being built or waiting to be taken (`busy` without its lock). Only the tick
        thread moves the state away from NOT_SERIALIZING (serialize) and back to it (check), so what it reads
        here is current; a build thread ending meanwhile moves SERIALIZING to SUCCESS, both of them not idle."""
        return self._build_pending is None and self._state == SERIALIZER_STATE.NOT_SERIALIZING

    def check(self) -> int:
        pending, self._build_pending = self._build_pending, None
        if pending is not None:
            pending.start()  # pysyncobj calls check() in a later tick than serialize(): its rename is done
        with self._lock:
            state = self._state
            if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
                self._state = SERIALIZER_STATE.NOT_SERIALIZING
            return int(state)

    def _build(self, final_file: str, checkpoint_dir: str, meta: bytes, generation: int, first_kept: int) -> None:
        """`first_kept`: the Raft index of the first entry the journal keeps once this snapshot is taken
        (pysyncobj keeps the last two entries a snapshot covers)."""
        building = final_file + ".building"
        try:
            _pack(building, checkpoint_dir, meta)
            # Before publishing, not after: between publishing and pysyncobj's compaction, a crash leaves a
            # journal that begins before the snapshot, which the next start compacts whole, in its tick. A
            # preparation for a snapshot that is then superseded is harmless: deleteEntriesTo takes it only
            # for exactly the cut it was made for.
            if self._prepare_compaction is not None:
                self._prepare_quietly(first_kept)
            state = self._publish(building, final_file, generation)
        except Exception:
            log.exception("snapshot failed")
            state = SERIALIZER_STATE.FAILED
        finally:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        with self._lock:
            self._state = state

    def _prepare_quietly(self, first_kept: int) -> None:
        try:
            assert self._prepare_compaction is not None
            self._prepare_compaction(first_kept)
        except OSError:  # the snapshot stands; the journal is then compacted the slow way, in the tick
            log.warning("preparing the journal's compaction failed", exc_info=True)

    def _publish(self, building: str, final_file: str, generation: int) -> int:
        """Move a packed snapshot into place, unless an installed one superseded it meanwhile."""
        with self._lock:  # an install cannot start between the check and the rename
            if generation != self._generation:
                os.unlink(building)
                log.info("a local snapshot was superseded by one installed from the leader; dropped")
                return int(SERIALIZER_STATE.FAILED)
            os.replace(building, final_file)
        _fsync_path(os.path.dirname(os.path.abspath(final_file)), directory=True)
        self.snapshots_built += 1
        self.snapshot_bytes = os.path.getsize(final_file)
        # bench.cost_curves (the snapshots curve) reads this line: keep its shape.
        log.info(
            "snapshot written: %s (%d bytes, built in %.3f s)",
            final_file,
            os.path.getsize(final_file),
            time.monotonic() - self._build_started_s,
        )
        return int(SERIALIZER_STATE.SUCCESS)

    # ---- installing (pysyncobj's deserializer) ---------------------------------------------

    def supersede(self) -> None:
        """A snapshot is arriving from the leader: whatever is being packed now is older than it."""
        with self._lock:
            self._generation += 1

    def publish_received(self, received: str, final_file: str) -> None:
        """Move a verified snapshot from the leader into place; a local one being packed is stale."""
        with self._lock:
            self._generation += 1
            os.replace(received, final_file)
        self.snapshot_bytes = os.path.getsize(final_file)
        _fsync_path(os.path.dirname(os.path.abspath(final_file)), directory=True)

    def deserialize(self, file_name: str) -> tuple[Any, ...]:
        self.supersede()
        verify(file_name, require_trailer=False)
        with tarfile.open(file_name, "r") as tar:
            meta = _read_meta(tar, file_name)
            last_applied_index = meta[0][1]
            if self._hooks.applied_index() >= last_applied_index:
                return tuple(meta)  # a restart: the store is already at or past the snapshot
            target = os.path.join(self._work_dir, "incoming")
            shutil.rmtree(target, ignore_errors=True)
            os.makedirs(target)
            for member in tar:
                if not member.isfile() or not member.name.startswith(_STORE_PREFIX):
                    continue
                name = os.path.basename(member.name)
                source = tar.extractfile(member)
                assert source is not None
                with open(os.path.join(target, name), "wb") as out:
                    shutil.copyfileobj(source, out)
                    out.flush()
                    os.fsync(out.fileno())
        self._hooks.install(target)
        self.snapshots_installed += 1
        log.info("installed a snapshot at raft index %d", last_applied_index)
        return tuple(meta)
