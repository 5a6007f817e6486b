"""Log time on real nodes: events carry it, an idle leader moves it, and a leader whose clock is
minutes behind log time never moves it back (one node, restarted with a test-only clock offset: the
restart is a new leader with another clock). The pure rules, both skews included, are unit-tested
in tests/unit/test_log_time.py."""

from __future__ import annotations

import time

import laminar

MINUTE_MS = 60_000
SKEW_MS = 5 * MINUTE_MS
SLACK_MS = 60_000  # commit, start-up and this machine's load, generously
TICK_WAIT_S = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def put_and_read_time(addresses: list[str], key: str) -> int:
    """Write one key and return the log time its event carries."""
    with laminar.Client(addresses) as c:
        commit = c.put("clock", key.encode(), b"v").committed(timeout=20)
    with laminar.Listener(addresses, "clock", from_offset=commit.intention_offset - 1) as listener:
        for event in listener:
            if event.key == key.encode():
                return event.time_ms
    raise AssertionError("the listener ended")


def log_time(addresses: list[str]) -> int:
    return int(laminar.cluster_status(addresses, timeout_s=2.0)[0]["log_time_ms"])


def test_a_fast_leader_moves_log_time_ahead_and_a_correct_one_after_it_never_back(make_cluster) -> None:  # type: ignore[no-untyped-def]
    """A leader 5 minutes ahead: events carry its clock, and while idle it ticks log time forward.
    Restarted with a correct clock (5 minutes behind log time now), the node keeps log time where it
    was: new events carry it, not the real clock, until the real clock catches up."""
    c = make_cluster(nodes=1, extra_args=("--clock-offset-ms", str(SKEW_MS)))
    with laminar.Client(c.addresses) as client:
        client.create_topic("clock").committed(timeout=20)
    ahead = put_and_read_time(c.addresses, "ahead")
    assert abs(ahead - (now_ms() + SKEW_MS)) < SLACK_MS
    deadline = time.monotonic() + TICK_WAIT_S
    while log_time(c.addresses) < ahead + 1000:  # idle: a time tick every LOG_TIME_TICK_MS (1 s)
        assert time.monotonic() < deadline, "log time did not move on an idle cluster"
        time.sleep(0.1)

    c.cluster.stop(1)
    c.cluster.extra_args = ()
    c.cluster.start(1)
    c.leader_id()
    kept = log_time(c.addresses)
    assert kept >= ahead + 1000  # kept across the restart
    correct = put_and_read_time(c.addresses, "correct")
    assert correct >= kept and correct > now_ms() + SKEW_MS - SLACK_MS  # not back to the real clock
