"""The client side of the balance CAS loop (programs/balance.py), small enough to copy.

A transfer carries the balances the client observed and `seen`, the newest intention offset it
observed on the topic. The topic's program accepts it only if that view is provably current; a
client whose view is stale gets `stale:` / `unproven:` / `mismatch:` and retries once its listener
has moved on. That is a compare-and-swap loop, with the listener as the "read". (The program also
counts a client's own transfers as observed: a client that tracks the balances its transfers
produce may send the next one on the same accounts before it observes the first commit; this
recipe keeps it simple and waits, `transfer` reading its own writes before it returns.)

    view = BalanceView(addresses, "bank")
    with laminar.Client(addresses) as client:
        result = transfer(client, view, "bank", "mint", "alice", 100)
        result = transfer(client, view, "bank", "alice", "bob", 30)
        print(result.commit, result.attempts)
    view.close()
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from laminar.client import Client, Commit, Effect, Kind, Listener
from laminar.errors import LaminarError, Timeout

MINT = "mint"
RETRY_PREFIXES = ("stale:", "unproven:", "mismatch:")  # the view was behind: catch up and retry
TRANSFER_ATTEMPTS_MAX = 50
VIEW_WAIT_S = 10.0


class BalanceView:
    """Follows a balance topic with a listener: every account's balance and the newest offset seen."""

    def __init__(self, addresses: Sequence[str] | str | None, topic: str) -> None:
        self._listener = Listener(addresses, topic, from_offset=0)
        self._cond = threading.Condition()
        self._balances: dict[str, int] = {}
        self._seen = 0
        self._closed = False
        self._thread = threading.Thread(target=self._follow, name=f"balance-view-{topic}", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for event in self._listener:
                with self._cond:
                    if event.kind is Kind.PUT:
                        self._balances[event.key.decode()] = int(event.value)
                    elif event.kind is Kind.DELETE:
                        self._balances.pop(event.key.decode(), None)
                    self._seen = max(self._seen, event.intention_offset)
                    self._cond.notify_all()
        except LaminarError:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def snapshot(self, *accounts: str) -> tuple[int, list[int]]:
        """(seen, balances of `accounts`), read together so they describe one moment."""
        with self._cond:
            return self._seen, [self._balances.get(a, 0) for a in accounts]

    def balances(self) -> dict[str, int]:
        with self._cond:
            return dict(self._balances)

    @property
    def seen(self) -> int:
        with self._cond:
            return self._seen

    def wait_until_seen(self, offset: int, timeout: float = VIEW_WAIT_S) -> None:
        """Block until the view has observed events up to intention offset `offset`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seen >= offset or self._closed, timeout):
                raise Timeout(f"the view did not reach offset {offset} within {timeout} s")

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class TransferResult:
    commit: Commit
    attempts: int  # 1 when the first try committed
    stale_retries: int  # attempts refused because the view was behind

    @property
    def ok(self) -> bool:
        return self.commit.effect is Effect.VALID


def transfer(
    client: Client,
    view: BalanceView,
    topic: str,
    source: str,
    target: str,
    amount: int,
    *,
    attempts_max: int = TRANSFER_ATTEMPTS_MAX,
    timeout: float = VIEW_WAIT_S,
) -> TransferResult:
    """Move `amount` from `source` to `target`, retrying while the view is behind the topic."""
    stale = 0
    for attempt in range(1, attempts_max + 1):
        seen, (source_balance, target_balance) = view.snapshot(source, target)
        value = {"to": target, "amount": amount, "from_balance": source_balance, "to_balance": target_balance}
        value["seen"] = seen
        commit = client.put(topic, source, json.dumps(value)).committed(timeout=timeout)
        if commit.effect is Effect.VALID or not commit.reason.startswith(RETRY_PREFIXES):
            if commit.effect is Effect.VALID:
                view.wait_until_seen(commit.intention_offset, timeout)  # read your own writes
            return TransferResult(commit, attempt, stale)
        stale += 1
        # Another client changed an account after `seen` (before this attempt committed): wait for
        # the view to move past the snapshot we used, then try again with fresher balances.
        view.wait_until_seen(seen + 1, timeout)
    return TransferResult(commit, attempts_max, stale)
