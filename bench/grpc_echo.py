"""The smallest Python gRPC round trip of Laminar's shape: a grpc.aio server echoing frames on a bidi stream.

`python -m bench.grpc_echo --port P --seconds S` serves until S seconds have passed (so it cannot outlive a
lost parent). `EchoClient` is the synchronous client side, as laminar.Client talks to a node: frames go out
through a request iterator that gRPC's own thread pulls, answers come back on the caller's thread. No
Laminar code runs on either side: what one round trip costs here is the floor of the gRPC legs of a write.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import grpc

SERVICE = "floor.Echo"
METHOD = "Stream"
FRAMES_QUEUED_MAX = 1  # the client sends one frame and waits for its echo


async def _echo(requests: AsyncIterator[bytes], _context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for frame in requests:
        yield frame


async def _serve(port: int, seconds: float) -> None:
    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(_echo)  # no (de)serializers: frames are bytes
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await server.stop(grace=None)


class EchoClient:
    """One bidi stream to an echo server; `round_trip` sends a frame and waits for it to come back."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._frames: queue.Queue[bytes | None] = queue.Queue(maxsize=FRAMES_QUEUED_MAX)
        stream = self._channel.stream_stream(f"/{SERVICE}/{METHOD}")
        self._answers: Iterator[bytes] = stream(self._requests())

    def _requests(self) -> Iterator[bytes]:
        while (frame := self._frames.get()) is not None:
            yield frame

    def round_trip(self, frame: bytes) -> float:
        """Seconds from handing `frame` to gRPC until its echo is read."""
        started = time.perf_counter()
        self._frames.put(frame)
        echoed = next(self._answers)
        elapsed_s = time.perf_counter() - started
        assert echoed == frame, "the echo server answered with another frame"
        return elapsed_s

    def __enter__(self) -> EchoClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._frames.put(None)
        self._channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True, help="the server exits after this long")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.seconds))


if __name__ == "__main__":
    main()
