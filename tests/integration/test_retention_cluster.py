"""Retention on real nodes: a capped topic keeps its newest events on every node (equal digests), a
listener from 0 starts at the oldest kept, one asking for a trimmed offset gets OffsetTrimmed naming the
first available offset, gets and snapshot listens still see every live key, and `laminar topic
configure` changes the cap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import laminar
from laminar.client import describe_topic

CLI_TIMEOUT_S = 60


def cli(addresses: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LAMINAR_ADDRESSES=",".join(addresses))
    return subprocess.run(
        [sys.executable, "-m", "laminar", *args], capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S
    )


def test_a_capped_topic_trims_on_every_node_and_listeners_are_told(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """Capped at 50 events, a create and 201 puts (on 20 keys) leave offsets 153..202 on all three nodes;
    Listener(0) starts at 153, Listener(10) raises OffsetTrimmed(first_offset=153); get and a snapshot
    listen see all 20 keys; `topic configure --max-events 10` trims to 10 and the next put gets 203 (no
    offset reused); configuring a missing topic is an ERROR that says so."""
    c = make_cluster(3)
    with laminar.Client(c.addresses) as client:
        create = client.create_topic("capped", retention=laminar.Retention(max_events=50)).committed(timeout=20)
        assert create.effect == "VALID"
        for i in range(200):
            client.put("capped", f"k{i % 20}", f"v{i}")
        last = client.put("capped", "k0", "last").committed(timeout=30)
    c.wait_applied(last.intention_offset)
    c.assert_replicas_identical()
    info = describe_topic(c.addresses, "capped")
    assert (info.first_offset, info.last_offset) == (153, 202) and info.retention.max_events == 50

    with laminar.Listener(c.addresses, "capped", from_offset=0) as listener:
        assert listener.next_event(timeout=20).consequence_offset == 153
    with laminar.Listener(c.addresses, "capped", from_offset=10) as listener, pytest.raises(laminar.OffsetTrimmed) as e:
        listener.next_event(timeout=20)
    assert e.value.first_offset == 153 and "the first available offset is 153" in str(e.value)
    with laminar.Client(c.addresses) as client:
        assert client.get("capped", "k5").value == b"v185"  # its event (offset 187) is kept; k1's too
        assert client.get("capped", "k1").found
    with laminar.Listener(c.addresses, "capped", snapshot=True) as listener:
        assert {e.key for e in listener.take(20, timeout=20)} == {f"k{i}".encode() for i in range(20)}

    configured = cli(c.addresses, "topic", "configure", "capped", "--max-events", "10")
    assert configured.returncode == 0 and "VALID" in configured.stdout, configured.stderr
    with laminar.Client(c.addresses) as client:
        assert client.put("capped", "k1", "after").committed(timeout=20).effect == "VALID"
    info = describe_topic(c.addresses, "capped")
    assert (info.first_offset, info.last_offset) == (194, 203)
    with laminar.Client(c.addresses) as client:
        missing = client.configure_topic("nothing", laminar.Retention(max_events=1)).committed(timeout=20)
    assert missing.effect == "ERROR" and "does not exist" in missing.reason
    c.assert_replicas_identical()
