"""The permission model: users, roles and grants, and who may do what. Pure: no I/O, no clock.

Like etcd's RBAC. A user holds roles; a role holds grants; a grant is one permission (`read`,
`write` or `admin`) on a topic pattern or on the cluster:

    orders        exactly the topic `orders`
    orders.*      every topic whose name starts with `orders.`
    *             every topic
    (cluster)     membership, users and roles, Digest

The permissions are independent (a writer that may not read is expressible). A consumer's acks
need `read`; resetting or deleting a consumer needs `admin`. The built-in role
`root` grants everything. The same `apply_change` decides a change on the leader (to refuse it
before it is proposed) and in every node's state machine (deterministically, so replicas agree).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from laminar import _rules, limits
from laminar.v1 import laminar_pb2 as pb

ROOT = "root"  # the built-in role that grants everything, and the user `auth enable` requires
NAME_PATTERN = re.compile(rf"[A-Za-z0-9._-]{{1,{limits.AUTH_NAME_BYTES_MAX}}}")
PERMISSION_NAMES: dict[int, str] = {
    pb.PERMISSION_READ: "read",
    pb.PERMISSION_WRITE: "write",
    pb.PERMISSION_ADMIN: "admin",
}
Action = pb.AuthRequest.Action


@dataclass(frozen=True)
class AuthState:
    """The replicated auth state at one applied index. Never mutated: a change makes a new one, so a
    gRPC thread may read it while the apply thread replaces it."""

    enabled: bool = False
    users: dict[str, pb.AuthUser] = field(default_factory=dict)
    roles: dict[str, pb.AuthRole] = field(default_factory=dict)
    version: int = 0  # raised by every change: what a node cached from an older state is stale

    def encode(self) -> bytes:
        users = [self.users[n] for n in sorted(self.users)]
        roles = [self.roles[n] for n in sorted(self.roles)]
        return pb.AuthResponse(enabled=self.enabled, users=users, roles=roles).SerializeToString()

    @staticmethod
    def decode(data: bytes, version: int = 0) -> AuthState:
        stored = pb.AuthResponse.FromString(data)
        return AuthState(stored.enabled, {u.name: u for u in stored.users}, {r.name: r for r in stored.roles}, version)

    def public(self) -> pb.AuthResponse:
        """The state as a LIST answers it: no salts, no hashes."""
        users = [pb.AuthUser(name=u.name, roles=u.roles) for _, u in sorted(self.users.items())]
        return pb.AuthResponse(enabled=self.enabled, users=users, roles=[self.roles[n] for n in sorted(self.roles)])


def describe(permission: int, topic: str | None) -> str:
    """`write on topic 'orders'`, `admin on the cluster`: how a refusal names what was missing."""
    name = PERMISSION_NAMES.get(permission, "?")
    return f"{name} on the cluster" if topic is None else f"{name} on topic {topic!r}"


def grant_text(grant: pb.Grant) -> str:
    if grant.cluster:
        return describe(grant.permission, None)
    return f"{PERMISSION_NAMES.get(grant.permission, '?')} on {grant.pattern!r}"


def covers(grant: pb.Grant, permission: int, topic: str | None) -> bool:
    """Whether one grant allows `permission` on `topic` (None: on the cluster)."""
    if grant.permission != permission:
        return False
    if topic is None:
        return grant.cluster
    if grant.cluster:
        return False
    pattern = grant.pattern
    if pattern.endswith("*"):
        return topic.startswith(pattern[:-1])
    return topic == pattern


def allowed(state: AuthState, user: str, permission: int, topic: str | None) -> bool:
    """Whether `user` may do `permission` on `topic` (None: on the cluster)."""
    record = state.users.get(user)
    if record is None:
        return False
    for role_name in record.roles:
        if role_name == ROOT:
            return True
        role = state.roles.get(role_name)
        if role is not None and any(covers(g, permission, topic) for g in role.grants):
            return True
    return False


def holds_any(state: AuthState, user: str, permissions: tuple[int, ...]) -> bool:
    """Whether `user` exists and holds at least one of `permissions` anywhere (an open session's test)."""
    record = state.users.get(user)
    if record is None:
        return False
    for role_name in record.roles:
        if role_name == ROOT:
            return True
        role = state.roles.get(role_name)
        if role is not None and any(g.permission in permissions for g in role.grants):
            return True
    return False


def name_problem(name: str, what: str) -> str | None:
    if not NAME_PATTERN.fullmatch(name):
        return f"{what} name {name!r} must match [A-Za-z0-9._-]{{1,{limits.AUTH_NAME_BYTES_MAX}}}"
    return None


def grant_problem(grant: pb.Grant) -> str | None:
    if grant.permission not in PERMISSION_NAMES:
        return "a grant needs a permission: read, write or admin"
    if grant.cluster:
        return None if grant.pattern == "" else "a grant on the cluster has no topic pattern"
    pattern = grant.pattern
    if pattern == "*":
        return None
    name = pattern[:-1] if pattern.endswith("*") else pattern
    problem = _rules.topic_problem(name)
    return f"topic pattern {pattern!r}: {problem}" if problem else None


def apply_change(state: AuthState, change: pb.AuthChange) -> tuple[AuthState, str | None]:
    """The state after `change`, or the same state and why the change is refused."""
    problem = _change_problem(state, change)
    if problem is not None:
        return state, problem
    users, roles, enabled = dict(state.users), dict(state.roles), state.enabled
    a = change.action
    if a == Action.ENABLE:
        enabled = True
    elif a == Action.DISABLE:
        enabled = False
    elif a == Action.USER_ADD:
        users[change.user] = pb.AuthUser(name=change.user, token_salt=change.token_salt, token_hash=change.token_hash)
    elif a == Action.USER_REMOVE:
        del users[change.user]
    elif a in (Action.USER_GRANT, Action.USER_REVOKE):
        held = [r for r in users[change.user].roles if r != change.role]
        held += [change.role] if a == Action.USER_GRANT else []
        users[change.user] = _with(users[change.user], roles=sorted(held))
    elif a == Action.ROLE_ADD:
        roles[change.role] = pb.AuthRole(name=change.role)
    elif a == Action.ROLE_REMOVE:
        del roles[change.role]
        users = {n: _with(u, roles=[r for r in u.roles if r != change.role]) for n, u in users.items()}
    elif a in (Action.ROLE_GRANT, Action.ROLE_REVOKE):
        kept = [g for g in roles[change.role].grants if g != change.grant]
        kept += [change.grant] if a == Action.ROLE_GRANT else []
        roles[change.role] = pb.AuthRole(name=change.role, grants=kept)
    return AuthState(enabled, users, roles, state.version + 1), None


def _with(user: pb.AuthUser, roles: list[str]) -> pb.AuthUser:
    return pb.AuthUser(name=user.name, roles=roles, token_salt=user.token_salt, token_hash=user.token_hash)


def _change_problem(state: AuthState, change: pb.AuthChange) -> str | None:
    a = change.action
    if a == Action.ENABLE:
        if ROOT not in state.users or ROOT not in state.users[ROOT].roles:
            return "add the user 'root' and grant it the role 'root' first: enabling auth without it locks everyone out"
        return None
    if a == Action.DISABLE:
        return None
    if a in (Action.USER_ADD, Action.USER_REMOVE, Action.USER_GRANT, Action.USER_REVOKE):
        return _user_change_problem(state, change)
    if a in (Action.ROLE_ADD, Action.ROLE_REMOVE, Action.ROLE_GRANT, Action.ROLE_REVOKE):
        return _role_change_problem(state, change)
    return f"action {a} is not a change"


def _user_change_problem(state: AuthState, change: pb.AuthChange) -> str | None:
    a, user = change.action, change.user
    problem = name_problem(user, "user")
    if problem:
        return problem
    if a == Action.USER_ADD:
        if user in state.users:
            return f"user {user!r} exists"
        if len(state.users) >= limits.AUTH_USERS_MAX:
            return f"there are {len(state.users)} users; the limit is {limits.AUTH_USERS_MAX}"
        return None
    if user not in state.users:
        return f"no user {user!r}"
    if a == Action.USER_REMOVE:
        return "the user 'root' cannot be removed while auth is enabled" if user == ROOT and state.enabled else None
    problem = name_problem(change.role, "role")
    if problem:
        return problem
    if change.role != ROOT and change.role not in state.roles:
        return f"no role {change.role!r}"
    held = state.users[user].roles
    if a == Action.USER_GRANT and change.role not in held and len(held) >= limits.AUTH_ROLES_PER_USER_MAX:
        return f"user {user!r} holds {len(held)} roles; the limit is {limits.AUTH_ROLES_PER_USER_MAX}"
    if a == Action.USER_REVOKE and user == ROOT and change.role == ROOT and state.enabled:
        return "the role 'root' cannot be revoked from the user 'root' while auth is enabled"
    return None


def _role_change_problem(state: AuthState, change: pb.AuthChange) -> str | None:
    a, role = change.action, change.role
    problem = name_problem(role, "role")
    if problem:
        return problem
    if role == ROOT:
        return "the role 'root' is built in: it grants everything and cannot be changed"
    if a == Action.ROLE_ADD:
        if role in state.roles:
            return f"role {role!r} exists"
        if len(state.roles) >= limits.AUTH_ROLES_MAX:
            return f"there are {len(state.roles)} roles; the limit is {limits.AUTH_ROLES_MAX}"
        return None
    if role not in state.roles:
        return f"no role {role!r}"
    if a == Action.ROLE_REMOVE:
        return None
    problem = grant_problem(change.grant)
    if problem:
        return problem
    grants = state.roles[role].grants
    if a == Action.ROLE_GRANT and change.grant not in grants and len(grants) >= limits.AUTH_GRANTS_PER_ROLE_MAX:
        return f"role {role!r} holds {len(grants)} grants; the limit is {limits.AUTH_GRANTS_PER_ROLE_MAX}"
    return None


# A consumer's own progress (acks, a group member's join, acks and leave) is part of reading the topic;
# moving or deleting a consumer is administration, like creating the topic.
_KIND_PERMISSIONS: dict[int, int] = {
    pb.CREATE_TOPIC: pb.PERMISSION_ADMIN,
    pb.DESTROY_TOPIC: pb.PERMISSION_ADMIN,
    pb.CONFIGURE_TOPIC: pb.PERMISSION_ADMIN,
    pb.CONSUMER_RESET: pb.PERMISSION_ADMIN,
    pb.CONSUMER_DELETE: pb.PERMISSION_ADMIN,
    pb.CONSUMER_ACK: pb.PERMISSION_READ,
    pb.GROUP_JOIN: pb.PERMISSION_READ,
    pb.GROUP_ACK: pb.PERMISSION_READ,
    pb.GROUP_LEAVE: pb.PERMISSION_READ,
    # Pipelines: a result writes into the calling topic (its on_result runs there); a worker's join or leave needs
    # write on the service's name (grant patterns match service names as they match topics).
    pb.CALL_COMPLETE: pb.PERMISSION_WRITE,
    pb.CALL_FAIL: pb.PERMISSION_WRITE,
    pb.WORKER_JOIN: pb.PERMISSION_WRITE,
    pb.WORKER_LEAVE: pb.PERMISSION_WRITE,
}


def permission_of(kind: int) -> int:
    """The permission a mutation of this kind needs on its topic (PUT, DELETE and anything unknown: write)."""
    return _KIND_PERMISSIONS.get(kind, pb.PERMISSION_WRITE)
