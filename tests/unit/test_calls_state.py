"""Pipelines as replicated state (docs/pipelines.md): ctx.call, leases, results, timeouts and bounds, applied
without processes, log time given by each entry's stamp."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from test_state_machine import Harness, m

from laminar import limits
from laminar.node._entry import encode_entry, encode_run
from laminar.node.store import CallKeys, CallLease
from laminar.v1 import laminar_pb2 as pb

ALICE = uuid.UUID(int=11).bytes
WORKER = uuid.UUID(int=12).bytes
T0 = 1_700_000_000_000

ORDERS = """
import json

def on_put(ctx, key, value):
    order = json.loads(value)
    if order.get('bad'):
        ctx.call("payments", "charge", value, context={"order": key.decode()})
        ctx.reject("bad order")
    pending = ctx.state.setdefault('pending', {})
    pending[key.decode()] = order['amount']
    for i in range(order.get('calls', 1)):
        ctx.call("payments", "charge", value, context={"order": key.decode(), "i": i},
                 timeout_ms=order.get('timeout_ms'))

def on_result(ctx, call, response, failure):
    order_id = call.context["order"]
    if failure is None:
        ctx.put("paid/" + order_id + "/" + str(call.id), response)
    else:
        ctx.put("failed/" + order_id + "/" + str(call.id), failure)
    if call.request == b'{"amount": -1}':
        ctx.reject("on_result refuses")
    ctx.state['results'] = ctx.state.get('results', 0) + 1
"""


class Cluster(Harness):
    """A state machine fed stamped entries; each client has its own nonces."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.nonces: dict[bytes, int] = {}
        self.now_ms = T0

    def run(self, client: bytes, *mutations: pb.Mutation, at_ms: int | None = None) -> list[tuple[int, str]]:
        if at_ms is not None:
            self.now_ms = at_ms
        for mutation in mutations:
            self.nonces[client] = mutation.nonce = self.nonces.get(client, 0) + 1
        frame = pb.MutationFrame(mutations=mutations).SerializeToString()
        out = self.apply(encode_entry([encode_run(client, frame)], self.now_ms))
        return [(effect, reason) for _, effect, _, reason in out]

    def tick(self, at_ms: int) -> None:
        """An entry without intentions: only log time moves (a leader's time tick)."""
        self.now_ms = at_ms
        self.apply(encode_entry([], at_ms))

    def keys(self, topic: str) -> list[str]:
        return [e.key.decode() for e in self.events(topic) if e.kind == pb.PUT]


def order(key: str, amount: int = 5, **more: object) -> pb.Mutation:
    return m(0, pb.PUT, "orders", key.encode(), json.dumps({"amount": amount, **more}).encode())


def join(service: str, worker: str, calls_max: int = 0, lease_ms: int = 0, method: str = "") -> pb.Mutation:
    mutation = m(0, pb.WORKER_JOIN, service)
    mutation.worker.CopyFrom(pb.WorkerOp(worker=worker, method=method, calls_max=calls_max, lease_ms=lease_ms))
    return mutation


def complete(call_id: int, response: bytes = b"ok", topic: str = "orders", worker: str = "") -> pb.Mutation:
    mutation = m(0, pb.CALL_COMPLETE, topic)
    mutation.result.CopyFrom(pb.CallResult(call_id=call_id, response=response, worker=worker))
    return mutation


def fail(call_id: int, failure: str, topic: str = "orders") -> pb.Mutation:
    mutation = m(0, pb.CALL_FAIL, topic)
    mutation.result.CopyFrom(pb.CallResult(call_id=call_id, failure=failure))
    return mutation


def create(topic: str = "orders", program: str = ORDERS) -> pb.Mutation:
    mutation = m(0, pb.CREATE_TOPIC, topic)
    mutation.program = program
    return mutation


@pytest.fixture
def c(tmp_path: Path) -> Cluster:
    cluster = Cluster(tmp_path / "a")
    assert cluster.run(ALICE, create()) == [(pb.VALID, "")]
    return cluster


def test_a_call_is_recorded_only_when_its_transaction_commits(c: Cluster) -> None:
    """ctx.call in a rejected transaction records nothing (no call, no id used); in a committed one it does."""
    out = c.run(ALICE, order("o1", bad=True), order("o2"))
    assert out[0][0] == pb.ERROR and "bad order" in out[0][1]
    assert out[1] == (pb.VALID, "")
    calls = c.machine._calls
    assert calls.in_flight("orders") == 1 and calls.last_id() == 1
    stored = [pb.Call.FromString(v) for _, v in c.store.scan(CallKeys.CALL_PREFIX)]
    assert [(s.id, s.service, s.method, json.loads(s.context)) for s in stored] == [
        (1, "payments", "charge", {"order": "o2", "i": 0})
    ]
    assert stored[0].deadline_ms == T0 + limits.CALL_TIMEOUT_MS_DEFAULT and stored[0].issued_ms == T0


def leased(c: Cluster) -> dict[int, tuple[str, int]]:
    calls = c.machine._calls
    return {i: (calls.lease_of(i).worker, calls.lease_of(i).deliveries) for i in sorted(calls._calls)}  # type: ignore[union-attr]


def test_the_first_result_runs_on_result_once_and_a_second_is_invalid(c: Cluster) -> None:
    """A completion runs on_result once (events, state); a second completion, a failure after it, an unknown id and
    a result naming another topic are INVALID and change nothing."""
    c.run(ALICE, order("o1"), order("o2"))
    assert c.run(WORKER, complete(1, b"charged")) == [(pb.VALID, "")]
    before = c.digest()
    out = c.run(WORKER, complete(1, b"again"), fail(1, "late"), complete(99), complete(2, topic="other"))
    assert [effect for effect, _ in out] == [pb.INVALID] * 4
    assert "call 1 is not in flight on topic 'orders'" in out[0][1]
    assert c.keys("orders") == ["paid/o1/1"]
    assert c.run(WORKER, fail(2, "card declined")) == [(pb.VALID, "")]
    assert c.keys("orders") == ["paid/o1/1", "failed/o2/2"]
    assert [e.value for e in c.events("orders")][-2:] == [b"charged", b"card declined"]
    stats = c.machine._calls.stats("orders")
    assert (stats.issued, stats.completed, stats.failed, stats.in_flight) == (2, 1, 1, 0)
    assert list(c.store.scan(CallKeys.CALL_PREFIX)) == [] and list(c.store.scan(CallKeys.LEASE_PREFIX)) == []
    assert before != c.digest()


def test_a_workers_frame_of_results_is_one_outcome_and_the_stored_lease_is_the_last(c: Cluster) -> None:
    """Results take the writes' streak path: consecutive VALID results of one client are one Outcome and an INVALID
    one in the middle splits it at the right nonces and offsets; a call issued and leased in one entry (its lease
    now written once, at the entry's end) stores its final lease."""
    c.run(WORKER, join("payments", "w1", calls_max=8))
    c.run(ALICE, *(order(f"o{i}") for i in range(5)))  # issued and leased in the same entry
    stored = {int.from_bytes(k[-8:], "big"): CallLease.decode(v) for k, v in c.store.scan(CallKeys.LEASE_PREFIX)}
    assert {i: (lease.worker, lease.deliveries) for i, lease in stored.items()} == {i: ("w1", 1) for i in range(1, 6)}
    first = c.nonces[WORKER] + 1
    frame = pb.MutationFrame(mutations=[complete(i) for i in (1, 2, 99, 3, 4)])
    for n, mutation in enumerate(frame.mutations):
        mutation.nonce = first + n
    c.nonces[WORKER] = first + 4
    c.index += 1
    applied = c.machine.apply(c.index, encode_entry([encode_run(WORKER, frame.SerializeToString())], c.now_ms))
    assert applied is not None
    c.store.commit(applied.writes, applied.mark)
    runs = [(o.nonce, o.count, o.effect) for o in applied.outcomes if o.client_id == WORKER]
    assert runs == [(first, 2, pb.VALID), (first + 2, 1, pb.INVALID), (first + 3, 2, pb.VALID)]
    offsets = [o.intention_offset for o in applied.outcomes if o.client_id == WORKER]
    assert offsets[1] == offsets[0] + 2 and offsets[2] == offsets[0] + 3
    assert c.keys("orders") == [f"paid/o{i - 1}/{i}" for i in (1, 2, 3, 4)]


def test_workers_are_leased_calls_and_an_expired_lease_goes_to_another_worker(c: Cluster) -> None:
    """Calls go to joined workers within calls_max; a lease that expires in log time is redelivered to another
    worker (deliveries and redeliveries counted); the first worker can still complete while the call is in flight."""
    c.run(WORKER, join("payments", "w1", calls_max=2, lease_ms=1000))
    c.run(ALICE, order("o1", calls=3))
    assert leased(c) == {1: ("w1", 1), 2: ("w1", 1), 3: ("", 0)}
    c.run(WORKER, join("payments", "w2", calls_max=5, lease_ms=5000), at_ms=T0 + 500)
    assert leased(c)[3] == ("w2", 1)
    c.run(WORKER, join("payments", "w2", calls_max=5, lease_ms=5000), at_ms=T0 + 1000)  # w1's leases end now
    assert leased(c) == {1: ("w2", 2), 2: ("w2", 2), 3: ("w2", 1)}
    assert c.machine._calls.stats("orders").redeliveries == 2
    assert c.run(WORKER, complete(1, worker="w1")) == [(pb.VALID, "")]  # w1 was slow, not dead: first result wins
    assert c.run(WORKER, complete(1, worker="w2"))[0][0] == pb.INVALID
    assert 1 not in leased(c) and c.machine._calls._services["payments"].held["w2"] == 2


def test_a_silent_worker_is_dropped_and_a_leaving_one_hands_its_calls_on(c: Cluster) -> None:
    """A worker not heard from for its lease_ms is dropped (its calls wait); WORKER_LEAVE releases at once; leaving
    twice is INVALID; a method filter only takes that method's calls."""
    c.run(WORKER, join("payments", "w1", lease_ms=1000), join("payments", "refunds", method="refund"))
    c.run(ALICE, order("o1"))
    assert leased(c) == {1: ("w1", 1)}
    c.tick(T0 + 1000)
    assert leased(c) == {1: ("", 1)} and "w1" not in c.machine._calls._services["payments"].workers
    c.run(WORKER, join("payments", "w3"))
    assert leased(c) == {1: ("w3", 2)}
    out = c.run(WORKER, _leave("payments", "w3"), _leave("payments", "w3"))
    assert out[0] == (pb.VALID, "") and out[1][0] == pb.INVALID
    assert leased(c) == {1: ("", 2)}  # only "refunds" is left, and it takes method "refund" only


def _leave(service: str, worker: str) -> pb.Mutation:
    mutation = m(0, pb.WORKER_LEAVE, service)
    mutation.worker.CopyFrom(pb.WorkerOp(worker=worker))
    return mutation


def test_a_timeout_becomes_one_failure_result(c: Cluster) -> None:
    """A call without a result at its deadline (log time) gets on_result with a timeout failure, exactly once;
    a completion after that is INVALID."""
    c.run(ALICE, order("o1", timeout_ms=2000), order("o2"))
    c.tick(T0 + 1999)
    assert c.keys("orders") == []
    c.tick(T0 + 2000)
    c.tick(T0 + 3000)
    assert c.keys("orders") == ["failed/o1/1"]
    assert c.events("orders")[-1].value == b"timeout: no result within 2000 ms of log time"
    assert c.run(WORKER, complete(1))[0][0] == pb.INVALID
    assert c.machine._calls.stats("orders").timed_out == 1 and c.machine._calls.in_flight("orders") == 1


def test_a_call_whose_last_delivery_expired_fails_once(c: Cluster) -> None:
    """After CALL_DELIVERIES_MAX leases expired without a result the call fails ("gave up"), once."""
    c.run(ALICE, order("o1"))
    now = T0
    for delivery in range(1, limits.CALL_DELIVERIES_MAX + 1):
        c.run(WORKER, join("payments", f"w{delivery}", lease_ms=100), at_ms=now)
        assert leased(c) == {1: (f"w{delivery}", delivery)}
        now += 100
    c.tick(now)
    assert c.keys("orders") == ["failed/o1/1"] and "gave up" in c.events("orders")[-1].value.decode()
    assert c.machine._calls.stats("orders").gave_up == 1 and c.machine._calls.in_flight() == 0


def test_scatter_and_collect_with_program_state_only(tmp_path: Path) -> None:
    """A program issues N calls and acts once all N have returned, whatever the order and outcome of the results."""
    program = """
def on_put(ctx, key, value):
    n = int(value)
    ctx.state[key.decode()] = {'left': n, 'sum': 0}
    for i in range(n):
        ctx.call("quotes", "price", str(i), context={"batch": key.decode()})

def on_result(ctx, call, response, failure):
    batch = ctx.state[call.context["batch"]]
    batch['left'] -= 1
    batch['sum'] += int(response) if failure is None else 0
    if batch['left'] == 0:
        ctx.put("total/" + call.context["batch"], str(batch['sum']))
"""
    c = Cluster(tmp_path / "s")
    c.run(ALICE, create("quotes", program), m(0, pb.PUT, "quotes", b"b1", b"5"))
    results = [complete(3, b"30", "quotes"), fail(1, "down", "quotes"), complete(5, b"50", "quotes")]
    c.run(WORKER, *results)
    assert c.keys("quotes") == []
    c.run(WORKER, complete(2, b"20", "quotes"))
    assert c.keys("quotes") == []
    c.run(WORKER, complete(4, b"40", "quotes"))
    assert c.keys("quotes") == ["total/b1"] and c.events("quotes")[-1].value == b"140"


def test_on_result_that_fails_keeps_nothing_and_the_call_is_finished(c: Cluster) -> None:
    """on_result rejecting: the result is ERROR with the reason, its events and state are dropped, and the call
    is finished (a retry is INVALID)."""
    c.run(ALICE, m(0, pb.PUT, "orders", b"o1", b'{"amount": -1}'))
    out = c.run(WORKER, complete(1))
    assert out[0][0] == pb.ERROR and "on_result of call 1 failed: on_result refuses" in out[0][1]
    assert c.keys("orders") == [] and c.machine._calls.stats("orders").on_result_errors == 1
    assert c.run(WORKER, complete(1))[0][0] == pb.INVALID


def test_ctx_call_is_refused_without_on_result_and_in_on_create(tmp_path: Path) -> None:
    """A program without on_result cannot ctx.call; on_create cannot either; bad arguments are clear errors."""
    c = Cluster(tmp_path / "r")
    plain = 'def on_put(ctx, key, value):\n    ctx.call("s", "m", value)\n'
    creating = plain + 'def on_create(ctx):\n    ctx.call("s", "m", "x")\ndef on_result(ctx, call, r, f):\n    pass\n'
    out = c.run(ALICE, create("a", plain), m(0, pb.PUT, "a", b"k", b"v"), create("b", creating))
    assert out[1][0] == pb.ERROR and "needs an on_result" in out[1][1]
    assert out[2][0] == pb.ERROR and "not available in on_create" in out[2][1]
    bad = "def on_put(ctx, key, value):\n    ctx.call(" + "{}" + ")\ndef on_result(ctx, call, r, f):\n    pass\n"
    cases = {
        '"s", "m", 5': "request must be str or bytes",
        '"s s", "m", "x"': "service name",
        '"s", "m", "x", timeout_ms=5': "timeout_ms 5 is outside",
        '"s", "m", "x", context=b"x"': "bytes",
        f'"s", "m", "x" * {limits.CALL_REQUEST_BYTES_MAX + 1}': "the limit is",
    }
    for i, (args, reason) in enumerate(cases.items()):
        out = c.run(ALICE, create(f"t{i}", bad.format(args)), m(0, pb.PUT, f"t{i}", b"k", b"v"))
        assert out[1][0] == pb.ERROR and reason in out[1][1], (args, out)
    assert c.machine._calls.in_flight() == 0


def test_calls_in_flight_are_bounded_per_topic_and_per_service(c: Cluster) -> None:
    """Past CALLS_IN_FLIGHT_PER_TOPIC_MAX (or _PER_SERVICE_MAX) ctx.call fails its transaction with a reason that
    names the limit; a scatter that would pass it is refused whole; results free room again."""
    per = limits.CALLS_PER_HANDLER_MAX
    fill = limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX // per
    out = c.run(ALICE, order("too-many", calls=per + 1))
    assert out[0][0] == pb.ERROR and "CALLS_PER_HANDLER_MAX" in out[0][1] and c.machine._calls.in_flight() == 0
    out = c.run(ALICE, *[order(f"o{i}", calls=per) for i in range(fill)], order("over"))
    assert [e for e, _ in out[:-1]] == [pb.VALID] * fill
    assert out[-1][0] == pb.ERROR and "CALLS_IN_FLIGHT_PER_TOPIC_MAX" in out[-1][1]
    assert c.machine._calls.in_flight("orders") == limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX
    assert c.run(WORKER, complete(1)) == [(pb.VALID, "")]
    assert c.run(ALICE, order("fits")) == [(pb.VALID, "")]
    topics = limits.CALLS_IN_FLIGHT_PER_SERVICE_MAX // limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX
    program = ORDERS
    for t in range(1, topics):
        c.run(ALICE, create(f"orders{t}", program))
        writes = [
            m(0, pb.PUT, f"orders{t}", f"o{i}".encode(), json.dumps({"amount": 1, "calls": per}).encode())
            for i in range(fill)
        ]
        assert [e for e, _ in c.run(ALICE, *writes)] == [pb.VALID] * fill
    c.run(ALICE, create("more", program))
    out = c.run(ALICE, m(0, pb.PUT, "more", b"o", b'{"amount": 1}'))
    assert out[0][0] == pb.ERROR and "service 'payments'" in out[0][1] and "PER_SERVICE_MAX" in out[0][1]


def test_destroying_a_topic_drops_its_calls(c: Cluster) -> None:
    """A destroyed topic's calls are gone: their leases too, and a late result is INVALID."""
    c.run(WORKER, join("payments", "w1"))
    c.run(ALICE, order("o1", calls=2))
    c.run(ALICE, m(0, pb.DESTROY_TOPIC, "orders"), create())
    assert c.machine._calls.in_flight() == 0 and c.machine._calls._services["payments"].held["w1"] == 0
    assert list(c.store.scan(CallKeys.LEASE_PREFIX)) == []
    assert c.run(WORKER, complete(1))[0][0] == pb.INVALID


def test_a_restarted_node_decides_as_the_others(tmp_path: Path) -> None:
    """Two machines fed the same entries, one reloaded from its store between every entry, keep identical stores
    (calls, leases, workers, counters) through grants, expiries, timeouts and results."""
    a, b = Cluster(tmp_path / "a"), Cluster(tmp_path / "b")
    steps: list[tuple[bytes, list[pb.Mutation], int]] = [
        (ALICE, [create()], T0),
        (WORKER, [join("payments", "w1", calls_max=2, lease_ms=300), join("payments", "w2", lease_ms=10_000)], T0),
        (ALICE, [order("o1", calls=4, timeout_ms=5000), order("o2", calls=3)], T0 + 10),
        (WORKER, [complete(2), fail(6, "no")], T0 + 200),
        (WORKER, [join("payments", "w2", lease_ms=10_000)], T0 + 400),
        (WORKER, [complete(1, worker="w2"), complete(1)], T0 + 600),
        (ALICE, [order("o3")], T0 + 5100),
        (WORKER, [join("payments", "w2", lease_ms=10_000)], T0 + 70_000),
    ]
    for client, mutations, at_ms in steps:
        for cluster in (a, b):
            copies = [pb.Mutation.FromString(x.SerializeToString()) for x in mutations]
            cluster.run(client, *copies, at_ms=at_ms)
        b.machine.reload()
        assert a.digest() == b.digest()
    assert a.keys("orders") == b.keys("orders") and len(a.keys("orders")) >= 5


def test_a_workers_stream_sends_its_calls_in_grant_order_once_and_again_when_re_leased(c: Cluster) -> None:
    """work_step sends the calls leased to one worker by grants after the last sent, in grant order; a re-lease is
    sent again; DescribeCalls pages the topic's calls with their leases; the grant index holds only live leases."""
    from laminar.node.service._calls import describe_calls, work_step

    c.run(WORKER, join("payments", "w1", calls_max=3, lease_ms=1000), join("payments", "w2", calls_max=1))
    c.run(ALICE, order("o1", calls=4))
    request = pb.WorkRequest(service="payments", worker="w1")
    frame, sent = work_step(c.store, request, 0)
    assert frame is not None
    calls = pb.WorkFrame.FromString(frame).calls
    assert [(x.id, x.worker, x.deliveries, x.lease_deadline_ms) for x in calls] == [
        (i, "w1", 1, T0 + 1000)
        for i in (1, 2, 3)  # the roomiest worker first (ties: by name); w2 got 4
    ]
    assert work_step(c.store, request, sent) == (None, sent)
    c.run(WORKER, complete(3), at_ms=T0 + 500)
    c.run(WORKER, join("payments", "w2", calls_max=1), at_ms=T0 + 1000)  # w1 is dropped: 1 and 2 wait; w2 is full
    c.run(WORKER, join("payments", "w1", calls_max=3, lease_ms=1000), at_ms=T0 + 1001)
    frame, sent = work_step(c.store, request, sent)
    assert frame is not None and [(x.id, x.deliveries) for x in pb.WorkFrame.FromString(frame).calls] == [
        (1, 2),
        (2, 2),
    ]
    assert len(list(c.store.scan(CallKeys.GRANT_PREFIX))) == 3  # 1 and 2 (w1), 4 (w2)
    page = describe_calls(c.store, pb.DescribeCallsRequest(topic="orders", after_id=1, limit=2))
    assert page.topic_exists and [(x.id, x.worker) for x in page.calls] == [(2, "w1"), (4, "w2")]
    assert page.stats.issued == 4 and page.stats.completed == 1 and page.stats.redeliveries == 2
    one = describe_calls(c.store, pb.DescribeCallsRequest(topic="orders", call_id=3))
    assert list(one.calls) == []


COUNTING = """
def on_put(ctx, key, value):
    for i in range(int(value)):
        ctx.call("svc", "m" + str(i % 2), key, context={"k": key.decode()}, timeout_ms=1000 + 500 * i)

def on_result(ctx, call, response, failure):
    ctx.put("r/" + str(call.id), response if failure is None else failure)
    if call.deliveries > 2 and failure is None and call.id % 3 == 0:
        ctx.call("svc", "m0", "chained", timeout_ms=500)
"""


@pytest.mark.parametrize("seed", range(4))
def test_random_runs_apply_each_result_once_and_restarts_decide_alike(tmp_path: Path, seed: int) -> None:
    """Random calls, joins, leaves, results (right, duplicate, late, unknown) and ticks, fed to two machines, one
    reloaded from its store at random: identical stores throughout; every finished call got exactly one on_result;
    the counters add up (issued = completed + failed + timed_out + gave_up + in flight)."""
    import random

    rng = random.Random(seed)
    a, b = Cluster(tmp_path / "a"), Cluster(tmp_path / "b")
    now = T0
    workers = [f"w{i}" for i in range(3)]
    for n in range(80):
        now += rng.choice((0, 10, 50, 150, 400))
        roll = rng.random()
        client, mutations = WORKER, []
        if n == 0:
            client, mutations = ALICE, [create("t", COUNTING)]
        elif roll < 0.3:
            client, mutations = ALICE, [m(0, pb.PUT, "t", f"k{n}".encode(), str(rng.randint(0, 4)).encode())]
        elif roll < 0.45:
            settings = (rng.randint(1, 3), rng.choice((100, 200, 1000)), rng.choice(("", "m0")))
            mutations = [join("svc", rng.choice(workers), *settings)]
        elif roll < 0.5:
            mutations = [_leave("svc", rng.choice(workers))]
        elif roll < 0.85:  # results: mostly for calls in flight, some duplicate, late or unknown
            live = sorted(a.machine._calls._calls) or [1]
            last = a.machine._calls.last_id() + 1
            ids = [rng.choice(live) if rng.random() < 0.7 else rng.randint(1, last) for _ in range(rng.randint(1, 3))]
            mutations = [
                complete(i, b"ok", "t", rng.choice(workers)) if rng.random() < 0.7 else fail(i, "no", "t") for i in ids
            ]
        for cluster in (a, b):
            if mutations:
                cluster.run(client, *[pb.Mutation.FromString(x.SerializeToString()) for x in mutations], at_ms=now)
            else:
                cluster.tick(now)
        if rng.random() < 0.3:
            b.machine.reload()
        assert a.digest() == b.digest()
    a.tick(now + 10_000)  # every deadline passes (the longest timeout is 3 s): each call ends, with one result
    keys = a.keys("t")
    assert len(keys) == len(set(keys)), "on_result ran twice for a call"
    stats = a.machine._calls.stats("t")
    assert stats.in_flight == 0 == a.machine._calls.in_flight()
    assert stats.issued == stats.completed + stats.failed + stats.timed_out + stats.gave_up == len(keys)
    assert sorted(int(k[2:]) for k in keys) == list(range(1, stats.issued + 1))
    assert stats.completed and stats.timed_out and stats.redeliveries, "the run exercised results, timeouts, leases"


def test_with_calls_in_flight_no_entry_is_applied_on_the_raft_thread(tmp_path: Path) -> None:
    """Any entry may end calls by log time and run up to CALL_EXPIRIES_PER_ENTRY_MAX on_results, so while calls are
    in flight the applier hands even a lone intention to its apply thread (inline, on the Raft thread, it would
    delay heartbeats by all of them)."""
    import threading

    from laminar.node._applier import Applier
    from laminar.node._metrics import NodeMetrics, Sample
    from laminar.node.state_machine import StateMachine
    from laminar.node.store import Store

    def no_sample() -> Sample:
        raise AssertionError("no metrics are served here")

    store = Store(str(tmp_path / "s"))
    machine = StateMachine(store)
    threads: list[str] = []
    apply = machine.apply

    def recording(index: int, payload: bytes, entry: pb.IntentionBatch | None = None):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return apply(index, payload, entry)

    machine.apply = recording  # type: ignore[method-assign]
    applier = Applier(1, store, machine, NodeMetrics(no_sample), lambda _: None, lambda _: None)
    try:
        for index, mutation in enumerate((create(), order("o1")), start=1):
            mutation.nonce = index
            frame = pb.MutationFrame(mutations=[mutation]).SerializeToString()
            applier.on_commit(index, encode_entry([encode_run(ALICE, frame)], T0))
        applier.on_commit(3, encode_entry([], T0 + 1000))  # a time tick: it could time calls out
        assert applier.wait_applied(10)
    finally:
        applier.stop()
        store.close()
    assert threads == ["MainThread", "MainThread", "apply"]
