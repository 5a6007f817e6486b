"""The replicated auth state: users, roles and whether authorization is on.

Kept whole under one store key (`a/state`, a serialized AuthResponse with salts and hashes): it
is small (bounded by AUTH_USERS_MAX and AUTH_ROLES_MAX) and changes rarely, so every change
rewrites it. Changes arrive as `IntentionBatch.auth_changes` and are decided by the pure model
(laminar/node/auth), the same way on every node; a refused change leaves the state as it was.
"""

from __future__ import annotations

from collections.abc import Iterable

from laminar import limits
from laminar.node.auth import AuthState, allowed, apply_change, describe, permission_of
from laminar.node.store import Keys, Store, WriteSet
from laminar.v1 import laminar_pb2 as pb


class AuthBook:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.state = AuthState()  # replaced whole, never mutated: gRPC threads read it without a lock
        self._allowed: set[tuple[str, int, str]] = set()  # (user, permission, topic) decided under self.state

    def denied(self, principal: str, kind: int, topic: str) -> str | None:
        """Why a mutation must not apply (None: it may). The leader checked it when its frame came in;
        this check, at apply, catches a grant revoked in between, the same way on every node."""
        if not self.state.enabled:
            return None
        permission = permission_of(kind)
        key = (principal, permission, topic)
        if key in self._allowed:
            return None
        if principal and allowed(self.state, principal, permission, topic):
            if len(self._allowed) >= limits.AUTH_SESSION_CHECKS_CACHED_MAX:
                self._allowed.clear()
            self._allowed.add(key)
            return None
        who = f"user {principal!r}" if principal else "a caller without an identity"
        return f"permission denied: {who} lacks {describe(permission, topic)} (authorization changed before it applied)"

    def bind(self, client_id: bytes, principal: str, writes: WriteSet) -> None:
        """With auth on, the first user whose run carries a client id owns it (the leader refuses
        another user's session with that id; see laminar/node/auth/_gate.py)."""
        if not principal or not self.state.enabled:
            return
        key = Keys.owner(client_id)
        decided, _ = writes.lookup(key)
        if decided or self._store.get(key) is not None:
            return
        writes.put(key, principal.encode())

    @staticmethod
    def unbind(client_id: bytes, writes: WriteSet) -> None:
        """The client id expired (dedupe forgot it): anyone may use it again."""
        writes.delete(Keys.owner(client_id))

    def reload(self) -> None:
        """Read the state from the store (at start, and after a snapshot replaced the store)."""
        data = self._store.get(Keys.AUTH)
        version = self.state.version + 1  # whatever was cached from the old state is stale
        self._allowed = set()
        self.state = AuthState.decode(data, version) if data else AuthState(version=version)

    def apply(self, changes: Iterable[pb.AuthChange], writes: WriteSet) -> None:
        state = self.state
        for change in changes:
            state, _ = apply_change(state, change)  # a refused change: the leader told its caller already
        if state is not self.state:
            writes.put(Keys.AUTH, state.encode())
            self.state = state
            self._allowed = set()
