"""A 3-node cluster of real processes: pipelined writes, listeners anywhere, effects, bad input."""

from __future__ import annotations

import threading

import pytest

import laminar
from laminar import Effect, Kind


def test_pipelined_puts_from_several_clients_all_commit_and_listeners_agree(make_cluster) -> None:
    """Every pipelined put from 3 clients commits; listeners on leader and follower see one stream."""
    c = make_cluster(3)
    with laminar.Client(c.addresses) as admin:
        assert admin.create_topic("chat").committed(timeout=10).effect is Effect.VALID
    per_client = 2000
    pendings: dict[int, list[laminar.Pending]] = {}

    def write(i: int) -> None:
        with laminar.Client(c.addresses) as client:
            pendings[i] = [client.put("chat", f"c{i}", f"m{n}") for n in range(per_client)]
            client.flush(timeout=60)
            assert all(p.committed(0).effect is Effect.VALID for p in pendings[i])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert sorted(pendings) == [0, 1, 2]
    offsets = sorted(p.committed(0).intention_offset for ps in pendings.values() for p in ps)
    assert offsets == list(range(2, 2 + 3 * per_client)), "intention offsets are gapless and unique"

    leader = c.leader_id()
    follower = next(n for n in (1, 2, 3) if n != leader)
    total = 1 + 3 * per_client
    streams = []
    for node in (leader, follower):
        with laminar.Listener([c.address_of(node)], "chat", from_offset=0) as listener:
            streams.append(listener.take(total, timeout=30))
    assert streams[0] == streams[1]
    assert [e.consequence_offset for e in streams[0]] == list(range(1, total + 1))
    for i in range(3):
        values = [e.value for e in streams[0] if e.key == f"c{i}".encode()]
        assert values == [f"m{n}".encode() for n in range(per_client)], "each client's order is kept"


def test_effects_of_topic_lifecycle_and_offsets_never_reset(make_cluster) -> None:
    """Create/destroy/re-create: INVALID and ERROR effects with reasons, consequence offsets continue."""
    c = make_cluster(3)
    with laminar.Client(c.addresses) as client:
        assert client.create_topic("t").committed(10).effect is Effect.VALID
        again = client.create_topic("t").committed(10)
        assert again.effect is Effect.INVALID and "already exists" in again.reason
        assert client.put("t", "k", "v1").committed(10).ok
        assert client.delete("t", "k").committed(10).ok
        assert client.destroy_topic("t").committed(10).ok
        gone = client.destroy_topic("t").committed(10)
        assert gone.effect is Effect.INVALID and "does not exist" in gone.reason
        missing = client.put("t", "k", "v2").committed(10)
        assert missing.effect is Effect.ERROR and "does not exist" in missing.reason
        assert client.create_topic("t").committed(10).ok
        last = client.put("t", "k", "v3").committed(10)
    with laminar.Listener(c.addresses, "t") as listener:
        events = listener.take(6, timeout=10)
    assert [(e.kind, e.consequence_offset) for e in events] == [
        (Kind.CREATE_TOPIC, 1),
        (Kind.PUT, 2),
        (Kind.DELETE, 3),
        (Kind.DESTROY_TOPIC, 4),
        (Kind.CREATE_TOPIC, 5),
        (Kind.PUT, 6),
    ]
    assert events[-1].intention_offset == last.intention_offset


def test_listener_waits_for_future_topic_and_resumes_from_offset(make_cluster) -> None:
    """A listener on a topic that does not exist yet waits; from_offset=N starts after N."""
    c = make_cluster(3)
    early = laminar.Listener([c.address_of(2)], "later", from_offset=0)
    try:
        with pytest.raises(laminar.Timeout):
            early.next_event(timeout=0.5)
        with laminar.Client(c.addresses) as client:
            client.create_topic("later").committed(10)
            for n in range(5):
                client.put("later", "k", str(n))
            client.flush(10)
        assert [e.consequence_offset for e in early.take(6, timeout=10)] == list(range(1, 7))
    finally:
        early.close()
    with laminar.Listener(c.addresses, "later", from_offset=4) as listener:
        assert [e.value for e in listener.take(2, timeout=10)] == [b"3", b"4"]
        with pytest.raises(laminar.Timeout):
            listener.next_event(timeout=0.5)  # beyond the end: it waits


def test_bad_input_gets_clear_errors_and_the_cluster_keeps_serving(make_cluster) -> None:
    """Oversized keys/values, bad names, negative offsets: clear errors, nothing else affected."""
    c = make_cluster(3)
    with laminar.Client(c.addresses) as client:
        client.create_topic("ok").committed(10)
        with pytest.raises(laminar.InvalidRequest, match="value is"):
            client.put("ok", "k", b"x" * (laminar.limits.VALUE_BYTES_MAX + 1))
        with pytest.raises(laminar.InvalidRequest, match="key is"):
            client.put("ok", b"k" * (laminar.limits.KEY_BYTES_MAX + 1), "v")
        with pytest.raises(laminar.InvalidRequest, match="topic name"):
            client.put("bad name!", "k", "v")
        with pytest.raises(laminar.InvalidRequest, match="topic name"):
            client.create_topic("x" * 256)
        with pytest.raises(laminar.InvalidRequest):
            laminar.Listener(c.addresses, "ok", from_offset=-1)
        assert client.put("ok", "k", b"x" * laminar.limits.VALUE_BYTES_MAX).committed(10).ok
    with laminar.Listener(c.addresses, "bad name!") as listener, pytest.raises(laminar.InvalidRequest):
        listener.next_event(timeout=10)
