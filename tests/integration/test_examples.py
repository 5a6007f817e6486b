"""The examples run against a real cluster, driven non-interactively through stdin."""

from __future__ import annotations

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAT = os.path.join(ROOT, "examples", "chat.py")
RUN_TIMEOUT_S = 60


def chat(cluster, name: str) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, CHAT, "--name", name, "--room", "lobby", "--addresses", ",".join(cluster.addresses)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_chat_members_see_each_others_messages_and_latecomers_see_the_last_of_each(make_cluster) -> None:
    """bob listens while alice pipes two lines; carol, joining later, first sees what each said last."""
    c = make_cluster(3)
    bob = chat(c, "bob")
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not any("lobby" in s.get("topics", []) for s in c.statuses()):  # bob opened the room
            assert time.monotonic() < deadline and bob.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)  # bob's listener started before he created the room; let it settle
        alice = chat(c, "alice")
        out, err = alice.communicate("hello\nhow are you?\n", timeout=RUN_TIMEOUT_S)
        assert alice.returncode == 0, err
        assert out.splitlines()[-2:] == ["alice: hello", "alice: how are you?"], "alice sees her own messages"
        carol = chat(c, "carol")
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


def test_bank_demo_conserves_money_across_concurrent_cas_transfers(make_cluster) -> None:
    """`make demo`'s script runs against a cluster: clients transfer through balance.py with the
    CAS retry loop, and its own replay of the stream finds money conserved and no negative balance."""
    c = make_cluster(3)
    bank = os.path.join(ROOT, "examples", "bank.py")
    result = subprocess.run(
        [sys.executable, bank, "--clients", "3", "--transfers", "15", "--addresses", ",".join(c.addresses)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S * 2,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "money conserved" in result.stdout and "no balance ever negative" in result.stdout, result.stdout
