"""The client's window of frames in flight: writes offered while the leader is behind go out together.

A stand-in leader on loopback (a real gRPC server that speaks the Session protocol and holds its acks
back until told) counts the frames a real Client sends; no node process is needed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from wire_stub import serve_session

import laminar
from laminar import limits
from laminar.v1 import laminar_pb2 as pb

WAIT_S = 5.0
QUIET_S = 0.3  # long enough for a frame the client should not send to arrive if it were sent


class HoldingLeader:
    """Answers a Session with a Welcome, records every mutation frame, and acks only when told."""

    def __init__(self) -> None:
        self.frames: queue.Queue[list[int]] = queue.Queue()  # nonces of each frame, as they arrive
        self.acks: queue.Queue[pb.Acks] = queue.Queue()
        self._server, self.address = serve_session(self._session)

    def _session(self, requests: Iterator[pb.ClientFrame], context: Any) -> Iterator[pb.ServerFrame]:
        next(requests)  # the Hello
        threading.Thread(target=self._read, args=(requests,), daemon=True).start()
        yield pb.ServerFrame(welcome=pb.Welcome(node_id="1"))
        while context.is_active():
            try:
                yield pb.ServerFrame(acks=self.acks.get(timeout=0.1))
            except queue.Empty:
                continue

    def _read(self, requests: Iterator[pb.ClientFrame]) -> None:
        try:
            for frame in requests:
                self.frames.put([m.nonce for m in frame.mutations.mutations])
        except grpc.RpcError:
            pass  # the client closed its session

    def next_frame(self) -> list[int]:
        return self.frames.get(timeout=WAIT_S)

    def stop(self) -> None:
        self._server.stop(0)


@pytest.fixture
def leader() -> Iterator[HoldingLeader]:
    server = HoldingLeader()
    yield server
    server.stop()


def test_writes_offered_while_the_window_is_full_wait_and_go_out_in_one_frame(leader: HoldingLeader) -> None:
    """With CLIENT_FRAMES_INFLIGHT_MAX frames unacknowledged, later writes are held, then sent as one frame."""
    window = limits.CLIENT_FRAMES_INFLIGHT_MAX
    client = laminar.Client([leader.address], close_timeout=0)
    try:
        for nonce in range(1, window + 1):  # one write at a time, each sent before the next is offered
            client.put("t", b"k", b"v")
            assert leader.next_frame() == [nonce]
        for _ in range(5):
            client.put("t", b"k", b"v")
        with pytest.raises(queue.Empty):
            leader.frames.get(timeout=QUIET_S)  # the window is full: nothing more goes out
        leader.acks.put(pb.Acks(received_through=1))  # the leader has the first frame in its log
        assert leader.next_frame() == [window + 1 + i for i in range(5)]
    finally:
        with pytest.raises(laminar.Unacknowledged):
            client.close(timeout=0)


def test_a_commit_opens_the_window_as_a_received_ack_does(leader: HoldingLeader) -> None:
    """A Commit acknowledges its frame too: a leader that sends no `received` still lets the client go on."""
    window = limits.CLIENT_FRAMES_INFLIGHT_MAX
    client = laminar.Client([leader.address], close_timeout=0)
    try:
        for nonce in range(1, window + 1):
            client.put("t", b"k", b"v")
            assert leader.next_frame() == [nonce]
        client.put("t", b"k", b"v")
        with pytest.raises(queue.Empty):
            leader.frames.get(timeout=QUIET_S)
        leader.acks.put(pb.Acks(commits=[pb.Commit(nonce=1, effect=pb.VALID, intention_offset=1, count=1)]))
        assert leader.next_frame() == [window + 1]
    finally:
        with pytest.raises(laminar.Unacknowledged):
            client.close(timeout=0)


def sender_wakes(client: laminar.Client) -> tuple[list[int], Callable[[threading.Condition], None]]:
    """A stand-in for Condition.notify_all that also counts the wake-ups of the client's sender thread (one entry
    in the list each), to patch in once the test is past the wake-ups it does not count."""
    woken: list[int] = []
    notify_all = threading.Condition.notify_all

    def counting(condition: threading.Condition) -> None:
        if condition is client._sendable:
            woken.append(1)
        notify_all(condition)

    return woken, counting


def test_acks_wake_the_sender_only_when_writes_wait_for_the_window(
    leader: HoldingLeader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every write sent, an ack leaves the client's sender thread asleep (it woke for each one, twice per
    lone write); with writes held by a full window, the ack that opens it wakes the sender."""
    client = laminar.Client([leader.address], close_timeout=0)
    woken, counting = sender_wakes(client)
    try:
        client.put("t", b"k", b"v")
        assert leader.next_frame() == [1]
        monkeypatch.setattr(threading.Condition, "notify_all", counting)
        leader.acks.put(pb.Acks(received_through=1))
        leader.acks.put(pb.Acks(commits=[pb.Commit(nonce=1, effect=pb.VALID, intention_offset=1, count=1)]))
        second = client.put("t", b"k", b"v")  # goes out at once: the window has room
        assert leader.next_frame() == [2]
        assert not second.done()
        put_wakes = len(woken)  # the put itself woke the sender (if it was asleep yet)
        leader.acks.put(pb.Acks(received_through=2))
        with pytest.raises(queue.Empty):
            leader.frames.get(timeout=QUIET_S)
        assert len(woken) == put_wakes  # nothing unsent: the ack woke nobody
    finally:
        with pytest.raises(laminar.Unacknowledged):
            client.close(timeout=0)


def test_writes_offered_while_the_window_is_shut_do_not_wake_the_sender(
    leader: HoldingLeader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the window full, a put leaves the sender thread asleep (it could send nothing); the ack that opens the
    window wakes it, and the held writes go out in one frame. Woken by every put, it looked and slept again: in the
    open loop at 3,000 puts/s, 8,000 wake-ups for 700 frames."""
    window = limits.CLIENT_FRAMES_INFLIGHT_MAX
    client = laminar.Client([leader.address], close_timeout=0)
    woken, counting = sender_wakes(client)
    try:
        for nonce in range(1, window + 1):
            client.put("t", b"k", b"v")
            assert leader.next_frame() == [nonce]
        # The sender is asleep on the shut window. (The frame reaching the leader does not say so: gRPC's thread may
        # not have asked for the next frame yet, and an ack then finds no sender waiting to wake; it sends the held
        # writes when it asks. A clean clone's make test failed so.)
        deadline = time.monotonic() + QUIET_S * 10
        while not client._send_waiters:
            assert time.monotonic() < deadline, "the sender never waited for the window"
            time.sleep(0.001)
        monkeypatch.setattr(threading.Condition, "notify_all", counting)
        for _ in range(20):
            client.put("t", b"k", b"v")
        assert not woken
        leader.acks.put(pb.Acks(received_through=1))
        assert leader.next_frame() == [window + 1 + i for i in range(20)]
        assert woken  # the ack woke it
    finally:
        with pytest.raises(laminar.Unacknowledged):
            client.close(timeout=0)
