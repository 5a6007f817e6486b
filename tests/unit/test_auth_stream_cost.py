"""What authorization costs an open stream: the interceptor on a real grpc.aio server (its own event-loop thread,
as in a node) with real clients on loopback, and a servicer that holds each stream open."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest

from laminar.node.auth import AuthInterceptor, AuthState, Gate
from laminar.node.auth._gate import AUTH_WATCH_INTERVAL_S
from laminar.v1 import laminar_pb2 as pb

SERVICE = "laminar.v1.Laminar"
STREAMS = 40  # of each kind: Listen and Session
WAIT_S = 10.0
LISTEN = pb.ListenRequest(topic="t").SerializeToString()
BIG_LISTEN = pb.ListenRequest(topic="big").SerializeToString()
BIG_FRAME = b"x" * (4 * 2**20 - 64)
BIG_FRAMES_MAX = 32
HELLO = pb.ClientFrame(hello=pb.Hello(client_id=b"c" * 16, next_nonce=1)).SerializeToString()


def _identity(data: bytes) -> bytes:
    return data


class _Server:
    """A grpc.aio server with the AuthInterceptor over `state`; its Listen and Session hold each call open (a
    Session after reading one frame) until the call ends, and count the calls inside them."""

    def __init__(self, intercepted: bool = True) -> None:
        self.state = AuthState()
        self.interceptor = AuthInterceptor(Gate(lambda: self.state))
        self._interceptors = [self.interceptor] if intercepted else []
        self.inside = 0
        self.writing = 0  # BIG_FRAME writes begun
        self.written = 0  # and ended
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-grpc-loop", daemon=True)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def _hold(self, context: Any) -> None:
        self.inside += 1
        try:
            await asyncio.Event().wait()  # until the call is cancelled (the client left, or a cut)
        finally:
            self.inside -= 1

    async def _listen(self, raw: bytes, context: Any) -> None:
        if raw == BIG_LISTEN:  # frames until one waits for the client to read (the transport's buffers are full)
            for _ in range(BIG_FRAMES_MAX):
                self.writing += 1
                await context.write(BIG_FRAME)
                self.written += 1
        await self._hold(context)

    async def _session(self, requests: Any, context: Any) -> None:
        await context.read()
        await self._hold(context)

    async def _start(self) -> None:
        handlers = {
            "Listen": grpc.unary_stream_rpc_method_handler(
                self._listen, request_deserializer=_identity, response_serializer=_identity
            ),
            "Session": grpc.stream_stream_rpc_method_handler(
                self._session, request_deserializer=_identity, response_serializer=_identity
            ),
        }
        server = grpc.aio.server(
            handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)], interceptors=self._interceptors
        )
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server

    def __enter__(self) -> _Server:
        self._thread.start()
        self.on_loop(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self.on_loop(self._server.stop(None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT_S)

    def on_loop(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(WAIT_S)

    def tasks(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())

        return int(self.on_loop(count()))

    def until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not done():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)


def _open(channel: grpc.Channel, hold: threading.Event) -> list[Any]:
    """STREAMS Listen and STREAMS Session calls (each session sends its Hello, then nothing until `hold` is set)."""

    def frames() -> Iterator[bytes]:
        yield HELLO
        hold.wait(WAIT_S * 3)

    listen = channel.unary_stream(f"/{SERVICE}/Listen", request_serializer=_identity, response_deserializer=_identity)
    session = channel.stream_stream(
        f"/{SERVICE}/Session", request_serializer=_identity, response_deserializer=_identity
    )
    return [listen(LISTEN) for _ in range(STREAMS)] + [session(frames()) for _ in range(STREAMS)]


@pytest.fixture
def server() -> Iterator[_Server]:
    with _Server() as running:
        yield running


def _tasks_while_open(server: _Server, watched: bool) -> int:
    """The server loop's tasks while 2 x STREAMS streams are open, less those it had before; checks that they are
    all gone once the streams end."""
    hold = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        idle_tasks = server.tasks()
        calls = _open(channel, hold)
        try:
            server.until(lambda: server.inside == 2 * STREAMS, "the streams did not all open")
            tasks = server.tasks() - idle_tasks
            assert len(server.interceptor.streams) == (2 * STREAMS if watched else 0), "every open stream is watched"
        finally:
            hold.set()
            for call in calls:
                call.cancel()
        server.until(lambda: server.inside == 0, "the streams did not all end")
        server.until(lambda: len(server.interceptor.streams) == 0, "a stream stayed watched after it ended")
        server.until(lambda: server.tasks() <= idle_tasks, "tasks left behind by the ended streams")
    return tasks


def test_an_open_stream_costs_no_task_of_its_own_with_auth_off(server: _Server) -> None:
    """With authorization off, an open Listen or Session stream costs the server's event loop no task beyond gRPC's
    own for the call (as on a server without the interceptor): no servicer task, no watcher; one poller is shared
    by all. Once the streams end, the tasks are back to what they were."""
    with _Server(intercepted=False) as plain:
        grpc_tasks = _tasks_while_open(plain, watched=False)
    assert grpc_tasks >= 2 * STREAMS, "gRPC runs each call in a task"
    assert _tasks_while_open(server, watched=True) <= grpc_tasks + 1, "a task of the interceptor's per stream"


def test_streams_opened_with_auth_off_are_cut_when_it_is_enabled(server: _Server) -> None:
    """Anonymous streams opened while authorization was off end with PERMISSION_DENIED once it is enabled (the
    shared poller rechecks every open stream), and leave no task or entry behind."""
    hold = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        idle_tasks = server.tasks()
        calls = _open(channel, hold)
        try:
            server.until(lambda: server.inside == 2 * STREAMS, "the streams did not all open")
            server.state = AuthState(enabled=True, version=1)
            for call in calls:
                with pytest.raises(grpc.RpcError) as ended:
                    next(call)  # a Listen's first message, or the status it ends with
                assert ended.value.code() == grpc.StatusCode.PERMISSION_DENIED, ended.value
                assert "authorization changed while the stream was open" in str(ended.value.details())
        finally:
            hold.set()
        server.until(lambda: server.inside == 0 and len(server.interceptor.streams) == 0, "streams left open")
        server.until(lambda: server.tasks() <= idle_tasks, "tasks left behind by the cut streams")


def test_a_cut_during_a_write_lets_the_write_finish_and_then_sends_permission_denied(server: _Server) -> None:
    """A stream cut while its servicer is writing (auth enabled under an anonymous listener whose frames wait for
    the client to read) is not cancelled mid-write: once the client reads, it gets every frame begun, whole, and
    then PERMISSION_DENIED (cancelled mid-write, grpc.aio's call never sent the status)."""
    options = [("grpc.max_receive_message_length", 8 * 2**20)]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
        listen = channel.unary_stream(
            f"/{SERVICE}/Listen", request_serializer=_identity, response_deserializer=_identity
        )
        call = listen(BIG_LISTEN, timeout=2 * WAIT_S)
        server.until(lambda: server.writing > server.written, "the servicer did not begin a write")
        begun = -1
        while begun != server.writing:  # until a write stays begun and not ended: it waits for the client
            begun = server.writing
            time.sleep(0.3)
        assert server.writing > server.written and server.writing < BIG_FRAMES_MAX, "no write waits for the client"
        server.state = AuthState(enabled=True, version=1)
        time.sleep(3 * AUTH_WATCH_INTERVAL_S)  # the poller has cut it by now, mid-write
        assert server.writing == begun and server.written == begun - 1, "the cut did not wait for the write"
        frames = 0
        with pytest.raises(grpc.RpcError) as ended:
            for frame in call:
                assert frame == BIG_FRAME, "a frame arrived cut short"
                frames += 1
        assert ended.value.code() == grpc.StatusCode.PERMISSION_DENIED, ended.value
    # The write in progress at the cut finished (the servicer saw the cut as it returned): nothing followed it.
    assert frames == begun and server.writing == begun, "the write at the cut was cut short, or another followed"
