"""Real Raft engines in one process, without tick threads: a test drives them with doTick().

Each engine is the production RaftEngine (journal, snapshotter, corrections) over real loopback TCP;
only the state machine is a small one of the test's own (`Ledger`), which records every applied
payload by Raft index so a test can ask exactly which entries a node holds.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from laminar.node.raft._compaction import CompactionPolicy
from laminar.node.raft._engine import RaftEngine, RaftSettings
from laminar.node.raft._port import SnapshotHooks

WAIT_S = 20.0


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Ledger:
    """The state machine: Raft index -> payload, checkpointed as a JSON file."""

    def __init__(self) -> None:
        self.applied: dict[int, bytes] = {}
        self.mark = 0  # the Raft index this ledger holds everything through

    def apply(self, index: int, payload: bytes) -> None:
        if index <= self.mark:
            return  # replayed after a restart: the store already holds it (as the node's applier does)
        self.applied[index] = payload
        self.mark = index

    def checkpoint(self, directory: str, index: int) -> None:
        os.makedirs(directory, exist_ok=True)
        self.mark = max(self.mark, index)
        body = {"mark": self.mark, "applied": {str(i): p.hex() for i, p in self.applied.items() if i <= index}}
        with open(os.path.join(directory, "ledger.json"), "w") as f:
            json.dump(body, f)

    def install(self, directory: str) -> None:
        with open(os.path.join(directory, "ledger.json")) as f:
            body = json.load(f)
        self.applied = {int(i): bytes.fromhex(p) for i, p in body["applied"].items()}
        self.mark = body["mark"]

    def hooks(self) -> SnapshotHooks:
        return SnapshotHooks(checkpoint=self.checkpoint, applied_index=lambda: self.mark, install=self.install)


class Node:
    def __init__(
        self,
        root: Path,
        address: str,
        peers: list[str],
        fast: bool,
        log_entries_max: int,
        compaction: CompactionPolicy | None = None,
    ) -> None:
        self.address = address
        self.compaction = compaction or CompactionPolicy()
        self.peers = peers
        self.root = root
        self.fast = fast
        self.log_entries_max = log_entries_max
        self.ledger = Ledger()
        self.engine = self._start()

    def _start(self) -> RaftEngine:
        os.makedirs(self.root, exist_ok=True)
        settings = RaftSettings(
            self_address=self.address,
            peer_addresses=tuple(self.peers),
            journal_path=str(self.root / "raft.journal"),
            snapshot_path=str(self.root / "raft.snapshot"),
            log_entries_max=self.log_entries_max,
            compaction=self.compaction,
            # The first node elects itself at once; the others wait long enough never to compete.
            election_timeout_s_min=0.1 if self.fast else 10.0,
            election_timeout_s_max=0.2 if self.fast else 20.0,
            heartbeat_s=0.03,
            leader_fallback_s=30.0,
            auto_tick=False,
        )
        return RaftEngine(
            settings, on_apply=self.ledger.apply, on_role=lambda _role: None, snapshot_hooks=self.ledger.hooks()
        )

    def peer(self, address: str) -> Any:
        """This engine's pysyncobj node object for the peer at `address`."""
        return next(n for n in self.engine.otherNodes if str(n.address) == address)

    @property
    def journal(self) -> Any:
        return self.engine._journal

    def log_end(self) -> int:
        return int(self.journal[-1][1])


class Cluster:
    def __init__(
        self, root: Path, size: int = 3, log_entries_max: int = 10_000, compaction: CompactionPolicy | None = None
    ) -> None:
        addresses = [f"127.0.0.1:{p}" for p in free_ports(size)]
        self.nodes = [
            Node(root / f"n{i}", a, [p for p in addresses if p != a], i == 0, log_entries_max, compaction)
            for i, a in enumerate(addresses)
        ]
        self.stopped: set[int] = set()

    def __getitem__(self, i: int) -> Node:
        return self.nodes[i]

    def live(self) -> Iterable[Node]:
        return (n for i, n in enumerate(self.nodes) if i not in self.stopped)

    def tick(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            for node in self.live():
                node.engine.doTick(0.0)
            time.sleep(0.001)

    def until(self, condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {what}")
            self.tick()

    def elect(self, i: int = 0) -> None:
        self.until(lambda: self.nodes[i].engine._isLeader(), f"node {i} to lead")

    def propose(self, i: int, payloads: list[bytes]) -> list[bool]:
        results: list[bool] = []
        for payload in payloads:
            self.nodes[i].engine.propose(payload, results.append)
            self.tick()
        self.until(lambda: len(results) == len(payloads), "proposals to finish")
        return results

    def stop(self, i: int) -> None:
        self.nodes[i].engine.destroy()
        self.stopped.add(i)

    def restart(self, i: int) -> None:
        """Stop node i and start it again on the same journal, snapshot and ledger (its store survives)."""
        if i not in self.stopped:
            self.stop(i)
        self.nodes[i].engine = self.nodes[i]._start()
        self.stopped.discard(i)

    def close(self) -> None:
        for i in range(len(self.nodes)):
            if i not in self.stopped:
                self.stop(i)


def deliver(to: Node, sender: Node, message: dict[str, Any]) -> None:
    """Hand `to` a message as if `sender` had sent it (one the network delayed, or the last before a link broke)."""
    to.engine._SyncObj__onMessageReceived(to.peer(sender.address), message)


def append(term: int, prev_index: int, prev_term: int, entries: list[Any], commit_index: int) -> dict[str, Any]:
    """An append_entries message as a leader of `term` sends it: `entries` after (prev_index, prev_term)."""
    return {
        "type": "append_entries",
        "term": term,
        "commit_index": commit_index,
        "prevLogIdx": prev_index,
        "prevLogTerm": prev_term,
        "entries": entries,
    }


def snapshot_messages(sender: Node, chunk_bytes: int = 1 << 20) -> list[dict[str, Any]]:
    """The append_entries messages that carry `sender`'s snapshot file, as its leader transport sends them:
    chunks of (data, first, last) read from the file, the last one empty, each tagged with its offset."""
    with open(sender.root / "raft.snapshot", "rb") as f:
        blob = f.read()
    engine = sender.engine
    messages = []
    offset = 0
    pieces = [blob[i : i + chunk_bytes] for i in range(0, len(blob), chunk_bytes)] + [b""]
    for n, data in enumerate(pieces):
        messages.append(
            {
                "type": "append_entries",
                "term": engine.raftCurrentTerm,
                "commit_index": engine.raftCommitIndex,
                "serialized": (data, n == 0, data == b""),
                "snapshot_offset": offset,
            }
        )
        offset += len(data)
    return messages


def compact(cluster: Cluster, i: int) -> int:
    """Make node i compact its journal now; the Raft index its snapshot ends at."""
    node = cluster[i]
    first_before = node.journal[0][1]
    node.engine.forceLogCompaction()
    cluster.until(lambda: node.journal[0][1] > first_before, f"node {i} to compact its journal")
    return int(node.journal[1][1])
