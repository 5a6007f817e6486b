"""A snapshot install while long reads hold RocksDB snapshots: the install succeeds, the reads raise StoreReplaced.

Real RocksDB in temp dirs, no processes. Each reader kind is cut by an install at a point inside its read
(a hook on something the reader calls there); with main's store (bc682ba) every one of these installs
failed: a live rocksdict snapshot kept the old database's LOCK held ("lock hold by current process").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
from store_hooks import commit_on_first_call, install_on_first_call

from laminar import limits
from laminar.node import _applier
from laminar.node._metrics import NodeMetrics
from laminar.node.state_machine import StateMachine
from laminar.node.store import (
    AppliedMark,
    CallKeys,
    Keys,
    Store,
    StoreClosed,
    StoreReplaced,
    TopicRecord,
    ViewRecord,
    WriteSet,
)
from laminar.node.store import _store as store_module
from laminar.v1 import laminar_pb2 as pb

KEYS = 12  # view keys, calls, leases: several pin steps of STEP_ENTRIES each
STEP_ENTRIES = 2


@pytest.fixture(autouse=True)
def _small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "STORE_PIN_STEP_ENTRIES_MAX", STEP_ENTRIES)


def _fill(store: Store, generation: int) -> None:
    """Topic "t" with KEYS live keys, a consumer group with KEYS leases and KEYS calls in flight; values name
    the generation, so the old store and the new one answer differently."""
    writes = WriteSet()
    tag = b"g%d" % generation
    writes.put(Keys.topic("t"), TopicRecord(True, KEYS + 1, 1, "", b"").encode())
    for i in range(KEYS):
        writes.put(Keys.view("t", b"k%02d" % i), ViewRecord(i + 1, i + 1, tag).encode())
        writes.put(Keys.leases_of("t", "g") + i.to_bytes(8, "big"), tag)
        call = pb.Call(id=i + 1, topic="t", service="svc", request=tag)
        writes.put(CallKeys.call("t", i + 1), call.SerializeToString())
        writes.put(CallKeys.lease("svc", i + 1), tag)
    writes.put(Keys.consumer("t", "g"), tag)
    writes.put(Keys.members_of("t", "g") + b"m1", b"")
    store.commit(writes, AppliedMark(generation * 100, generation * 100))


@pytest.fixture
def stores(tmp_path: Path) -> tuple[Store, str, tuple[int, str, int]]:
    """(the node's store at generation 1, a checkpoint of generation 2 to install, that checkpoint's digest)."""
    leader = Store(str(tmp_path / "leader"))
    _fill(leader, 2)
    checkpoint = str(tmp_path / "checkpoint")
    leader.checkpoint(checkpoint)
    new_digest = leader.digest()
    leader.close()
    store = Store(str(tmp_path / "node"))
    _fill(store, 1)
    return store, checkpoint, new_digest


def _serves_new(store: Store, new_digest: tuple[int, str, int]) -> None:
    assert store.digest() == new_digest
    assert store.read_view("t", b"k00")[1] == ViewRecord(1, 1, b"g2")
    assert store.applied() == AppliedMark(200, 200)


def test_install_during_digest_scan(
    stores: tuple[Store, str, tuple[int, str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install in the middle of a digest's scan succeeds; the digest raises StoreReplaced."""
    store, checkpoint, new_digest = stores
    real_sha256 = hashlib.sha256
    installed: list[bool] = []

    class Hashing:
        def __init__(self) -> None:
            self._inner = real_sha256()
            self._updates = 0

        def update(self, data: bytes) -> None:
            self._updates += 1
            if self._updates == 3 and not installed:
                store.replace_with(checkpoint)
                installed.append(True)
            self._inner.update(data)

        def hexdigest(self) -> str:
            return self._inner.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Hashing)
    with pytest.raises(StoreReplaced):
        store.digest()
    assert installed == [True]
    monkeypatch.setattr(hashlib, "sha256", real_sha256)
    _serves_new(store, new_digest)


def test_install_during_view_snapshot_iteration(stores: tuple[Store, str, tuple[int, str, int]]) -> None:
    """A snapshot listener's iterator, half read, does not stop an install; its next read raises StoreReplaced."""
    store, checkpoint, new_digest = stores
    through, items = store.view_snapshot("t")
    assert through == KEYS
    assert next(items) == (b"k00", ViewRecord(1, 1, b"g1"))
    store.replace_with(checkpoint)
    with pytest.raises(StoreReplaced):
        list(items)
    _serves_new(store, new_digest)
    assert [record.value for _, record in store.view_snapshot("t")[1]] == [b"g2"] * KEYS


def test_a_snapshot_listeners_offset_and_keys_come_from_one_point_in_time(
    stores: tuple[Store, str, tuple[int, str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """view_snapshot's offset and its live keys agree, whatever commits between its reads: an entry committed after
    the topic record was read (here: between that read and the scan's first step) is in neither. With pins read
    through rocksdict Snapshot.iter() (which does not read at the snapshot) the keys held that entry's put past the
    offset, and a snapshot Listener got it twice (chat example: "(earlier) carol: hi all", then "carol: hi all")."""
    store, _, _ = stores
    _, items = store.view_snapshot("t")  # the pin is taken and the topic record read; the keys are read lazily
    later = WriteSet()
    later.put(Keys.topic("t"), TopicRecord(True, KEYS + 3, 1, "", b"").encode())
    later.put(Keys.view("t", b"k00"), ViewRecord(KEYS + 1, KEYS + 1, b"later").encode())
    later.put(Keys.view("t", b"k99"), ViewRecord(KEYS + 2, KEYS + 2, b"later").encode())
    store.commit(later, AppliedMark(101, 101))
    assert [(key, record.value) for key, record in items] == [(b"k%02d" % i, b"g1") for i in range(KEYS)]
    through, items = store.view_snapshot("t")
    assert through == KEYS + 2 and len(list(items)) == KEYS + 1

    between = WriteSet()
    between.put(Keys.topic("t"), TopicRecord(True, KEYS + 4, 1, "", b"").encode())
    between.put(Keys.view("t", b"k01"), ViewRecord(KEYS + 3, KEYS + 3, b"between").encode())
    commit_between = commit_on_first_call(
        monkeypatch, Keys, "view", store, between, AppliedMark(102, 102)
    )  # inside read_view
    topic, view, mark = store.read_view("t", b"k01")
    assert commit_between == [True] and topic is not None and view is not None
    assert (topic.next_offset, view.value, mark) == (KEYS + 3, b"g1", AppliedMark(101, 101))


def test_a_pins_scans_and_gets_interleave(stores: tuple[Store, str, tuple[int, str, int]]) -> None:
    """One pin serves nested scans and gets (each step seeks again after the last key it gave), all from the
    store as it was when the pin was taken."""
    store, _, _ = stores
    pin = store._pin()
    rewrite = WriteSet()
    for i in range(KEYS):
        rewrite.delete(Keys.view("t", b"k%02d" % i))
    store.commit(rewrite, AppliedMark(101, 101))
    outer = []
    for key, _ in pin.scan(Keys.views_of("t")):
        inner = [k for k, _ in pin.scan(Keys.views_of("t"), start=key)]
        assert pin.get(key) is not None and inner[0] == key
        outer.append((key, len(inner)))
    assert outer == [(Keys.view("t", b"k%02d" % i), KEYS - i) for i in range(KEYS)]
    assert list(store._pin().scan(Keys.views_of("t"))) == []


def test_install_during_calls_page(
    stores: tuple[Store, str, tuple[int, str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install between calls_page's reads succeeds; calls_page raises StoreReplaced, then reads the new store."""
    store, checkpoint, new_digest = stores
    installed = install_on_first_call(monkeypatch, store_module, "u64", store, checkpoint)
    with pytest.raises(StoreReplaced):
        store.calls_page("t", 0, KEYS)
    assert installed == [True]
    _serves_new(store, new_digest)
    _, _, rows, mark = store.calls_page("t", 0, KEYS)
    assert [lease for _, lease in rows] == [b"g2"] * KEYS and mark == AppliedMark(200, 200)


def test_install_during_describes_consumer_rows(
    stores: tuple[Store, str, tuple[int, str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install while describe walks a group's leases succeeds; describe raises StoreReplaced."""
    store, checkpoint, new_digest = stores
    installed = install_on_first_call(monkeypatch, store_module, "from_u64", store, checkpoint)
    with pytest.raises(StoreReplaced):
        store.describe("t", 100)
    assert installed == [True]
    _serves_new(store, new_digest)
    [(name, record, members, leases)] = store.describe("t", 100)[5]
    assert (name, record, members, len(leases)) == ("g", b"g2", [b"m1"], KEYS)


def test_install_during_describe(
    stores: tuple[Store, str, tuple[int, str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install between describe's reads succeeds; describe raises StoreReplaced, then counts the new store."""
    store, checkpoint, new_digest = stores
    installed = install_on_first_call(monkeypatch, Keys, "views_of", store, checkpoint)
    with pytest.raises(StoreReplaced):
        store.describe("t", 100)
    assert installed == [True]
    _serves_new(store, new_digest)
    record, keys, value_bytes, capped, mark, _ = store.describe("t", 100)
    assert record is not None and (keys, value_bytes, capped, mark) == (KEYS, 2 * KEYS, False, AppliedMark(200, 200))
    assert store.describe("t", KEYS - 1)[1:4] == (KEYS - 1, 2 * (KEYS - 1), True)


def test_install_during_read_view(
    stores: tuple[Store, str, tuple[int, str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install between read_view's reads succeeds; read_view raises StoreReplaced, never a mix of two stores."""
    store, checkpoint, new_digest = stores
    installed = install_on_first_call(monkeypatch, Keys, "view", store, checkpoint)
    with pytest.raises(StoreReplaced):
        store.read_view("t", b"k03")
    assert installed == [True]
    _serves_new(store, new_digest)


def test_close_releases_pins(stores: tuple[Store, str, tuple[int, str, int]]) -> None:
    """close() releases pins too: the same path opens again in this process while a half-read iterator lives."""
    store, _, _ = stores
    _, items = store.view_snapshot("t")
    next(items)
    store.close()
    with pytest.raises(StoreReplaced):
        list(items)
    with pytest.raises(StoreClosed):
        store.get(Keys.topic("t"))
    again = Store(store.path)
    assert again.read_view("t", b"k00")[1] == ViewRecord(1, 1, b"g1")
    again.close()


def _reads(store: Store) -> list[Callable[[], object]]:
    return [
        lambda: store.get(Keys.topic("t")),
        lambda: store.read_events("t", 0, 10, 1 << 20),
        lambda: store.digest(),
        lambda: store.view_snapshot("t"),
        lambda: store.read_view("t", b"k00"),
        lambda: store.describe("t", 10),
        lambda: store.calls_page("t", 0, 10),
        lambda: store.worker_calls("svc", "w", 0, 10),
        lambda: store.peers(),
        lambda: store.applied(),
        lambda: store.commit(WriteSet(), AppliedMark(1, 1)),
    ]


def test_failed_reopen_closes_the_store_and_a_restart_recovers(stores: tuple[Store, str, tuple[int, str, int]]) -> None:
    """When the new store cannot be opened (a snapshot held outside the pins keeps the LOCK), replace_with raises
    StoreClosed and every later read raises StoreClosed (none answers from a closed store); a restart opens the
    installed store (old moved away, new in place, open failed)."""
    store, checkpoint, new_digest = stores
    outside = store._db.snapshot()  # a snapshot no pin owns: what every reader's was on main
    with pytest.raises(StoreClosed, match="lock hold by current process"):
        store.replace_with(checkpoint)
    for read in _reads(store):
        with pytest.raises(StoreClosed):
            read()
    with pytest.raises(StoreClosed):
        store.replace_with(checkpoint)  # a resend of the snapshot cannot revive it either
    del outside  # the process ends (fail-stop): its LOCK goes with it
    assert os.path.isdir(store.path + ".old") and not os.path.isdir(store.path + ".new")
    restarted = Store(store.path)
    assert not os.path.isdir(store.path + ".old")
    _serves_new(restarted, new_digest)
    restarted.close()


class _Stopped(Exception):
    pass


def _no_sample() -> NoReturn:
    raise AssertionError("no metrics are served here")


def test_failed_install_stops_the_node(
    stores: tuple[Store, str, tuple[int, str, int]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The applier turns a store that an install closed and could not reopen into a fail-stop (EXIT_STORE_LOST)."""
    _, checkpoint, _ = stores
    store = Store(str(tmp_path / "empty"))  # what a state machine can load (the fixture's records are not real)
    stops: list[tuple[str, int]] = []

    def stop_node(why: str, exit_status: int) -> NoReturn:
        stops.append((why, exit_status))
        raise _Stopped

    def no_open() -> NoReturn:
        raise OSError("disk gone")

    applier = _applier.Applier(
        1, store, StateMachine(store), NodeMetrics(_no_sample), lambda _: None, lambda _: None, stop_node
    )
    try:
        monkeypatch.setattr(store, "_open", no_open)
        with pytest.raises(_Stopped):
            applier.install_snapshot(checkpoint)
    finally:
        applier.stop()
    [(why, exit_status)] = stops
    assert exit_status == _applier.EXIT_STORE_LOST == 74
    assert "could not open the new one: disk gone" in why


def test_a_read_cut_by_an_install_answers_unavailable() -> None:
    """Listen, Digest and a unary call (DescribeTopic) whose store read raised StoreReplaced end with UNAVAILABLE and
    "retry" (the client's Listener resumes on it), not UNKNOWN with a rocksdict error."""
    import asyncio
    from types import SimpleNamespace

    import grpc

    from laminar.node.service._server import LaminarServicer, Offload

    def replaced(*_: object) -> NoReturn:
        raise StoreReplaced("a snapshot install replaced the store during this read")

    async def listen(*_: object) -> None:
        replaced()

    class Aborted(Exception):
        pass

    class Context:
        def __init__(self) -> None:
            self.ended: tuple[grpc.StatusCode, str] | None = None

        async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
            self.ended = (code, details)
            raise Aborted

    async def ends(call: Callable[[Context], Any]) -> tuple[grpc.StatusCode, str] | None:
        context = Context()
        with pytest.raises(Aborted):
            await call(context)
        return context.ended

    node = SimpleNamespace(digest=replaced, describe_topic=replaced)
    listens = SimpleNamespace(admit=lambda: "", run=listen, stop=lambda: None)
    servicer = LaminarServicer(None, listens, node, Offload("unary", 1, 1))  # type: ignore[arg-type]

    async def run() -> list[tuple[grpc.StatusCode, str] | None]:
        return [
            await ends(lambda c: servicer.Listen(pb.ListenRequest(topic="t", snapshot=True), c)),  # type: ignore[arg-type]
            await ends(lambda c: servicer.Digest(pb.DigestRequest(), c)),  # type: ignore[arg-type]
            await ends(lambda c: servicer.DescribeTopic(pb.DescribeTopicRequest(topic="t"), c)),  # type: ignore[arg-type]
        ]

    try:
        ended = asyncio.run(run())
    finally:
        servicer.stop()
    assert ended == [(grpc.StatusCode.UNAVAILABLE, "a snapshot install replaced the store during this read: retry")] * 3
