"""The pipeline client's parts that need no cluster: the worker's rate limit, its names, the `calls` commands."""

from __future__ import annotations

import re

import pytest

from laminar import limits
from laminar.cli import build_parser
from laminar.client._ratelimit import RateLimit
from laminar.client._worker import CallBook, default_worker_name, leased_calls_max
from laminar.errors import InvalidRequest


def test_rate_limit_hands_out_a_burst_then_one_token_per_interval() -> None:
    """A full bucket gives rate x burst tokens at once, then one per 1/rate s; a refusal says how long to wait."""
    bucket = RateLimit(10.0, 1000)  # 10 a second, bursts of a second's worth
    assert [bucket.take(0.0) for _ in range(10)] == [0.0] * 10
    assert bucket.take(0.0) == pytest.approx(0.1)  # empty: the next token in 100 ms
    assert bucket.take(0.05) == pytest.approx(0.05)  # half a token so far; nothing was spent by asking
    assert bucket.take(0.1) == 0.0
    assert bucket.take(0.1) == pytest.approx(0.1)


def test_rate_limit_never_stores_more_than_its_burst() -> None:
    """After a long idle the bucket holds its capacity, not the idle time's worth of tokens."""
    bucket = RateLimit(100.0, 50)  # bursts of 5
    assert bucket.take(0.0) == 0.0
    granted = sum(1 for _ in range(50) if bucket.take(3600.0) == 0.0)
    assert granted == 5


def test_rate_limit_below_one_call_per_burst_still_allows_one() -> None:
    """A slow rate (0.5/s) holds at least one token, so the first call is never refused."""
    bucket = RateLimit(0.5, limits.WORKER_RATE_BURST_MS)
    assert bucket.capacity == 1.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(2.0)


@pytest.mark.parametrize("rate", [0, -1.0, limits.WORKER_RATE_PER_S_MAX * 2])
def test_rate_limit_refuses_rates_outside_its_bounds(rate: float) -> None:
    """A rate of zero, below it or above WORKER_RATE_PER_S_MAX is InvalidRequest (None means no limit at all)."""
    with pytest.raises(InvalidRequest):
        RateLimit(rate, 1000)


def test_a_call_sent_again_is_not_handed_out_again_while_queued_held_or_recently_finished() -> None:
    """A node re-sends every call a worker holds when its stream opens again (and a lagging node may re-send one
    already finished): the book refuses each while it is queued, held, or among the last finished; it counts held."""
    book = CallBook(finished_max=2)
    assert book.receive(1) and not book.receive(1)  # queued
    book.hand_out(1)
    assert book.held == 1 and not book.receive(1)  # held
    book.finish(1)
    assert book.held == 0 and not book.receive(1)  # finished recently
    for call_id in (2, 3):
        assert book.receive(call_id)
        book.hand_out(call_id)
        book.finish(call_id)
    assert book.receive(1)  # forgotten past finished_max: at-least-once, its second result is INVALID
    assert not book.receive(3)


def test_default_worker_names_are_valid_and_distinct() -> None:
    """The default name matches the topic-name pattern the cluster checks, and two workers differ."""
    first, second = default_worker_name(), default_worker_name()
    assert re.fullmatch(limits.TOPIC_NAME_PATTERN, first) and first != second


def test_calls_commands_parse_topic_and_optional_call_id() -> None:
    """`calls list TOPIC` and `calls describe TOPIC [CALL_ID]` parse, with -o json."""
    parser = build_parser()
    listing = parser.parse_args(["calls", "list", "orders", "-o", "json"])
    assert (listing.topic, listing.output) == ("orders", "json")
    assert parser.parse_args(["calls", "describe", "orders"]).call_id is None
    assert parser.parse_args(["calls", "describe", "orders", "17"]).call_id == 17


def test_a_rate_limited_worker_asks_for_no_more_calls_than_it_can_start_within_half_a_lease() -> None:
    """calls_max is the concurrency without a rate; with one, at most rate x lease x 1/2 (what the rate lets the
    worker start before half the lease has gone), never below 1 nor above the concurrency."""
    assert limits.WORKER_RATE_WAIT_LEASE_SHARE == 0.5
    assert leased_calls_max(64, None, 30_000) == 64
    assert leased_calls_max(64, 1.0, 30_000) == 15  # 1/s for 15 s
    assert leased_calls_max(64, 20.0, 30_000) == 64  # 300 startable: the concurrency bounds it
    assert leased_calls_max(64, 10.0, 1_000) == 5
    assert leased_calls_max(64, 0.01, 30_000) == 1  # slower than one call per lease: one at a time still
    for rate, lease_ms in [(0.5, 10_000), (3.0, 4_000), (100.0, 200)]:
        calls = leased_calls_max(1024, rate, lease_ms)
        assert calls / rate <= lease_ms / 1000 / 2, "the last call leased starts within half its lease"
