"""Retention in the pure state machine: trimming by count, bytes and log-time age, at apply, the same on
every node (and on one restarted in between); offsets never reused; views keep every live key."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from laminar import limits
from laminar.node._entry import encode_entry, encode_run, encode_time
from laminar.node.state_machine import StateMachine
from laminar.node.store import Keys, Store, TopicRecord
from laminar.v1 import laminar_pb2 as pb

ALICE = uuid.UUID(int=1).bytes
T0 = 1_800_000_000_000


class Machine:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = Store(str(path))
        self.machine = StateMachine(self.store)
        self.index = 0
        self.nonce = 0

    def apply(self, payload: bytes) -> list[tuple[int, str]]:
        self.index += 1
        applied = self.machine.apply(self.index, payload)
        assert applied is not None
        self.store.commit(applied.writes, applied.mark)
        return [(o.effect, o.reason) for o in applied.outcomes]

    def send(self, time_ms: int, *mutations: pb.Mutation) -> list[tuple[int, str]]:
        for mutation in mutations:
            self.nonce += 1
            mutation.nonce = self.nonce
        run = encode_run(ALICE, pb.MutationFrame(mutations=list(mutations)).SerializeToString())
        return self.apply(encode_entry([run], time_ms))

    def restart(self) -> None:
        self.store.close()
        self.store = Store(str(self.path))
        self.machine = StateMachine(self.store)

    def offsets(self, topic: str = "t") -> list[int]:
        return [pb.Event.FromString(e).consequence_offset for e in self.store.read_events(topic, 0, 100_000, 1 << 40)]

    def record(self, topic: str = "t") -> TopicRecord:
        data = self.store.get(Keys.topic(topic))
        assert data is not None
        return TopicRecord.decode(data)

    def stored_bytes(self, topic: str = "t") -> int:
        return sum(len(e) for e in self.store.read_events(topic, 0, 100_000, 1 << 40))


def create(topic: str = "t", **retention: int) -> pb.Mutation:
    return pb.Mutation(kind=pb.CREATE_TOPIC, topic=topic, retention=pb.Retention(**retention))


def configure(topic: str = "t", **retention: int) -> pb.Mutation:
    return pb.Mutation(kind=pb.CONFIGURE_TOPIC, topic=topic, retention=pb.Retention(**retention))


def put(key: bytes, value: bytes = b"v", topic: str = "t") -> pb.Mutation:
    return pb.Mutation(kind=pb.PUT, topic=topic, key=key, value=value)


def test_max_events_keeps_the_newest_and_never_reuses_offsets(tmp_path: Path) -> None:
    """Capped at 10 events: after 25 puts (one entry of 20, then 5 alone) offsets 16..26 are kept, the
    record says the first kept is 16, the next put gets 27, and the view still holds every live key."""
    sm = Machine(tmp_path / "a")
    sm.send(T0, create(max_events=10), *[put(b"k%d" % i) for i in range(20)])
    assert sm.offsets() == list(range(12, 22))  # the create and 10 puts trimmed inside the same entry
    for i in range(20, 25):
        sm.send(T0, put(b"k%d" % i))
    assert sm.offsets() == list(range(17, 27))
    assert sm.record().first_offset == 17 and sm.record().next_offset == 27
    assert sm.record().retained_bytes == sm.stored_bytes()
    sm.send(T0, put(b"k0", b"again"))
    assert sm.offsets()[-1] == 27
    keys = {key for key, _ in sm.store.scan(Keys.views_of("t"))}
    assert len(keys) == 25  # trimmed events' keys are still live in the view


def test_max_bytes_keeps_the_kept_bytes_under_the_limit(tmp_path: Path) -> None:
    """Capped at 2,000 bytes of events: after each entry the kept events fit, the record's byte count is
    exactly theirs, and only the oldest went."""
    sm = Machine(tmp_path / "a")
    sm.send(T0, create(max_bytes=2000))
    for i in range(30):
        sm.send(T0, *[put(b"k", b"x" * 90) for _ in range(i % 4 + 1)])
        assert sm.stored_bytes() <= 2000
        assert sm.record().retained_bytes == sm.stored_bytes()
    kept = sm.offsets()
    assert kept == list(range(kept[0], sm.record().next_offset)) and len(kept) >= 15


def test_max_age_trims_by_log_time_also_on_an_idle_topic(tmp_path: Path) -> None:
    """Capped at 10 s of log time: events older than that go once log time passes them, also when the only
    entries are time ticks; an event exactly 10 s old stays."""
    sm = Machine(tmp_path / "a")
    sm.send(T0, create(max_age_ms=10_000))
    sm.send(T0 + 1_000, put(b"a"))
    sm.send(T0 + 5_000, put(b"b"))
    sm.apply(encode_time(T0 + 11_000))  # the create (T0) is 11 s old; a (T0 + 1 s) exactly 10 s
    assert sm.offsets() == [2, 3]
    sm.apply(encode_time(T0 + 15_001))
    assert sm.offsets() == []
    assert sm.record().first_offset == 4 and sm.record().retained_bytes == 0
    sm.send(T0 + 15_002, put(b"c"))
    assert sm.offsets() == [4]


def test_configure_later_trims_over_several_entries_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic of 101 events configured to keep 5: with a walk budget of 40 events per entry, the
    configure trims 40 and the next entries (time ticks) the rest; bad settings and missing topics are
    ERROR effects."""
    monkeypatch.setattr(limits, "RETENTION_TRIM_EVENTS_PER_ENTRY_MAX", 40)
    sm = Machine(tmp_path / "a")
    sm.send(T0, create(), *[put(b"k%d" % i) for i in range(100)])
    assert sm.send(T0, configure(max_events=5)) == [(pb.VALID, "")]
    assert sm.record().first_offset == 41
    sm.apply(encode_time(T0 + 1))
    sm.apply(encode_time(T0 + 2))
    assert sm.offsets() == [97, 98, 99, 100, 101]
    assert sm.record().retained_bytes == sm.stored_bytes()
    [(effect, reason)] = sm.send(T0, configure("missing", max_events=5))
    assert effect == pb.ERROR and "does not exist" in reason
    [(effect, reason)] = sm.send(T0, configure(max_age_ms=limits.RETENTION_AGE_MS_MAX + 1))
    assert effect == pb.ERROR and "max_age_ms" in reason
    sm.send(T0, configure())  # no limits: keeps everything from now on
    sm.send(T0, *[put(b"x") for _ in range(10)])
    assert len(sm.offsets()) == 15


def test_nodes_trim_identically_a_restarted_one_included(tmp_path: Path) -> None:
    """Three machines fed the same entries (one restarted after every fourth entry) hold identical stores:
    retention decisions come from replicated state only. Destroy and re-create keep the stream's offsets."""
    entries: list[tuple[int, list[pb.Mutation]]] = [
        (T0, [create("a", max_events=7), create("b", max_bytes=700), create("c", max_age_ms=3_000)]),
    ]
    for i in range(40):
        topic = "abc"[i % 3]
        mutations = [put(b"k%d" % (i % 5), b"v" * (i % 7 * 20), topic) for _ in range(i % 6 + 1)]
        if i == 20:
            mutations += [pb.Mutation(kind=pb.DESTROY_TOPIC, topic="a"), create("a", max_events=3)]
        if i == 30:
            mutations.append(configure("b", max_events=2, max_age_ms=1_000))
        entries.append((T0 + i * 400, mutations))
    machines = [Machine(tmp_path / name) for name in "xyz"]
    for index, (time_ms, mutations) in enumerate(entries):
        for n, sm in enumerate(machines):
            sm.send(time_ms, *[pb.Mutation.FromString(m.SerializeToString()) for m in mutations])
            if n == 2 and index % 4 == 1:
                sm.restart()
    dumps = [list(sm.store.scan(b"")) for sm in machines]
    assert dumps[0] == dumps[1] == dumps[2]
    assert (
        len(machines[0].offsets("a")) == 3 and machines[0].offsets("a")[-1] == machines[0].record("a").next_offset - 1
    )
    for topic in "abc":
        assert machines[0].record(topic).retained_bytes == machines[0].stored_bytes(topic)
