"""The balance workload: transfers through programs/balance.py that are never stale, so all succeed.

programs/balance.py refuses a transfer touching an account changed after the sender's `seen` offset. A
client therefore cannot send a second transfer on an account before the commit of the first one tells it
the offset of that change. To pipeline anyway, each client owns `pairs` pairs of accounts and keeps at
most one transfer in flight per pair: transfer i uses pair i mod pairs, and waits (untimed by latency,
but inside the wall time) until that pair's previous transfer has committed.

Each client mints money into its own accounts first (untimed), then moves 1 unit back and forth inside
each pair, tracking every balance and `seen` (the highest intention offset among its own commits) from
its own commits. Only this client touches its accounts, so its view is always exact. The topic's cache
holds every account (2 x pairs x clients), so nothing is evicted and no transfer is "unproven".
With pairs=1 the cache is 2 x clients and each client waits for every commit before its next transfer.
"""

from __future__ import annotations

import json
import threading

import laminar

MINT = b"mint"
MINT_AMOUNT = 1_000_000  # far more than 10,000 transfers of 1 can move out of an account
TRANSFER_AMOUNT = 1
CACHE_SIZE_MAX = 4096  # programs/balance.py refuses a larger cache
DEFAULT_PAIRS = 16  # transfers in flight per client
PREPARE_TIMEOUT_S = 60.0
PAIR_WAIT_TIMEOUT_S = 60.0


def pairs_for(clients: int, pairs: int) -> int:
    """`pairs`, lowered if needed so that every account fits in the program's cache."""
    return max(1, min(pairs, CACHE_SIZE_MAX // (2 * clients)))


def create_args(clients: int, pairs: int) -> bytes:
    return json.dumps({"cache_size": 2 * pairs_for(clients, pairs) * clients}).encode()


class TransferWorkload:
    def __init__(self, topic: str, client_index: int, client_count: int, pairs: int) -> None:
        self.topic = topic
        self.pairs = [(f"c{client_index}-a{p}", f"c{client_index}-b{p}") for p in range(pairs_for(client_count, pairs))]
        self.balances: dict[str, int] = {}
        self.seen = 0  # highest intention offset among this client's own commits
        self.busy: set[int] = set()  # pairs with a transfer in flight
        self.in_flight: dict[int, tuple[int, str, str]] = {}  # message index -> (pair, from, to)
        self._changed = threading.Condition()

    def prepare(self, client: laminar.Client) -> None:
        """Mint MINT_AMOUNT into every account of this client, pipelined, and wait for all of it."""
        accounts = [account for pair in self.pairs for account in pair]
        pending = [client.put(self.topic, MINT, self._mint_value(account)) for account in accounts]
        for account, p in zip(accounts, pending, strict=True):
            commit = p.committed(timeout=PREPARE_TIMEOUT_S)
            if not commit.ok:
                raise RuntimeError(f"minting into {account} was {commit.effect}: {commit.reason}")
            self.balances[account] = MINT_AMOUNT
            self.seen = max(self.seen, commit.intention_offset)

    @staticmethod
    def _mint_value(account: str) -> bytes:
        return json.dumps({"to": account, "amount": MINT_AMOUNT, "to_balance": 0, "seen": 0}).encode()

    def message(self, index: int) -> tuple[bytes, bytes]:
        """A transfer on pair index % pairs, once that pair's previous transfer has committed."""
        pair = index % len(self.pairs)
        with self._changed:
            if not self._changed.wait_for(lambda: pair not in self.busy, PAIR_WAIT_TIMEOUT_S):
                raise TimeoutError(f"pair {pair}'s transfer did not commit within {PAIR_WAIT_TIMEOUT_S} s")
            a, b = self.pairs[pair]
            source, target = (a, b) if self.balances[a] >= self.balances[b] else (b, a)
            self.busy.add(pair)
            self.in_flight[index] = (pair, source, target)
            transfer = {
                "to": target,
                "amount": TRANSFER_AMOUNT,
                "from_balance": self.balances[source],
                "to_balance": self.balances[target],
                "seen": self.seen,
            }
        return source.encode(), json.dumps(transfer).encode()

    def committed(self, index: int, commit: laminar.Commit) -> None:
        with self._changed:
            pair, source, target = self.in_flight.pop(index)
            if commit.ok:  # a refused transfer moved nothing; the harness counts it as not VALID
                self.balances[source] -= TRANSFER_AMOUNT
                self.balances[target] += TRANSFER_AMOUNT
                self.seen = max(self.seen, commit.intention_offset)
            self.busy.discard(pair)
            self._changed.notify_all()
