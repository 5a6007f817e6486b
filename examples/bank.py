"""Bank demo: concurrent clients move money through programs/balance.py with the CAS retry loop.

    make demo                      # against a running `make cluster`, or a cluster of its own
    python examples/bank.py --clients 4 --transfers 200

Each client follows the topic with a listener (its view of balances and the newest offset seen),
and retries a transfer the program rejects as stale once its view has caught up. At the end the
demo reads the whole stream and checks that money was conserved and no balance went negative.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter

from tqdm import tqdm

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config
from laminar.recipes.balance import MINT, BalanceView, transfer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINTED_PER_ACCOUNT = 1000
DEMO_SECONDS_MAX = 300


def reachable(addresses: list[str]) -> bool:
    return any("error" not in s for s in laminar.cluster_status(addresses, 1.0))


def run_clients(addresses: list[str], topic: str, accounts: list[str], clients: int, transfers: int) -> Counter:
    stats: Counter = Counter()
    lock = threading.Lock()
    bar = tqdm(total=clients * transfers, desc="transfers", unit="tx")
    deadline = time.monotonic() + DEMO_SECONDS_MAX

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        view = BalanceView(addresses, topic)
        try:
            with laminar.Client(addresses) as client:
                for _ in range(transfers):
                    if time.monotonic() > deadline:
                        return
                    source, target = rng.sample(accounts, 2)
                    amount = rng.randint(1, 50)
                    result = transfer(client, view, topic, source, target, amount)
                    with lock:
                        stats["committed" if result.ok else result.commit.reason.split(":")[0]] += 1
                        stats["rejected as stale"] += result.stale_retries
                        stats["retried"] += result.attempts - 1
                        bar.update(1)
                        bar.set_postfix(dict(stats))
        finally:
            view.close()

    threads = [threading.Thread(target=client_loop, args=(seed,)) for seed in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    return stats


def verify(addresses: list[str], topic: str, accounts: list[str], minted: int) -> dict[str, int]:
    """Replay the whole stream: conservation and no negative balance, at every step."""
    view = BalanceView(addresses, topic)
    try:
        with laminar.Client(addresses) as client:
            # A last mint of 1 marks the end: its one event (the credit) is the last of the stream.
            marker = transfer(client, view, topic, MINT, accounts[0], 1)
    finally:
        view.close()
    assert marker.ok, marker.commit
    balances: dict[str, int] = {}
    with laminar.Listener(addresses, topic) as listener:
        while True:
            event = listener.next_event(timeout=10)
            if event.kind is laminar.Kind.PUT:
                balances[event.key.decode()] = int(event.value)
                assert int(event.value) >= 0, f"negative balance: {event}"
            if event.intention_offset == marker.commit.intention_offset:
                break
    total = sum(balances.values())
    assert total == minted + 1, f"money not conserved: {total} != {minted + 1}"
    return balances


def demo(addresses: list[str], clients: int, transfers: int, accounts_count: int) -> int:
    topic = f"bank-{uuid.uuid4().hex[:8]}"
    accounts = [f"acct{n}" for n in range(accounts_count)]
    with open(os.path.join(ROOT, "programs", "balance.py")) as f:
        program = f.read()
    view = BalanceView(addresses, topic)
    try:
        with laminar.Client(addresses) as client:
            created = client.create_topic(topic, program=program, args=json.dumps({"cache_size": 2 * clients}))
            assert created.committed(timeout=10).ok, created.committed(0)
            for account in accounts:
                assert transfer(client, view, topic, MINT, account, MINTED_PER_ACCOUNT).ok
    finally:
        view.close()
    print(f"topic {topic}: {len(accounts)} accounts with {MINTED_PER_ACCOUNT} each; {clients} clients")
    stats = run_clients(addresses, topic, accounts, clients, transfers)
    balances = verify(addresses, topic, accounts, MINTED_PER_ACCOUNT * len(accounts))
    print(f"done: {dict(stats)}")
    print(f"money conserved ({sum(balances.values())}), no balance ever negative; final: {balances}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addresses", help="node addresses (default: $LAMINAR_ADDRESSES or the local cluster)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--transfers", type=int, default=100, help="per client")
    parser.add_argument("--accounts", type=int, default=6)
    args = parser.parse_args()
    addresses = laminar.client._connect.resolve_addresses(args.addresses)
    if reachable(addresses):
        return demo(addresses, args.clients, args.transfers, args.accounts)
    print("no cluster answers at", ",".join(addresses), "- starting a 3-node cluster of our own", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="laminar-demo-") as root:
        base = free_port_block(3)
        config = os.path.join(root, "cluster.toml")
        write_config(config, 3, base, os.path.join(root, "data"))
        cluster = LocalCluster(config, [1, 2, 3], log_dir=root)
        try:
            cluster.start_all()
            own = [f"127.0.0.1:{base + n}" for n in (1, 2, 3)]
            deadline = time.monotonic() + 30
            while not reachable(own) and time.monotonic() < deadline:
                time.sleep(0.2)
            return demo(own, args.clients, args.transfers, args.accounts)
        finally:
            cluster.stop_all()


if __name__ == "__main__":
    sys.exit(main())
