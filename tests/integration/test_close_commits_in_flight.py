"""Leaving `with laminar.Client(...)` commits every mutation sent in the block (it used to drop them all)."""

from __future__ import annotations

import laminar

WRITES = 2000
LISTEN_TIMEOUT_S = 30


def test_leaving_with_commits_every_pipelined_write(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """2,001 mutations sent without waiting for any ack are all in the stream after the block ends."""
    cluster = make_cluster(3)
    with laminar.Client(cluster.addresses) as client:
        client.create_topic("t")
        for n in range(WRITES):
            client.put("t", b"k%d" % (n % 7), str(n))
    with laminar.Listener(cluster.addresses, "t", from_offset=0) as listener:
        created, *puts = listener.take(1 + WRITES, timeout=LISTEN_TIMEOUT_S)
    assert created.kind == "CREATE_TOPIC"
    assert [e.value for e in puts] == [str(n).encode() for n in range(WRITES)]
    assert [e.consequence_offset for e in puts] == list(range(2, WRITES + 2))


def test_close_after_the_last_write_commits_it(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """close() right after a destroy_topic waits for it: the topic is gone afterwards."""
    cluster = make_cluster(1)
    client = laminar.Client(cluster.addresses)
    client.create_topic("gone")
    client.put("gone", b"k", b"v")
    client.destroy_topic("gone")
    client.close()
    assert all("gone" not in s.get("topics", []) for s in cluster.statuses())
