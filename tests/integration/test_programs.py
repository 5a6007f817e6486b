"""Every program in programs/, and every hostile program, on a real 3-node cluster."""

from __future__ import annotations

import importlib.util
import json
import os
import threading

import pytest

import laminar
from laminar import Effect, Kind
from laminar.recipes.balance import MINT, BalanceView, transfer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def program(name: str) -> str:
    with open(os.path.join(ROOT, "programs", name)) as f:
        return f.read()


def _hostile_programs() -> dict:
    path = os.path.join(ROOT, "tests", "unit", "sandbox", "hostile_programs.py")
    spec = importlib.util.spec_from_file_location("hostile_programs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.HOSTILE)


@pytest.fixture(scope="module")
def cluster(module_cluster):  # type: ignore[no-untyped-def]
    """One 3-node cluster for this module (a program's topic is its own world)."""
    return module_cluster


def test_passthrough_emits_every_mutation_unchanged(cluster) -> None:
    """passthrough.py: puts and deletes come out exactly as they went in."""
    _, addresses = cluster
    with laminar.Client(addresses) as client:
        assert client.create_topic("pass", program=program("passthrough.py")).committed(10).ok
        for n in range(50):
            client.put("pass", f"k{n}", f"v{n}")
        last = client.delete("pass", "k0").committed(10)
        assert last.ok
    with laminar.Listener(addresses, "pass") as listener:
        events = listener.take(52, timeout=10)
    assert [(e.kind, e.key, e.value) for e in events[1:51]] == [
        (Kind.PUT, f"k{n}".encode(), f"v{n}".encode()) for n in range(50)
    ]
    assert (events[51].kind, events[51].key) == (Kind.DELETE, b"k0")


def test_work_units_hands_each_ticket_to_exactly_one_racing_client(cluster) -> None:
    """work_units.py: clients race for the next number; each number is accepted once, in order."""
    _, addresses = cluster
    with laminar.Client(addresses) as client:
        assert client.create_topic("tickets", program=program("work_units.py")).committed(10).ok
    won: list[int] = []
    lock = threading.Lock()

    def race() -> None:
        with laminar.Client(addresses) as client, laminar.Listener(addresses, "tickets") as listener:
            last = 0
            while last < 30:
                commit = client.put("tickets", "job", str(last + 1)).committed(10)
                if commit.ok:
                    with lock:
                        won.append(last + 1)
                else:
                    assert commit.reason.startswith("out-of-order:"), commit
                while True:  # catch up with the counter before trying again
                    event = listener.next_event(timeout=10)
                    if event.kind is Kind.PUT:
                        last = int(event.value)
                        break

    threads = [threading.Thread(target=race) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(won) == list(range(1, 31)), "every ticket went to exactly one client"


def test_lock_is_a_mutex_per_key(cluster) -> None:
    """lock.py: only the holder may re-acquire or release; others are refused with the holder's id."""
    _, addresses = cluster
    with laminar.Client(addresses) as a, laminar.Client(addresses) as b:
        assert a.create_topic("locks", program=program("lock.py")).committed(10).ok
        assert a.put("locks", "door", "x").committed(10).ok
        assert a.put("locks", "door", "x").committed(10).ok, "re-entrant for the holder"
        held = b.put("locks", "door", "x").committed(10)
        assert held.effect is Effect.ERROR and held.reason.startswith("held:") and str(a.client_id) in held.reason
        assert b.delete("locks", "door").committed(10).reason.startswith("not-holder:")
        assert a.delete("locks", "door").committed(10).ok
        assert b.put("locks", "door", "x").committed(10).ok, "free again"


def test_unique_refuses_a_second_put_of_a_key(cluster) -> None:
    """unique.py: create-only keys; a delete frees the key."""
    _, addresses = cluster
    with laminar.Client(addresses) as client:
        assert client.create_topic("names", program=program("unique.py")).committed(10).ok
        assert client.put("names", "alice", "1").committed(10).ok
        again = client.put("names", "alice", "2").committed(10)
        assert again.effect is Effect.ERROR and again.reason.startswith("exists:")
        assert client.delete("names", "alice").committed(10).ok
        assert client.put("names", "alice", "3").committed(10).ok


def test_balance_conserves_money_under_concurrent_cas_transfers(cluster) -> None:
    """balance.py: concurrent clients with the CAS loop; stale views are refused and retried, money
    is conserved, and no balance is ever negative in the stream, on every node."""
    _, addresses = cluster
    accounts = [f"a{n}" for n in range(4)]
    with laminar.Client(addresses) as client:
        created = client.create_topic("bank", program=program("balance.py"), args=json.dumps({"cache_size": 6}))
        assert created.committed(10).ok
        view = BalanceView(addresses, "bank")
        try:
            for account in accounts:
                assert transfer(client, view, "bank", MINT, account, 100).ok
        finally:
            view.close()
    stale_total = []

    def worker(seed: int) -> None:
        import random

        rng = random.Random(seed)
        view = BalanceView(addresses, "bank")
        try:
            with laminar.Client(addresses) as client:
                for _ in range(25):
                    source, target = rng.sample(accounts, 2)
                    result = transfer(client, view, "bank", source, target, rng.randint(1, 40))
                    assert result.ok or result.commit.reason.startswith("insufficient:"), result
                    stale_total.append(result.stale_retries)
        finally:
            view.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(stale_total) == 75
    for address in addresses:
        balances: dict[str, int] = {}
        with laminar.Listener([address], "bank") as listener:
            while sum(balances.values()) != 400 or len(balances) < 4:
                event = listener.next_event(timeout=10)
                if event.kind is Kind.PUT:
                    assert int(event.value) >= 0
                    balances[event.key.decode()] = int(event.value)
        assert sum(balances.values()) == 400


def test_malformed_and_refused_transfers_say_why(cluster) -> None:
    """balance.py rejects malformed transfers, non-positive amounts and self-transfers clearly."""
    _, addresses = cluster
    with laminar.Client(addresses) as client:
        assert client.create_topic("bank2", program=program("balance.py"), args='{"cache_size": 2}').committed(10).ok
        cases = {
            "not json": "malformed:",
            json.dumps({"to": "b", "amount": 0, "from_balance": 5, "to_balance": 0, "seen": 0}): "invalid:",
            json.dumps({"to": "a", "amount": 1, "from_balance": 5, "to_balance": 5, "seen": 0}): "invalid:",
            json.dumps({"to": "b", "amount": 9, "from_balance": 5, "to_balance": 0, "seen": 0}): "insufficient:",
        }
        for value, prefix in cases.items():
            commit = client.put("bank2", "a", value).committed(10)
            assert commit.effect is Effect.ERROR and commit.reason.startswith(prefix), (value, commit)
        bad_args = client.create_topic("bank3", program=program("balance.py"), args="{}").committed(10)
        assert bad_args.effect is Effect.ERROR and bad_args.reason.startswith("malformed:")


def test_program_state_and_code_survive_a_full_restart(cluster) -> None:
    """A program's state is replicated state: after every node restarts, counters carry on."""
    nodes, addresses = cluster
    with laminar.Client(addresses) as client:
        assert client.create_topic("survive", program=program("work_units.py")).committed(10).ok
        for n in range(1, 6):
            assert client.put("survive", "k", str(n)).committed(10).ok
    nodes.stop_all()
    nodes.start_all()
    with laminar.Client(addresses) as client:
        assert client.put("survive", "k", "6").committed(30).ok
        stale = client.put("survive", "k", "3").committed(10)
        assert stale.reason.startswith("out-of-order:")


def test_hostile_programs_are_refused_or_fail_and_the_cluster_carries_on(cluster) -> None:
    """Each hostile program is refused at create or gets ERROR at run; nodes stay up and agree,
    and other topics keep committing."""
    nodes, addresses = cluster
    hostile = _hostile_programs()
    refused_by_client = []
    with laminar.Client(addresses) as client:
        creates, puts = {}, {}
        for name, h in hostile.items():
            try:
                creates[name] = client.create_topic(f"h-{name}", program=h.source)
            except laminar.InvalidRequest as refused:  # over a size limit: refused before the log
                assert h.verdict == "refused", (name, refused)
                refused_by_client.append(name)
                continue
            puts[name] = client.put(f"h-{name}", "k", "v")
        plain = client.put("ready", "still", "alive")
        client.flush(timeout=240)
        failures = []
        for name, h in hostile.items():
            if name in refused_by_client:
                continue
            created, put = creates[name].committed(0), puts[name].committed(0)
            if h.verdict == "refused":
                if created.effect is not Effect.ERROR or "program refused" not in created.reason:
                    failures.append((name, "create", created))
            elif not created.ok or put.effect is not Effect.ERROR or not put.reason:
                failures.append((name, "run", created, put))
        assert not failures, failures
        assert plain.committed(0).ok
        assert client.put("ready", "after", "hostiles").committed(10).ok
    for node_id in (1, 2, 3):
        assert nodes.alive(node_id), f"node {node_id} died"
    digests = _converged_digests(addresses)
    assert len({d["intention_offset"] for d in digests}) == 1, digests
    assert len({d["sha256"] for d in digests}) == 1, digests


def _converged_digests(addresses: list[str]) -> list[dict]:
    import time

    from laminar.client import cluster_digests

    deadline = time.monotonic() + 30
    while True:
        digests = cluster_digests(addresses)
        if len({d.get("intention_offset") for d in digests}) == 1 or time.monotonic() > deadline:
            return digests
        time.sleep(0.2)
