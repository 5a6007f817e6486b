"""The invariants the simulator checks, after every step and once the cluster has healed.

Each check returns what it found wrong as readable sentences; an empty list means it holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

from laminar.v1 import laminar_pb2 as pb

Entry = tuple[bytes, int, int]  # (command, raft index, term)


class Observed(Protocol):
    address: str

    @property
    def is_leader(self) -> bool: ...
    @property
    def term(self) -> int: ...
    @property
    def commit_index(self) -> int: ...
    def log(self) -> list[Entry]: ...
    def digest(self) -> tuple[int, str]: ...


def fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=6).hexdigest()


class Checker:
    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}  # term -> the node that led it
        self.committed: dict[int, tuple[int, str, str]] = {}  # index -> (term, fingerprint, first seen at)
        # index -> the term of the node that first held it committed: the entry was committed in that
        # term or an earlier one (a node's commit index comes from a leader of its term or older).
        self.committed_by_term: dict[int, int] = {}
        self.complete_leaders: set[int] = set()  # terms whose leader's log was checked for completeness
        self.applied: dict[int, tuple[str, str]] = {}  # index -> (payload fingerprint, first applied by)
        self.digests: dict[int, tuple[str, str]] = {}  # intention offset -> (store digest, first seen at)
        self.checked_through: dict[str, int] = {}  # address -> commit index its log was checked through

    def leader(self, node: Observed) -> list[str]:
        """At most one leader per term."""
        if not node.is_leader:
            return []
        first = self.leaders.setdefault(node.term, node.address)
        if first != node.address:
            return [f"two leaders in term {node.term}: {first} and {node.address}"]
        return []

    def commits(self, node: Observed, log: Sequence[Entry], full: bool = False) -> list[str]:
        """An index committed anywhere holds the same entry everywhere it is committed. Checks the
        entries committed since the last call, or (full) every committed entry the log holds."""
        found = []
        after = 0 if full else self.checked_through.get(node.address, 0)
        commit_index = node.commit_index
        self.checked_through[node.address] = commit_index
        if commit_index <= after:
            return []
        for command, index, term in log:
            if index <= after:
                continue
            if index > commit_index:
                break
            seen = self.committed.get(index)
            mark = fingerprint(command)
            if seen is None:
                self.committed[index] = (term, mark, node.address)
                self.committed_by_term[index] = node.term
            elif seen[:2] != (term, mark):
                found.append(
                    f"index {index} committed as term {seen[0]} entry {seen[1]} on {seen[2]}, "
                    f"but {node.address} holds term {term} entry {mark} there with commit index {node.commit_index}"
                )
        return found

    def completeness(self, node: Observed, log: Sequence[Entry]) -> list[str]:
        """Leader completeness (Raft 5.4): a leader's log holds every entry committed in an earlier
        term, as far back as its log reaches (older ones are in its snapshot). Checked once per term,
        when the leader is first seen."""
        if not node.is_leader or node.term in self.complete_leaders or not log:
            return []
        self.complete_leaders.add(node.term)
        first = log[0][1]
        held = {index: (term, fingerprint(command)) for command, index, term in log}
        found = []
        for index, by_term in sorted(self.committed_by_term.items()):
            term, mark, where = self.committed[index]
            if by_term < node.term and index >= first and held.get(index) != (term, mark):
                has = held.get(index)
                found.append(
                    f"leader {node.address} of term {node.term} lacks index {index} (term {term} entry {mark}, "
                    f"committed on {where} in term {by_term} or before): its log has "
                    + ("nothing there" if has is None else f"term {has[0]} entry {has[1]}")
                )
        return found

    def apply(self, address: str, index: int, payload: bytes) -> list[str]:
        """No two nodes apply different entries at one index."""
        mark = fingerprint(payload)
        seen = self.applied.setdefault(index, (mark, address))
        if seen[0] != mark:
            return [f"index {index} applied as entry {seen[0]} on {seen[1]} but as {mark} on {address}"]
        return []

    def digest(self, address: str, offset: int, sha256: str) -> list[str]:
        """Equal store digests at an equal applied intention offset."""
        seen = self.digests.setdefault(offset, (sha256, address))
        if seen[0] != sha256:
            return [f"store digest at offset {offset} is {seen[0][:12]} on {seen[1]} but {sha256[:12]} on {address}"]
        return []


def committed_is_held(leader: str, index: int, term: int, holds: dict[str, bool]) -> list[str]:
    """What a leader counts as committed is on enough of its members' disks that every majority of them
    holds it (Raft's definition of committed; with m members, ceil(m/2) of them: a membership change
    adds or removes one member at a time). A leader that counts a follower past what that follower
    holds breaks this before any write is lost: one more crash and a majority without the entry could
    elect a leader that overwrites it."""
    needed = len(holds) - len(holds) // 2
    held = sorted(address for address, has in holds.items() if has)
    if len(held) >= needed:
        return []
    lacking = sorted(address for address, has in holds.items() if not has)
    return [
        f"leader {leader} holds index {index} (term {term}) committed, but only {len(held)} of its {len(holds)} "
        f"members hold it ({', '.join(held)}); {', '.join(lacking)} do not"
    ]


def log_matching(logs: dict[str, Sequence[Entry]]) -> list[str]:
    """If two logs hold an entry of the same index and term, they are identical up to it."""
    found = []
    addresses = sorted(logs)
    for i, a in enumerate(addresses):
        by_index_a = {index: (term, command) for command, index, term in logs[a]}
        for b in addresses[i + 1 :]:
            by_index_b = {index: (term, command) for command, index, term in logs[b]}
            common = sorted(set(by_index_a) & set(by_index_b))
            matched = [index for index in common if by_index_a[index][0] == by_index_b[index][0]]
            if not matched:
                continue
            through = matched[-1]
            for index in common:
                if index > through:
                    break
                if by_index_a[index] != by_index_b[index]:
                    found.append(
                        f"log matching: {a} and {b} agree on index {through} (term {by_index_a[through][0]}) "
                        f"but differ at index {index}: term {by_index_a[index][0]} entry "
                        f"{fingerprint(by_index_a[index][1])} against term {by_index_b[index][0]} entry "
                        f"{fingerprint(by_index_b[index][1])}"
                    )
                    break
    return found


def exactly_once(address: str, events: Iterable[bytes], acknowledged: Iterable[bytes]) -> list[str]:
    """Every acknowledged proposal is in this node's store once; no proposal is in it twice."""
    counts: dict[bytes, int] = {}
    for data in events:
        value = pb.Event.FromString(data).value
        counts[value] = counts.get(value, 0) + 1
    found = [f"{address}: proposal {v.decode()} applied {n} times" for v, n in sorted(counts.items()) if n > 1]
    missing = sorted(v for v in acknowledged if v not in counts)
    if missing:
        shown = ", ".join(v.decode() for v in missing[:10])
        found.append(f"{address}: {len(missing)} acknowledged proposals missing from the store: {shown}")
    return found


def one_result_per_call(address: str, events: Iterable[bytes]) -> list[str]:
    """Pipelines: the calls topic's program puts r/<call id> in on_result, which runs once per call."""
    seen: set[bytes] = set()
    found = []
    for data in events:
        event = pb.Event.FromString(data)
        if event.kind == pb.PUT and event.key.startswith(b"r/"):
            if event.key in seen:
                found.append(f"{address}: on_result ran twice for call {event.key[2:].decode()}")
            seen.add(event.key)
    return found
