"""The Auth RPC: users, roles and enabling authorization, on the leader.

A change is decided on the leader against the applied state (so a refusal is an answer, with the
reason, and nothing is proposed), then proposed as `IntentionBatch.auth_changes` and answered once
this node applied it. One change at a time: two racing changes could each be valid alone. The
secret of USER_ADD is hashed here (a fresh salt per user); only the hash enters the log. Who may
call it is the interceptor's business (laminar/node/auth/_gate.py: admin on the cluster).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from laminar import limits
from laminar.node import auth
from laminar.node.raft import RaftPort
from laminar.node.service import LEADER_METADATA_KEY
from laminar.v1 import laminar_pb2 as pb

AUTH_CHANGE_TIMEOUT_S = 10.0
Action = pb.AuthRequest.Action


class AuthAdmin:
    def __init__(
        self,
        state: Callable[[], auth.AuthState],
        raft: RaftPort,
        wait_applied: Callable[[float], bool],
        leader_hint: Callable[[], tuple[bool, str]],
    ) -> None:
        self._state = state
        self._raft = raft
        self._wait_applied = wait_applied
        self._leader_hint = leader_hint
        self._lock = threading.Lock()

    def handler(self) -> grpc.RpcMethodHandler:
        """The Auth RPC for the asyncio server: the work (which may wait for a commit) runs on a thread."""
        return grpc.unary_unary_rpc_method_handler(
            self._serve, request_deserializer=_identity, response_serializer=pb.AuthResponse.SerializeToString
        )

    async def _serve(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.AuthResponse:
        outcome = await asyncio.get_running_loop().run_in_executor(None, self.handle, raw)
        if isinstance(outcome, _Refusal):
            if outcome.leader is not None:
                context.set_trailing_metadata(((LEADER_METADATA_KEY, outcome.leader),))
            await context.abort(outcome.code, outcome.message)
        assert isinstance(outcome, pb.AuthResponse)
        return outcome

    def handle(self, raw: bytes) -> pb.AuthResponse | _Refusal:
        try:
            request = pb.AuthRequest.FromString(raw)
        except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, and others on odd input
            return _Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"request is not an AuthRequest: {e}")
        if request.action == Action.LIST:
            return self._state().public()
        is_leader, leader = self._leader_hint()
        if not is_leader:
            return _Refusal(
                grpc.StatusCode.UNAVAILABLE, f"auth changes go to the leader ({leader or 'none known'})", leader
            )
        problem = _request_problem(request)
        if problem:
            return _Refusal(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if not self._lock.acquire(timeout=AUTH_CHANGE_TIMEOUT_S):
            return _Refusal(grpc.StatusCode.UNAVAILABLE, "another auth change is in progress")
        try:
            return self._change(_replicated(request))
        finally:
            self._lock.release()

    def _change(self, change: pb.AuthChange) -> pb.AuthResponse | _Refusal:
        _, refused = auth.apply_change(self._state(), change)
        if refused:
            return _Refusal(grpc.StatusCode.FAILED_PRECONDITION, refused)
        done = threading.Event()
        outcome: list[bool] = []

        def on_result(ok: bool) -> None:
            outcome.append(ok)
            done.set()

        self._raft.propose(pb.IntentionBatch(auth_changes=[change]).SerializeToString(), on_result)
        if not done.wait(AUTH_CHANGE_TIMEOUT_S) or not outcome[0]:
            return _Refusal(grpc.StatusCode.UNAVAILABLE, "the change did not commit in time (it may still): list")
        if not self._wait_applied(AUTH_CHANGE_TIMEOUT_S):
            return _Refusal(grpc.StatusCode.UNAVAILABLE, "the change committed but was not applied here in time")
        return self._state().public()


@dataclass(frozen=True)
class _Refusal:
    code: grpc.StatusCode
    message: str
    leader: str | None = None  # set: UNAVAILABLE from a follower, naming the leader's client address


def _request_problem(request: pb.AuthRequest) -> str | None:
    a = request.action
    if a not in Action.values() or a == Action.ACTION_UNSPECIFIED:
        return f"unknown auth action {a}"
    if len(request.token.encode()) > limits.AUTH_TOKEN_BYTES_MAX:
        return f"the token is over {limits.AUTH_TOKEN_BYTES_MAX} bytes"
    if a == Action.USER_ADD and request.token and len(request.token) < 8:
        return "a token needs at least 8 characters (laminar user add generates a strong one)"
    return None


def _replicated(request: pb.AuthRequest) -> pb.AuthChange:
    change = pb.AuthChange(action=request.action, user=request.user, role=request.role, grant=request.grant)
    if request.action == Action.USER_ADD and request.token:
        salt = auth.new_salt()
        change.token_salt, change.token_hash = salt, auth.hash_secret(request.token, salt)
    return change


def _identity(data: bytes) -> bytes:
    return data
