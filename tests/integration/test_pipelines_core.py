"""Pipelines on a real 3-node cluster (docs/pipelines.md): the node side, driven through raw intentions and the Work
and DescribeCalls RPCs (the Worker client is tested in its own module)."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request

import grpc
import pytest

import laminar
from laminar import limits
from laminar.client import describe_topic
from laminar.v1 import laminar_pb2 as pb
from laminar.v1 import laminar_pb2_grpc as pb_grpc

PROGRAM = """
import json

def on_put(ctx, key, value):
    order = json.loads(value)
    if order.get('bad'):
        ctx.call("payments", "charge", value, context={"order": key.decode()})
        ctx.reject("bad order")
    for i in range(order.get('calls', 1)):
        ctx.call(order.get('service', 'payments'), "charge", value, context={"order": key.decode()},
                 timeout_ms=order.get('timeout_ms'))

def on_result(ctx, call, response, failure):
    name = call.context["order"] + "/" + str(call.id)
    if failure is None:
        ctx.put("paid/" + name, response)
    else:
        ctx.put("failed/" + name, failure)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One 3-node cluster for this module, with the topic `orders` (PROGRAM); each test uses its own orders."""
    from laminar.local_cluster import LocalCluster, free_port_block, write_config

    root = str(tmp_path_factory.mktemp("pipelines"))
    base = free_port_block(5)  # client, Raft and metrics ports of 3 nodes: base+1 .. base+9
    write_config(f"{root}/c.toml", 3, base, f"{root}/data", metrics_base_port=base + 6)
    nodes = LocalCluster(f"{root}/c.toml", [1, 2, 3], log_dir=root)
    addresses = [f"127.0.0.1:{base + n}" for n in (1, 2, 3)]
    nodes.start_all()
    try:
        with laminar.Client(addresses) as client:  # waits for a leader
            assert client.create_topic("orders", program=PROGRAM).committed(timeout=30).effect == "VALID"
            _wait_for(lambda: all(_answers(a) for a in addresses), timeout_s=30)  # every node serves, not 2 of 3
            yield addresses, client, [f"127.0.0.1:{base + 6 + n}" for n in (1, 2, 3)]
    finally:
        nodes.stop_all()


def _answers(address: str) -> bool:
    try:
        _describe(address)
        return True
    except grpc.RpcError:
        return False


def _send(client: laminar.Client, mutation: pb.Mutation) -> laminar.Commit:
    return client._send(mutation).committed(timeout=20)  # the Worker client wraps this (laminar/client)


def _order(client: laminar.Client, key: str, **fields: object) -> laminar.Commit:
    return client.put("orders", key, json.dumps({"amount": 5, **fields})).committed(timeout=20)


def _join(client: laminar.Client, service: str, worker: str, **settings: int) -> laminar.Commit:
    op = pb.WorkerOp(worker=worker, **settings)  # type: ignore[arg-type]
    return _send(client, pb.Mutation(kind=pb.WORKER_JOIN, topic=service, worker=op))


def _result(client: laminar.Client, call: pb.Call, response: bytes = b"ok", worker: str = "") -> laminar.Commit:
    result = pb.CallResult(call_id=call.id, response=response, worker=worker)
    return _send(client, pb.Mutation(kind=pb.CALL_COMPLETE, topic=call.topic, result=result))


def _stub(address: str) -> pb_grpc.LaminarStub:
    return pb_grpc.LaminarStub(grpc.insecure_channel(address))


class _Stream:
    """A worker's Work stream on one node, read on a thread into a queue."""

    def __init__(self, address: str, service: str, worker: str) -> None:
        self.calls: queue.Queue[pb.Call] = queue.Queue()
        self._call = _stub(address).Work(pb.WorkRequest(service=service, worker=worker))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for frame in self._call:
                for call in frame.calls:
                    self.calls.put(call)
        except grpc.RpcError:
            pass

    def take(self, count: int, timeout_s: float = 10.0) -> list[pb.Call]:
        return [self.calls.get(timeout=timeout_s) for _ in range(count)]

    def close(self) -> None:
        self._call.cancel()


def _describe(address: str, topic: str = "orders", call_id: int = 0) -> pb.DescribeCallsResponse:
    return _stub(address).DescribeCalls(pb.DescribeCallsRequest(topic=topic, call_id=call_id), timeout=5)


def _settled(addresses: list[str], client: laminar.Client) -> None:
    """Every node has applied everything committed so far: a marker put is visible on each node."""
    offset = _order(client, "marker", calls=0).intention_offset
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(_describe(a).intention_offset >= offset for a in addresses):
            return
        time.sleep(0.05)
    raise AssertionError("the nodes did not apply the marker within 20 s")


def _digests(addresses: list[str]) -> list[str]:
    digests = []
    for address in addresses:
        for _ in range(50):  # Digest is rate limited per node
            try:
                digests.append(_stub(address).Digest(pb.DigestRequest(), timeout=10).sha256)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                time.sleep(0.2)
    return digests


def _keys(address: str, prefix: str) -> list[str]:
    """The keys of PUT events of `orders` starting with `prefix`, as the node at `address` streams them."""
    keys = []
    last = int(describe_topic([address], "orders").last_offset)
    for event in laminar.Listener([address], "orders", from_offset=0):
        if event.kind == "PUT" and event.key.decode().startswith(prefix):
            keys.append(event.key.decode())
        if event.consequence_offset >= last:
            break
    return keys


def _wait_for(predicate, timeout_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_a_call_is_recorded_on_commit_and_its_result_applied_once_on_every_node(cluster) -> None:  # type: ignore[no-untyped-def]
    """A rejected transaction records no call; a committed one does; a worker on a follower is streamed its calls;
    the first completion is VALID and runs on_result once on every node (same events, same digest, counted in
    every node's metrics); a second completion is INVALID."""
    addresses, client, metrics = cluster
    assert _order(client, "r1", bad=True).effect == "ERROR"
    assert _order(client, "a1").effect == "VALID" and _order(client, "a2").effect == "VALID"
    _settled(addresses, client)
    calls = [c for c in _describe(addresses[0]).calls if c.service == "payments"]
    assert [(c.service, json.loads(c.context)) for c in calls] == [("payments", {"order": k}) for k in ("a1", "a2")]
    stream = _Stream(addresses[1], "payments", "w1")
    try:
        assert _join(client, "payments", "w1").effect == "VALID"
        leased = stream.take(2)
        assert sorted(c.id for c in leased) == sorted(c.id for c in calls)
        assert all(c.worker == "w1" and c.deliveries == 1 and c.request for c in leased)
        for call in leased:
            assert _result(client, call, b"charged-%d" % call.id, "w1").effect == "VALID"
        again = _result(client, leased[0], b"twice")
        assert again.effect == "INVALID" and "is not in flight" in again.reason
    finally:
        stream.close()
    _settled(addresses, client)
    expected = sorted(f"paid/{json.loads(c.context)['order']}/{c.id}" for c in calls)
    for address in addresses:
        assert sorted(_keys(address, "paid/a")) == expected
        assert _describe(address).stats.completed >= 2
    assert len(set(_digests(addresses))) == 1
    for address in metrics:
        scraped = _metrics(address)
        assert scraped['laminar_call_results_total{outcome="completed"}'] >= 2
        assert scraped["laminar_calls_issued_total"] >= 2 and "laminar_calls_in_flight" in scraped
        assert scraped["laminar_call_latency_log_ms_count"] >= 2


def _metrics(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and line[0] != "#"}


def test_an_expired_lease_hands_the_call_to_another_worker(cluster) -> None:  # type: ignore[no-untyped-def]
    """A worker that holds a call past its lease (log time) loses it; another worker is streamed it as a
    redelivery and its completion is applied."""
    addresses, client, _ = cluster
    slow, fast = _Stream(addresses[2], "leases", "slow"), _Stream(addresses[0], "leases", "fast")
    try:
        assert _join(client, "leases", "slow", lease_ms=500, calls_max=1).effect == "VALID"
        assert _order(client, "b1", service="leases").effect == "VALID"
        (first,) = slow.take(1)
        assert _join(client, "leases", "fast", lease_ms=60_000).effect == "VALID"
        (second,) = fast.take(1, timeout_s=15)  # after the slow worker's lease ended in log time
        assert second.id == first.id and second.deliveries == 2 and second.worker == "fast"
        assert _result(client, second, b"done", "fast").effect == "VALID"
        assert _describe(addresses[1]).stats.redeliveries >= 1
    finally:
        slow.close()
        fast.close()


def test_a_timeout_becomes_a_failure_result(cluster) -> None:  # type: ignore[no-untyped-def]
    """A call nobody answers gets on_result with a timeout failure once its timeout passes in log time."""
    addresses, client, _ = cluster
    assert _order(client, "t1", service="nobody", timeout_ms=300).effect == "VALID"
    _wait_for(lambda: _describe(addresses[0]).stats.timed_out >= 1)
    _settled(addresses, client)
    for address in addresses:
        assert len(_keys(address, "failed/t1/")) == 1


def test_bounds_refuse_ctx_call_the_same_way_on_every_node(cluster) -> None:  # type: ignore[no-untyped-def]
    """Calls past CALLS_PER_HANDLER_MAX or CALLS_IN_FLIGHT_PER_TOPIC_MAX fail their transaction with a reason that
    names the bound; every node holds the same calls after."""
    addresses, client, _ = cluster
    per = limits.CALLS_PER_HANDLER_MAX
    over = _order(client, "x0", service="bounded", calls=per + 1, timeout_ms=600_000)
    assert over.effect == "ERROR" and "CALLS_PER_HANDLER_MAX" in over.reason
    _settled(addresses, client)  # DescribeCalls answers from what the node applied: let every node catch up
    in_flight = _describe(addresses[0]).stats.in_flight
    fill = (limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX - in_flight) // per
    for i in range(fill):
        assert _order(client, f"x{i + 1}", service="bounded", calls=per, timeout_ms=600_000).effect == "VALID"
    _settled(addresses, client)
    room = limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX - _describe(addresses[0]).stats.in_flight
    refused = _order(client, "xx", service="bounded", calls=room + 1, timeout_ms=600_000)
    assert refused.effect == "ERROR" and "CALLS_IN_FLIGHT_PER_TOPIC_MAX" in refused.reason
    _settled(addresses, client)
    assert {_describe(a).stats.in_flight for a in addresses} == {limits.CALLS_IN_FLIGHT_PER_TOPIC_MAX - room}
    assert len(set(_digests(addresses))) == 1
