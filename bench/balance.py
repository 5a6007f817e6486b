"""The balance workload: transfers through programs/balance.py that are never stale, so all succeed.

programs/balance.py refuses a transfer whose view of an account is stale: the account changed after the
sender's `seen` offset, by another client. A client's own changes do not make its view stale (it knows what
it sent), and the program checks every claimed balance of a cached account against the truth. So a client
that alone touches its accounts can pipeline every transfer: it predicts each balance from its own earlier
transfers and never waits for a commit.

Each client owns `pairs` pairs of accounts (default 1, so the topic's cache is exactly 2 x clients, as the
benchmark is defined), mints money into them first (untimed), then moves 1 unit from the first account of a
pair to the second, round-robin over its pairs. `seen` is the offset of its last mint; every later change of
its accounts is its own. The cache holds every account, so nothing is evicted and no transfer is "unproven".
A refused transfer would break the predictions of the ones after it: the cell then reports them as not VALID.
"""

from __future__ import annotations

import json

import laminar

MINT = b"mint"
MINT_AMOUNT = 1_000_000  # far more than the transfers of 1 a cell moves out of an account
TRANSFER_AMOUNT = 1
CACHE_SIZE_MAX = 4096  # programs/balance.py refuses a larger cache
DEFAULT_PAIRS = 1  # account pairs per client: the cache is 2 x clients
PREPARE_TIMEOUT_S = 60.0


def pairs_for(clients: int, pairs: int) -> int:
    """`pairs`, lowered if needed so that every account fits in the program's cache."""
    return max(1, min(pairs, CACHE_SIZE_MAX // (2 * clients)))


def create_args(clients: int, pairs: int) -> bytes:
    return json.dumps({"cache_size": 2 * pairs_for(clients, pairs) * clients}).encode()


class TransferWorkload:
    def __init__(self, topic: str, client_index: int, client_count: int, pairs: int) -> None:
        self.topic = topic
        self.pairs = [(f"c{client_index}-a{p}", f"c{client_index}-b{p}") for p in range(pairs_for(client_count, pairs))]
        self.balances: dict[str, int] = {}  # as they will be once every transfer sent so far commits
        self.seen = 0  # offset of this client's last mint: every later change of its accounts is its own

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
        """Transfer number `index`: 1 unit inside pair index % pairs, balances predicted."""
        source, target = self.pairs[index % len(self.pairs)]
        balances = self.balances
        from_balance, to_balance = balances[source], balances[target]
        balances[source] = from_balance - TRANSFER_AMOUNT
        balances[target] = to_balance + TRANSFER_AMOUNT
        # The JSON json.dumps would write for these fields, formatted directly (3 times cheaper: the
        # client's CPU shares the machine with the nodes). The account names need no escaping.
        value = (
            f'{{"to": "{target}", "amount": {TRANSFER_AMOUNT}, "from_balance": {from_balance}, '
            f'"to_balance": {to_balance}, "seen": {self.seen}}}'
        )
        return source.encode(), value.encode()

    def committed(self, index: int, commit: laminar.Commit) -> None:
        pass  # the harness counts a refused transfer as not VALID; nothing to track here
