"""Workers, the `calls` commands and examples/pipeline.py on a real 3-node cluster (docs/pipelines.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import grpc
import pytest

import laminar
from laminar import limits
from laminar.client import describe_calls
from laminar.v1 import laminar_pb2 as pb
from laminar.v1 import laminar_pb2_grpc as pb_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAM = """
def on_create(ctx):
    ctx.state["service"] = ctx.args_json()["service"]

def on_put(ctx, key, value):
    ctx.call(ctx.state["service"], "run", value, context={"key": key.decode()})

def on_result(ctx, call, response, failure):
    if failure is None:
        ctx.put("ok/" + call.context["key"], response)
    else:
        ctx.put("failed/" + call.context["key"], failure)
"""
WAIT_S = 30.0


@pytest.fixture(scope="module")
def cluster(module_cluster):  # type: ignore[no-untyped-def]
    """One 3-node cluster for this module; each test uses its own topic and service."""
    return module_cluster


def _calls(addresses: list[str], topic: str, service: str, count: int) -> None:
    """A topic running PROGRAM for `service`, and `count` puts k0.. (values v0..): `count` calls in flight."""
    with laminar.Client(addresses) as client:
        created = client.create_topic(topic, program=PROGRAM, args=json.dumps({"service": service}))
        assert created.committed(timeout=WAIT_S).ok, created.committed(0)
        sent = [client.put(topic, f"k{n}", f"v{n}") for n in range(count)]
        assert all(p.committed(timeout=WAIT_S).ok for p in sent)


def _outcomes(addresses: list[str], topic: str, count: int) -> dict[str, list[bytes]]:
    """The first `count` outcome events of the topic: key -> values (one entry per event)."""
    found: dict[str, list[bytes]] = {}
    with laminar.Listener(addresses, topic, from_offset=1) as listener:
        for event in listener.take(count, timeout=WAIT_S):
            found.setdefault(event.key.decode(), []).append(event.value)
    return found


def test_worker_completes_and_fails_calls_and_a_later_result_changes_nothing(cluster) -> None:
    """A worker's complete() and fail() each run on_result once with what it posted; the call id, request and
    context are the program's; a second result for a finished call is INVALID and emits nothing."""
    _, addresses = cluster
    _calls(addresses, "basic", "svc-basic", 4)
    with laminar.Worker(addresses, service="svc-basic", method="run") as worker:
        calls = [worker.next_call(timeout=WAIT_S) for _ in range(4)]
        assert sorted(c.context["key"] for c in calls) == ["k0", "k1", "k2", "k3"]
        assert all(c.request == b"v" + c.context["key"][1:].encode() and c.deliveries == 1 for c in calls)
        for call in calls:
            if call.context["key"] == "k3":
                call.fail("declined")
            else:
                call.complete(call.request[::-1])
        with pytest.raises(laminar.InvalidRequest):
            calls[0].complete(b"again")  # this worker finished it already: refused before sending
        worker.flush(timeout=WAIT_S)
        assert (worker.stats.received, worker.stats.completed, worker.stats.failed) == (4, 3, 1)
    with laminar.Client(addresses) as client:
        late = pb.CallResult(call_id=calls[0].id, response=b"late")
        assert client.call_result(pb.CALL_COMPLETE, "basic", late).committed(timeout=WAIT_S).effect == "INVALID"
        client.put("basic", "k9", "v9").committed(timeout=WAIT_S)  # a marker: its call is the next thing issued
    outcomes = _outcomes(addresses, "basic", 4)
    assert outcomes == {"ok/k0": [b"0v"], "ok/k1": [b"1v"], "ok/k2": [b"2v"], "failed/k3": [b"declined"]}
    deadline = time.monotonic() + WAIT_S
    while (stats := describe_calls(addresses, "basic").stats).issued < 5 and time.monotonic() < deadline:
        time.sleep(0.1)  # the node that answers may be a follower a little behind
    assert (stats.issued, stats.completed, stats.failed) == (5, 3, 1)


def test_concurrency_bounds_the_calls_in_hand(cluster) -> None:
    """With concurrency=2 a worker hands out two calls, then waits (Timeout) until one is finished."""
    _, addresses = cluster
    _calls(addresses, "bounded", "svc-bounded", 3)
    with laminar.Worker(addresses, service="svc-bounded", concurrency=2) as worker:
        first, second = worker.next_call(timeout=WAIT_S), worker.next_call(timeout=WAIT_S)
        with pytest.raises(laminar.Timeout):
            worker.next_call(timeout=0.5)
        leased = [c for c in describe_calls(addresses, "bounded").calls if c.worker == worker.name]
        assert len(leased) <= 2  # the cluster leases no more than calls_max either
        first.complete(b"1")
        third = worker.next_call(timeout=WAIT_S)
        second.complete(b"2")
        third.complete(b"3")
    assert len(_outcomes(addresses, "bounded", 3)) == 3


def test_rate_limit_spaces_the_calls_handed_out(cluster) -> None:
    """rate_per_s=20 hands out a second's burst (20) at once, then 20 a second: 30 calls take at least 0.45 s. With
    a 2 s lease the worker asks for 20 calls at once (what it can start in half a lease), not its concurrency."""
    _, addresses = cluster
    _calls(addresses, "paced", "svc-paced", 30)
    with laminar.Worker(addresses, service="svc-paced", rate_per_s=20, concurrency=64, lease_ms=2000) as worker:
        assert worker.calls_max == 20
        deadline = time.monotonic() + WAIT_S
        while len(leased := [c for c in describe_calls(addresses, "paced").calls if c.worker == worker.name]) < 20:
            assert time.monotonic() < deadline, leased
            time.sleep(0.05)
        time.sleep(0.3)  # what the cluster would lease past calls_max, it would have by now
        assert len([c for c in describe_calls(addresses, "paced").calls if c.worker == worker.name]) == 20
        started = time.monotonic()
        for _ in range(30):
            worker.next_call(timeout=WAIT_S).complete(b"")
        assert time.monotonic() - started >= 0.45
    assert len(_outcomes(addresses, "paced", 30)) == 30


def test_a_closed_worker_hands_its_calls_to_the_next_at_once(cluster) -> None:
    """A worker that leaves holding calls (a 60 s lease) frees them: another worker gets them within seconds,
    as second deliveries, and each call still ends in exactly one on_result."""
    _, addresses = cluster
    _calls(addresses, "handover", "svc-handover", 2)
    with laminar.Worker(addresses, service="svc-handover", lease_ms=60_000) as first:
        held = [first.next_call(timeout=WAIT_S) for _ in range(2)]
    started = time.monotonic()
    with laminar.Worker(addresses, service="svc-handover") as second:
        again = [second.next_call(timeout=WAIT_S) for _ in range(2)]
        assert time.monotonic() - started < 20  # not the 60 s lease
        assert sorted(c.id for c in again) == sorted(c.id for c in held)
        assert all(c.deliveries == 2 for c in again)
        for call in again:
            call.complete(b"done")
    assert sorted(_outcomes(addresses, "handover", 2)) == ["ok/k0", "ok/k1"]


def test_an_idle_worker_stays_joined_by_heartbeats(cluster) -> None:
    """A worker with a 600 ms lease that sits idle for 2 s says it is alive (WORKER_JOIN every lease/3), so a call
    issued afterwards is still leased to it; a silent worker would have been dropped and the call would wait."""
    _, addresses = cluster
    with laminar.Worker(addresses, service="svc-idle", lease_ms=600) as worker:
        time.sleep(2.0)
        assert worker.stats.heartbeats >= 3
        _calls(addresses, "idle", "svc-idle", 1)
        call = worker.next_call(timeout=10)
        call.complete(b"still here")
    assert _outcomes(addresses, "idle", 1) == {"ok/k0": [b"still here"]}


def test_calls_commands_list_and_describe_what_is_in_flight(cluster, capsys) -> None:
    """`laminar calls list` shows the counters and each call (leased or waiting); `calls describe` the
    counters, or one call in full; a finished or unknown call, or a missing topic, exits 1."""
    from laminar.cli import main

    _, addresses = cluster
    flags = ["--addresses", ",".join(addresses), "--timeout", "20"]
    _calls(addresses, "watched", "svc-watched", 3)
    with laminar.Worker(addresses, service="svc-watched", name="w-cli", concurrency=2) as worker:
        held = [worker.next_call(timeout=WAIT_S) for _ in range(2)]
        time.sleep(0.5)  # the followers apply the leases too
        assert main(["calls", "list", "watched", *flags]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith("watched: 3 in flight; issued 3, completed 0")
        assert lines[1].split()[:4] == ["id", "call", "worker", "deliveries"]
        workers = sorted(line.split()[2] for line in lines[2:])
        assert workers == ["(waiting)", "w-cli", "w-cli"] and "svc-watched.run" in lines[2]
        assert main(["calls", "describe", "watched", str(held[0].id), "--json", *flags]) == 0
        described = json.loads(capsys.readouterr().out)
        assert (described["id"], described["worker"], described["context"]) == (held[0].id, "w-cli", held[0].context)
        held[0].complete(b"x")
        worker.flush(timeout=WAIT_S)
        time.sleep(0.5)
        assert main(["calls", "describe", "watched", str(held[0].id), *flags]) == 1
        assert main(["calls", "describe", "watched", *flags]) == 0
        out = capsys.readouterr().out
        assert "stats in flight:" in out and "stats completed:" in out
        for call in [*held[1:], worker.next_call(timeout=WAIT_S)]:
            call.complete(b"x")
    assert main(["calls", "list", "no-such-topic", *flags]) == 1


def test_the_pipeline_example_ends_every_order_once_with_a_worker_killed(cluster) -> None:
    """examples/pipeline.py (120 orders, 2 workers of 50-500 ms calls, one SIGKILLed halfway) finds every order
    paid or failed exactly once and the bank charged exactly the paid orders."""
    _, addresses = cluster
    example = os.path.join(ROOT, "examples", "pipeline.py")
    result = subprocess.run(
        [sys.executable, example, "--orders", "120", "--workers", "2", "--addresses", ",".join(addresses)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "killed worker 0" in result.stdout
    assert "every order paid or failed exactly once" in result.stdout, result.stdout


@pytest.mark.slow  # ~11 s (an election, a node restart): `make pipeline-faults` runs it
def test_a_worker_follows_the_leader_across_its_death(cluster) -> None:
    """The leader is killed while a worker waits: calls issued afterwards still reach the worker and its results
    commit through the new leader (the worker reads from another node and its client follows the leader)."""
    nodes, addresses = cluster
    _calls(addresses, "failover", "svc-failover", 2)
    with laminar.Worker(addresses, service="svc-failover") as worker:
        for call in [worker.next_call(timeout=WAIT_S) for _ in range(2)]:
            call.complete(b"before")
        worker.flush(timeout=WAIT_S)
        statuses = laminar.cluster_status(addresses, timeout_s=2.0)
        leader = next(int(s["node_id"]) for s in statuses if s.get("role") == "leader")
        nodes.kill(leader)
        try:
            with laminar.Client([a for i, a in enumerate(addresses, 1) if i != leader]) as client:
                sent = [client.put("failover", f"k{n}", f"v{n}") for n in (2, 3)]
                assert all(p.committed(timeout=WAIT_S).ok for p in sent)
            for call in [worker.next_call(timeout=WAIT_S) for _ in range(2)]:
                call.complete(b"after")
            worker.flush(timeout=WAIT_S)
            assert worker.stats.completed == 4
        finally:
            nodes.start(leader)
    outcomes = _outcomes(addresses, "failover", 4)
    assert sorted(outcomes) == ["ok/k0", "ok/k1", "ok/k2", "ok/k3"] and all(len(v) == 1 for v in outcomes.values())


def test_describe_calls_and_describe_topic_each_have_their_own_rate(cluster) -> None:
    """Polling DescribeCalls past its rate on a node gets RESOURCE_EXHAUSTED there, and DescribeTopic on that node
    is still served at once; the reverse too: neither can starve the other."""
    _, addresses = cluster
    stub = pb_grpc.LaminarStub(grpc.insecure_channel(addresses[0]))
    calls, topic = pb.DescribeCallsRequest(topic="ready"), pb.DescribeTopicRequest(topic="ready")

    def exhaust(rpc: Any, request: Any) -> None:
        for _ in range(4 * max(limits.DESCRIBE_CALLS_CALLS_PER_S_MAX, limits.DESCRIBE_TOPIC_CALLS_PER_S_MAX)):
            try:
                rpc(request, timeout=WAIT_S)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                return
        raise AssertionError("never rate limited")

    exhaust(stub.DescribeCalls, calls)
    assert stub.DescribeTopic(topic, timeout=WAIT_S).exists
    exhaust(stub.DescribeTopic, topic)
    assert stub.DescribeCalls(calls, timeout=WAIT_S).topic_exists
