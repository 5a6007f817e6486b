"""The replicated auth state: users, roles and whether authorization is on.

Kept whole under one store key (`a/state`, a serialized AuthResponse with salts and hashes): it
is small (bounded by AUTH_USERS_MAX and AUTH_ROLES_MAX) and changes rarely, so every change
rewrites it. Changes arrive as `IntentionBatch.auth_changes` and are decided by the pure model
(laminar/node/auth), the same way on every node; a refused change leaves the state as it was.
"""

from __future__ import annotations

from collections.abc import Iterable

from laminar.node.auth import AuthState, apply_change
from laminar.node.store import Keys, Store, WriteSet
from laminar.v1 import laminar_pb2 as pb


class AuthBook:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.state = AuthState()  # replaced whole, never mutated: gRPC threads read it without a lock

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
        self.state = AuthState.decode(data, version) if data else AuthState(version=version)

    def apply(self, changes: Iterable[pb.AuthChange], writes: WriteSet) -> None:
        state = self.state
        for change in changes:
            state, _ = apply_change(state, change)  # a refused change: the leader told its caller already
        if state is not self.state:
            writes.put(Keys.AUTH, state.encode())
            self.state = state
