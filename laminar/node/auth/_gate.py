"""Authorization of gRPC calls: who is calling (`Gate.authenticate`), may they (`Gate.check`), and
the server interceptor that asks both for every Laminar RPC.

Identity: the TLS client certificate's common name (mutual TLS: gRPC verified the chain), or the
metadata `authorization: Bearer <user>:<secret>`. A secret is verified once (PBKDF2, constant-time
compare) and then remembered as a hash of the header until the auth state changes; a peer address
that fails too often is throttled (_throttle.py), and every refusal is counted (`on_refusal`).

What each RPC needs is one table, `RULES`. The interceptor (grpc.aio) runs each stream's servicer
in gRPC's own task for the call and keeps it checked while open, at the cost of an entry in one set
(_Streams), auth on or off: when the auth state changes (one poll of its version every
AUTH_WATCH_INTERVAL_S for all streams), a listener whose user lost `read` on its topic, or a session
whose user holds nothing any more (or any stream opened while auth was off, once it is on), has its
task cancelled and ends with PERMISSION_DENIED. A
session's frames are checked before the servicer reads them: a frame with a mutation the caller may
not make ends the session, and nothing of that frame reaches the log. Hashing a secret (~10 ms)
runs off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from laminar import limits
from laminar._wire import length_delimited
from laminar.node.auth import _model, _tokens
from laminar.node.auth._throttle import Throttle
from laminar.v1 import laminar_pb2 as pb

SERVICE_PREFIX = "/laminar.v1.Laminar/"
CERT_NAME_KEY = "x509_common_name"
# Refusal reasons, as counted in laminar_auth_refusals{reason}.
BAD_CREDENTIAL, THROTTLED, NO_CREDENTIAL, DENIED = "bad_credential", "throttled", "no_credential", "denied"
# What a session must still hold, somewhere, to stay open (a consumer's session only acks: read).
SESSION_PERMISSIONS = (pb.PERMISSION_READ, pb.PERMISSION_WRITE, pb.PERMISSION_ADMIN)


@dataclass(frozen=True)
class Rule:
    request: Any  # the request message type
    permission: int | None  # None: any authenticated caller
    topic: Callable[[Any], str | None]  # None: the permission is on the cluster


def _topic(request: Any) -> str | None:
    return str(request.topic)


def _cluster(request: Any) -> str | None:
    return None


RULES: dict[str, Rule] = {
    "Listen": Rule(pb.ListenRequest, pb.PERMISSION_READ, _topic),
    "Get": Rule(pb.GetRequest, pb.PERMISSION_READ, _topic),
    "DescribeTopic": Rule(pb.DescribeTopicRequest, pb.PERMISSION_READ, _topic),
    # Pipelines: a worker's stream reads its service's calls (grant patterns match service names like topics).
    "Work": Rule(pb.WorkRequest, pb.PERMISSION_READ, lambda request: str(request.service)),
    "DescribeCalls": Rule(pb.DescribeCallsRequest, pb.PERMISSION_READ, _topic),
    # Clients find the leader with Status: any authenticated caller may ask. Its list of topics names only those
    # the caller may read (AuthInterceptor._unary): a topic's name is `read` data like its events.
    "Status": Rule(pb.StatusRequest, None, _cluster),
    "Digest": Rule(pb.DigestRequest, pb.PERMISSION_ADMIN, _cluster),
    "ChangeMembership": Rule(pb.MembershipChange, pb.PERMISSION_ADMIN, _cluster),
    "InjectFault": Rule(pb.FaultRequest, pb.PERMISSION_ADMIN, _cluster),
    "Auth": Rule(pb.AuthRequest, pb.PERMISSION_ADMIN, _cluster),
}


@dataclass(frozen=True)
class Presented:
    header: str | None = field(repr=False)  # `authorization` metadata: holds a secret, never logged
    cert_name: str | None
    peer: str


class NeedsHashing(Exception):
    """The credential is not verified yet: checking it costs a PBKDF2 hash, off the event loop."""


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Gate:
    def __init__(
        self,
        state: Callable[[], _model.AuthState],
        on_refusal: Callable[[str], None] = lambda reason: None,
        clock: Callable[[], float] = time.monotonic,
        owner: Callable[[bytes], str | None] = lambda client_id: None,
    ) -> None:
        self._state = state
        self.owner = owner  # client id -> the user that owns it, as applied here
        self._on_refusal = on_refusal
        self.throttle = Throttle(clock)
        self._lock = threading.Lock()
        self._verified: dict[bytes, tuple[str, int]] = {}  # sha256 of a header -> (user, state version)

    def enabled(self) -> bool:
        return self._state().enabled

    def version(self) -> int:
        return self._state().version

    def presented(self, context: Any) -> Presented:
        """What the caller presented (read on the event loop; checking may then run elsewhere)."""
        header = next((str(v) for k, v in context.invocation_metadata() or () if k == _tokens.METADATA_KEY), None)
        return Presented(header, _cert_name(context) if header is None else None, _peer_host(context.peer()))

    def authenticate(self, presented: Presented, slow_ok: bool = True) -> str | None:
        """The caller's user name (None when auth is off); raises Refused (UNAUTHENTICATED), or
        NeedsHashing when `slow_ok` is False and the secret must be hashed (about 10 ms of CPU)."""
        state = self._state()
        if not state.enabled:
            return None
        if presented.header is None:
            name = presented.cert_name
            if name is not None and name in state.users:
                return name
            self._refuse(NO_CREDENTIAL)
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED,
                "authorization is on: present a client certificate of a known user, or the metadata "
                "`authorization: Bearer <user>:<secret>` (laminar --token, LAMINAR_TOKEN)",
            )
        return self._verify(state, presented.header, presented.peer, slow_ok)

    def _verify(self, state: _model.AuthState, header: str, peer: str, slow_ok: bool) -> str:
        digest = hashlib.sha256(header.encode(errors="replace")).digest()
        with self._lock:
            known = self._verified.get(digest)
        if known is not None and known[1] == state.version:
            return known[0]
        wait_ms = self.throttle.wait_ms(peer)
        if wait_ms:
            self._refuse(THROTTLED)
            raise Refused(
                grpc.StatusCode.UNAUTHENTICATED, f"too many failed authentications from {peer}: retry in {wait_ms} ms"
            )
        if not slow_ok:
            raise NeedsHashing()
        credential = _tokens.parse(header)
        user = state.users.get(credential.user) if credential is not None else None
        if credential is None or user is None or not _tokens.verify(user, credential.secret):
            if credential is not None and user is None:
                _tokens.hash_secret(credential.secret, b"\0" * _tokens.SALT_BYTES)  # no user: the same work
            self.throttle.failed(peer)
            self._refuse(BAD_CREDENTIAL)
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "unknown user or wrong secret")
        self.throttle.succeeded(peer)
        with self._lock:
            if len(self._verified) >= limits.AUTH_VERIFIED_CACHED_MAX:
                self._verified.clear()
            self._verified[digest] = (credential.user, state.version)
        return credential.user

    def check(self, user: str | None, permission: int | None, topic: str | None) -> None:
        """Raises Refused (PERMISSION_DENIED, naming the permission) unless `user` may."""
        state = self._state()
        if not state.enabled or permission is None:
            return
        if user is None or not _model.allowed(state, user, permission, topic):
            self._refuse(DENIED)
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED, f"user {user!r} lacks {_model.describe(permission, topic)}"
            )

    def still_allowed(self, user: str | None, permission: int | None, topic: str | None) -> str | None:
        """Why an open stream must end now (None: it may go on)."""
        try:
            state = self._state()
            if state.enabled and (user is None or user not in state.users):
                return f"user {user!r} is no longer known"
            self.check(user, permission, topic)
        except Refused as refused:
            return refused.message
        return None

    def readable(self, user: str | None, topics: list[str]) -> list[str]:
        """The topics among `topics` that `user` may read (all of them while authorization is off)."""
        state = self._state()
        if not state.enabled:
            return list(topics)
        if user is None:
            return []
        return [topic for topic in topics if _model.allowed(state, user, pb.PERMISSION_READ, topic)]

    def session_allowed(self, user: str | None) -> str | None:
        state = self._state()
        if not state.enabled:
            return None
        if user is None or not _model.holds_any(state, user, SESSION_PERMISSIONS):
            self._refuse(DENIED)
            return f"user {user!r} holds no permission any more: the session is closed"
        return None

    def _refuse(self, reason: str) -> None:
        self._on_refusal(reason)


def _listing_only(status: pb.StatusResponse, topics: list[str]) -> pb.StatusResponse:
    """A copy of `status` whose topic list is `topics` (the answer may be shared: it is never changed)."""
    if len(topics) == len(status.topics):
        return status
    answer = pb.StatusResponse()
    answer.CopyFrom(status)
    del answer.topics[:]
    answer.topics.extend(topics)
    return answer


def _cert_name(context: Any) -> str | None:
    try:
        names = context.auth_context().get(CERT_NAME_KEY)
    except Exception:  # noqa: BLE001 - no TLS: no auth context
        return None
    return names[0].decode(errors="replace") if names else None


def _peer_host(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` -> `ipv4:127.0.0.1`: failures are counted per address, not per connection."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


# ---- the interceptor ------------------------------------------------------------------------------

AUTH_WATCH_INTERVAL_S = 0.25  # how often open streams learn that the auth state changed
WRITE_BEFORE_DENIAL_WAIT_S = 5.0  # a cut stream's write in progress is waited for this long before its status


def _with_principal(raw: bytes, user: str) -> bytes:
    """The client frame with MutationFrame.principal set to `user`, by appending: protobuf merges a
    repeated embedded message field, and the last value of a scalar wins over what the client put."""
    inner = length_delimited(b"\x22", user.encode())  # MutationFrame.principal, field 4
    return raw + length_delimited(b"\x12", inner)  # ClientFrame.mutations, field 2


class _Watched:
    """The servicer's view of a stream's context. `cut` ends the stream: the task serving it (gRPC's own
    task for the call: no task of ours) is cancelled and the interceptor ends the call with PERMISSION_DENIED;
    a session's frames pass through `check` before the servicer reads them."""

    def __init__(
        self,
        context: Any,
        recheck: Callable[[], str | None],
        version: int,
        check: Callable[[bytes, _Watched], Any] | None = None,
    ) -> None:
        self._context = context
        self._check = check
        self.recheck = recheck  # why the stream must end now, after the auth state changed (None: it goes on)
        self.version = version  # the auth state's version it was admitted under
        self.task = asyncio.current_task()
        self.denied: str | None = None
        self._writing = False
        self._late_cut: asyncio.TimerHandle | None = None

    def cut(self, message: str) -> None:
        """End the stream with PERMISSION_DENIED. Cancelled mid-write, grpc.aio's call never sent the status
        that followed (the client waited for its deadline; a session whose frame was refused while its Welcome
        was being written, about one run in five of test_auth under load): a cut during a write takes effect
        as the write ends (see write), or after WRITE_BEFORE_DENIAL_WAIT_S if it never does."""
        if self.denied is not None or self.task is None:
            return
        self.denied = message
        if self._writing:
            self._late_cut = asyncio.get_running_loop().call_later(WRITE_BEFORE_DENIAL_WAIT_S, self.task.cancel)
        else:
            self.task.cancel()

    def settle(self) -> None:
        """The servicer is done: a cut from now on (a cut waiting for its write included) cancels nothing, for
        gRPC's task is then sending the call's status."""
        self.task = None
        if self._late_cut is not None:
            self._late_cut.cancel()

    async def read(self) -> Any:
        raw = await self._context.read()
        if self._check is None or raw is grpc.aio.EOF or self.denied is not None:
            return raw if self.denied is None else grpc.aio.EOF
        return self._check(raw, self)

    async def write(self, message: Any) -> None:
        """The context's write, never cancelled by a cut (see cut): the servicer sees the cut once it is done."""
        self._writing = True
        try:
            await self._context.write(message)
        finally:
            self._writing = False
        if self.denied is not None:
            raise asyncio.CancelledError()  # the cut that came during the write, as the servicer would have seen it

    async def abort(self, code: grpc.StatusCode, details: str = "", *args: Any) -> None:
        if self.denied is not None:
            await self._context.abort(grpc.StatusCode.PERMISSION_DENIED, self.denied)
        await self._context.abort(code, details, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class _Streams:
    """Every open stream, rechecked when the auth state changes: one task polls its version (every
    AUTH_WATCH_INTERVAL_S, while any stream is open) for all of them, since the state changes in the apply
    thread, which knows nothing of the event loop. A stream costs an entry here, not a task: 2,000 streams
    opened and closed cost the loop a task and a watcher each (a task, an Event waiter and a timer), whether
    authorization was on or not. Event loop only."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._open: set[_Watched] = set()
        self._poller: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._open)

    def add(self, watched: _Watched) -> None:
        self._open.add(watched)
        if self._gate.version() != watched.version:  # it changed while the stream was admitted
            self._recheck(watched)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.ensure_future(self._poll())

    def discard(self, watched: _Watched) -> None:
        self._open.discard(watched)

    async def _poll(self) -> None:
        seen = self._gate.version()
        while self._open:
            await asyncio.sleep(AUTH_WATCH_INTERVAL_S)
            version = self._gate.version()
            if version != seen:
                seen = version
                for watched in list(self._open):
                    self._recheck(watched)

    @staticmethod
    def _recheck(watched: _Watched) -> None:
        denial = watched.recheck()
        if denial is not None:
            watched.cut(denial + " (authorization changed while the stream was open)")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks every Laminar RPC against `RULES`; serves the RPCs in `extra` (the Auth RPC) itself."""

    def __init__(self, gate: Gate, extra: dict[str, Any] | None = None) -> None:
        self._gate = gate
        self._extra = dict(extra or {})
        self.streams = _Streams(gate)
        # Laminar RPC name -> (the servicer's handler, its guarded handler): built once, not per call (a closure
        # and a handler tuple per stream opened). Only names of RULES and Session: a bounded set.
        self._guarded: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        method: str = details.method
        name = method[len(SERVICE_PREFIX) :] if method.startswith(SERVICE_PREFIX) else ""
        handler = self._extra.get(name) or await continuation(details)
        if handler is None or not name:
            return handler
        known = self._guarded.get(name)
        if known is not None and known[0] is handler:
            return known[1]
        guarded = self._guard(name, handler)
        if name in RULES or name == "Session":
            self._guarded[name] = (handler, guarded)
        return guarded

    def _guard(self, name: str, handler: Any) -> Any:
        """`handler` (the servicer's for the RPC `name`) checked by RULES."""
        if name == "Session":
            return handler._replace(stream_stream=self._session(handler.stream_stream))
        rule = RULES.get(name)
        if rule is None:
            return handler
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(rule, handler.unary_stream))
        return handler._replace(unary_unary=self._unary(rule, handler.unary_unary))

    async def _authenticate(self, context: Any) -> str | None:
        gate = self._gate
        if not gate.enabled():
            return None  # a stream opened now is cut if auth is enabled while it is open (no user)
        presented = gate.presented(context)
        try:
            try:
                return gate.authenticate(presented, slow_ok=False)
            except NeedsHashing:
                return await asyncio.get_running_loop().run_in_executor(None, gate.authenticate, presented)
        except Refused as refused:
            await context.abort(refused.code, refused.message)
            raise AssertionError("abort raises") from None

    async def _admit(self, rule: Rule, raw: Any, context: Any) -> tuple[str | None, str | None]:
        """(user, topic) of an allowed call; aborts the call otherwise."""
        user = await self._authenticate(context)
        if user is None and not self._gate.enabled():
            return None, None
        try:
            request = raw if isinstance(raw, rule.request) else rule.request.FromString(raw)
        except Exception:  # noqa: BLE001 - the servicer refuses a malformed request itself
            return user, None
        topic = rule.topic(request)
        try:
            self._gate.check(user, rule.permission, topic)
        except Refused as refused:
            await context.abort(refused.code, refused.message)
        return user, topic

    def _unary(self, rule: Rule, behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Awaitable[Any]]:
        async def guarded(raw: Any, context: Any) -> Any:
            user = None
            if self._gate.enabled():
                user, _ = await self._admit(rule, raw, context)
            result = behavior(raw, context)
            result = await result if inspect.isawaitable(result) else result
            if isinstance(result, pb.StatusResponse) and self._gate.enabled():
                return _listing_only(result, self._gate.readable(user, list(result.topics)))
            return result

        return guarded

    def _stream(self, rule: Rule, behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Awaitable[None]]:
        gate = self._gate

        async def guarded(raw: Any, context: Any) -> None:
            version = gate.version()
            user, topic = await self._admit(rule, raw, context)
            recheck = lambda: gate.still_allowed(user, rule.permission, topic)  # noqa: E731
            watched = _Watched(context, recheck, version)
            await self._watching(behavior(raw, watched), watched, context)

        return guarded

    def _session(self, behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Awaitable[None]]:
        gate = self._gate

        async def guarded(requests: Any, context: Any) -> None:
            version = gate.version()
            user = await self._authenticate(context)
            watched = _Watched(context, lambda: gate.session_allowed(user), version, _FrameCheck(gate, user))
            await self._watching(behavior(requests, watched), watched, context)

        return guarded

    async def _watching(self, call: Awaitable[Any], watched: _Watched, context: Any) -> None:
        """Run the servicer's stream in this task (gRPC's for the call); cut it when the auth state changes and
        its recheck says so."""
        self.streams.add(watched)
        try:
            await call
        except asyncio.CancelledError:
            if watched.denied is None:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # the cut's cancel is handled here: the call goes on to its status
        finally:
            self.streams.discard(watched)
            watched.settle()
        if watched.denied is not None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, watched.denied)


class _FrameCheck:
    """A session's frames, checked before the servicer reads them (only while auth is on): a Hello's
    client id must not belong to another user; each mutation needs its permission on its topic; a
    mutation frame leaves stamped with the user (MutationFrame.principal)."""

    def __init__(self, gate: Gate, user: str | None) -> None:
        self._gate = gate
        self._user = user
        self._allowed: set[tuple[int, str]] = set()  # (kind, topic) this user may, under auth state _version
        self._version = -1

    def __call__(self, raw: bytes, watched: _Watched) -> Any:
        gate = self._gate
        if not gate.enabled():
            return raw
        if gate.version() != self._version:
            self._allowed, self._version = set(), gate.version()
        try:
            frame = pb.ClientFrame.FromString(raw)
        except Exception:  # noqa: BLE001 - the servicer refuses a malformed frame itself
            return raw
        body = frame.WhichOneof("body")
        if body == "hello":
            owner = gate.owner(bytes(frame.hello.client_id))
            if owner is not None and owner != self._user:
                gate._refuse(DENIED)
                watched.cut(
                    f"client id {bytes(frame.hello.client_id).hex()} belongs to another user: "
                    "each user's clients need ids of their own"
                )
                return grpc.aio.EOF
            return raw
        for m in frame.mutations.mutations:
            key = (m.kind, m.topic)
            if key in self._allowed:  # a frame's mutations mostly share a kind and a topic
                continue
            try:
                gate.check(self._user, _model.permission_of(m.kind), m.topic)
            except Refused as refused:
                watched.cut(f"nonce {m.nonce}: {refused.message}; nothing of its frame was taken")
                return grpc.aio.EOF
            if len(self._allowed) < limits.AUTH_SESSION_CHECKS_CACHED_MAX:
                self._allowed.add(key)
        if self._user is not None and body == "mutations":
            return _with_principal(raw, self._user)
        return raw
