"""Reads of current values (Client.get) and listeners that start from a topic's current state."""

from __future__ import annotations

import threading

import laminar
from laminar import Kind


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
    writers keep writing: folding snapshot + events gives exactly the final state."""
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
                while not stop.is_set():
                    writer.put("kv", keys[n % len(keys)], str(n)).committed(10)
                    n += 1

        thread = threading.Thread(target=write_more)
        thread.start()
        try:
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
