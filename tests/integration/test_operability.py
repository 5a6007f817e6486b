"""Standard gRPC surfaces (health, reflection), deadlines, status codes, metrics and logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from wire_stub import redirect

import laminar
from laminar.v1 import laminar_pb2 as pb
from laminar.v1 import laminar_pb2_grpc

CALL_TIMEOUT_S = 5.0


def health_of(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT_S).status


def wait_health(address: str, wanted: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        try:
            status = health_of(address)
        except grpc.RpcError:
            status = None
        if status == wanted:
            return
        time.sleep(0.1)
    raise AssertionError(f"{address}: health {status}, wanted {wanted}")


def test_health_is_serving_with_a_leader_and_not_serving_without_one(make_cluster) -> None:
    """grpc.health.v1 says SERVING on every node of a cluster with a leader; NOT_SERVING once quorum is lost."""
    c = make_cluster(3)
    for address in c.addresses:
        wait_health(address, health_pb2.HealthCheckResponse.SERVING)
        assert health_of(address, "laminar.v1.Laminar") == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(c.addresses[0]) as channel, pytest.raises(grpc.RpcError) as caught:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    survivor = c.leader_id()
    for node in (1, 2, 3):
        if node != survivor:
            c.cluster.kill(node)
    # Alone, the old leader steps down (pysyncobj's leader needs a quorum of live followers).
    wait_health(c.address_of(survivor), health_pb2.HealthCheckResponse.NOT_SERVING, timeout_s=30)


def test_reflection_lists_and_describes_the_services(make_cluster) -> None:
    """Server reflection lists Laminar, health and reflection, and serves laminar.proto's descriptor."""
    c = make_cluster(1)
    with grpc.insecure_channel(c.addresses[0]) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="laminar.v1.Laminar"),
        ]
        answers = list(stub.ServerReflectionInfo(iter(requests), timeout=CALL_TIMEOUT_S))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"laminar.v1.Laminar", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    from google.protobuf import descriptor_pb2

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answers[1].file_descriptor_response.file_descriptor_proto
    ]
    laminar_file = next(f for f in files if f.name == "laminar/v1/laminar.proto")
    methods = {m.name for m in laminar_file.service[0].method}
    assert {"Session", "Listen", "Get", "Status"} <= methods


def test_deadlines_end_listen_and_session_calls_with_deadline_exceeded(make_cluster) -> None:
    """A Listen waiting for events and an idle Session both end with DEADLINE_EXCEEDED, not a hang."""
    c = make_cluster(1)
    with grpc.insecure_channel(c.addresses[0]) as channel:
        stub = laminar_pb2_grpc.LaminarStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Listen(pb.ListenRequest(topic="nothing-here"), timeout=1.0))
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5

        def frames():  # a Hello, then nothing: the session idles
            yield pb.ClientFrame(hello=pb.Hello(client_id=uuid.uuid4().bytes, next_nonce=1))
            time.sleep(3)

        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Session(frames(), timeout=1.0))
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5


def test_status_codes_for_bad_requests(make_cluster) -> None:
    """INVALID_ARGUMENT for bad input, FAILED_PRECONDITION for a nonce ahead of the log, UNAVAILABLE + hint."""
    c = make_cluster(3)
    leader = c.leader_id()
    follower = next(n for n in (1, 2, 3) if n != leader)
    with grpc.insecure_channel(c.address_of(leader)) as channel:
        stub = laminar_pb2_grpc.LaminarStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Get(pb.GetRequest(topic="bad name!", key=b"k"), timeout=CALL_TIMEOUT_S)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Listen(pb.ListenRequest(topic="bad name!"), timeout=CALL_TIMEOUT_S))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        client_id = uuid.uuid4().bytes
        with laminar.Client(c.addresses, client_id=uuid.UUID(bytes=client_id)) as client:
            client.create_topic("t").committed(10)
        ahead = [pb.ClientFrame(hello=pb.Hello(client_id=client_id, next_nonce=5))]
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Session(iter(ahead), timeout=10))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with grpc.insecure_channel(c.address_of(follower)) as channel:
        stub = laminar_pb2_grpc.LaminarStub(channel)
        error, hint = redirect(lambda: stub.Get(pb.GetRequest(topic="t", key=b"k"), timeout=CALL_TIMEOUT_S))
        assert error.code() == grpc.StatusCode.UNAVAILABLE and hint == c.address_of(leader)


def scrape(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=CALL_TIMEOUT_S) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_prometheus_endpoint_reports_role_indexes_throughput_latency_and_program_errors(make_cluster) -> None:
    """Each node serves its own metrics over HTTP: role, term, indexes, counters, histograms, errors by topic; and
    a started node has frozen what it holds out of the cyclic collector's full passes."""
    c = make_cluster(3, metrics=True)
    assert c.metrics_addresses is not None
    program = (
        "def on_put(ctx, key, value):\n    if value == b'bad':\n        ctx.reject('no')\n    ctx.put(key, value)\n"
    )
    with laminar.Client(c.addresses) as client:
        assert client.create_topic("plain").committed(10).ok
        assert client.create_topic("prog", program=program).committed(10).ok
        for n in range(100):
            client.put("plain", f"k{n}", "v")
        assert client.put("prog", "k", "bad").committed(10).effect is laminar.Effect.ERROR
        client.flush(10)
    leader = c.leader_id()
    c.wait_applied(103)
    with laminar.Listener(c.addresses[0], "plain") as listener:
        listener.take(1, timeout=10)
        assert scrape(c.metrics_addresses[0])["laminar_listeners"] == 1
    m = scrape(c.metrics_addresses[leader - 1])
    assert m['laminar_role{role="leader"}'] == 1 and m['laminar_role{role="follower"}'] == 0
    assert m["laminar_term"] >= 1 and m["laminar_commit_index"] >= m["laminar_applied_index"] > 0
    assert m["laminar_intention_offset"] == 103
    assert m["laminar_intentions_total"] == 103 and m["laminar_events_total"] >= 102
    assert m["laminar_commit_latency_seconds_count"] >= 1
    assert m["laminar_batch_intentions_count"] >= 1 and m["laminar_batch_intentions_sum"] == 103
    assert m['laminar_program_errors_total{topic="prog"}'] == 1
    assert "laminar_proposal_queue_intentions" in m and "laminar_apply_queue_entries" in m
    assert "laminar_journal_syncs_total" in m
    assert m["laminar_gc_frozen_objects"] > 10_000  # a started node's objects are out of the collector's full passes
    follower = next(n for n in (1, 2, 3) if n != leader)
    fm = scrape(c.metrics_addresses[follower - 1])
    assert fm['laminar_role{role="follower"}'] == 1 and fm["laminar_intentions_total"] == 103
    deadline = time.monotonic() + 10
    while scrape(c.metrics_addresses[0])["laminar_listeners"] != 0:  # the closed listener's stream ends
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_budget_exhaustions_are_counted_by_topic(make_cluster) -> None:
    """A program that runs out of steps counts as a program error and a budget exhaustion of its topic."""
    c = make_cluster(1, metrics=True)
    assert c.metrics_addresses is not None
    program = "def on_put(ctx, key, value):\n    while True:\n        pass\n"
    with laminar.Client(c.addresses) as client:
        assert client.create_topic("spin", program=program).committed(10).ok
        commit = client.put("spin", "k", "v").committed(30)
    assert commit.effect is laminar.Effect.ERROR and "budget exhausted" in commit.reason
    m = scrape(c.metrics_addresses[0])
    assert m['laminar_program_budget_exhaustions_total{topic="spin"}'] == 1
    assert m['laminar_program_errors_total{topic="spin"}'] == 1


def test_json_logs_have_one_object_per_line_with_role_and_leader_changes(make_cluster) -> None:
    """`laminar node --log-format json` writes machine-readable lines, including role and leader changes."""
    c = make_cluster(1, extra_args=("--log-format", "json"))
    c.wait_applied(0)
    time.sleep(0.5)
    with open(os.path.join(c.log_dir, "node-1.log")) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    assert lines and all({"time", "level", "logger", "node", "message"} <= set(line) for line in lines)
    messages = " | ".join(line["message"] for line in lines)
    assert "-> leader" in messages and "leader is now" in messages and "health SERVING" in messages


def test_status_table_shows_lag_and_health(make_cluster) -> None:
    """`laminar status` has lag and health columns; --json keeps {"nodes": [...]} and adds them."""
    c = make_cluster(3)
    env = dict(os.environ, LAMINAR_ADDRESSES=",".join(c.addresses))
    run = [sys.executable, "-m", "laminar", "status"]
    table = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    header = table.splitlines()[0].split()
    assert header[:3] == ["node_id", "address", "role"] and "lag" in header and "health" in header
    assert table.count("serving") == 3
    nodes = json.loads(
        subprocess.run([*run, "--json"], capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    )["nodes"]
    assert all(n["health"] == "serving" and isinstance(n["lag"], int) and n["lag"] >= 0 for n in nodes)


def test_a_session_that_never_says_hello_is_ended_by_the_node(make_cluster) -> None:
    """A client that opens a Session and sends nothing (no deadline of its own) is cut after HELLO_TIMEOUT_S."""
    from laminar.node.service._sessions import HELLO_TIMEOUT_S

    c = make_cluster(1)
    silent = threading.Event()

    def nothing():  # type: ignore[no-untyped-def]
        silent.wait(60)
        yield from ()

    with grpc.insecure_channel(c.addresses[0]) as channel:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            list(laminar_pb2_grpc.LaminarStub(channel).Session(nothing()))
        silent.set()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "no Hello" in caught.value.details()
    assert HELLO_TIMEOUT_S <= time.monotonic() - started < HELLO_TIMEOUT_S + 5
