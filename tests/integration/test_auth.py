"""Authorization on a real 3-node cluster: every RPC without and with each permission, revocation cutting open
streams, token guessing throttled and counted, and a fuzz of the Auth RPC. One cluster for the module; the
tests run in file order (the guessing test locks 127.0.0.1 out of one node, so it runs last)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli_failures import run_main

import laminar
from laminar._cli._exits import Exit
from laminar.local_cluster import LocalCluster, free_port_block, write_config
from laminar.v1 import laminar_pb2 as pb
from laminar.v1 import laminar_pb2_grpc as pb_grpc

CALL_TIMEOUT_S = 10.0
CUT_TIMEOUT_S = 10.0
A = pb.AuthRequest.Action
ROOT_SECRET = "root-secret-for-tests"
TOPIC = "t.main"
# user -> (role grants as `laminar role grant` arguments); every user gets a role of its own name.
USERS: dict[str, list[list[str]]] = {
    "reader": [["read", "t.*"]],
    "writer": [["write", "t.*"]],
    "topicadmin": [["admin", "t.*"]],
    "clusteradmin": [["admin", "--cluster"]],
    "elsewhere": [["read", "other"], ["write", "other"], ["admin", "other"]],  # everything, on another topic
}


@dataclass
class Cluster:
    process: LocalCluster
    addresses: list[str]
    metrics: list[str]
    secrets: dict[str, str]  # user -> token (<user>:<secret>)

    def leader(self) -> str:
        # Status is rate limited per node (STATUS_CALLS_PER_S_MAX): a test that asks for the leader before each of
        # many calls may be told to retry later, as any client may.
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            statuses = laminar.cluster_status(self.addresses, timeout_s=2.0, token=self.secrets.get("root"))
            leaders = [s["address"] for s in statuses if s.get("role") == "leader"]
            if leaders or time.monotonic() > deadline:
                return leaders[0] if leaders else ""
            time.sleep(0.1)

    def stub(self, address: str | None = None) -> pb_grpc.LaminarStub:
        return pb_grpc.LaminarStub(grpc.insecure_channel(address or self.leader()))

    def admin(self, action: int, **fields: object) -> dict:
        request = pb.AuthRequest(action=action, **fields)  # type: ignore[arg-type]
        return laminar.client.auth_request(self.addresses, request, token=self.secrets.get("root"))


def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _cli(capsys: pytest.CaptureFixture[str], addresses: list[str], *args: str, token: str | None = None) -> str:
    extra = ["--token", token] if token else []
    command = [args[0], args[1], *args[2:], "--addresses", ",".join(addresses), *extra]
    code, out, err, _ = run_main(capsys, *command)
    assert code == Exit.OK, (command, err)
    return out


START_ATTEMPTS = 3  # ports are probed free, then bound by the nodes: another process may take one in between


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for _ in range(START_ATTEMPTS):
        root = tmp_path_factory.mktemp("auth")
        base, metrics_base = free_port_block(3), free_port_block(2)
        write_config(str(root / "c.toml"), 3, base, str(root / "data"), metrics_base_port=metrics_base)
        process = LocalCluster(str(root / "c.toml"), [1, 2, 3], log_dir=str(root))
        process.start_all()
        addresses = [f"127.0.0.1:{base + n}" for n in (1, 2, 3)]
        metrics = [f"127.0.0.1:{metrics_base + n}" for n in (1, 2, 3)]
        try:
            if _all_answer(process, addresses):
                yield Cluster(process, addresses, metrics, {})
                return
        finally:
            process.stop_all()
    raise AssertionError(f"the cluster did not start in {START_ATTEMPTS} attempts; logs in {root}")


def _all_answer(process: LocalCluster, addresses: list[str]) -> bool:
    """True once every node answers Status; False as soon as one exited (a port taken under our feet)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not all(process.alive(n) for n in (1, 2, 3)):
            return False
        statuses = laminar.cluster_status(addresses, timeout_s=1.0)
        if all("error" not in s for s in statuses) and any(s.get("role") == "leader" for s in statuses):
            return True
        time.sleep(0.1)
    return False


def test_auth_is_off_by_default_and_enable_needs_root_first(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off by default (anyone may do anything); `auth enable` is refused until user root holds role root; the CLI
    sets up users and roles, prints each token once, and after `auth enable` a call without a token is refused."""
    _wait_for_leader(cluster)
    with laminar.Client(cluster.addresses) as client:  # no identity: auth is off
        assert client.create_topic(TOPIC).committed(timeout=CALL_TIMEOUT_S).effect == "VALID"
        assert client.put(TOPIC, b"k", b"v").committed(timeout=CALL_TIMEOUT_S).effect == "VALID"
        assert client.create_topic("t.scratch").committed(timeout=CALL_TIMEOUT_S).effect == "VALID"
    code, _, err, _ = run_main(capsys, "auth", "enable", "--addresses", ",".join(cluster.addresses))
    assert code == Exit.REJECTED and "add the user 'root'" in err
    cluster.admin(A.USER_ADD, user="root", token=ROOT_SECRET)
    cluster.admin(A.USER_GRANT, user="root", role="root")
    cluster.secrets["root"] = f"root:{ROOT_SECRET}"
    for user, grants in USERS.items():
        if user == "writer":  # one user through the CLI, the rest through the library (quicker)
            token = _cli(capsys, cluster.addresses, "user", "add", user).strip()
            assert token.startswith(f"{user}:") and len(token) > len(user) + 30, "a generated token is printed once"
            cluster.admin(A.ROLE_ADD, role=user)
            assert "write on t.*" in _cli(capsys, cluster.addresses, "role", "grant", user, *grants[0])
            cluster.admin(A.USER_GRANT, user=user, role=user)
            cluster.secrets[user] = token
            continue
        cluster.secrets[user] = f"{user}:secret-of-{user}"
        cluster.admin(A.USER_ADD, user=user, token=f"secret-of-{user}")
        cluster.admin(A.ROLE_ADD, role=user)
        for permission, pattern in grants:
            grant = laminar.client.grant(permission, "" if pattern == "--cluster" else pattern, pattern == "--cluster")
            cluster.admin(A.ROLE_GRANT, role=user, grant=grant)
        cluster.admin(A.USER_GRANT, user=user, role=user)
    assert "enabled" in _cli(capsys, cluster.addresses, "auth", "enable")
    code, _, err, _ = run_main(capsys, "user", "list", "--addresses", ",".join(cluster.addresses))
    assert code == Exit.NOPERM and "authorization is on" in err, err
    out = _cli(capsys, cluster.addresses, "user", "list", token=cluster.secrets["root"])
    assert "writer" in out and ROOT_SECRET not in out


# ---- every RPC, without and with each permission ---------------------------------------------------------

# (name, the permission it needs: "read"/"write"/"admin" on t.*, "cluster" for admin on the cluster, None: any
# authenticated caller)
RPCS = [
    ("Status", None),
    ("Get", "read"),
    ("DescribeTopic", "read"),
    ("Listen", "read"),
    ("put", "write"),
    ("delete", "write"),
    ("create", "admin"),
    ("destroy", "admin"),
    ("Digest", "cluster"),
    ("ChangeMembership", "cluster"),
    ("InjectFault", "cluster"),
    ("Auth", "cluster"),
]
HOLDS = {
    "reader": {"read"},
    "writer": {"write"},
    "topicadmin": {"admin"},
    "clusteradmin": {"cluster"},
    "elsewhere": set(),
    "root": {"read", "write", "admin", "cluster"},
}


def _session(stub: pb_grpc.LaminarStub, token: str | None, mutation: pb.Mutation) -> grpc.StatusCode:
    """One mutation through a raw Session: OK once it is committed, else the status the session ended with."""
    done = threading.Event()
    hello = pb.ClientFrame(hello=pb.Hello(client_id=uuid.uuid4().bytes, next_nonce=1))
    mutation.nonce = 1

    def frames() -> Iterator[pb.ClientFrame]:
        yield hello
        yield pb.ClientFrame(mutations=pb.MutationFrame(mutations=[mutation]))
        done.wait(CALL_TIMEOUT_S)

    call = stub.Session(frames(), metadata=_metadata(token), timeout=CALL_TIMEOUT_S)
    try:
        for frame in call:
            if frame.HasField("acks") and frame.acks.commits:
                return grpc.StatusCode.OK
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    finally:
        done.set()
        call.cancel()


def _try(cluster: Cluster, rpc: str, token: str | None, user: str) -> tuple[grpc.StatusCode, str]:
    stub, md = cluster.stub(), _metadata(token)
    scratch = f"t.s-{user}"
    calls = {
        "Status": lambda: stub.Status(pb.StatusRequest(), metadata=md, timeout=CALL_TIMEOUT_S),
        "Get": lambda: stub.Get(pb.GetRequest(topic=TOPIC, key=b"k"), metadata=md, timeout=CALL_TIMEOUT_S),
        "DescribeTopic": lambda: stub.DescribeTopic(pb.DescribeTopicRequest(topic=TOPIC), metadata=md, timeout=5),
        "Listen": lambda: next(iter(stub.Listen(pb.ListenRequest(topic=TOPIC), metadata=md, timeout=5))),
        "Digest": lambda: stub.Digest(pb.DigestRequest(), metadata=md, timeout=CALL_TIMEOUT_S),
        "ChangeMembership": lambda: stub.ChangeMembership(
            pb.MembershipChange(action=pb.MembershipChange.REMOVE, node_id="99"), metadata=md, timeout=5
        ),
        "InjectFault": lambda: stub.InjectFault(pb.FaultRequest(), metadata=md, timeout=CALL_TIMEOUT_S),
        "Auth": lambda: stub.Auth(pb.AuthRequest(action=A.LIST), metadata=md, timeout=CALL_TIMEOUT_S),
    }
    mutations = {
        "put": pb.Mutation(kind=pb.PUT, topic=TOPIC, key=b"k", value=user.encode()),
        "delete": pb.Mutation(kind=pb.DELETE, topic=TOPIC, key=b"gone"),
        "create": pb.Mutation(kind=pb.CREATE_TOPIC, topic=scratch),
        "destroy": pb.Mutation(kind=pb.DESTROY_TOPIC, topic="t.scratch" if user != "root" else scratch),
    }
    if rpc in mutations:
        return _session(stub, token, mutations[rpc]), ""
    deadline = time.monotonic() + CALL_TIMEOUT_S
    while True:
        try:
            calls[rpc]()
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            if code != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                return code, error.details() or ""  # type: ignore[attr-defined]
            time.sleep(0.2)  # Status, DescribeTopic and Digest are rate limited: "retry later", as a client would


def test_every_rpc_is_refused_without_its_permission_and_served_with_it(cluster: Cluster) -> None:
    """For each RPC and each user (none, each single permission, a user with everything on another topic, root):
    no identity is UNAUTHENTICATED; a missing permission is PERMISSION_DENIED naming it and changes nothing
    (same digest before and after); a held one gets past authorization."""
    before = _digest(cluster)
    for rpc, needs in RPCS:
        code, _ = _try(cluster, rpc, None, "anonymous")
        assert code == grpc.StatusCode.UNAUTHENTICATED, (rpc, code)
        for user, holds in HOLDS.items():
            if needs in holds or needs is None:
                continue
            code, details = _try(cluster, rpc, cluster.secrets[user], user)
            assert code == grpc.StatusCode.PERMISSION_DENIED, (rpc, user, code)
            if details:  # a unary call's refusal names the permission it lacked
                wanted = "admin on the cluster" if needs == "cluster" else f"{needs} on topic"
                assert wanted in details and repr(user) in details, (rpc, user, details)
    assert _digest(cluster) == before, "a refused call changed the replicated state"
    for rpc, needs in RPCS:
        for user, holds in HOLDS.items():
            if needs in holds or needs is None:
                code, details = _try(cluster, rpc, cluster.secrets[user], user)
                refused = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
                assert code not in refused, (rpc, user, code, details)


def test_status_lists_only_the_topics_the_caller_may_read(cluster: Cluster) -> None:
    """Any authenticated caller may ask Status (clients find the leader with it), but a topic's name is `read` data:
    the answer lists only the topics the caller may read."""
    with laminar.Client(cluster.addresses, token=cluster.secrets["root"]) as client:
        client.create_topic("other").committed(timeout=CALL_TIMEOUT_S)  # may exist already: either way it is live

    stub = cluster.stub()

    def listed(user: str) -> set[str]:
        md = _metadata(cluster.secrets[user])
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            try:
                return set(stub.Status(pb.StatusRequest(), metadata=md, timeout=CALL_TIMEOUT_S).topics)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:  # type: ignore[attr-defined]
                    raise
                time.sleep(0.2)  # Status is rate limited per node: retry later, as a client would

    assert {TOPIC, "other"} <= listed("root")
    assert TOPIC in listed("reader") and "other" not in listed("reader")
    assert "other" in listed("elsewhere") and TOPIC not in listed("elsewhere")
    assert listed("writer") == set()  # write alone does not show names


def test_a_client_id_belongs_to_the_user_that_first_used_it(cluster: Cluster) -> None:
    """A client id first used by `writer` is refused to any other user (even root) with PERMISSION_DENIED before
    anything is taken, and the owner's open session is not taken over: it goes on committing."""
    client_id = uuid.uuid4()
    owner = laminar.Client(cluster.addresses, client_id=client_id, token=cluster.secrets["writer"])
    try:
        first = owner.put(TOPIC, b"owned", b"1").committed(timeout=CALL_TIMEOUT_S)
        assert first.effect == "VALID", first
        intruder = laminar.Client(cluster.addresses, client_id=client_id, token=cluster.secrets["root"])
        with pytest.raises(laminar.PermissionDenied, match="belongs to another user"):
            intruder.put(TOPIC, b"owned", b"2").committed(timeout=CALL_TIMEOUT_S)
        with contextlib.suppress(laminar.Unacknowledged):
            intruder.close()
        assert owner.put(TOPIC, b"owned", b"3").committed(timeout=CALL_TIMEOUT_S).effect == "VALID"
    finally:
        owner.close()
    md = _metadata(cluster.secrets["root"])
    assert cluster.stub().Get(pb.GetRequest(topic=TOPIC, key=b"owned"), metadata=md, timeout=10).value == b"3"


def test_a_reader_may_run_a_durable_consumer_but_not_reset_it(cluster: Cluster) -> None:
    """A user with only `read` on the topic runs a durable consumer (its acks need read, sent with its token) and
    the position is kept; resetting that consumer needs admin and is refused."""
    reader = cluster.secrets["reader"]
    with laminar.Listener(cluster.addresses, TOPIC, consumer="audit", token=reader) as listener:
        first = listener.next_event(timeout=CALL_TIMEOUT_S)
        listener.ack(first)
    info = laminar.client.describe_topic(cluster.addresses, TOPIC, token=reader)
    consumer = next(c for c in info.consumers if c.name == "audit")
    assert consumer.acked_offset == first.consequence_offset
    reset = pb.Mutation(kind=pb.CONSUMER_RESET, topic=TOPIC, consumer=pb.ConsumerOp(name="audit", offset=0))
    assert _session(cluster.stub(), reader, reset) == grpc.StatusCode.PERMISSION_DENIED


PIPELINE = """
def on_put(ctx, key, value):
    ctx.call("t.pay", "charge", value, context={"key": key.decode()})

def on_result(ctx, call, response, failure):
    ctx.put("paid/" + call.context["key"], response)
"""


def _user(cluster: Cluster, name: str, grants: list[tuple[str, str]]) -> str:
    """A user with a role of its own holding `grants` ((permission, pattern)); returns its token."""
    cluster.admin(A.USER_ADD, user=name, token=f"secret-of-{name}")
    cluster.admin(A.ROLE_ADD, role=name)
    for permission, pattern in grants:
        cluster.admin(A.ROLE_GRANT, role=name, grant=laminar.client.grant(permission, pattern, False))
    cluster.admin(A.USER_GRANT, user=name, role=name)
    return f"{name}:secret-of-{name}"


def test_a_worker_needs_read_and_write_on_its_service_and_write_on_the_calling_topic(cluster: Cluster) -> None:
    """With authorization on, a Worker lacking a permission it needs gets a PermissionDenied that names it (at its
    join, at its first call, or at its first result), and one holding read and write on its service's name and
    write on the calling topic completes calls that the topic's on_result turns into events."""
    root = cluster.secrets["root"]
    with laminar.Client(cluster.addresses, token=root) as client:
        assert client.create_topic("t.orders", program=PIPELINE).committed(timeout=CALL_TIMEOUT_S).ok
        assert client.put("t.orders", "o1", "10").committed(timeout=CALL_TIMEOUT_S).ok
    no_write = _user(cluster, "w-nowrite", [("read", "t.pay")])
    with pytest.raises(laminar.PermissionDenied, match=re.escape("lacks write on topic 't.pay'")):
        laminar.Worker(cluster.addresses, service="t.pay", token=no_write)
    no_read = _user(cluster, "w-noread", [("write", "t.pay")])
    with (
        laminar.Worker(cluster.addresses, service="t.pay", token=no_read) as worker,
        pytest.raises(laminar.PermissionDenied, match=re.escape("lacks read on topic 't.pay'")),
    ):
        worker.next_call(timeout=CALL_TIMEOUT_S)
    no_result = _user(cluster, "w-noresult", [("read", "t.pay"), ("write", "t.pay")])
    worker = laminar.Worker(cluster.addresses, service="t.pay", token=no_result, lease_ms=1000)  # its lease lapses soon
    call = worker.next_call(timeout=CALL_TIMEOUT_S)
    with pytest.raises(laminar.PermissionDenied, match=re.escape("lacks write on topic 't.orders'")):
        call.complete(b"paid").committed(timeout=CALL_TIMEOUT_S)
    with pytest.raises(laminar.PermissionDenied, match=re.escape("lacks write on topic 't.orders'")):
        worker.next_call(timeout=CALL_TIMEOUT_S)  # its results cannot be posted: it takes no more calls
    started = time.monotonic()
    worker.close()  # the refused result is on its Pending and in stats: close neither waits for it nor raises
    assert time.monotonic() - started < 5 and worker.stats.errors == 1
    allowed = _user(cluster, "w-ok", [("read", "t.pay"), ("write", "t.pay"), ("write", "t.orders")])
    with laminar.Worker(cluster.addresses, service="t.pay", token=allowed) as worker:
        call = worker.next_call(timeout=CALL_TIMEOUT_S)
        assert call.context == {"key": "o1"} and call.request == b"10"
        assert call.complete(b"paid").committed(timeout=CALL_TIMEOUT_S).effect == "VALID"
    with laminar.Client(cluster.addresses, token=root) as client:
        assert client.get("t.orders", "paid/o1").value == b"paid"


def _digest(cluster: Cluster) -> str:
    response = cluster.stub().Digest(pb.DigestRequest(), metadata=_metadata(cluster.secrets["root"]), timeout=10)
    return str(response.sha256)


def _wait_for_leader(cluster: Cluster) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        statuses = laminar.cluster_status(cluster.addresses, timeout_s=1.0)
        if any(s.get("role") == "leader" for s in statuses):
            return
        time.sleep(0.1)
    raise AssertionError("no leader")


# ---- revocation -----------------------------------------------------------------------------------------


def test_a_revoked_users_open_session_and_listener_are_cut(cluster: Cluster) -> None:
    """A user with read and write holds an open Session and a Listener; once its role is revoked both end with
    PERMISSION_DENIED, though neither sent anything after the revoke; its next call is refused too."""
    token = "temp:secret-of-temp"
    cluster.admin(A.USER_ADD, user="temp", token="secret-of-temp")
    cluster.admin(A.ROLE_ADD, role="temp")
    cluster.admin(A.ROLE_GRANT, role="temp", grant=laminar.client.grant("read", "t.*"))
    cluster.admin(A.ROLE_GRANT, role="temp", grant=laminar.client.grant("write", "t.*"))
    cluster.admin(A.USER_GRANT, user="temp", role="temp")
    heard: list[laminar.Event] = []
    listener_error: list[BaseException] = []
    listener = laminar.Listener(cluster.addresses[2:], TOPIC, token=token)  # a follower's listener

    def listen() -> None:
        try:
            for event in listener:
                heard.append(event)
        except laminar.LaminarError as e:
            listener_error.append(e)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    stub, sent_all = cluster.stub(), threading.Event()
    hello = pb.ClientFrame(hello=pb.Hello(client_id=uuid.uuid4().bytes, next_nonce=1))
    put = pb.Mutation(nonce=1, kind=pb.PUT, topic=TOPIC, key=b"temp", value=b"1")

    def frames() -> Iterator[pb.ClientFrame]:
        yield hello
        yield pb.ClientFrame(mutations=pb.MutationFrame(mutations=[put]))
        sent_all.wait(CUT_TIMEOUT_S * 2)  # then silence: the session stays open, idle

    session = stub.Session(frames(), metadata=_metadata(token), timeout=CUT_TIMEOUT_S * 2)
    try:
        for frame in session:
            if frame.HasField("acks") and frame.acks.commits:
                break
        deadline = time.monotonic() + CUT_TIMEOUT_S
        while not any(e.key == b"temp" for e in heard) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(e.key == b"temp" for e in heard), "the listener did not hear the put"
        cluster.admin(A.USER_REVOKE, user="temp", role="temp")
        revoked = time.monotonic()
        with pytest.raises(grpc.RpcError) as cut:
            for _ in session:
                pass
        assert cut.value.code() == grpc.StatusCode.PERMISSION_DENIED, cut.value
        thread.join(CUT_TIMEOUT_S)
        assert not thread.is_alive(), "the listener was not cut"
        assert listener_error and isinstance(listener_error[0], laminar.PermissionDenied), listener_error
        assert time.monotonic() - revoked < CUT_TIMEOUT_S
    finally:
        sent_all.set()
        session.cancel()
        listener.close()
    client = laminar.Client(cluster.addresses, token=token, close_timeout=1)
    with pytest.raises(laminar.PermissionDenied, match=r"lacks write on topic 't\.main'"):
        client.put(TOPIC, b"temp", b"2").committed(timeout=CALL_TIMEOUT_S)
    with contextlib.suppress(laminar.Unacknowledged):  # close() reports the refused put as not acknowledged
        client.close()


# ---- fuzz -------------------------------------------------------------------------------------------------

NAMES = st.sampled_from(["", "u1", "u2", "r1", "reader", "writer", "bad name", "x" * 70, "é", "r1*"])
GRANTS = st.builds(
    pb.Grant,
    permission=st.integers(0, 4),
    pattern=st.sampled_from(["", "*", "t.*", "t.main", "bad topic", "x" * 300]),
    cluster=st.booleans(),
)
REQUESTS = st.builds(
    pb.AuthRequest,
    action=st.integers(0, 13).filter(lambda a: a != A.DISABLE),  # auth stays on for the tests after this one
    user=NAMES,
    role=NAMES | st.just("root"),
    token=st.sampled_from(["", "short", "a-long-enough-secret", "x" * 2000]),
    grant=GRANTS,
)
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=REQUESTS)
def test_fuzzed_auth_requests_get_clear_answers_and_never_lock_root_out(
    cluster: Cluster, request: pb.AuthRequest
) -> None:
    """Any AuthRequest from root (odd actions, names, patterns, permissions, token sizes) is answered OK,
    INVALID_ARGUMENT or FAILED_PRECONDITION; root keeps its access; the nodes stay identical (checked next)."""
    stub, md = cluster.stub(), _metadata(cluster.secrets["root"])
    try:
        stub.Auth(request, metadata=md, timeout=CALL_TIMEOUT_S)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()  # type: ignore[attr-defined]
    assert code in ANSWERS, (request, code)
    assert stub.Auth(pb.AuthRequest(action=A.LIST), metadata=md, timeout=CALL_TIMEOUT_S).enabled


def test_after_the_fuzz_every_node_holds_the_same_auth_state(cluster: Cluster) -> None:
    """The auth state is replicated: every node's digest (which covers it) is the same once they caught up."""
    md = _metadata(cluster.secrets["root"])
    deadline = time.monotonic() + 20
    while True:
        digests = {
            a: pb_grpc.LaminarStub(grpc.insecure_channel(a)).Digest(pb.DigestRequest(), metadata=md, timeout=10)
            for a in cluster.addresses
        }
        if len({(d.intention_offset, d.sha256) for d in digests.values()}) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len({d.sha256 for d in digests.values()}) == 1, digests


# ---- guessing (last: it locks 127.0.0.1 out of one node) ------------------------------------------------------


def _refusals(metrics_address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("laminar_auth_refusals_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


def test_guessing_a_token_is_slowed_down_and_counted_in_metrics(cluster: Cluster) -> None:
    """Wrong secrets from one address: after the free failures each attempt is refused unchecked until a lock-out
    that grows passes (even the right secret, unless already verified), and the metrics count both kinds."""
    address, metrics = cluster.addresses[2], cluster.metrics[2]
    stub = pb_grpc.LaminarStub(grpc.insecure_channel(address))
    before = _refusals(metrics)
    messages = []
    started = time.monotonic()
    for n in range(30):
        try:
            stub.Status(pb.StatusRequest(), metadata=_metadata(f"writer:guess-{n}"), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            messages.append(error.details())
    assert time.monotonic() - started < CALL_TIMEOUT_S, "refusals are answered at once, not by holding a thread"
    assert messages[0] == "unknown user or wrong secret"
    assert sum("too many failed authentications" in m for m in messages) >= 20, messages
    right = "reader:secret-of-reader"  # never verified on this node: it waits out the lock-out too
    with pytest.raises(grpc.RpcError, match="too many failed authentications"):
        stub.Status(pb.StatusRequest(), metadata=_metadata(right), timeout=CALL_TIMEOUT_S)
    after = _refusals(metrics)
    assert after.get("bad_credential", 0) - before.get("bad_credential", 0) >= 6
    assert after.get("throttled", 0) - before.get("throttled", 0) >= 20
