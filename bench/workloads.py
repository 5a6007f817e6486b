"""The topic kinds a cell can use, and what one benchmark client sends to each.

A `TopicKind` is the parent's view (which program, what create arguments, which row of the Java
matrix it compares with). A `Workload` is one client process's view: an untimed `prepare` (which
also opens the session, so connecting is never timed), then `message(i)` for each send and
`committed(i, commit)` for each ack, in order. `message` runs on the sending thread and `committed`
on the ack thread, so a workload that reads its own acks must lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import laminar

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS_DIR = os.path.join(REPO_ROOT, "programs")
VALUE_BYTES = 32  # payload of a plain put: small, like the Java benchmark's messages
PREPARE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TopicKind:
    name: str
    program_file: str | None  # under programs/; None for a plain topic
    java_row: str  # "plain" or "programmable": the row of Laminar's matrix this compares with

    def program_path(self) -> str | None:
        return None if self.program_file is None else os.path.join(PROGRAMS_DIR, self.program_file)

    def program_source(self) -> str | None:
        path = self.program_path()
        if path is None:
            return None
        with open(path, encoding="utf-8") as f:
            return f.read()

    def missing(self) -> str | None:
        """Why this kind cannot run in this tree, or None if it can."""
        path = self.program_path()
        if path is not None and not os.path.exists(path):
            return f"{os.path.relpath(path, REPO_ROOT)} does not exist yet"
        return None

    def create_args(self, clients: int, balance_pairs: int) -> bytes:
        if self.name != "balance":
            return b""
        from bench import balance

        return balance.create_args(clients, balance_pairs)


TOPIC_KINDS = {
    kind.name: kind
    for kind in (
        TopicKind("plain", None, "plain"),
        TopicKind("passthrough", "passthrough.py", "programmable"),
        TopicKind("balance", "balance.py", "programmable"),
    )
}


class Workload(Protocol):
    def prepare(self, client: laminar.Client) -> None: ...

    def message(self, index: int) -> tuple[bytes, bytes]: ...

    def committed(self, index: int, commit: laminar.Commit) -> None: ...


class PutWorkload:
    """Plain puts (and passthrough ones): a fixed small value under the client's own key."""

    def __init__(self, topic: str, client_index: int) -> None:
        self.topic = topic
        self.key = f"client-{client_index}".encode()
        self.value = b"v" * VALUE_BYTES

    def prepare(self, client: laminar.Client) -> None:
        commit = client.put(self.topic, self.key, self.value).committed(timeout=PREPARE_TIMEOUT_S)
        if not commit.ok:
            raise RuntimeError(f"warm-up put was {commit.effect}: {commit.reason}")

    def message(self, index: int) -> tuple[bytes, bytes]:
        return self.key, self.value

    def committed(self, index: int, commit: laminar.Commit) -> None:
        pass


def make_workload(kind: str, topic: str, client_index: int, client_count: int, balance_pairs: int) -> Workload:
    if kind == "balance":
        from bench import balance

        return balance.TransferWorkload(topic, client_index, client_count, balance_pairs)
    return PutWorkload(topic, client_index)
