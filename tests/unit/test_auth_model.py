"""The permission model, token hashing and the failure throttle, without a node."""

from __future__ import annotations

import pytest

from laminar import limits
from laminar.node import auth
from laminar.node.auth import AuthState, Throttle, apply_change
from laminar.v1 import laminar_pb2 as pb

A = pb.AuthRequest.Action
READ, WRITE, ADMIN = pb.PERMISSION_READ, pb.PERMISSION_WRITE, pb.PERMISSION_ADMIN


def _apply(state: AuthState, **fields: object) -> AuthState:
    after, problem = apply_change(state, pb.AuthChange(**fields))  # type: ignore[arg-type]
    assert problem is None, problem
    return after


def _state() -> AuthState:
    """root (role root); alice: role `orders` = write on orders.*, read on `audit`; ops: admin on the cluster."""
    s = AuthState()
    for user in ("root", "alice", "ops"):
        s = _apply(s, action=A.USER_ADD, user=user)
    s = _apply(s, action=A.USER_GRANT, user="root", role="root")
    s = _apply(s, action=A.ROLE_ADD, role="orders")
    s = _apply(s, action=A.ROLE_GRANT, role="orders", grant=pb.Grant(permission=WRITE, pattern="orders.*"))
    s = _apply(s, action=A.ROLE_GRANT, role="orders", grant=pb.Grant(permission=READ, pattern="audit"))
    s = _apply(s, action=A.USER_GRANT, user="alice", role="orders")
    s = _apply(s, action=A.ROLE_ADD, role="ops")
    s = _apply(s, action=A.ROLE_GRANT, role="ops", grant=pb.Grant(permission=ADMIN, cluster=True))
    return _apply(s, action=A.USER_GRANT, user="ops", role="ops")


def test_grants_match_exact_and_prefix_patterns_and_permissions_are_independent() -> None:
    """write on `orders.*` covers orders.eu but not `orders` or read; read on `audit` is exact; root may do anything."""
    s = _state()
    assert auth.allowed(s, "alice", WRITE, "orders.eu")
    assert not auth.allowed(s, "alice", WRITE, "orders")  # the prefix is `orders.`
    assert not auth.allowed(s, "alice", READ, "orders.eu")  # write does not imply read
    assert not auth.allowed(s, "alice", ADMIN, "orders.eu")
    assert auth.allowed(s, "alice", READ, "audit") and not auth.allowed(s, "alice", READ, "audit2")
    assert not auth.allowed(s, "alice", ADMIN, None) and auth.allowed(s, "ops", ADMIN, None)
    assert not auth.allowed(s, "ops", ADMIN, "orders.eu")  # the cluster is not a topic
    assert all(auth.allowed(s, "root", p, t) for p in (READ, WRITE, ADMIN) for t in ("x", None))
    assert not auth.allowed(s, "nobody", READ, "audit")
    star = _apply(s, action=A.ROLE_GRANT, role="orders", grant=pb.Grant(permission=READ, pattern="*"))
    assert auth.allowed(star, "alice", READ, "anything")


def test_enable_needs_root_and_root_cannot_be_locked_out_while_enabled() -> None:
    """Like etcd: no enable without user root holding role root; then root can be neither removed nor demoted."""
    _, problem = apply_change(AuthState(), pb.AuthChange(action=A.ENABLE))
    assert problem is not None and "root" in problem
    s = _apply(_state(), action=A.ENABLE)
    for change in (
        pb.AuthChange(action=A.USER_REMOVE, user="root"),
        pb.AuthChange(action=A.USER_REVOKE, user="root", role="root"),
        pb.AuthChange(action=A.ROLE_REMOVE, role="root"),
    ):
        after, problem = apply_change(s, change)
        assert problem is not None and after is s


def test_refused_changes_leave_the_state_as_it_was() -> None:
    """Bad names, unknown users or roles, duplicates and bad patterns are refused with a reason; nothing changes."""
    s = _state()
    bad = [
        pb.AuthChange(action=A.USER_ADD, user="alice"),
        pb.AuthChange(action=A.USER_ADD, user="bad name"),
        pb.AuthChange(action=A.USER_ADD, user="x" * (limits.AUTH_NAME_BYTES_MAX + 1)),
        pb.AuthChange(action=A.USER_GRANT, user="alice", role="missing"),
        pb.AuthChange(action=A.USER_GRANT, user="missing", role="orders"),
        pb.AuthChange(action=A.ROLE_GRANT, role="orders", grant=pb.Grant(permission=READ, pattern="bad topic")),
        pb.AuthChange(action=A.ROLE_GRANT, role="orders", grant=pb.Grant(permission=READ, pattern="x", cluster=True)),
        pb.AuthChange(action=A.ROLE_GRANT, role="orders", grant=pb.Grant(pattern="x")),
        pb.AuthChange(action=A.ROLE_ADD, role="orders"),
        pb.AuthChange(action=A.ACTION_UNSPECIFIED),
        pb.AuthChange(action=A.LIST),
    ]
    for change in bad:
        after, problem = apply_change(s, change)
        assert problem and after is s, change


def test_removing_a_role_takes_it_from_users_and_the_state_round_trips_through_bytes() -> None:
    """ROLE_REMOVE strips the role from every user; encode/decode keep users, roles, grants and hashes."""
    s = _apply(_state(), action=A.ROLE_REMOVE, role="orders")
    assert s.users["alice"].roles == [] and not auth.allowed(s, "alice", WRITE, "orders.eu")
    salt = auth.new_salt()
    s = _apply(s, action=A.USER_ADD, user="carol", token_salt=salt, token_hash=auth.hash_secret("s3cret-s3cret", salt))
    again = AuthState.decode(s.encode())
    assert again.encode() == s.encode()
    assert all(not u.token_hash for u in s.public().users), "LIST must not carry hashes"


def test_tokens_are_stored_salted_and_checked_in_constant_time() -> None:
    """The same secret hashes differently under two salts; verify accepts only the secret; a token-less user never."""
    s1, s2 = auth.new_salt(), auth.new_salt()
    assert auth.hash_secret("secret-1", s1) != auth.hash_secret("secret-1", s2)
    user = pb.AuthUser(name="u", token_salt=s1, token_hash=auth.hash_secret("secret-1", s1))
    assert auth.verify(user, "secret-1") and not auth.verify(user, "secret-2")
    assert not auth.verify(pb.AuthUser(name="cert-only"), "anything")
    assert auth.parse("Bearer alice:pa:ss") == auth.Credential("alice", "pa:ss")
    assert "pa:ss" not in repr(auth.parse("Bearer alice:pa:ss")), "a secret must not reach a log via repr"
    for header in ("alice:pass", "Bearer alice", "Bearer :x", "Basic alice:x", "Bearer a:" + "x" * 5000):
        assert auth.parse(header) is None, header


def test_the_throttle_locks_out_a_guessing_peer_with_a_growing_delay_and_forgets_it_on_success() -> None:
    """Free failures first, then lock-outs that double up to the cap; a success clears; the table is bounded."""
    now = [0.0]
    throttle = Throttle(lambda: now[0])
    for _ in range(limits.AUTH_FAILURES_FREE):
        throttle.failed("p")
        assert throttle.wait_ms("p") == 0
    throttle.failed("p")
    assert throttle.wait_ms("p") == limits.AUTH_THROTTLE_MS_MIN
    throttle.failed("p")
    assert throttle.wait_ms("p") == 2 * limits.AUTH_THROTTLE_MS_MIN
    for _ in range(40):
        throttle.failed("p")
    assert throttle.wait_ms("p") == limits.AUTH_THROTTLE_MS_MAX
    assert throttle.wait_ms("other") == 0
    now[0] += limits.AUTH_THROTTLE_MS_MAX / 1000
    assert throttle.wait_ms("p") == 0
    throttle.succeeded("p")
    throttle.failed("p")
    assert throttle.wait_ms("p") == 0
    for n in range(limits.AUTH_PEERS_TRACKED_MAX + 10):
        throttle.failed(f"peer-{n}")
    assert throttle.tracked() == limits.AUTH_PEERS_TRACKED_MAX


@pytest.mark.parametrize(
    ("kind", "permission"),
    [
        (pb.PUT, WRITE),
        (pb.DELETE, WRITE),
        (pb.CREATE_TOPIC, ADMIN),
        (pb.DESTROY_TOPIC, ADMIN),
        (pb.CONSUMER_RESET, ADMIN),
        (pb.CONSUMER_DELETE, ADMIN),
        (pb.CONSUMER_ACK, READ),
        (pb.GROUP_JOIN, READ),
        (pb.GROUP_ACK, READ),
        (pb.GROUP_LEAVE, READ),
        (pb.CALL_COMPLETE, WRITE),
        (pb.CALL_FAIL, WRITE),
        (pb.WORKER_JOIN, WRITE),
        (pb.WORKER_LEAVE, WRITE),
        (99, WRITE),
    ],
)
def test_each_mutation_kind_needs_its_permission(kind: int, permission: int) -> None:
    """Writes need write; topic and consumer administration needs admin; a consumer's acks need read."""
    assert auth.permission_of(kind) == permission
    assert set(pb.Kind.values()) - {pb.KIND_UNSPECIFIED} <= set(auth._model._KIND_PERMISSIONS) | {pb.PUT, pb.DELETE}


def test_the_leader_stamps_a_frame_with_its_user_over_whatever_the_client_wrote() -> None:
    """Appending MutationFrame.principal to a client frame's bytes sets it, keeps the mutations, and overrides a
    principal the client put there itself."""
    from laminar.node.auth._gate import _with_principal

    mutations = [pb.Mutation(nonce=1, kind=pb.PUT, topic="t", key=b"k", value=b"v")]
    forged = pb.ClientFrame(mutations=pb.MutationFrame(mutations=mutations, principal="root"))
    stamped = pb.ClientFrame.FromString(_with_principal(forged.SerializeToString(), "alice"))
    assert stamped.mutations.principal == "alice"
    assert list(stamped.mutations.mutations) == mutations
    run = pb.ClientRun.FromString(stamped.mutations.SerializeToString())  # the field numbers line up
    assert run.principal == "alice" and list(run.mutations) == mutations


def test_every_rpc_of_the_service_has_an_authorization_rule() -> None:
    """The interceptor lets an RPC without a rule through unchecked: each RPC of laminar.v1.Laminar has one in
    RULES (with the request type it names), or is Session, whose frames it checks one by one. Work and DescribeCalls
    (pipelines) were added to the proto: without their rules a worker's stream would read any service unchecked."""
    from laminar.node.auth._gate import RULES

    methods = pb.DESCRIPTOR.services_by_name["Laminar"].methods
    for method in methods:
        if method.name == "Session":
            continue
        assert method.name in RULES, f"{method.name} has no authorization rule"
        assert RULES[method.name].request.DESCRIPTOR is method.input_type, method.name
    assert RULES["Work"].topic(pb.WorkRequest(service="payments", worker="w")) == "payments"
