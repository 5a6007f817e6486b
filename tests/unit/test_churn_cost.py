"""What a create, a destroy and an entry cost the store does not grow with history (issue 15, topic churn): apply
leaves no RocksDB range tombstone for a destroyed topic's few views, a capped topic's trimmed events or a client's
old results, and its per-entry scans skip no pile of deleted keys. Counted through RocksDB's own statistics and the
store's count of committed range deletes, on the pure state machine over a real store (no timing)."""

from __future__ import annotations

import gc
import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from laminar import limits
from laminar.node._entry import encode_run
from laminar.node.state_machine import StateMachine
from laminar.node.store import Keys, Store
from laminar.v1 import laminar_pb2 as pb

CLIENT = uuid.UUID(int=7).bytes
SKIPS = "rocksdb.number.iter.skip"  # internal keys (deleted or older versions) iterators stepped over
START_MS = 1_800_000_000_000  # log time: real-looking, so that the dedupe expiry scan runs as on a node


class Machine:
    def __init__(self, path: Path) -> None:
        self.store = Store(str(path), statistics=True)
        self.machine = StateMachine(self.store)
        self.index = 1
        self.nonce = 0

    def apply(self, *mutations: pb.Mutation) -> list[int]:
        """Apply one entry of `mutations` from one client; the effect of each."""
        for m in mutations:
            self.nonce += 1
            m.nonce = self.nonce
        payload = pb.IntentionBatch(time_ms=START_MS + self.index).SerializeToString()
        payload += encode_run(CLIENT, pb.MutationFrame(mutations=mutations).SerializeToString())
        self.index += 1
        applied = self.machine.apply(self.index, payload)
        assert applied is not None
        self.store.commit(applied.writes, applied.mark)
        return [o.effect for o in applied.outcomes for _ in range(o.count)]

    def work(self) -> tuple[int, int]:
        """(iterator skips, range deletes committed) so far."""
        gc.collect()  # an iterator reports its skips when freed
        return self.store.statistic(SKIPS), self.store.range_deletes_committed

    def count(self, prefix: bytes) -> int:
        return sum(1 for _ in self.store.scan(prefix))


@pytest.fixture
def sm(tmp_path: Path) -> Iterator[Machine]:
    machine = Machine(tmp_path / "db")
    yield machine
    machine.store.close()


def create(topic: str, max_events: int = 0) -> pb.Mutation:
    return pb.Mutation(kind=pb.CREATE_TOPIC, topic=topic, retention=pb.Retention(max_events=max_events))


def destroy(topic: str) -> pb.Mutation:
    return pb.Mutation(kind=pb.DESTROY_TOPIC, topic=topic)


def put(topic: str, key: bytes) -> pb.Mutation:
    return pb.Mutation(kind=pb.PUT, topic=topic, key=key, value=b"v")


def probe(sm: Machine, first: int, entries: int) -> tuple[int, int]:
    """Work done by `entries` entries of one create + destroy of a new name each."""
    skips, range_deletes = sm.work()
    for n in range(first, first + entries):
        assert sm.apply(create(f"probe-{n}"), destroy(f"probe-{n}")) == [pb.VALID, pb.VALID]
    after_skips, after_range_deletes = sm.work()
    return after_skips - skips, after_range_deletes - range_deletes


def test_a_create_and_destroy_cost_the_same_after_thousands_of_cycles(sm: Machine) -> None:
    """50 create+destroy entries step over no more deleted keys, and write no more range deletes, after 2,000
    create+destroy entries than after 100 (before: a range delete per destroy, each making the next read rebuild
    the memtable's whole tombstone list, and the dedupe expiry scan stepping over one more tombstone per entry)."""
    started = time.monotonic()
    for n in range(100):
        sm.apply(create(f"churn-{n}"), destroy(f"churn-{n}"))
    early = probe(sm, 0, 50)
    for n in range(100, 2100):
        sm.apply(create(f"churn-{n}"), destroy(f"churn-{n}"))
    late = probe(sm, 50, 50)
    print(f"early {early}, late {late} (skips, range deletes); {time.monotonic() - started:.1f} s")
    assert late[1] == early[1] == 0, "a churned topic left a range tombstone"
    assert late[0] <= early[0], f"entries step over more deleted keys as history grows: {early} then {late}"
    assert sm.count(Keys.TOPIC_PREFIX) == 2200  # every name keeps its record: offsets never reset


def test_a_topic_created_and_destroyed_in_one_entry_costs_no_seek_and_no_needless_tombstone(sm: Machine) -> None:
    """A create+destroy pair of a plain topic in one entry writes its two events and its record, and no more: no seek
    for stored views (it has none yet: before, one iterator per destroy), no delete of a program state or of call
    counters it never had (before, two tombstones per destroy). Counted by RocksDB: keys written and seeks."""
    sm.apply(create("warm"))
    entries, pairs = 10, 50
    written, seeks = "rocksdb.number.keys.written", "rocksdb.number.db.seek"
    gc.collect()
    before = sm.store.statistic(written), sm.store.statistic(seeks)
    for n in range(entries):
        churn = [m for i in range(pairs) for m in (create(f"c{n}-{i}"), destroy(f"c{n}-{i}"))]
        assert set(sm.apply(*churn)) == {pb.VALID}
    gc.collect()
    keys = sm.store.statistic(written) - before[0]
    seeked = sm.store.statistic(seeks) - before[1]
    # Per entry: the applied mark, the client's record, its expiry key (and the old one's delete), its results.
    assert keys <= 3 * entries * pairs + 6 * entries, f"{keys / (entries * pairs):.2f} keys written per pair"
    assert seeked <= entries, f"{seeked} seeks for {entries} entries"  # the dedupe expiry scan's, once per entry
    assert sm.count(Keys.TOPIC_PREFIX) == 1 + entries * pairs
    assert sm.count(Keys.VIEW_PREFIX) == 0


def test_a_destroyed_topics_views_are_deleted_by_points_up_to_the_bound_and_by_one_range_beyond(sm: Machine) -> None:
    """A destroy deletes a topic's few views one by one and a large topic's with one range delete; either way no
    view is left, and a re-created topic starts with none."""
    sm.apply(create("few"), *[put("few", b"k%d" % i) for i in range(3)])
    sm.apply(create("many"), *[put("many", b"k%d" % i) for i in range(limits.STORE_POINT_DELETES_MAX + 1)])
    assert sm.count(Keys.views_of("few")) == 3
    assert sm.count(Keys.views_of("many")) == limits.STORE_POINT_DELETES_MAX + 1
    _, before = sm.work()
    sm.apply(destroy("few"))
    assert sm.work()[1] == before
    sm.apply(destroy("many"))
    assert sm.work()[1] == before + 1
    assert sm.count(Keys.views_of("few")) == sm.count(Keys.views_of("many")) == 0
    sm.apply(create("few"), put("few", b"new"), destroy("few"), create("few"))  # this entry's views are dropped too
    assert sm.count(Keys.views_of("few")) == 0
    assert sm.count(Keys.VIEW_PREFIX) == 0


def test_a_capped_topics_steady_trim_writes_no_range_delete(sm: Machine) -> None:
    """A topic capped at 10 events, written 5 events an entry, keeps exactly its last 10 events with point deletes."""
    sm.apply(create("capped", max_events=10))
    _, before = sm.work()
    for n in range(40):
        sm.apply(*[put("capped", b"k%d" % (5 * n + i)) for i in range(5)])
    assert sm.work()[1] == before
    offsets = [pb.Event.FromString(v).consequence_offset for _, v in sm.store.scan(Keys.events_of("capped"))]
    assert offsets == list(range(192, 202))  # the create's event, then 200 puts: offsets 1..201


def test_a_busy_clients_old_results_cost_one_range_delete_per_step(sm: Machine) -> None:
    """A client's results beyond its dedupe window go with one range delete per DEDUPE_RESULTS_TRIM_STEP_NONCES
    nonces (was one per entry), and what it keeps stays bounded."""
    sm.apply(create("t"))
    _, before = sm.work()
    per_entry = 1024
    entries = (limits.DEDUPE_RESULTS_PER_CLIENT_MAX + limits.BATCH_INTENTIONS_MAX) // per_entry + 24
    for _ in range(entries):
        sm.apply(*[put("t", b"k") for _ in range(per_entry)])
    horizon = sm.nonce - limits.DEDUPE_RESULTS_PER_CLIENT_MAX - limits.BATCH_INTENTIONS_MAX
    assert sm.work()[1] - before == horizon // limits.DEDUPE_RESULTS_TRIM_STEP_NONCES
    first_kept = min(int.from_bytes(k[-8:], "big") for k, _ in sm.store.scan(Keys.results_of(CLIENT)))
    assert horizon - limits.DEDUPE_RESULTS_TRIM_STEP_NONCES < first_kept


def _digest(store: Store) -> str:
    h = hashlib.sha256()
    for key, value in store.scan(b""):
        h.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
    return h.hexdigest()


def test_the_expiry_scans_starting_point_is_no_replicated_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two machines fed the same entries, one of them restarted every 7 entries (so that its expiry scan starts again
    from the index's first key), forget the same clients and end with byte-identical stores; the entries also trim a
    capped topic, destroy a topic with views and forget clients' results, all by point deletes."""
    monkeypatch.setattr(limits, "DEDUPE_CLIENTS_MAX", 20)
    monkeypatch.setattr(limits, "DEDUPE_RESULTS_PER_CLIENT_MAX", 8)
    monkeypatch.setattr(limits, "BATCH_INTENTIONS_MAX", 8)
    monkeypatch.setattr(limits, "DEDUPE_RESULTS_TRIM_STEP_NONCES", 4)
    steady, restarted = Machine(tmp_path / "a"), Machine(tmp_path / "b")
    nonces: dict[bytes, int] = {}
    for n in range(60):
        client_id = uuid.UUID(int=100 + n % 30).bytes  # 30 clients in turn: past the cap of 20 the oldest are forgotten
        muts = [create(f"t{n}", max_events=3), put(f"t{n}", b"a"), put(f"t{n}", b"b"), put(f"t{n}", b"c")]
        if n:
            muts.append(destroy(f"t{n - 1}"))
        first = nonces.get(client_id, 0) + 1
        nonces[client_id] = first + len(muts) - 1
        for i, m in enumerate(muts):
            m.nonce = first + i
        payload = pb.IntentionBatch(time_ms=START_MS + n).SerializeToString()
        payload += encode_run(client_id, pb.MutationFrame(mutations=muts).SerializeToString())
        for machine in (steady, restarted):
            machine.index += 1
            applied = machine.machine.apply(machine.index, payload)
            assert applied is not None
            assert {o.effect for o in applied.outcomes} == {pb.VALID}
            machine.store.commit(applied.writes, applied.mark)
        if n % 7 == 6:
            restarted.store.close()
            restarted.store = Store(str(tmp_path / "b"))
            restarted.machine = StateMachine(restarted.store)
    assert steady.count(Keys.CLIENT_PREFIX) == 20
    assert steady.store.range_deletes_committed == 0
    assert steady.count(Keys.VIEW_PREFIX) == 3  # the last topic's keys
    assert _digest(steady.store) == _digest(restarted.store)
    steady.store.close()
    restarted.store.close()


def test_an_entry_of_clients_within_the_expiry_window_seeks_nothing(sm: Machine) -> None:
    """The dedupe expiry scan (a RocksDB seek per entry, ~10 us of a lone put's apply on every node) is skipped once
    a scan has found the first key within the window: 200 one-put entries of one client seek at most once."""
    sm.apply(create("t"))
    gc.collect()
    before = sm.store.statistic("rocksdb.number.db.seek")
    for n in range(200):
        assert sm.apply(put("t", b"k%d" % n)) == [pb.VALID]
    gc.collect()
    assert sm.store.statistic("rocksdb.number.db.seek") - before <= 1


def test_skipping_the_expiry_scan_forgets_the_same_clients_at_the_same_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients expire by log time (DEDUPE_CLIENT_EXPIRY_MS) and by count (DEDUPE_CLIENTS_MAX) at the same entries on
    a machine that skips the scan (its floors say no key is idle) as on one restarted after every entry (no floors:
    it always scans): after each entry the client counts agree, both kinds of expiry happened, and the stores end
    byte-identical."""
    monkeypatch.setattr(limits, "DEDUPE_CLIENT_EXPIRY_MS", 50)
    monkeypatch.setattr(limits, "DEDUPE_CLIENTS_MAX", 6)
    steady, restarted = Machine(tmp_path / "a"), Machine(tmp_path / "b")
    nonces: dict[bytes, int] = {}
    counts = []
    for n in range(300):
        # Three busy clients; now and then one of many rare ones, quiet for longer than the expiry time; in bursts,
        # more rare ones than the cap holds.
        burst = 100 <= n < 110
        rare = n % 23 == 0 or burst
        client_id = uuid.UUID(int=300 + n if rare else 200 + n % 3).bytes
        muts = [create("t")] if n == 0 else [put("t", b"k%d" % (n % 5))]
        muts[0].nonce = nonces[client_id] = nonces.get(client_id, 0) + 1
        payload = pb.IntentionBatch(time_ms=START_MS + 3 * n).SerializeToString()
        payload += encode_run(client_id, pb.MutationFrame(mutations=muts).SerializeToString())
        for machine in (steady, restarted):
            machine.index += 1
            applied = machine.machine.apply(machine.index, payload)
            assert applied is not None
            machine.store.commit(applied.writes, applied.mark)
        assert steady.machine.client_count == restarted.machine.client_count, f"entry {n}"
        counts.append(steady.machine.client_count)
        restarted.store.close()
        restarted.store = Store(str(tmp_path / "b"))
        restarted.machine = StateMachine(restarted.store)
    assert max(counts) == 6, "the cap was reached (expiry by count)"
    assert 3 in counts[120:], "the rare clients were forgotten by time, with the cap not reached"
    assert _digest(steady.store) == _digest(restarted.store)
    steady.store.close()
    restarted.store.close()
