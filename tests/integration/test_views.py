"""Reads of current values (Client.get) and listeners that start from a topic's current state."""

from __future__ import annotations

import threading
import time

import pytest

import laminar
from laminar import Kind

# Snapshot listeners taken while a writer pipelines puts, one after another over the nodes: with the snapshot's keys
# read at another moment than its offset (store pins before 49e7fa4), 4 of 4 runs of 30 met a key past the offset.
SNAPSHOTS_WHILE_WRITING = 30
WRITE_PAUSE_S = 0.002


def test_get_is_linearizable_and_follows_the_leader(make_cluster) -> None:
    """A get after a committed put sees it, even when the client was given only a follower's address."""
    c = make_cluster(3)
    leader = c.leader_id()
    follower = next(n for n in (1, 2, 3) if n != leader)
    with laminar.Client([c.address_of(follower)]) as client:
        assert client.create_topic("kv").committed(10).ok
        for n in range(50):
            commit = client.put("kv", "k", str(n)).committed(10)
            got = client.get("kv", "k")
            assert got.found and got.value == str(n).encode(), "a read never misses a committed write"
            assert got.intention_offset >= commit.intention_offset
        assert got.value_offset == got.topic_offset == 51
        assert client.delete("kv", "k").committed(10).ok
        gone = client.get("kv", "k")
        assert not gone.found and gone.value == b"" and gone.topic_offset == 52
        missing = client.get("no-such-topic", "k")
        assert not missing.found and missing.topic_offset == 0


def test_stale_get_reads_any_node_locally(make_cluster) -> None:
    """stale_ok=True is answered by the node asked, from what it applied."""
    c = make_cluster(3)
    with laminar.Client(c.addresses) as client:
        client.create_topic("kv").committed(10)
        last = client.put("kv", "a", "1").committed(10)
    c.wait_applied(last.intention_offset)
    for address in c.addresses:
        with laminar.Client([address]) as reader:
            got = reader.get("kv", "a", stale_ok=True)
            assert got.found and got.value == b"1" and got.value_offset == 2


def test_destroy_clears_the_view_and_recreate_starts_empty(make_cluster) -> None:
    """After destroy and re-create, keys of the old incarnation are gone."""
    c = make_cluster(1)
    with laminar.Client(c.addresses) as client:
        client.create_topic("kv").committed(10)
        client.put("kv", "a", "1").committed(10)
        client.destroy_topic("kv").committed(10)
        assert not client.get("kv", "a").found
        client.create_topic("kv").committed(10)
        assert not client.get("kv", "a").found


def test_snapshot_listener_gets_current_state_then_every_later_event_without_gap(make_cluster) -> None:
    """Live keys first (each with its latest value), then the events after the snapshot's offset, while
    writers keep writing: no key of a snapshot is past its offset, the events follow it without a gap, and
    folding snapshot + events gives exactly the final state."""
    c = make_cluster(3)
    keys = [f"k{i}" for i in range(20)]
    with laminar.Client(c.addresses) as client:
        client.create_topic("kv").committed(10)
        for n in range(500):
            client.put("kv", keys[n % len(keys)], str(n))
        deleted = client.delete("kv", "k0")
        client.flush(30)
        # A Listener may land on any node, and a follower learns of a commit one message later: wait until every
        # node has applied the delete, so that the snapshot below is of the state just written wherever it lands.
        c.wait_applied(deleted.committed(10).intention_offset)
        with laminar.Listener(c.addresses, "kv", snapshot=True) as quiet:
            first = quiet.take(len(keys) - 1, timeout=10)
            assert all(e.snapshot for e in first) and b"k0" not in {e.key for e in first}  # deleted
            assert {e.key: e.value for e in first}[b"k19"] == b"499"
            assert quiet.snapshot_offset == 502
        stop = threading.Event()

        def write_more() -> None:
            with laminar.Client(c.addresses) as writer:
                n = 500
                while not stop.is_set():  # pipelined: entries apply while a snapshot is being read
                    writer.put("kv", keys[n % len(keys)], str(n))
                    n += 1
                    time.sleep(WRITE_PAUSE_S)

        thread = threading.Thread(target=write_more)
        thread.start()
        try:
            for n in range(SNAPSHOTS_WHILE_WRITING):  # on every node: a snapshot is of one offset, keys and all
                with laminar.Listener([c.addresses[n % 3]], "kv", snapshot=True) as listener:
                    event = listener.next_event(timeout=10)
                    offset = listener.snapshot_offset  # set before the first snapshot event is yielded
                    assert offset is not None
                    while event.snapshot:
                        assert event.consequence_offset <= offset, "a key of the snapshot is past its offset"
                        event = listener.next_event(timeout=10)
                    assert event.consequence_offset == offset + 1, "no gap after the snapshot"
            follower = next(n for n in (1, 2, 3) if n != c.leader_id())
            with laminar.Listener([c.address_of(follower)], "kv", snapshot=True) as listener:
                state: dict[bytes, bytes] = {}
                snapshot_events = []
                event = listener.next_event(timeout=10)
                while event.snapshot:
                    snapshot_events.append(event)
                    state[event.key] = event.value
                    event = listener.next_event(timeout=10)
                assert listener.snapshot_offset is not None
                assert len(snapshot_events) <= len(keys)
                assert event.consequence_offset == listener.snapshot_offset + 1, "no gap after the snapshot"
                stop.set()
                thread.join(30)
                final = client.put("kv", "end", "x").committed(10)
                while True:
                    if event.kind == Kind.PUT:
                        state[event.key] = event.value
                    elif event.kind == Kind.DELETE:
                        state.pop(event.key, None)
                    if event.intention_offset == final.intention_offset:
                        break
                    following = listener.next_event(timeout=10)
                    assert following.consequence_offset == event.consequence_offset + 1
                    event = following
        finally:
            stop.set()
            thread.join(30)
        for key in [*keys, "end"]:
            got = client.get("kv", key)
            assert state.get(key.encode()) == (got.value if got.found else None), key


def test_snapshot_listener_cut_mid_snapshot_shows_one_snapshot_then_every_event(make_cluster) -> None:
    """A snapshot listener whose node dies mid-snapshot, after the topic changed, shows the user exactly one
    snapshot (the next node's, equal to the topic's state at its offset: no key twice, no deleted key), then the
    events after it without gap. Nodes send at most 1 MiB/s to listeners, so a 2.5 MiB snapshot spans frames
    that come about a second apart, and the first node is killed once the listener has some but not all."""
    c = make_cluster(3, extra_config="[serving]\nlisten_bytes_per_s = 1048576\n")
    value = b"v" * (64 * 1024)
    writes: list[tuple[str, bytes | None]] = [(f"k{i:02}", value) for i in range(40)]  # consequence offsets 2..41
    with laminar.Client(c.addresses) as client:
        client.create_topic("kv").committed(10)
        for key, v in writes:
            client.put("kv", key, v)
        client.flush(30)
        c.wait_applied(client.put("kv", "k40", "x").committed(10).intention_offset)
        writes.append(("k40", b"x"))
        leader = c.leader_id()
        first, second = (n for n in (1, 2, 3) if n != leader)
        listener = laminar.Listener([c.address_of(first), c.address_of(second)], "kv", snapshot=True)
        try:
            deadline = time.monotonic() + 20
            while listener._snapshot_held.frames == 0:  # the first node's snapshot has begun to arrive
                assert time.monotonic() < deadline, "no snapshot frame within 20 s"
                time.sleep(0.005)
            # Changed after the first node took its snapshot, which has k00 and k01 in its first frame.
            client.delete("kv", "k01")
            client.put("kv", "k00", "changed")
            last = client.put("kv", "k41", "new").committed(10)
            writes += [("k01", None), ("k00", b"changed"), ("k41", b"new")]
            c.wait_applied(last.intention_offset, [second])
            assert listener.snapshot_offset is None, "the cut must come mid-snapshot"
            c.cluster.kill(first)
            while listener.snapshot_offset is None:  # set once the snapshot is complete, before it is delivered
                assert time.monotonic() < deadline + 30, "no complete snapshot within 30 s of the cut"
                time.sleep(0.01)
            after = [client.put("kv", f"a{n}", str(n)) for n in range(3)]
            seen: list[laminar.Event] = []
            event = listener.next_event(timeout=30)
            while event.snapshot:
                seen.append(event)
                event = listener.next_event(timeout=30)
            snapshot_offset = listener.snapshot_offset
            assert snapshot_offset == len(writes) + 1, "the second node's snapshot, of every write"
            expected: dict[bytes, bytes] = {}
            for key, v in writes[: snapshot_offset - 1]:
                if v is None:
                    expected.pop(key.encode(), None)
                else:
                    expected[key.encode()] = v
            assert len(seen) == len({e.key for e in seen}), "no key twice"
            assert {e.key: e.value for e in seen} == expected
            assert [e.key for e in seen] == sorted(expected), "one snapshot, in key order"
            assert event.consequence_offset == snapshot_offset + 1 and event.key == b"a0", "no gap after it"
            for n, pending in enumerate(after[1:], start=1):
                following = listener.next_event(timeout=30)
                assert following.consequence_offset == snapshot_offset + 1 + n and following.key == f"a{n}".encode()
                assert following.intention_offset == pending.committed(10).intention_offset
        finally:
            listener.close()
        small = laminar.Listener([c.address_of(second)], "kv", snapshot=True, snapshot_bytes_max=100_000)
        with small, pytest.raises(laminar.SnapshotTooLarge, match="snapshot_bytes_max = 100000 bytes"):
            small.next_event(timeout=30)
