"""The pure state machine: offsets, effects, dedupe, re-create, determinism. No processes."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laminar import limits
from laminar.node._entry import encode_run
from laminar.node.sandbox import state_cost
from laminar.node.state_machine import StateMachine
from laminar.node.store import Keys, Store
from laminar.v1 import laminar_pb2 as pb

ALICE = uuid.UUID(int=1).bytes
BOB = uuid.UUID(int=2).bytes


def entry(*runs: tuple[bytes, list[pb.Mutation]]) -> bytes:
    return b"".join(encode_run(cid, pb.MutationFrame(mutations=ms).SerializeToString()) for cid, ms in runs)


def m(nonce: int, kind: int, topic: str, key: bytes = b"", value: bytes = b"") -> pb.Mutation:
    return pb.Mutation(nonce=nonce, kind=kind, topic=topic, key=key, value=value)


class Harness:
    def __init__(self, path: Path) -> None:
        self.store = Store(str(path))
        self.machine = StateMachine(self.store)
        self.index = 1

    def apply(self, payload: bytes) -> list[tuple[int, int, int, str]]:
        self.index += 1
        applied = self.machine.apply(self.index, payload)
        assert applied is not None
        self.store.commit(applied.writes, applied.mark)
        # An Outcome covers a run of nonces: spread it back out, one tuple per nonce.
        return [
            (o.nonce + i, o.effect, o.intention_offset + i if o.intention_offset else 0, o.reason)
            for o in applied.outcomes
            for i in range(o.count)
        ]

    def events(self, topic: str) -> list[pb.Event]:
        return [pb.Event.FromString(e) for e in self.store.read_events(topic, 0, 10_000, 1 << 30)]

    def digest(self) -> str:
        h = hashlib.sha256()
        for key, value in self.store.scan(b""):
            h.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
        return h.hexdigest()


@pytest.fixture
def sm(tmp_path: Path) -> Harness:
    return Harness(tmp_path / "a")


def test_offsets_and_effects(sm: Harness) -> None:
    """Intention offsets are global and gapless; effects and reasons follow the topic's life."""
    out = sm.apply(
        entry(
            (
                ALICE,
                [
                    m(1, pb.CREATE_TOPIC, "t"),
                    m(2, pb.CREATE_TOPIC, "t"),
                    m(3, pb.PUT, "t", b"k", b"v"),
                    m(4, pb.PUT, "missing", b"k", b"v"),
                    m(5, pb.DESTROY_TOPIC, "missing"),
                ],
            )
        )
    )
    assert [(n, e, o) for n, e, o, _ in out] == [
        (1, pb.VALID, 1),
        (2, pb.INVALID, 2),
        (3, pb.VALID, 3),
        (4, pb.ERROR, 4),
        (5, pb.INVALID, 5),
    ]
    assert "already exists" in out[1][3] and "does not exist" in out[3][3] and "does not exist" in out[4][3]
    assert [(e.kind, e.consequence_offset, e.intention_offset) for e in sm.events("t")] == [
        (pb.CREATE_TOPIC, 1, 1),
        (pb.PUT, 2, 3),
    ]
    assert sm.machine.applied_mark.intention_offset == 5


def test_consequence_offsets_never_reset_on_recreate(sm: Harness) -> None:
    """Destroy and re-create continue the topic's consequence offsets."""
    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t"), m(2, pb.PUT, "t", b"a", b"1"), m(3, pb.DESTROY_TOPIC, "t")])))
    sm.apply(entry((ALICE, [m(4, pb.CREATE_TOPIC, "t"), m(5, pb.DELETE, "t", b"a")])))
    kinds = [(e.kind, e.consequence_offset) for e in sm.events("t")]
    assert kinds == [(pb.CREATE_TOPIC, 1), (pb.PUT, 2), (pb.DESTROY_TOPIC, 3), (pb.CREATE_TOPIC, 4), (pb.DELETE, 5)]
    assert sm.machine.live_topics() == ["t"]


def test_duplicates_take_effect_once_and_get_the_original_outcome(sm: Harness) -> None:
    """A resent nonce, in the same entry or a later one, is not applied again and reports its outcome."""
    first = entry((ALICE, [m(1, pb.CREATE_TOPIC, "t"), m(2, pb.PUT, "t", b"k", b"v")]))
    out1 = sm.apply(first + entry((ALICE, [m(2, pb.PUT, "t", b"k", b"v")])))
    assert out1 == [(1, pb.VALID, 1, ""), (2, pb.VALID, 2, ""), (2, pb.VALID, 2, "")]
    out2 = sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t"), m(2, pb.PUT, "t", b"k", b"v"), m(3, pb.PUT, "t")])))
    assert out2 == [(1, pb.VALID, 1, ""), (2, pb.VALID, 2, ""), (3, pb.VALID, 3, "")]
    assert len(sm.events("t")) == 3


def test_dedupe_survives_restart_and_is_per_client(tmp_path: Path) -> None:
    """The dedupe table is replicated state: a new machine on the same store still recognises resends."""
    a = Harness(tmp_path / "a")
    a.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t"), m(2, pb.PUT, "t", b"k", b"v")])))
    a.store.close()
    b = Harness(tmp_path / "a")
    b.index = 2
    out = b.apply(entry((ALICE, [m(2, pb.PUT, "t", b"k", b"v")]), (BOB, [m(2, pb.PUT, "t", b"k", b"w")])))
    assert out == [(2, pb.VALID, 2, ""), (2, pb.VALID, 3, "")]


def test_out_of_order_nonce_is_not_applied(sm: Harness) -> None:
    """An entry that skips nonces of a known client (a stale session's) applies nothing for it."""
    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t")])))
    assert sm.apply(entry((ALICE, [m(5, pb.PUT, "t", b"k", b"v")]))) == []
    assert sm.apply(entry((ALICE, [m(2, pb.PUT, "t", b"k", b"v")]))) == [(2, pb.VALID, 2, "")]


def test_replayed_entries_are_skipped(sm: Harness) -> None:
    """An entry at or below the applied index (replay after restart) changes nothing."""
    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t")])))
    before = sm.digest()
    assert sm.machine.apply(sm.index, entry((ALICE, [m(2, pb.PUT, "t", b"k", b"v")]))) is None
    assert sm.digest() == before


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xff\xff", b"\x0a\x05abc", entry((b"short", [m(1, pb.CREATE_TOPIC, "t")])), b""],
)
def test_garbage_entries_never_raise(sm: Harness, payload: bytes) -> None:
    """Apply never raises, whatever the entry holds."""
    assert sm.apply(payload) == []


def test_invalid_names_and_kinds_are_errors(sm: Harness) -> None:
    """Rules the leader checks are checked again at apply, deterministically."""
    out = sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "bad name"), m(2, 99, "t")])))
    assert [e for _, e, _, _ in out] == [pb.ERROR, pb.ERROR]


def test_result_window_is_bounded(sm: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outcomes kept for resends are bounded per client; older resends get a clear ERROR."""
    monkeypatch.setattr(limits, "DEDUPE_RESULTS_PER_CLIENT_MAX", 4)
    monkeypatch.setattr(limits, "BATCH_INTENTIONS_MAX", 2)
    monkeypatch.setattr(limits, "DEDUPE_RESULTS_TRIM_STEP_NONCES", 1)  # trimmed as the window moves (test_churn_cost)
    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t")])))
    for nonce in range(2, 20):
        sm.apply(entry((ALICE, [m(nonce, pb.PUT, "t", b"k", b"v")])))
    results = list(sm.store.scan(Keys.results_of(ALICE)))
    assert len(results) <= 4 + 2 + 1
    old = sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t")])))
    assert old[0][1] == pb.ERROR and "no longer kept" in old[0][3]


kinds = st.sampled_from([pb.CREATE_TOPIC, pb.DESTROY_TOPIC, pb.PUT, pb.DELETE])
mutations = st.lists(st.tuples(kinds, st.sampled_from(["a", "b"]), st.binary(max_size=4)), max_size=30)


@settings(max_examples=25, deadline=None)
@given(batches=st.lists(mutations, min_size=1, max_size=6))
def test_same_entries_give_byte_identical_stores(tmp_path_factory: pytest.TempPathFactory, batches) -> None:  # type: ignore[no-untyped-def]
    """Two machines fed the same entries end with byte-identical stores and gapless offsets."""
    one, two = (Harness(tmp_path_factory.mktemp("sm")) for _ in range(2))
    nonce = 0
    for batch in batches:
        ms = []
        for kind, topic, key in batch:
            nonce += 1
            ms.append(m(nonce, kind, topic, key, key))
        payload = entry((ALICE, ms))
        assert one.apply(payload) == two.apply(payload)
    assert one.digest() == two.digest()
    assert one.machine.applied_mark.intention_offset == nonce
    for topic in ("a", "b"):
        offsets = [e.consequence_offset for e in one.events(topic)]
        assert offsets == list(range(1, len(offsets) + 1))


def test_a_mass_resend_decodes_each_stored_result_run_once(sm: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a fail-over a client resends thousands of nonces: each stored run is decoded once,
    not once per nonce (that was quadratic and stalled the apply thread for minutes)."""
    from laminar.node.store import ResultRun

    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t")])))
    for first in range(2, 3002, 1000):
        sm.apply(entry((ALICE, [m(n, pb.PUT, "t", b"k", b"v") for n in range(first, first + 1000)])))
    decoded = []
    original = ResultRun.decode
    monkeypatch.setattr(ResultRun, "decode", staticmethod(lambda *a: decoded.append(1) or original(*a)))
    out = sm.apply(entry((ALICE, [m(n, pb.PUT, "t", b"k", b"v") for n in range(2, 3002)])))
    assert [o[2] for o in out] == list(range(2, 3002)), "each resend reports its original offset"
    assert len(decoded) == 3


def view(sm: Harness, topic: str) -> dict[bytes, tuple[bytes, int]]:
    _, items = sm.store.view_snapshot(topic)
    return {key: (record.value, record.consequence_offset) for key, record in items}


def test_view_holds_current_value_per_live_key(sm: Harness) -> None:
    """PUT sets a key's current value (with the offset that set it), DELETE removes it, in the same batch."""
    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t"), m(2, pb.PUT, "t", b"a", b"1"), m(3, pb.PUT, "t", b"b", b"2")])))
    sm.apply(entry((ALICE, [m(4, pb.PUT, "t", b"a", b"3"), m(5, pb.DELETE, "t", b"b"), m(6, pb.DELETE, "t", b"zz")])))
    assert view(sm, "t") == {b"a": (b"3", 4)}
    topic, record, mark = sm.store.read_view("t", b"a")
    assert topic is not None and topic.live and record is not None
    assert (record.value, record.consequence_offset, record.intention_offset) == (b"3", 4, 4)
    assert mark.intention_offset == 6
    assert sm.store.read_view("t", b"b")[1] is None
    assert sm.store.view_snapshot("t")[0] == 6  # every event through consequence offset 6


def test_view_is_cleared_on_destroy_and_starts_empty_on_recreate(sm: Harness) -> None:
    """DESTROY_TOPIC range-deletes the topic's keys (and only its keys); a re-created topic starts empty."""
    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t"), m(2, pb.CREATE_TOPIC, "t2"), m(3, pb.PUT, "t", b"a", b"1")])))
    sm.apply(entry((ALICE, [m(4, pb.PUT, "t2", b"a", b"x"), m(5, pb.DESTROY_TOPIC, "t"), m(6, pb.CREATE_TOPIC, "t")])))
    assert view(sm, "t") == {}
    assert view(sm, "t2") == {b"a": (b"x", 2)}
    sm.apply(entry((ALICE, [m(7, pb.PUT, "t", b"b", b"2"), m(8, pb.DESTROY_TOPIC, "t")])))
    assert view(sm, "t") == {}
    assert sm.store.read_view("t", b"b")[0] is not None and not sm.store.read_view("t", b"b")[0].live  # type: ignore[union-attr]


def test_view_of_a_put_then_destroy_in_one_entry_is_empty(sm: Harness) -> None:
    """Writes in one entry keep their order: a PUT before a DESTROY in the same batch leaves nothing."""
    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t"), m(2, pb.PUT, "t", b"a", b"1"), m(3, pb.DESTROY_TOPIC, "t")])))
    assert view(sm, "t") == {}


def test_a_frame_of_valid_puts_is_one_outcome_and_one_small_result_record(sm: Harness) -> None:
    """Outcomes and kept results are run-length encoded: 1,000 successful puts are one Outcome and
    one result segment (plus the 4-byte contents digest of each nonce, which tells a resend with
    other contents apart); an ERROR in the middle splits them, and resends still get exact outcomes."""
    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t")])))
    puts = [m(n, pb.PUT, "t", b"k", b"v") for n in range(2, 1002)]
    sm.index += 1
    applied = sm.machine.apply(sm.index, entry((ALICE, puts)))
    assert applied is not None
    sm.store.commit(applied.writes, applied.mark)
    assert [(o.nonce, o.count, o.intention_offset) for o in applied.outcomes] == [(2, 1000, 2)]
    [(_, stored)] = [kv for kv in sm.store.scan(Keys.results_of(ALICE)) if kv[0][-8:] == (2).to_bytes(8, "big")]
    assert len(stored) < 32 + 1 + 4 * 1000
    mixed = [m(1002, pb.PUT, "t", b"k", b"v"), m(1003, pb.PUT, "missing", b"k", b"v"), m(1004, pb.PUT, "t", b"k")]
    out = sm.apply(entry((ALICE, mixed)))
    assert [e for _, e, _, _ in out] == [pb.VALID, pb.ERROR, pb.VALID]
    resent = sm.apply(entry((ALICE, [*puts[-2:], *mixed])))
    assert resent == [(1000, pb.VALID, 1000, ""), (1001, pb.VALID, 1001, ""), *out]


# Topic "p" of the model test runs this program: it refuses the value b"bad" and passes everything else on.
PICKY = """
def on_put(ctx, key, value):
    if value == b"bad":
        ctx.reject("refused: bad")
    ctx.put(key, value)

def on_delete(ctx, key):
    ctx.delete(key)
"""


def _contents(mu: pb.Mutation) -> tuple[object, ...]:
    """What a mutation asks for: its kind and the fields that kind uses (docs/protocol.md)."""
    if mu.kind == pb.PUT:
        return (mu.kind, mu.topic, mu.key, mu.value)
    if mu.kind == pb.DELETE:
        return (mu.kind, mu.topic, mu.key)
    if mu.kind == pb.CREATE_TOPIC:
        return (mu.kind, mu.topic, mu.program, mu.args)
    return (mu.kind, mu.topic)


class Model:
    """A deliberately naive model of apply: one step per nonce, no batching. Topics "a" and "b" are
    plain; "p" has the PICKY program."""

    def __init__(self) -> None:
        self.live: dict[str, bool] = {}
        self.next_offset: dict[str, int] = {}
        self.offset = 0
        self.nonce_max: dict[bytes, int] = {}
        self.results: dict[tuple[bytes, int], tuple[int, int]] = {}
        self.contents: dict[tuple[bytes, int], tuple[object, ...]] = {}
        self.events: dict[str, list[tuple[int, int, int]]] = {}
        self.views: dict[str, dict[bytes, tuple[bytes, int]]] = {}  # topic -> key -> (value, consequence offset)

    def apply(self, client: bytes, ms: list[pb.Mutation]) -> list[tuple[int, int, int]]:
        out = []
        for mu in ms:
            known = self.nonce_max.get(client)
            if known is not None and mu.nonce <= known:
                # A nonce below the client's first one was never applied: nothing is kept for it. A
                # resend with other contents than the original's is an ERROR and applies nothing.
                original = self.contents.get((client, mu.nonce))
                if original is not None and original != _contents(mu):
                    out.append((mu.nonce, pb.ERROR, 0))
                    continue
                out.append((mu.nonce, *self.results.get((client, mu.nonce), (pb.ERROR, 0))))
                continue
            if known is not None and mu.nonce > known + 1:
                continue
            self.offset += 1
            effect = self._effect(mu)
            self.results[(client, mu.nonce)] = (effect, self.offset)
            self.contents[(client, mu.nonce)] = _contents(mu)
            self.nonce_max[client] = mu.nonce
            out.append((mu.nonce, effect, self.offset))
        return out

    def _effect(self, mu: pb.Mutation) -> int:
        live = self.live.get(mu.topic, False)
        if (mu.kind == pb.CREATE_TOPIC and live) or (mu.kind == pb.DESTROY_TOPIC and not live):
            return pb.INVALID
        if mu.kind in (pb.PUT, pb.DELETE) and not live:
            return pb.ERROR
        if mu.topic == "p" and mu.kind == pb.PUT and mu.value == b"bad":
            return pb.ERROR
        consequence = self.next_offset.get(mu.topic, 1)
        self.next_offset[mu.topic] = consequence + 1
        self.events.setdefault(mu.topic, []).append((mu.kind, consequence, self.offset))
        self.live[mu.topic] = mu.kind != pb.DESTROY_TOPIC
        views = self.views.setdefault(mu.topic, {})
        if mu.kind == pb.PUT:
            views[mu.key] = (mu.value, consequence)
        elif mu.kind == pb.DELETE:
            views.pop(mu.key, None)
        else:
            views.clear()
        return pb.VALID


steps = st.lists(
    st.tuples(
        st.sampled_from([ALICE, BOB]),
        st.lists(
            st.tuples(
                st.sampled_from([pb.CREATE_TOPIC, pb.DESTROY_TOPIC, pb.PUT, pb.PUT, pb.DELETE]),
                st.sampled_from(["a", "b", "p"]),
                st.sampled_from([b"k", b"j"]),
                st.sampled_from([b"v", b"w", b"bad"]),
            ),
            min_size=1,
            max_size=12,
        ),
        st.integers(min_value=-3, max_value=1),  # where the frame starts relative to the next nonce
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=60, deadline=None)
@given(script=steps, split=st.integers(min_value=1, max_value=4))
def test_outcomes_and_events_match_a_naive_model(tmp_path_factory: pytest.TempPathFactory, script, split) -> None:  # type: ignore[no-untyped-def]
    """Batched apply (streaks, run-length outcomes and results) gives, per nonce, exactly the outcome
    and events of a one-step-per-nonce model, and the same views after every entry, including resends,
    stale frames, several clients and a program that refuses some writes in the middle of a streak."""
    sm, model = Harness(tmp_path_factory.mktemp("sm")), Model()
    next_nonce = {ALICE: 1, BOB: 1}
    runs = []
    for client, kinds, shift in script:
        first = max(1, next_nonce[client] + shift)
        ms = [m(first + i, kind, topic, key, value) for i, (kind, topic, key, value) in enumerate(kinds)]
        for mu in ms:
            if mu.topic == "p" and mu.kind == pb.CREATE_TOPIC:
                mu.program, mu.value = PICKY, b""
        next_nonce[client] = max(next_nonce[client], first + len(ms))
        runs.append((client, ms))
    for i in range(0, len(runs), split):
        group = runs[i : i + split]
        expected = [(n, e, o) for client, ms in group for n, e, o in model.apply(client, ms)]
        assert [(n, e, o) for n, e, o, _ in sm.apply(entry(*group))] == expected
        for topic, views in model.views.items():
            assert view(sm, topic) == views
    for topic, events in model.events.items():
        assert [(e.kind, e.consequence_offset, e.intention_offset) for e in sm.events(topic)] == events


# Emits four 1 MB values per put: just under PROGRAM_EMITTED_BYTES_MAX for one call.
FLOOD = (
    "def on_put(ctx, key, value):\n"
    "    v = b'x' * 1000000\n"
    "    for k in (b'a', b'b', b'c', b'd'):\n"
    "        ctx.put(k, v)\n"
)


def test_program_events_of_one_entry_are_bounded(sm: Harness) -> None:
    """Past PROGRAM_ENTRY_EMITTED_BYTES_MAX in one entry, program calls end ERROR (state and events untouched);
    the next entry has a budget of its own."""
    per_call = 4 * (1 + 1_000_000 + limits.PROGRAM_EVENT_OVERHEAD_BYTES)
    fit = limits.PROGRAM_ENTRY_EMITTED_BYTES_MAX // per_call
    create = pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="flood", program=FLOOD)
    sm.apply(entry((ALICE, [create])))
    puts = [m(2 + i, pb.PUT, "flood", b"k", b"v") for i in range(fit + 4)]
    out = sm.apply(entry((ALICE, puts)))
    effects = [e for _, e, _, _ in out]
    assert effects == [pb.VALID] * fit + [pb.ERROR] * 4
    assert all("entry emitted-bytes budget exhausted" in reason for _, _, _, reason in out[fit:])
    assert len(sm.events("flood")) == 1 + 4 * fit  # the create, then only the calls that fit
    out = sm.apply(entry((ALICE, [m(2 + len(puts), pb.PUT, "flood", b"k", b"v")])))
    assert [e for _, e, _, _ in out] == [pb.VALID]


# Grows its topic's state to ~1 MB on a put (and on create, with args): the most one state may hold.
GROW = (
    "def on_create(ctx):\n    if ctx.args:\n        ctx.state['x'] = 'y' * 1000000\n\n"
    "def on_put(ctx, key, value):\n    ctx.state['x'] = 'y' * 1000000\n"
)
GROW_TOPICS = 40  # each at ~3 MB of state cost: about twice what one entry may change


def _grow(nonce: int, topic: str, args: bytes = b"") -> pb.Mutation:
    return pb.Mutation(nonce=nonce, kind=pb.CREATE_TOPIC, topic=topic, program=GROW, args=args)


def _state_bytes_written(sm: Harness, batch: list[pb.Mutation]) -> tuple[list[tuple[int, str]], int]:
    """Apply `batch` as one entry: (effect, reason) per mutation, and the bytes of program state it wrote."""
    sm.index += 1
    applied = sm.machine.apply(sm.index, entry((ALICE, batch)))
    assert applied is not None
    written = 0
    for mutation in batch:
        decided, value = applied.writes.lookup(Keys.state(mutation.topic))
        written += len(value) if decided and value else 0
    sm.store.commit(applied.writes, applied.mark)
    return [(o.effect, o.reason) for o in applied.outcomes for _ in range(o.count)], written


def test_program_state_of_one_entry_is_bounded(sm: Harness) -> None:
    """Past PROGRAM_ENTRY_STATE_BYTES_MAX of changed state in one entry (creates or puts that each grow a topic's
    state to ~1 MB), program calls end ERROR and leave their topic as it was; the entry writes no more than that;
    the next entry has a budget of its own."""
    one = sm.apply(entry((BOB, [_grow(1, "one", b"1")])))
    assert [e for _, e, _, _ in one] == [pb.VALID]
    grown = sm.store.get(Keys.state("one"))
    assert grown is not None and len(grown) > 1_000_000
    fit = limits.PROGRAM_ENTRY_STATE_BYTES_MAX // state_cost(len(grown))
    assert 0 < fit < GROW_TOPICS
    creates = [_grow(i + 1, f"c{i}", b"1") for i in range(GROW_TOPICS)]
    outcomes, written = _state_bytes_written(sm, creates)
    assert [e for e, _ in outcomes] == [pb.VALID] * fit + [pb.ERROR] * (GROW_TOPICS - fit)
    assert all("entry state budget exhausted" in reason for _, reason in outcomes[fit:])
    assert written <= limits.PROGRAM_ENTRY_STATE_BYTES_MAX and f"c{fit}" not in sm.machine.live_topics()
    # Puts to topics that exist (created small, in one entry), each growing its state.
    sm.apply(entry((ALICE, [_grow(GROW_TOPICS + 1 + i, f"p{i}") for i in range(GROW_TOPICS)])))
    small = sm.store.get(Keys.state(f"p{fit}"))
    puts = [m(2 * GROW_TOPICS + 1 + i, pb.PUT, f"p{i}", b"k", b"v") for i in range(GROW_TOPICS)]
    outcomes, written = _state_bytes_written(sm, puts)
    assert [e for e, _ in outcomes] == [pb.VALID] * fit + [pb.ERROR] * (GROW_TOPICS - fit)
    assert all("entry state budget exhausted" in reason for _, reason in outcomes[fit:])
    assert written <= limits.PROGRAM_ENTRY_STATE_BYTES_MAX
    assert sm.store.get(Keys.state(f"p{fit}")) == small  # the failed call's topic kept its state
    outcomes, _ = _state_bytes_written(sm, [m(3 * GROW_TOPICS + 1, pb.PUT, f"p{fit}", b"k", b"v")])
    assert [e for e, _ in outcomes] == [pb.VALID]


def test_a_resend_with_other_contents_is_an_error_and_applies_nothing(sm: Harness) -> None:
    """A resent nonce whose mutation differs from the one applied under it (another value, key, topic
    or kind) gets ERROR with a reason, offset 0, and a conflict mark; the same contents get the
    original outcome. Works for nonces applied in the same entry and in earlier ones."""
    sm.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t"), m(2, pb.PUT, "t", b"k", b"v"), m(3, pb.DELETE, "t", b"k")])))
    events_before = len(sm.events("t"))
    resent = [m(2, pb.PUT, "t", b"k", b"other"), m(3, pb.DELETE, "t", b"k"), m(1, pb.CREATE_TOPIC, "u")]
    sm.index += 1
    applied = sm.machine.apply(sm.index, entry((ALICE, resent)))
    assert applied is not None
    sm.store.commit(applied.writes, applied.mark)
    [two, three, one] = applied.outcomes
    assert (two.nonce, two.effect, two.intention_offset, two.conflict) == (2, pb.ERROR, 0, True)
    assert "other contents" in two.reason and "intention offset 2" in two.reason
    assert (three.nonce, three.effect, three.intention_offset, three.conflict) == (3, pb.VALID, 3, False)
    assert (one.nonce, one.effect, one.conflict) == (1, pb.ERROR, True)
    assert len(sm.events("t")) == events_before and "u" not in sm.machine.live_topics()
    # Within one entry: nonce 4 applied, then resent with another key in the same entry.
    sm.index += 1
    applied = sm.machine.apply(
        sm.index, entry((ALICE, [m(4, pb.PUT, "t", b"k", b"v")]), (ALICE, [m(4, pb.PUT, "t", b"j", b"v")]))
    )
    assert applied is not None
    assert [(o.nonce, o.effect, o.conflict) for o in applied.outcomes] == [(4, pb.VALID, False), (4, pb.ERROR, True)]


def test_a_key_value_split_is_part_of_the_contents_digest() -> None:
    """key b"ab" + value b"c" and key b"a" + value b"bc" are different mutations, with different digests,
    and so are create "a" and destroy "b"; the hot path's digest of a write is contents_digest's."""
    from laminar.node.state_machine._machine import _digest_seed, _write_digest, contents_digest

    one = pb.Mutation(nonce=1, kind=pb.PUT, topic="t", key=b"ab", value=b"c")
    two = pb.Mutation(nonce=1, kind=pb.PUT, topic="t", key=b"a", value=b"bc")
    assert contents_digest(one) != contents_digest(two)
    assert contents_digest(one) == _write_digest(_digest_seed(pb.PUT, "t"), b"ab", b"c")
    delete = pb.Mutation(nonce=1, kind=pb.DELETE, topic="t", key=b"ab")
    assert contents_digest(delete) not in (contents_digest(one), contents_digest(two))
    # Kinds and topics that differ by the same bits (CRC-32 is linear) still differ.
    create = pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic="a")
    destroy = pb.Mutation(nonce=1, kind=pb.DESTROY_TOPIC, topic="b")
    assert contents_digest(create) != contents_digest(destroy)


def test_a_full_client_cache_never_forgets_what_the_entry_being_applied_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dedupe records' cache (DEDUPE_CLIENTS_CACHED_MAX) is emptied between entries, never inside one: emptied
    when a client read from disk found it full, it forgot the record this entry had just advanced for another client,
    whose second run in the same entry then applied its nonces again; and a node whose cache held other clients (it
    never restarted) did not empty it there, and kept one event fewer."""
    a, b = Harness(tmp_path / "a"), Harness(tmp_path / "b")
    carol = uuid.UUID(int=3).bytes
    for node in (a, b):
        node.apply(entry((ALICE, [m(1, pb.CREATE_TOPIC, "t")]), (BOB, [m(1, pb.PUT, "t", b"b", b"1")])))
    b.machine.reload()  # b restarted: its cache is empty; a's holds ALICE and BOB
    monkeypatch.setattr(limits, "DEDUPE_CLIENTS_CACHED_MAX", 1)
    resend = [m(1, pb.PUT, "t", b"c", b"1"), m(2, pb.PUT, "t", b"c", b"2")]  # a new session's resend, and more
    payload = entry((carol, [resend[0]]), (BOB, [m(2, pb.PUT, "t", b"b", b"2")]), (carol, resend))
    for node in (a, b):
        node.apply(payload)
        node.apply(entry((carol, [resend[1]])))  # a resend in a later entry: a duplicate
        assert [(e.key, e.value) for e in node.events("t")[1:]] == [
            (b"b", b"1"),
            (b"c", b"1"),
            (b"b", b"2"),
            (b"c", b"2"),
        ], "each nonce applied once"
    assert a.digest() == b.digest()
