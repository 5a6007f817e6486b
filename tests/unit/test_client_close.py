"""Client.close() and leaving `with`: nothing unacknowledged is dropped without a word (no node needed)."""

from __future__ import annotations

import time

import pytest

import laminar
from laminar.client._client import _ranges
from laminar.local_cluster import free_port_block

CLOSE_TIMEOUT_S = 0.5


def nowhere() -> str:
    """An address on loopback where nothing listens."""
    return f"127.0.0.1:{free_port_block(1) + 1}"


def test_close_names_every_mutation_that_did_not_commit_and_returns_within_its_timeout() -> None:
    """close(timeout) with no reachable node raises Unacknowledged listing the nonces, after about `timeout`."""
    client = laminar.Client([nowhere()])
    client.create_topic("t")
    for n in range(5):
        client.put("t", b"k", str(n))
    started = time.monotonic()
    with pytest.raises(laminar.Unacknowledged) as caught:
        client.close(timeout=CLOSE_TIMEOUT_S)
    elapsed_s = time.monotonic() - started
    assert caught.value.nonces == [1, 2, 3, 4, 5, 6]
    assert "nonces 1-6" in str(caught.value) and "127.0.0.1" in str(caught.value)
    assert CLOSE_TIMEOUT_S <= elapsed_s < CLOSE_TIMEOUT_S + 3


def test_leaving_with_raises_for_unacknowledged_writes() -> None:
    """The README's shape, `with Client(...) as c: c.put(...)`, cannot lose the put silently."""
    client = laminar.Client([nowhere()], close_timeout=CLOSE_TIMEOUT_S)
    with pytest.raises(laminar.Unacknowledged) as caught, client:
        client.put("t", b"k", b"v")
    assert caught.value.nonces == [1]


def test_pending_of_a_closed_client_fails_instead_of_waiting_forever() -> None:
    """A Pending left when close() gave up reports ClientClosed at once."""
    client = laminar.Client([nowhere()])
    pending = client.put("t", b"k", b"v")
    with pytest.raises(laminar.Unacknowledged):
        client.close(timeout=0)
    with pytest.raises(laminar.ClientClosed):
        pending.committed(timeout=1)


def test_a_block_that_raised_keeps_its_exception() -> None:
    """When the body of `with` raises, that exception propagates, not the close report."""
    client = laminar.Client([nowhere()], close_timeout=CLOSE_TIMEOUT_S)
    with pytest.raises(KeyError), client:
        client.put("t", b"k", b"v")
        raise KeyError("the caller's own error")


def test_close_refuses_new_mutations_and_is_idempotent() -> None:
    """After close() nothing more is accepted, and a second close() is a no-op."""
    client = laminar.Client([nowhere()])
    client.close(timeout=0)  # nothing in flight: no error
    client.close(timeout=0)
    with pytest.raises(laminar.ClientClosed):
        client.put("t", b"k", b"v")


def test_nonce_ranges_are_written_compactly() -> None:
    """A long window of unacknowledged nonces stays one short line."""
    assert _ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    assert _ranges([4]) == "4"
