"""The pure parts of the serving limits: descriptor budget, [serving] config, a session's flow-control account."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from laminar import limits
from laminar.errors import ConfigError
from laminar.node.config import ServingLimits, load_config
from laminar.node.service import connection_budget
from laminar.node.service._sessions import _Session
from laminar.node.state_machine import Outcome
from laminar.v1 import laminar_pb2 as pb

CLIENT = b"c" * 16


def test_the_descriptor_limit_is_raised_at_start() -> None:
    """A process started with a soft RLIMIT_NOFILE of 256 has it raised towards NOFILE_WANTED (up to the hard limit)."""
    script = textwrap.dedent(
        """
        import resource
        from laminar.node.service import raise_nofile
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        print(raise_nofile(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    returned, soft, hard = (int(v) for v in out)
    wanted = limits.NOFILE_WANTED if hard == -1 else min(limits.NOFILE_WANTED, hard)
    assert returned == soft == wanted


def test_connections_stay_well_under_the_descriptor_limit() -> None:
    """The connection budget leaves CONNECTION_FDS_RESERVED (or half a small limit) for the node itself."""
    assert connection_budget(8192, 65536) == 8192
    assert connection_budget(8192, 10_000) == 10_000 - limits.CONNECTION_FDS_RESERVED
    assert connection_budget(8192, 1024) == 512


def _config(tmp_path, serving: str) -> ServingLimits:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    path.write_text(f'{serving}\n[[nodes]]\nid = 1\nclient = "127.0.0.1:1"\nraft = "127.0.0.1:2"\n')
    return load_config(str(path), 1).serving


def test_serving_limits_come_from_the_config_or_the_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """[serving] sets what it names; the rest keep limits.py's defaults; bad values are refused by name."""
    assert _config(tmp_path, "") == ServingLimits()
    tuned = _config(tmp_path, "[serving]\nsessions_max = 10\nsession_idle_s = 5")
    assert tuned.sessions_max == 10 and tuned.session_idle_s == 5.0
    assert tuned.listeners_max == limits.LISTENERS_MAX_DEFAULT
    for bad in ("sessions_max = 0", "sessions_max = 1.5", "session_idle_s = -1", "sesions_max = 3"):
        with pytest.raises(ConfigError, match="serving"):
            _config(tmp_path, f"[serving]\n{bad}")


def test_a_sessions_uncommitted_bytes_fall_as_its_frames_commit() -> None:
    """Flow control's account: bytes offered count until the frame's last nonce commits."""
    session = _Session(CLIENT, next_nonce=1)
    session.expected_nonce = 11
    session.proposed(5, 3000)
    session.proposed(10, 4000)
    assert session.uncommitted_bytes == 7000
    session.committed([Outcome(CLIENT, 1, pb.VALID, 1, "", count=5)])
    assert session.uncommitted_bytes == 4000
    session.committed([Outcome(CLIENT, 6, pb.VALID, 6, "", count=5)])
    assert session.uncommitted_bytes == 0


def test_every_serving_limit_is_documented_in_operations_md() -> None:
    """Each [serving] key an operator may set appears in docs/operations.md's table, with its default."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for name, field in ServingLimits.__dataclass_fields__.items():
        assert f"| `{name}` |" in text, name
        assert f"{name} = {field.default}" in text, (name, field.default)


def test_a_session_over_its_uncommitted_bytes_reads_nothing_until_they_commit() -> None:
    """Flow control: with SESSION_UNCOMMITTED_BYTES_MAX offered and uncommitted, the reader waits for room
    (it reads no next frame); a commit from the apply thread lets it go on at once."""
    import asyncio
    import threading

    from laminar.node.config import ServingLimits as Serving
    from laminar.node.service._sessions import SessionRouter

    async def scenario() -> tuple[bool, bool]:
        session = _Session(CLIENT, next_nonce=1)
        session.attach(asyncio.get_running_loop())
        session.expected_nonce = 2
        session.proposed(1, limits.SESSION_UNCOMMITTED_BYTES_MAX)
        router = SessionRouter.__new__(SessionRouter)
        router._serving = Serving()
        room = asyncio.ensure_future(router._room(session))
        await asyncio.sleep(0.2)
        held = not room.done()
        applier = threading.Thread(target=session.committed, args=([Outcome(CLIENT, 1, pb.VALID, 1, "")],))
        applier.start()
        await asyncio.wait_for(room, 0.5)  # woken by the commit, long before the 1 s re-check
        applier.join()
        return held, room.done()

    held, released = asyncio.run(scenario())
    assert held and released


def test_a_session_is_held_by_uncommitted_intentions_and_by_acks_its_client_does_not_take() -> None:
    """Flow control in intentions (SESSION_UNCOMMITTED_INTENTIONS_MAX nonces in flight, a few bytes each)
    and in acks: a client that leaves an Acks frame untaken is not read from until it takes it."""
    import asyncio
    import time

    from laminar.node.service._sessions import SessionRouter

    async def held(session: _Session) -> bool:
        room = asyncio.ensure_future(SessionRouter._room(SessionRouter.__new__(SessionRouter), session))
        await asyncio.sleep(0.3)
        done = room.done()
        room.cancel()
        return not done

    async def scenario() -> tuple[bool, bool, bool]:
        many = _Session(CLIENT, next_nonce=1)
        many.attach(asyncio.get_running_loop())
        many.expected_nonce = 1 + limits.SESSION_UNCOMMITTED_INTENTIONS_MAX
        slow = _Session(CLIENT, next_nonce=1)
        slow.attach(asyncio.get_running_loop())
        slow.write_started_at = time.monotonic() - 1.0
        free = _Session(CLIENT, next_nonce=1)
        free.attach(asyncio.get_running_loop())
        return await held(many), await held(slow), await held(free)

    assert asyncio.run(scenario()) == (True, True, False)


def test_the_rate_gate_allows_a_burst_then_refuses_with_the_wait_as_the_hint() -> None:
    """Status and DescribeTopic: per_s calls at once, then Exhausted with a retry hint; calls again as time passes."""
    import time

    from laminar.node.service._server import Exhausted, RateGate

    gate = RateGate("Status", 50)
    for _ in range(50):
        gate.take()
    with pytest.raises(Exhausted) as refused:
        gate.take()
    assert refused.value.retry_after_ms >= limits.RETRY_HINT_MS_MIN and "Status" in refused.value.message
    time.sleep(0.05)  # 2.5 tokens back
    gate.take()
    gate.take()


def test_a_commit_wakes_the_sessions_writer_after_letting_go_of_the_sessions_lock() -> None:
    """The apply thread's wake-up of the event loop (call_soon_threadsafe: a self-pipe write, which lets the
    loop run at once) comes after the session's lock is released, and only one is in flight at a time. Sent
    under the lock, the woken writer's next_acks found the lock held, blocked on it, and waited for the
    interpreter again: p90 115 us, p99 400 us per call on a leader's sequential writes."""

    class Loop:
        def __init__(self, session: _Session) -> None:
            self.session = session
            self.wakes_under_lock: list[bool] = []

        def call_soon_threadsafe(self, callback: object) -> None:
            self.wakes_under_lock.append(self.session._lock.locked())

    session = _Session(CLIENT, next_nonce=1)
    loop = Loop(session)
    session._loop = loop  # type: ignore[assignment]
    session.expected_nonce = 4
    session.committed([Outcome(CLIENT, 1, pb.VALID, 1, "", count=1)])
    session.committed([Outcome(CLIENT, 2, pb.VALID, 2, "", count=1)])  # a wake-up is in flight: no second
    assert loop.wakes_under_lock == [False]
    assert session.next_acks() is not None  # the writer took the news: the next commit wakes it again
    session.received(3)
    session.committed([Outcome(CLIENT, 3, pb.VALID, 3, "", count=1)])
    assert loop.wakes_under_lock == [False, False]


def test_a_reader_held_for_room_is_woken_by_a_commit_that_came_while_its_writer_was_writing() -> None:
    """The reader waits for room on the session's `settled` event, which the loop's wake-up sets; a commit that comes
    while an earlier wake-up is still pending (its writer is busy writing an Acks frame) sends none. Once the writer
    takes that news, the reader must look again: it slept to its 1 s re-check before (a session at its bound lost up to
    a second of reading, and with it its share of the log)."""
    import asyncio

    from laminar.node.config import ServingLimits as Serving
    from laminar.node.service._sessions import SessionRouter

    class SlowContext:
        """A client that takes the first Acks frame only when told to, and the rest at once."""

        def __init__(self) -> None:
            self.go = asyncio.Event()
            self.frames = 0

        async def write(self, message: object) -> None:
            self.frames += 1
            if self.frames == 1:
                await self.go.wait()

    async def scenario() -> float:
        session = _Session(CLIENT, next_nonce=1)
        session.attach(asyncio.get_running_loop())
        session.expected_nonce = 5
        session.proposed(1, 1)
        session.proposed(2, 1)
        session.proposed(3, 2**20)
        session.proposed(4, limits.SESSION_UNCOMMITTED_BYTES_MAX - 2**20)  # with 3, at the bound: held
        router = SessionRouter.__new__(SessionRouter)
        router._serving = Serving()
        context = SlowContext()
        reader = asyncio.ensure_future(router._room(session))
        writer = asyncio.ensure_future(router._write_acks(session, context))
        await asyncio.sleep(0.05)
        session.committed([Outcome(CLIENT, 1, pb.VALID, 1, "")])  # the writer starts an Acks frame the client holds
        await asyncio.sleep(0.05)
        session.committed([Outcome(CLIENT, 2, pb.VALID, 2, "")])  # a wake-up, pending until the writer looks again
        await asyncio.sleep(0.05)
        assert not reader.done()  # it looked: still at its bound, it waits again
        session.committed([Outcome(CLIENT, 3, pb.VALID, 3, "")])  # room now; no wake-up: one is pending
        await asyncio.sleep(0.05)
        context.go.set()  # the client takes the first frame: the writer takes the news of nonces 2 and 3
        start = asyncio.get_running_loop().time()
        await asyncio.wait_for(reader, 2.0)
        woken_s = asyncio.get_running_loop().time() - start
        writer.cancel()
        return woken_s

    assert asyncio.run(scenario()) < 0.5
