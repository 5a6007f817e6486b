"""Applier.when_applied: a hook given right after on_commit runs once that entry is applied and stored, on
whichever thread applies it (the proposer counts its entries in flight until then)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from laminar.node._applier import Applier
from laminar.node._entry import encode_entry, encode_run
from laminar.node._metrics import NodeMetrics
from laminar.node.state_machine import StateMachine
from laminar.node.store import Store
from laminar.v1 import laminar_pb2 as pb

CLIENT = uuid.UUID(int=5).bytes
WAIT_S = 10.0


def _no_sample() -> dict[str, float]:
    return {}


def entry(nonce: int, *mutations: pb.Mutation) -> bytes:
    for n, mutation in enumerate(mutations):
        mutation.nonce = nonce + n
    return encode_entry([encode_run(CLIENT, pb.MutationFrame(mutations=mutations).SerializeToString())], 0)


def test_a_hook_runs_once_its_entry_is_stored_and_at_once_for_an_entry_applied_inline(tmp_path: Path) -> None:
    """A lone small entry is applied inline by on_commit: its hook runs at once. An entry queued behind a busy
    apply thread: its hook waits until the store holds it, and runs on the apply thread."""
    store = Store(str(tmp_path / "s"))
    applier = Applier(1, store, StateMachine(store), NodeMetrics(_no_sample), lambda _: None, lambda _: None)
    ran: list[tuple[str, int]] = []
    try:
        applier.on_commit(2, entry(1, pb.Mutation(kind=pb.CREATE_TOPIC, topic="t")))  # one intention: inline
        applier.when_applied(lambda _s: ran.append((threading.current_thread().name, store.applied().raft_index)))
        assert ran == [("MainThread", 2)]
        gate = threading.Event()
        applier._queue.put(gate.wait)  # the apply thread is busy until the gate opens
        puts = [pb.Mutation(kind=pb.PUT, topic="t", key=b"k", value=b"v") for _ in range(3)]
        applier.on_commit(3, entry(2, *puts))  # queued behind the busy apply thread
        applier.when_applied(lambda _s: ran.append((threading.current_thread().name, store.applied().raft_index)))
        assert len(ran) == 1, "the entry is not applied yet"
        gate.set()
        assert applier.wait_applied(WAIT_S)
        assert ran == [("MainThread", 2), ("apply", 3)]
    finally:
        applier.stop()
        store.close()
