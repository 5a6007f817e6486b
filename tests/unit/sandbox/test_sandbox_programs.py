"""The example programs in programs/: behaviour, bounds, and balance.py's invariant under random histories."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandbox_helpers import CLIENT, OTHER_CLIENT, context, program_source

from laminar.node.sandbox import CallOutcome, Emitted, TopicRuntime, check_program

PROGRAM_NAMES = ("balance", "passthrough", "work_units", "lock", "unique")


@pytest.mark.parametrize("name", PROGRAM_NAMES)
def test_every_program_passes_the_sandbox(name: str) -> None:
    check_program(program_source(name))


def _start(name: str, args: bytes = b"", **constants: int) -> TopicRuntime:
    runtime = TopicRuntime.start(program_source(name, **constants), None)
    assert runtime.on_create(context(1), args).ok
    return runtime


def _rejected(outcome: CallOutcome, prefix: str) -> bool:
    return not outcome.ok and outcome.reason.startswith(prefix) and outcome.events == ()


# --- passthrough ------------------------------------------------------------------------------------------------


def test_passthrough_emits_every_mutation_unchanged() -> None:
    runtime = _start("passthrough")
    assert runtime.on_put(context(), b"\x00k", b"\xffv") == CallOutcome(True, "", (Emitted("PUT", b"\x00k", b"\xffv"),))
    assert runtime.on_delete(context(), b"k") == CallOutcome(True, "", (Emitted("DELETE", b"k", b""),))
    big = b"x" * (1 << 20)
    assert runtime.on_put(context(), b"k", big).events == (Emitted("PUT", b"k", big),)


# --- work_units -------------------------------------------------------------------------------------------------


def test_work_units_accepts_only_the_next_number() -> None:
    runtime = _start("work_units")
    for n in (b"1", b"2", b"3"):
        assert runtime.on_put(context(), b"job", n).events == (Emitted("PUT", b"job", n),)
    for wrong in (b"3", b"5", b"04", b"+4", b" 4", b"four"):
        assert _rejected(runtime.on_put(context(), b"job", wrong), "out-of-order:")
    assert runtime.on_put(context(), b"other", b"1").ok  # keys are independent
    assert runtime.on_put(context(), b"job", b"4").ok


def test_work_units_delete_resets_the_counter() -> None:
    runtime = _start("work_units")
    runtime.on_put(context(), b"job", b"1")
    assert runtime.on_delete(context(), b"job").events == (Emitted("DELETE", b"job", b""),)
    assert runtime.on_put(context(), b"job", b"1").ok


def test_work_units_state_is_bounded() -> None:
    runtime = _start("work_units", COUNTERS_MAX=3)
    for key in (b"a", b"b", b"c"):
        assert runtime.on_put(context(), key, b"1").ok
    assert _rejected(runtime.on_put(context(), b"d", b"1"), "full:")
    assert runtime.on_put(context(), b"a", b"2").ok  # existing counters still advance
    runtime.on_delete(context(), b"b")
    assert runtime.on_put(context(), b"d", b"1").ok


# --- lock -------------------------------------------------------------------------------------------------------


def test_lock_is_a_mutex_per_key() -> None:
    runtime = _start("lock")
    mine, theirs = context(client_id=CLIENT), context(client_id=OTHER_CLIENT)
    assert runtime.on_put(mine, b"door", b"x").events == (Emitted("PUT", b"door", CLIENT.encode()),)
    assert runtime.on_put(mine, b"door", b"again").ok  # re-acquiring is fine
    assert _rejected(runtime.on_put(theirs, b"door", b"x"), "held:")
    assert _rejected(runtime.on_delete(theirs, b"door"), "not-holder:")
    assert runtime.on_put(theirs, b"window", b"x").ok  # another key
    assert runtime.on_delete(mine, b"door").events == (Emitted("DELETE", b"door", b""),)
    assert _rejected(runtime.on_delete(mine, b"door"), "not-held:")
    assert runtime.on_put(theirs, b"door", b"x").events == (Emitted("PUT", b"door", OTHER_CLIENT.encode()),)


def test_lock_state_is_bounded() -> None:
    runtime = _start("lock", LOCKS_MAX=2)
    assert runtime.on_put(context(), b"a", b"").ok
    assert runtime.on_put(context(), b"b", b"").ok
    assert _rejected(runtime.on_put(context(), b"c", b""), "full:")
    assert runtime.on_put(context(), b"a", b"").ok  # held ones can be re-acquired
    runtime.on_delete(context(), b"a")
    assert runtime.on_put(context(), b"c", b"").ok


# --- unique -----------------------------------------------------------------------------------------------------


def test_unique_keys_are_create_only() -> None:
    runtime = _start("unique")
    assert runtime.on_put(context(), b"k", b"1").events == (Emitted("PUT", b"k", b"1"),)
    assert _rejected(runtime.on_put(context(), b"k", b"2"), "exists:")
    assert runtime.on_delete(context(), b"k").events == (Emitted("DELETE", b"k", b""),)
    assert runtime.on_put(context(), b"k", b"3").ok
    assert runtime.on_delete(context(), b"never-there").ok


def test_unique_state_is_bounded() -> None:
    runtime = _start("unique", KEYS_MAX=2)
    assert runtime.on_put(context(), b"a", b"").ok
    assert runtime.on_put(context(), b"b", b"").ok
    assert _rejected(runtime.on_put(context(), b"c", b""), "full:")
    runtime.on_delete(context(), b"a")
    assert runtime.on_put(context(), b"c", b"").ok


def test_unique_bounds_key_bytes_too() -> None:
    runtime = _start("unique", KEY_BYTES_TOTAL_MAX=4096)
    for i in range(4):
        assert runtime.on_put(context(), bytes([i]) * 1024, b"").ok
    assert _rejected(runtime.on_put(context(), b"x", b""), "full:")


WORST_KEYS = {"unique": "put", "work_units": "put", "lock": "put"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WORST_KEYS))
def test_worst_case_state_fits_the_state_limit(name: str) -> None:
    # Distinct 1 KiB keys of non-ASCII bytes (two UTF-8 bytes each once decoded) until the program says full:
    # its own bound must come before the sandbox's state budget.
    runtime = _start(name)
    for i in range(5000):
        key = bytes([0x80 + i % 128, 0x80 + i // 128 % 128]) * 512
        outcome = runtime.on_put(context(), key, b"1")
        if not outcome.ok:
            assert outcome.reason.startswith("full:"), outcome.reason
            break
    else:
        pytest.fail("never full")
    assert len(runtime.state_bytes()) < 1024 * 1024


# --- balance ----------------------------------------------------------------------------------------------------


def _transfer(source: str, to: str, amount: object, from_balance: object, to_balance: object, seen: object) -> bytes:
    return json.dumps(
        {"to": to, "amount": amount, "from_balance": from_balance, "to_balance": to_balance, "seen": seen}
    ).encode()


def test_balance_refuses_bad_creation_args() -> None:
    for args in (b"", b"{}", b'{"cache_size": 0}', b'{"cache_size": true}', b'{"cache_size": 5000}', b"[1]", b"{"):
        runtime = TopicRuntime.start(program_source("balance"), None)
        assert _rejected(runtime.on_create(context(1), args), "malformed:"), args


def test_balance_issues_and_transfers() -> None:
    bank = _start("balance", b'{"cache_size": 8}')
    assert bank.on_put(context(2), b"mint", _transfer("mint", "alice", 100, None, 0, 1)).events == (
        Emitted("PUT", b"alice", b"100"),
    )
    assert bank.on_put(context(3), b"alice", _transfer("alice", "bob", 30, 100, 0, 2)).events == (
        Emitted("PUT", b"alice", b"70"),
        Emitted("PUT", b"bob", b"30"),
    )


def test_balance_rejects_bad_transfers() -> None:
    bank = _start("balance", b'{"cache_size": 8}')
    bank.on_put(context(2, OTHER_CLIENT), b"mint", _transfer("mint", "alice", 100, 0, 0, 1))
    cases = [
        (b"alice", b"not json", "malformed:"),
        (b"alice", b"[1, 2]", "malformed:"),
        (b"\xff", _transfer("x", "bob", 1, 1, 0, 2), "malformed:"),
        (b"alice", _transfer("alice", "", 1, 100, 0, 2), "malformed:"),
        (b"alice", _transfer("alice", "b" * 65, 1, 100, 0, 2), "malformed:"),
        (b"alice", _transfer("alice", "bob", "1", 100, 0, 2), "malformed:"),
        (b"alice", _transfer("alice", "bob", 1.0, 100, 0, 2), "malformed:"),
        (b"alice", _transfer("alice", "bob", 1, -5, 0, 2), "malformed:"),
        (b"alice", _transfer("alice", "bob", 1, 100, 0, 10), "malformed:"),  # seen is not before the offset
        (b"alice", _transfer("alice", "bob", 0, 100, 0, 2), "invalid:"),
        (b"alice", _transfer("alice", "alice", 1, 100, 100, 2), "invalid:"),
        (b"alice", _transfer("alice", "mint", 1, 100, 0, 2), "invalid:"),
        (b"alice", _transfer("alice", "bob", 1, 100, 0, 1), "stale:"),  # alice changed at 2 by another client
        (b"alice", _transfer("alice", "bob", 1, 99, 0, 2), "mismatch:"),
        (b"alice", _transfer("alice", "bob", 101, 100, 0, 2), "insufficient:"),
    ]
    before = bank.state_bytes()
    for key, value, prefix in cases:
        assert _rejected(bank.on_put(context(10), key, value), prefix), (value, prefix)
    assert bank.state_bytes() == before
    assert _rejected(bank.on_delete(context(10), b"alice"), "unsupported:")


def test_balance_cannot_prove_views_older_than_an_eviction() -> None:
    bank = _start("balance", b'{"cache_size": 2}')
    bank.on_put(context(2), b"mint", _transfer("mint", "a", 10, 0, 0, 1))
    bank.on_put(context(3), b"mint", _transfer("mint", "b", 10, 0, 0, 2))
    bank.on_put(context(4), b"mint", _transfer("mint", "c", 10, 0, 0, 3))  # evicts a (changed at 2): horizon 2
    assert _rejected(bank.on_put(context(5), b"a", _transfer("a", "c", 1, 10, 10, 1)), "unproven:")
    assert _rejected(bank.on_put(context(5), b"mint", _transfer("mint", "z", 1, 0, 0, 1)), "unproven:")
    assert bank.on_put(context(5), b"a", _transfer("a", "c", 1, 10, 10, 4)).ok


def test_balance_accepts_pipelined_transfers_on_the_clients_own_accounts() -> None:
    # The client saw offset 3 and sends three transfers without observing their commits: each claims the
    # balances its own earlier transfers produced.
    bank = _start("balance", b'{"cache_size": 8}')
    assert bank.on_put(context(2), b"mint", _transfer("mint", "a", 100, 0, 0, 1)).ok
    assert bank.on_put(context(3), b"mint", _transfer("mint", "b", 100, 0, 0, 2)).ok
    assert bank.on_put(context(4), b"a", _transfer("a", "b", 10, 100, 100, 3)).events == (
        Emitted("PUT", b"a", b"90"),
        Emitted("PUT", b"b", b"110"),
    )
    assert bank.on_put(context(5), b"b", _transfer("b", "a", 30, 110, 90, 3)).events == (
        Emitted("PUT", b"b", b"80"),
        Emitted("PUT", b"a", b"120"),
    )
    assert bank.on_put(context(7), b"a", _transfer("a", "c", 5, 120, 0, 3)).ok  # c is new: never changed


def test_balance_still_refuses_a_change_by_another_client_after_seen() -> None:
    bank = _start("balance", b'{"cache_size": 8}')
    bank.on_put(context(2), b"mint", _transfer("mint", "a", 100, 0, 0, 1))
    bank.on_put(context(3, OTHER_CLIENT), b"mint", _transfer("mint", "b", 50, 0, 0, 2))
    # b changed at 3, by another client: stale, even with b's right balance (the check is on versions)
    assert _rejected(bank.on_put(context(4), b"a", _transfer("a", "b", 10, 100, 50, 2)), "stale:")
    assert bank.on_put(context(4), b"a", _transfer("a", "b", 10, 100, 50, 3)).ok  # once it has seen 3
    # ... and another client's change to an account this client changed before is stale too.
    bank.on_put(context(5, OTHER_CLIENT), b"mint", _transfer("mint", "a", 1, 0, 90, 4))
    assert _rejected(bank.on_put(context(6), b"a", _transfer("a", "b", 1, 91, 60, 4)), "stale:")


def test_balance_refuses_a_pipelined_claim_that_differs_from_the_cache() -> None:
    # The client's own change makes the account's change after `seen` acceptable, not its claim: the cached
    # balance is the truth, so a client that forgot one of its transfers (or lies) is refused.
    bank = _start("balance", b'{"cache_size": 8}')
    bank.on_put(context(2), b"mint", _transfer("mint", "a", 100, 0, 0, 1))
    bank.on_put(context(3), b"a", _transfer("a", "b", 10, 100, 0, 2))
    before = bank.state_bytes()
    assert _rejected(bank.on_put(context(4), b"a", _transfer("a", "b", 10, 100, 10, 2)), "mismatch:")  # a is 90
    assert _rejected(bank.on_put(context(4), b"a", _transfer("a", "b", 10, 90, 0, 2)), "mismatch:")  # b is 10
    assert _rejected(bank.on_put(context(4), b"a", _transfer("a", "b", 95, 90, 10, 2)), "insufficient:")
    assert bank.state_bytes() == before
    assert bank.on_put(context(4), b"a", _transfer("a", "b", 90, 90, 10, 2)).ok


def test_balance_horizon_rule_is_unchanged_for_the_clients_own_evicted_changes() -> None:
    # An account the client itself changed after `seen` but that left the cache cannot be proven either.
    bank = _start("balance", b'{"cache_size": 2}')
    bank.on_put(context(2), b"mint", _transfer("mint", "a", 10, 0, 0, 1))
    bank.on_put(context(3), b"mint", _transfer("mint", "b", 10, 0, 0, 1))
    bank.on_put(context(4), b"mint", _transfer("mint", "c", 10, 0, 0, 1))  # evicts a (changed at 2): horizon 2
    assert _rejected(bank.on_put(context(5), b"a", _transfer("a", "b", 1, 10, 10, 1)), "unproven:")
    assert bank.on_put(context(5), b"a", _transfer("a", "b", 1, 10, 10, 2)).ok  # a: 9, b: 11; c evicted
    assert _rejected(bank.on_put(context(6), b"c", _transfer("c", "a", 1, 10, 9, 2)), "unproven:")  # horizon 4
    assert bank.on_put(context(6), b"c", _transfer("c", "a", 1, 10, 9, 4)).ok


def test_balance_state_stays_bounded_by_the_cache() -> None:
    bank = _start("balance", b'{"cache_size": 4}')
    sizes = []
    for i in range(200):
        offset = 10 + i
        assert bank.on_put(context(offset), b"mint", _transfer("mint", f"acct{i}", 5, 0, 0, offset - 1)).ok
        sizes.append(len(bank.state_bytes()))
    assert max(sizes[20:]) - min(sizes[20:]) < 16


@dataclass
class Ledger:
    """The truth, kept by the test: every balance event in order, and what mint issued."""

    events: list[tuple[int, str, int, str]] = field(default_factory=list)  # (offset, account, balance, client)
    issued: int = 0

    def balance(self, account: str, at: int | None = None, client: str | None = None) -> int:
        """The balance of `account` at offset `at`, as `client` sees it: plus its own changes since."""
        found = 0
        for offset, name, value, by in self.events:
            if name == account and (at is None or offset <= at or by == client):
                found = value
        return found

    def changers_after(self, account: str, seen: int) -> set[str]:
        return {by for offset, name, _, by in self.events if name == account and offset > seen}

    def accounts(self) -> set[str]:
        return {name for _, name, _, _ in self.events}


ACCOUNTS = ("mint", "a", "b", "c", "d", "e")
CLIENTS = (CLIENT, OTHER_CLIENT)
Step = tuple[str, str, int, float, int, str]
transfer_steps = st.lists(
    st.tuples(
        st.sampled_from(("mint", *ACCOUNTS)),  # from (mint twice as likely, so there is money to move)
        st.sampled_from(ACCOUNTS[1:]),  # to
        st.integers(min_value=-1, max_value=20),  # amount
        st.one_of(st.just(0.0), st.floats(min_value=0, max_value=1)),  # how old the client's view is (0: fresh)
        st.integers(min_value=1, max_value=3),  # offsets taken by other topics' intentions before this one
        st.sampled_from(CLIENTS),  # who sends it
    ),
    min_size=1,
    max_size=60,
)


def simulate(cache_size: int, steps: list[Step]) -> Counter[str]:
    """Run `steps` through balance.py against the ledger; check the invariant after each; count outcomes.

    Clients are honest: a client's view is the stream up to its `seen` (which only grows, per client) plus the
    transfers it made since, as a client that pipelines its own transfers keeps it."""
    bank = _start("balance", json.dumps({"cache_size": cache_size}).encode())
    ledger, offset, history, seen_outcomes = Ledger(), 1, [1], Counter[str]()
    last_seen = dict.fromkeys(CLIENTS, 1)
    for source, to, amount, age, gap, client in steps:
        offset += gap
        seen = max(last_seen[client], history[int((len(history) - 1) * (1 - age))])  # a view of some age
        last_seen[client] = seen
        claims = (ledger.balance(source, seen, client), ledger.balance(to, seen, client))
        before = bank.state_bytes()
        outcome = bank.on_put(context(offset, client), source.encode(), _transfer(source, to, amount, *claims, seen))
        seen_outcomes["ok" if outcome.ok else outcome.reason.split(":")[0]] += 1
        if not outcome.ok:
            assert outcome.events == () and bank.state_bytes() == before
            assert outcome.reason.split(":")[0] in ("malformed", "invalid", "stale", "unproven", "insufficient")
            fresh = seen == history[-1]
            if fresh and amount > 0 and source != to and (source == "mint" or claims[0] >= amount):
                pytest.fail(f"a valid transfer from a fresh view was refused: {outcome.reason}")
            continue
        touched = [a for a in (source, to) if a != "mint"]
        assert all(ledger.changers_after(a, seen) <= {client} for a in touched), "a stale view was accepted"
        seen_outcomes["pipelined"] += any(ledger.changers_after(a, seen) for a in touched)
        assert claims[1] == ledger.balance(to) and (source == "mint" or claims[0] == ledger.balance(source))
        for event in outcome.events:
            ledger.events.append((offset, event.key.decode(), int(event.value), client))
        ledger.issued += amount if source == "mint" else 0
        history.append(offset)
        balances = {a: ledger.balance(a) for a in ledger.accounts()}
        assert all(b >= 0 for b in balances.values()), balances
        assert sum(balances.values()) == ledger.issued
        assert "mint" not in balances
    return seen_outcomes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cache_size=st.integers(min_value=1, max_value=4), steps=transfer_steps)
def test_balance_invariant_holds_for_any_history(cache_size: int, steps: list[Step]) -> None:
    simulate(cache_size, steps)


def test_balance_simulation_reaches_every_outcome() -> None:
    # The property test above checks whatever happens; this makes sure "whatever" includes every path.
    rng = random.Random(20240521)
    steps = [
        (rng.choice(("mint", *ACCOUNTS)), rng.choice(ACCOUNTS[1:]), rng.randint(-1, 20), age, 1, rng.choice(CLIENTS))
        for age in [0.0 if rng.random() < 0.6 else rng.random() for _ in range(400)]
    ]
    counts = simulate(2, steps)
    assert {"ok", "pipelined", "invalid", "stale", "unproven", "insufficient"} <= set(counts), counts
    assert counts["ok"] > 100, counts
