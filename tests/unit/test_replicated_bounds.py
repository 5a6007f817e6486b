"""Nothing in the replicated state grows without bound (issue 15): dedupe records expire, destroyed topics cost no
memory and a bounded record on disk, live topics have a limit. The pure state machine over a real store."""

from __future__ import annotations

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

ADMIN = uuid.UUID(int=1).bytes
CYCLES = 38_000  # the create+destroy count
CYCLES_PER_ENTRY = 1000
# What one create+destroy cycle of a new name may leave in the store: the destroyed topic's record (its next
# offset: offsets never reset) and its two events (CREATE_TOPIC, DESTROY_TOPIC), keys and values, names included.
CYCLE_STORE_BYTES_MAX = 160


class Machine:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.store = Store(self.path)
        self.machine = StateMachine(self.store)
        self.index = 1
        self.nonces: dict[bytes, int] = {}

    def apply(self, *runs: tuple[bytes, list[pb.Mutation]], time_ms: int = 0) -> list[tuple[int, str]]:
        """Apply one entry of runs (client id, mutations numbered here), stamped with log time `time_ms` if not 0;
        (effect, reason) per outcome."""
        payload = pb.IntentionBatch(time_ms=time_ms).SerializeToString()
        for client_id, mutations in runs:
            for m in mutations:
                m.nonce = self.nonces[client_id] = self.nonces.get(client_id, 0) + 1
            payload += encode_run(client_id, pb.MutationFrame(mutations=mutations).SerializeToString())
        self.index += 1
        applied = self.machine.apply(self.index, payload)
        assert applied is not None
        self.store.commit(applied.writes, applied.mark)
        return [(o.effect, o.reason) for o in applied.outcomes for _ in range(o.count)]

    def restart(self) -> None:
        self.store.close()
        self.store = Store(self.path)
        self.machine = StateMachine(self.store)

    def keys(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.store.scan(prefix)

    def count(self, prefix: bytes) -> int:
        return sum(1 for _ in self.keys(prefix))


@pytest.fixture
def sm(tmp_path: Path) -> Iterator[Machine]:
    machine = Machine(tmp_path / "db")
    yield machine
    machine.store.close()


def create(topic: str) -> pb.Mutation:
    return pb.Mutation(kind=pb.CREATE_TOPIC, topic=topic)


def destroy(topic: str) -> pb.Mutation:
    return pb.Mutation(kind=pb.DESTROY_TOPIC, topic=topic)


def put(topic: str, key: bytes = b"k") -> pb.Mutation:
    return pb.Mutation(kind=pb.PUT, topic=topic, key=key, value=b"v")


def client(n: int) -> bytes:
    return uuid.UUID(int=1000 + n).bytes


def test_an_idle_client_is_forgotten_after_the_expiry_window(sm: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client not heard from for DEDUPE_CLIENT_EXPIRY_INTENTIONS loses its record, results and expiry key; an
    active one keeps them; a forgotten client reads as unknown, which the session's Hello check relies on."""
    monkeypatch.setattr(limits, "DEDUPE_CLIENT_EXPIRY_INTENTIONS", 100)
    sm.apply((ADMIN, [create("t")]))
    idle, busy = client(1), client(2)
    sm.apply((idle, [put("t")]))
    for _ in range(150):
        sm.apply((busy, [put("t")]))
    for prefix in (Keys.client(idle), Keys.results_of(idle)):
        assert sm.count(prefix) == 0, f"{prefix!r} outlived the expiry window"
    assert [k for k, _ in sm.keys(Keys.EXPIRY_PREFIX) if k.endswith(idle)] == []
    assert sm.store.get(Keys.client(busy)) is not None, "an active client is kept"
    assert sm.count(Keys.CLIENT_PREFIX) == sm.machine.client_count == 1  # busy only (ADMIN expired too)


def test_a_client_idle_for_the_expiry_time_is_forgotten(sm: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client not heard from for DEDUPE_CLIENT_EXPIRY_MS of log time is forgotten, however few offsets passed; one
    heard from within it is kept."""
    monkeypatch.setattr(limits, "DEDUPE_CLIENT_EXPIRY_MS", 1000)
    sm.apply((ADMIN, [create("t")]), time_ms=1000)
    gone, kept = client(1), client(2)
    sm.apply((gone, [put("t")]), time_ms=1500)
    sm.apply((kept, [put("t")]), time_ms=2400)
    sm.apply((kept, [put("t")]), time_ms=2600)  # gone: 1100 ms idle; ADMIN: 1600 ms
    assert sm.store.get(Keys.client(gone)) is None and sm.count(Keys.results_of(gone)) == 0
    assert sm.store.get(Keys.client(ADMIN)) is None
    assert sm.store.get(Keys.client(kept)) is not None
    assert sm.machine.client_count == 1


def test_a_flood_of_client_ids_keeps_at_most_the_cap_and_the_most_recent(
    sm: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past DEDUPE_CLIENTS_MAX clients with a record, the least recently heard from are forgotten first, in the same
    entry that added the new ones; the count survives a restart (it is recounted from the store)."""
    monkeypatch.setattr(limits, "DEDUPE_CLIENTS_MAX", 50)
    sm.apply((ADMIN, [create("t")]))
    for first in range(0, 400, 40):  # entries of 40 new one-put clients each
        sm.apply(*[(client(n), [put("t")]) for n in range(first, first + 40)])
        assert sm.machine.client_count <= 50
    assert sm.count(Keys.CLIENT_PREFIX) == sm.count(Keys.EXPIRY_PREFIX) == 50
    kept = {k[len(Keys.CLIENT_PREFIX) :] for k, _ in sm.keys(Keys.CLIENT_PREFIX)}
    assert kept == {client(n) for n in range(350, 400)}, "the 50 most recent clients are the ones kept"
    assert {k[len(Keys.RESULT_PREFIX) : len(Keys.RESULT_PREFIX) + 16] for k, _ in sm.keys(Keys.RESULT_PREFIX)} == kept
    sm.restart()
    assert sm.machine.client_count == 50


def test_a_forgotten_client_that_resends_is_applied_as_new(sm: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """What expiry means for a client (docs/operations.md): once forgotten, a resend of an old nonce is no longer
    recognised and would apply again. The session refuses such a client's Hello (next_nonce > 1 for an unknown
    client) before it can resend; this pins the state machine's half: the record really is gone."""
    monkeypatch.setattr(limits, "DEDUPE_CLIENTS_MAX", 1)
    sm.apply((ADMIN, [create("t")]))
    old = client(1)
    assert sm.apply((old, [put("t", b"once")])) == [(pb.VALID, "")]
    sm.apply((client(2), [put("t")]))
    assert sm.store.get(Keys.client(old)) is None
    sm.nonces[old] = 0  # the same nonce 1 again, as a resend
    assert sm.apply((old, [put("t", b"once")])) == [(pb.VALID, "")]


def test_destroyed_topics_cost_no_memory_and_a_bounded_record_on_disk(sm: Machine) -> None:
    """38,000 create+destroy cycles of distinct names: no per-topic object stays in memory, and each cycle leaves at
    most CYCLE_STORE_BYTES_MAX in the store (its next offset and its two events); the cycles stay cheap: no RocksDB
    range tombstone per destroy (what made later reads slow down, see test_churn_cost.py), only the dedupe window's
    one per DEDUPE_RESULTS_TRIM_STEP_NONCES of the client's intentions. Counted, not timed: the time is printed."""
    sm.apply((ADMIN, [create("keep")]))

    def store_bytes() -> int:
        return sum(len(k) + len(v) for prefix in (b"t/", b"e/", b"v/", b"s/") for k, v in sm.keys(prefix))

    before = store_bytes()
    started = time.monotonic()
    for first in range(0, CYCLES, CYCLES_PER_ENTRY):
        names = [f"churn-{n}" for n in range(first, first + CYCLES_PER_ENTRY)]
        effects = sm.apply((ADMIN, [m for name in names for m in (create(name), destroy(name))]))
        assert {e for e, _ in effects} == {pb.VALID}
    elapsed = time.monotonic() - started
    assert sm.machine.live_topics() == ["keep"]
    assert len(sm.machine._topics) == 1, "a destroyed topic keeps no object in memory"
    grown = store_bytes() - before
    print(f"store growth: {grown / CYCLES:.0f} B per cycle")
    assert grown <= CYCLES * CYCLE_STORE_BYTES_MAX, f"{grown / CYCLES:.0f} B per cycle"
    print(f"{CYCLES} cycles took {elapsed:.1f} s")
    range_deletes_max = 2 * CYCLES // limits.DEDUPE_RESULTS_TRIM_STEP_NONCES + 1
    assert sm.store.range_deletes_committed <= range_deletes_max, sm.store.range_deletes_committed
    sm.restart()
    assert len(sm.machine._topics) == 1, "a restart loads live topics only"


def test_a_recreated_topic_continues_its_offsets_from_the_store(sm: Machine) -> None:
    """Offsets never reset: a topic destroyed (and so out of memory) and created again, before or after a restart,
    continues from its old next offset; also when destroy and create share one entry."""
    sm.apply((ADMIN, [create("t"), put("t"), put("t")]))  # offsets 1..3
    sm.apply((ADMIN, [destroy("t")]))  # 4
    sm.restart()
    sm.apply((ADMIN, [create("t")]))  # 5
    assert sm.machine.topic_offset("t") == 5
    sm.apply((ADMIN, [destroy("t"), create("t"), put("t")]))  # 6, 7, 8
    assert sm.machine.topic_offset("t") == 8
    offsets = [pb.Event.FromString(v).consequence_offset for _, v in sm.keys(Keys.events_of("t"))]
    assert offsets == list(range(1, 9))


def test_the_live_topic_limit_refuses_a_create_until_one_is_destroyed(
    sm: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOPICS_LIVE_MAX live topics: the next create is an ERROR that says so; destroying one makes room; destroyed
    topics do not count."""
    monkeypatch.setattr(limits, "TOPICS_LIVE_MAX", 3)
    assert sm.apply((ADMIN, [create("gone"), destroy("gone")])) == [(pb.VALID, "")] * 2
    assert sm.apply((ADMIN, [create(f"t{n}") for n in range(3)])) == [(pb.VALID, "")] * 3
    [(effect, reason)] = sm.apply((ADMIN, [create("one-too-many")]))
    assert effect == pb.ERROR and "too many topics" in reason and "3" in reason
    sm.apply((ADMIN, [destroy("t0")]))
    assert sm.apply((ADMIN, [create("one-too-many")])) == [(pb.VALID, "")]


def test_no_event_is_read_past_the_largest_offset(sm: Machine) -> None:
    """A Listen from offset 2^64-1 reads nothing (it used to overflow the key encoding: UNKNOWN to the client)."""
    sm.apply((ADMIN, [create("t"), put("t")]))
    assert sm.store.read_events("t", 2**64 - 1, 10, 2**20) == []
    assert len(sm.store.read_events("t", 0, 10, 2**20)) == 2


def test_topic_names_that_ever_existed_are_bounded_and_a_destroyed_name_can_come_back(
    sm: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOPIC_NAMES_MAX bounds the records destroyed topics leave (each keeps its next offset: offsets never reset): past
    it a create of a new name is an ERROR that says why, a destroyed name is re-created (its offsets continue), and the
    count survives a restart (it is read back from the store)."""
    monkeypatch.setattr(limits, "TOPIC_NAMES_MAX", 3)
    assert sm.apply((ADMIN, [create("a"), destroy("a"), create("b"), create("c")])) == [(pb.VALID, "")] * 4
    [(effect, reason)] = sm.apply((ADMIN, [create("d")]))
    assert effect == pb.ERROR and "too many topic names" in reason and "re-create" in reason
    assert sm.apply((ADMIN, [create("a")])) == [(pb.VALID, "")]
    assert sm.machine.topic_offset("a") == 3  # CREATE, DESTROY, CREATE: the stream went on
    sm.restart()
    assert sm.apply((ADMIN, [create("d")]))[0][0] == pb.ERROR
    assert sm.count(Keys.TOPIC_PREFIX) == 3
