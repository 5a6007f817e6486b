"""The examples run against a real cluster, driven non-interactively through stdin."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from types import ModuleType

import pytest

import laminar

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAT = os.path.join(ROOT, "examples", "chat.py")
RUN_TIMEOUT_S = 60
LATE_S = 1.0  # how long a listener's first stream is held back in the late-listener test


@pytest.fixture(scope="module")
def cluster(module_cluster) -> list[str]:  # type: ignore[no-untyped-def]
    """One 3-node cluster for this module (its client addresses); each test uses topics of its own."""
    return module_cluster[1]


def chat(addresses: list[str], name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, CHAT, "--name", name, "--room", "lobby", "--addresses", ",".join(addresses)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_chat_members_see_each_others_messages_and_latecomers_see_the_last_of_each(cluster: list[str]) -> None:
    """bob listens while alice pipes two lines; carol, joining later, first sees what each said last."""
    bob = chat(cluster, "bob")
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        # bob opened the room (after his listener's snapshot: join() waits for it), so his listener follows it
        while not any("lobby" in s.get("topics", []) for s in laminar.cluster_status(cluster, timeout_s=1.0)):
            assert time.monotonic() < deadline and bob.poll() is None
            time.sleep(0.1)
        alice = chat(cluster, "alice")
        out, err = alice.communicate("hello\nhow are you?\n", timeout=RUN_TIMEOUT_S)
        assert alice.returncode == 0, err
        assert out.splitlines()[-2:] == ["alice: hello", "alice: how are you?"], "alice sees her own messages"
        carol = chat(cluster, "carol")
        carol_out, err = carol.communicate("hi all\n", timeout=RUN_TIMEOUT_S)
        assert carol.returncode == 0, err
        assert carol_out.splitlines() == ["(earlier) alice: how are you?", "carol: hi all"]
        bob_out, err = bob.communicate("bye\n", timeout=RUN_TIMEOUT_S)
        assert bob.returncode == 0, err
        assert bob_out.splitlines() == ["alice: hello", "alice: how are you?", "carol: hi all", "bob: bye"]
    finally:
        if bob.poll() is None:
            bob.kill()
            bob.wait()


def _chat_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_example", CHAT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _LateListener(laminar.Listener):
    """A Listener whose first stream starts LATE_S late (a slow start under load, made certain)."""

    def _run(self) -> None:
        time.sleep(LATE_S)
        super()._run()


def test_chat_a_member_whose_listener_starts_late_sees_the_others_earlier_and_their_own_message_live(
    cluster: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """join() takes the snapshot before anything is said: with dave's listener held back LATE_S, his message still
    comes after his snapshot, shown once and live, and leave() returns once it is shown. (When join() did not wait,
    the message committed first: it was in the snapshot, "(earlier) dave: hi", never live, and leave() waited 10 s.)"""
    with laminar.Client(cluster) as erin:
        erin.create_topic("late-room").committed(timeout=RUN_TIMEOUT_S)
        erin.put("late-room", "erin", "hello").committed(timeout=RUN_TIMEOUT_S)
    chat_example = _chat_module()
    monkeypatch.setattr(laminar, "Listener", _LateListener)
    room = chat_example.Room(",".join(cluster), "late-room", "dave")
    room.join()
    started = time.monotonic()
    room.leave(room.say("hi"))
    assert capsys.readouterr().out.splitlines() == ["(earlier) erin: hello", "dave: hi"]
    assert time.monotonic() - started < chat_example.SHOWN_TIMEOUT_S, "leave() waited for a message never shown"


def test_bank_demo_conserves_money_across_concurrent_cas_transfers(cluster: list[str]) -> None:
    """`make demo`'s script runs against a cluster: clients transfer through balance.py with the
    CAS retry loop, and its own replay of the stream finds money conserved and no negative balance."""
    bank = os.path.join(ROOT, "examples", "bank.py")
    result = subprocess.run(
        [sys.executable, bank, "--clients", "3", "--transfers", "15", "--addresses", ",".join(cluster)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S * 2,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "money conserved" in result.stdout and "no balance ever negative" in result.stdout, result.stdout
