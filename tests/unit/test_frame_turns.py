"""Heavy client frames take turns on the event loop; light ones do not wait for them (service/_turns.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from laminar import limits
from laminar.node.config import ServingLimits
from laminar.node.service._sessions import SessionRouter, _Session
from laminar.node.service._turns import FrameTurns
from laminar.v1 import laminar_pb2 as pb


def _frame(count: int, value: bytes) -> bytes:
    mutations = [pb.Mutation(nonce=1 + i, kind=pb.PUT, topic="t", key=b"k", value=value) for i in range(count)]
    return pb.ClientFrame(mutations=pb.MutationFrame(mutations=mutations)).SerializeToString()


class _OneFrame:
    """A Session stream that holds one frame, then ends."""

    def __init__(self, raw: bytes) -> None:
        self._frames = [raw]

    async def read(self) -> Any:
        return self._frames.pop() if self._frames else grpc.aio.EOF


def _router(taken: list[bytes]) -> SessionRouter:
    router = SessionRouter.__new__(SessionRouter)
    router._serving = ServingLimits()
    router._is_leader = lambda: True
    router._offer = lambda proposal, timeout_s: taken.append(proposal.session.client_id) or True
    router._topic_run_max = lambda: limits.RUN_INTENTIONS_MAX
    router._turns = FrameTurns()
    return router


def test_a_light_frame_is_taken_in_before_heavy_frames_that_arrived_first() -> None:
    """Eight sessions' heavy frames (256 puts, and three 1 MiB puts) and then one session's single put, all
    ready at once: the single put is taken in second (after the heavy frame already in its turn), not ninth."""
    heavy = [_frame(256, b"v" * 1024), _frame(3, b"b" * (limits.VALUE_BYTES_MAX - 64))]

    async def scenario() -> list[bytes]:
        taken: list[bytes] = []
        router = _router(taken)
        readers = []
        for n in range(9):
            session = _Session(bytes([n]) * 16, next_nonce=1)
            session.attach(asyncio.get_running_loop())
            raw = heavy[n % 2] if n < 8 else _frame(1, b"light")
            readers.append(asyncio.create_task(router._read_frames(session, _OneFrame(raw))))
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        return taken

    order = [client_id[0] for client_id in asyncio.run(scenario())]
    assert sorted(set(order)) == list(range(9))
    assert order.index(8) <= 1, order


def test_heavy_frames_go_one_at_a_time_in_the_order_they_asked_and_a_cancelled_reader_passes_its_turn() -> None:
    """The turn is held by one reader; the next is let go only after its release, by the loop's next iteration;
    a reader cancelled while waiting is skipped, and one cancelled just as the turn reached it hands it on."""

    async def scenario() -> tuple[list[str], int]:
        turns = FrameTurns()
        log: list[str] = []

        async def reader(name: str) -> None:
            await turns.take()
            log.append(f"{name} in")
            await asyncio.sleep(0)
            log.append(f"{name} out")
            turns.release()

        await turns.take()  # held: every reader below waits
        tasks = {name: asyncio.create_task(reader(name)) for name in ("a", "b", "c", "d")}
        await asyncio.sleep(0)
        tasks["b"].cancel()
        turns.release()
        await asyncio.sleep(0)  # the hand-on runs: a has the turn, but has not run yet
        await tasks["a"]  # its release's hand-on ran first: it skipped b (cancelled) and gave c the turn
        assert not tasks["c"].done()
        tasks["c"].cancel()  # cancelled with the turn in hand, before it ran: it must pass it to d
        await asyncio.wait_for(tasks["d"], 1)
        await asyncio.sleep(0)
        return log, turns.waiting()

    log, waiting = asyncio.run(scenario())
    assert log == ["a in", "a out", "d in", "d out"], log
    assert waiting == 0
