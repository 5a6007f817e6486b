"""Slowing down guessing: failed authentications counted per peer address, with a growing lock-out.

The first AUTH_FAILURES_FREE failures from an address cost nothing; each one after locks the
address out for AUTH_THROTTLE_MS_MIN, doubling per failure up to AUTH_THROTTLE_MS_MAX. While locked
out, an attempt is refused without being checked (so it costs no hashing either). A success clears
the address. The table is bounded: past AUTH_PEERS_TRACKED_MAX addresses the one that failed least
recently is forgotten. Pure apart from the clock it is given.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass

from laminar import limits


@dataclass
class _Peer:
    failures: int = 0
    locked_until_s: float = 0.0


class Throttle:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._peers: collections.OrderedDict[str, _Peer] = collections.OrderedDict()

    def wait_ms(self, peer: str) -> int:
        """How long `peer` must wait before its next attempt is checked (0: now)."""
        with self._lock:
            state = self._peers.get(peer)
            if state is None:
                return 0
            return max(0, int((state.locked_until_s - self._clock()) * 1000))

    def failed(self, peer: str) -> None:
        with self._lock:
            state = self._peers.pop(peer, None) or _Peer()
            self._peers[peer] = state  # most recently failed last
            state.failures += 1
            beyond = state.failures - limits.AUTH_FAILURES_FREE
            if beyond > 0:
                lock_ms = min(limits.AUTH_THROTTLE_MS_MAX, limits.AUTH_THROTTLE_MS_MIN * 2 ** min(beyond - 1, 30))
                state.locked_until_s = self._clock() + lock_ms / 1000
            while len(self._peers) > limits.AUTH_PEERS_TRACKED_MAX:
                self._peers.popitem(last=False)

    def succeeded(self, peer: str) -> None:
        with self._lock:
            self._peers.pop(peer, None)

    def tracked(self) -> int:
        with self._lock:
            return len(self._peers)
