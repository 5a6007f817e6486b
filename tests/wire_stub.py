"""A Laminar client written from docs/protocol.md and the .proto alone, that checks every frame.

It uses nothing of `laminar` but the generated messages, so what it sees is what a client in any
language sees on the wire. It keeps one Session with the leader, sends puts pipelined in frames of
up to FRAME_MUTATIONS_MAX, follows redirects, and after any break resends from its oldest
uncommitted nonce ("Resume after a disconnect"). Every ServerFrame is checked against the page:

* Commits of one client arrive in nonce order and never overlap: each Commit starts at the oldest
  uncommitted nonce (so across sessions every nonce is committed exactly once, in order);
* a Commit covers only nonces this session sent, and never arrives before its `received`
  (`received_through`, as of the frame that carries the Commit, covers it);
* `received_through` is cumulative and covers only nonces this session sent;
* intention offsets grow strictly from one nonce to the next (each put applied once).

Broken rules are collected in `violations` (a test asserts the list is empty), not raised in the
session thread. Every loop is bounded by the caller's time limits.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc

from laminar.local_cluster import free_port_block
from laminar.v1 import laminar_pb2 as pb

LEADER_METADATA_KEY = "laminar-leader"
FRAME_MUTATIONS_MAX = 4096  # docs: 1..4096 mutations per frame
GRPC_MESSAGE_BYTES_MAX = 4 * 1024 * 1024  # docs: configure the channel for 4 MiB both ways
NO_PROGRESS_S = 5.0  # docs: no ack for a while with uncommitted mutations: reconnect elsewhere
NO_LEADER_WAIT_S = 0.1  # docs: an empty hint means an election runs: wait ~100 ms, try another node
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES_MAX),
    ("grpc.max_send_message_length", GRPC_MESSAGE_BYTES_MAX),
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
]


def leader_hint(error: grpc.RpcError) -> str:
    """The `laminar-leader` trailing metadata of an UNAVAILABLE answer ("" when none)."""
    try:
        metadata = error.trailing_metadata() or ()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not every RpcError has metadata
        return ""
    return str(dict(metadata).get(LEADER_METADATA_KEY, ""))


def serve_session(
    session: Callable[[Iterator[pb.ClientFrame], Any], Iterator[pb.ServerFrame]],
) -> tuple[grpc.Server, str]:
    """A started stand-in node on a free loopback port whose only RPC is Session, served by `session`."""
    address = f"127.0.0.1:{free_port_block(1) + 1}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.stream_stream_rpc_method_handler(
        session,
        request_deserializer=pb.ClientFrame.FromString,
        response_serializer=pb.ServerFrame.SerializeToString,
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("laminar.v1.Laminar", {"Session": handler})])
    server.add_insecure_port(address)
    server.start()
    return server, address


REDIRECT_WAIT_S_MAX = 10.0  # how long `redirect` waits for a follower that names no leader yet


def redirect(call: Callable[[], object], wait_s: float = REDIRECT_WAIT_S_MAX) -> tuple[grpc.RpcError, str]:
    """The UNAVAILABLE error and leader hint of `call` on a follower, once the follower names a leader.

    docs/protocol.md allows an empty hint: a follower that has not heard from its leader for 0.5 s
    names none (on a machine starved of CPU that happens with a live leader). A client then waits
    and asks again, and so does this; a hint that never comes within `wait_s` fails the caller."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            call()
        except grpc.RpcError as error:
            hint = leader_hint(error)
            if hint or time.monotonic() > deadline:
                return error, hint
            time.sleep(0.1)
        else:
            raise AssertionError("the call succeeded: it was not redirected")


class WireClient:
    """Pipelined puts to one topic, resent after any break; see the module docstring."""

    def __init__(self, addresses: Sequence[str], topic: str, inflight_max: int = 16384) -> None:
        self.addresses = list(addresses)
        self.topic = topic
        self.client_id = uuid.uuid4().bytes
        self.inflight_max = inflight_max
        self.violations: list[str] = []
        self.errors: list[str] = []  # statuses that ended a session, as "CODE: details"
        self.sessions = 0
        self._lock = threading.Condition()
        self._next_nonce = 1  # the next nonce to give a new mutation
        self._oldest = 1  # the oldest uncommitted nonce
        self._unacked: collections.deque[pb.Mutation] = collections.deque()  # nonces _oldest.._next_nonce-1
        self._last_offset = 0  # intention offset of the last committed nonce
        self._producing = False
        self._limit = 0  # nonces past this are not produced (0: no limit while producing)
        self._stop = False
        self._channels: dict[str, grpc.Channel] = {}
        self._thread: threading.Thread | None = None
        self._call: grpc.RpcContext | None = None

    # ---- the caller's side ----------------------------------------------------------------------

    @property
    def committed_through(self) -> int:
        with self._lock:
            return self._oldest - 1

    def create_topic_then_produce(self, messages_max: int) -> None:
        """Nonce 1 creates the topic; then puts, pipelined, until `finish` (at most messages_max)."""
        with self._lock:
            self._unacked.append(pb.Mutation(nonce=1, kind=pb.CREATE_TOPIC, topic=self.topic))
            self._next_nonce = 2
            self._producing = True
            self._limit = messages_max + 1
        self._thread = threading.Thread(target=self._run, name="wire-stub", daemon=True)
        self._thread.start()

    def wait_committed(self, nonce: int, timeout_s: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self._oldest > nonce or self._stop, timeout_s) and self._oldest > nonce

    def finish(self, timeout_s: float) -> int:
        """Stop producing, wait until everything sent is committed; the last nonce."""
        with self._lock:
            self._producing = False
            last = self._next_nonce - 1
            self._lock.notify_all()
        if not self.wait_committed(last, timeout_s):
            raise AssertionError(f"nonces {self.committed_through + 1}..{last} not committed in {timeout_s} s")
        return last

    def close(self) -> None:
        with self._lock:
            self._stop = True
            call = self._call
            self._lock.notify_all()
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(10)
        for channel in self._channels.values():
            channel.close()

    # ---- the session loop -----------------------------------------------------------------------

    def _run(self) -> None:
        hint = ""
        turn = 0
        while not self._stop:
            if hint:
                address = hint
            else:
                address = self.addresses[turn % len(self.addresses)]
                turn += 1
            hint = ""
            try:
                self._session(address)
            except grpc.RpcError as error:
                code = error.code()  # type: ignore[attr-defined]
                if self._stop:
                    return
                self.errors.append(f"{code.name}: {error.details()}")  # type: ignore[attr-defined]
                if code == grpc.StatusCode.UNAVAILABLE:
                    hint = leader_hint(error)
                elif code not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED):
                    self.violations.append(f"session ended with {code.name}: {error.details()}")  # type: ignore[attr-defined]
                    return
                if not hint:
                    time.sleep(NO_LEADER_WAIT_S)

    def _channel(self, address: str) -> grpc.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        return channel

    def _session(self, address: str) -> None:
        state = _SessionState()
        with self._lock:
            hello = pb.Hello(client_id=self.client_id, next_nonce=self._oldest)
            state.sent_through = self._oldest - 1
        method = self._channel(address).stream_stream(
            "/laminar.v1.Laminar/Session",
            request_serializer=pb.ClientFrame.SerializeToString,
            response_deserializer=pb.ServerFrame.FromString,
        )
        call = method(self._frames(hello, state))
        with self._lock:
            self._call = call
        watchdog = threading.Thread(target=self._watch, args=(call, state), daemon=True)
        watchdog.start()
        try:
            first = True
            for frame in call:
                state.last_frame_at = time.monotonic()
                if first:
                    if frame.WhichOneof("body") != "welcome":
                        self.violations.append(f"first frame of a session is {frame.WhichOneof('body')}")
                    first = False
                    self.sessions += 1
                    continue
                self._check_acks(frame, state)
        finally:
            state.ended = True
            with self._lock:
                self._lock.notify_all()
            call.cancel()

    def _watch(self, call: grpc.RpcContext, state: _SessionState) -> None:
        """Cancel a session that makes no progress for NO_PROGRESS_S while mutations wait."""
        while not state.ended and not self._stop:
            time.sleep(0.2)
            with self._lock:
                waiting = bool(self._unacked)
            if waiting and time.monotonic() - state.last_frame_at > NO_PROGRESS_S:
                call.cancel()
                return

    def _frames(self, hello: pb.Hello, state: _SessionState) -> Iterator[pb.ClientFrame]:
        """Hello, then every unacked mutation from the oldest, then new ones as room allows."""
        yield pb.ClientFrame(hello=hello)
        while True:
            with self._lock:
                self._lock.wait_for(lambda: state.ended or self._stop or self._sendable(state), 0.5)
                if state.ended or self._stop:
                    return
                if not self._sendable(state):
                    continue
                self._produce()
                first = max(state.sent_through + 1, self._oldest)
                start = first - self._oldest
                batch = [self._unacked[i] for i in range(start, min(start + FRAME_MUTATIONS_MAX, len(self._unacked)))]
                state.sent_through = batch[-1].nonce
            yield pb.ClientFrame(mutations=pb.MutationFrame(mutations=batch))

    def _sendable(self, state: _SessionState) -> bool:
        """Unsent mutations, or room to produce new ones (under the lock)."""
        if state.sent_through + 1 < self._next_nonce:
            return True
        return self._producing and len(self._unacked) < self.inflight_max and self._next_nonce <= self._limit

    def _produce(self) -> None:
        """New puts up to the in-flight bound (under the lock)."""
        if not self._producing:
            return
        room = min(self.inflight_max - len(self._unacked), FRAME_MUTATIONS_MAX, self._limit - self._next_nonce + 1)
        for _ in range(max(0, room)):
            n = self._next_nonce
            self._unacked.append(
                pb.Mutation(nonce=n, kind=pb.PUT, topic=self.topic, key=b"k%d" % (n % 64), value=b"%d" % n)
            )
            self._next_nonce = n + 1

    def _check_acks(self, frame: pb.ServerFrame, state: _SessionState) -> None:
        if frame.WhichOneof("body") != "acks":
            self.violations.append(f"a session frame after the Welcome is {frame.WhichOneof('body')}")
            return
        acks = frame.acks
        with self._lock:
            if acks.received_through:
                if acks.received_through < state.received_through:
                    self.violations.append(
                        f"received_through went back from {state.received_through} to {acks.received_through}"
                    )
                if acks.received_through > state.sent_through:
                    self.violations.append(
                        f"received_through {acks.received_through} past what this session sent ({state.sent_through})"
                    )
                state.received_through = max(state.received_through, acks.received_through)
            for commit in acks.commits:
                self._check_commit(commit, state)
            self._lock.notify_all()

    def _check_commit(self, commit: pb.Commit, state: _SessionState) -> None:
        count = max(1, commit.count)
        last = commit.nonce + count - 1
        if commit.nonce != self._oldest:
            what = "again (overlap)" if commit.nonce < self._oldest else "out of order (gap)"
            self.violations.append(
                f"Commit {commit.nonce}..{last} {what}: the oldest uncommitted nonce is {self._oldest}"
            )
            if last < self._oldest or commit.nonce > self._oldest:
                return
        if last > state.sent_through:
            self.violations.append(f"Commit {commit.nonce}..{last} past what this session sent ({state.sent_through})")
        if last > state.received_through:
            self.violations.append(
                f"Commit {commit.nonce}..{last} before its received (received_through {state.received_through})"
            )
        if commit.effect != pb.VALID:
            self.violations.append(f"Commit {commit.nonce}..{last}: {pb.Effect.Name(commit.effect)} {commit.reason}")
        if commit.intention_offset <= self._last_offset:
            self.violations.append(
                f"Commit {commit.nonce}..{last}: intention offset {commit.intention_offset} "
                f"not after the previous one ({self._last_offset})"
            )
        fresh = last - self._oldest + 1  # the part of this Commit not committed before
        for _ in range(min(fresh, len(self._unacked))):
            self._unacked.popleft()
        self._last_offset = commit.intention_offset + count - 1
        self._oldest = last + 1


class _SessionState:
    """What one session has sent and been told."""

    def __init__(self) -> None:
        self.sent_through = 0
        self.received_through = 0
        self.last_frame_at = time.monotonic()
        self.ended = False
