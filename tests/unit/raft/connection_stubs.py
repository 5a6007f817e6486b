"""What a test of one Raft connection (laminar/node/raft/_connection.py) needs around it: a poller that polls
nothing (the test reads by hand) and a message framed as a peer sends it."""

from __future__ import annotations

import pickle
from typing import Any

from laminar.node.raft._connection import _LENGTH, PICKLE_PROTOCOL, _deflate


class NullPoller:
    """pysyncobj's poller, as far as a connection uses it: subscriptions that poll nothing."""

    def subscribe(self, *_args: Any) -> None:
        pass

    def unsubscribe(self, *_args: Any) -> None:
        pass


def framed(message: Any) -> bytes:
    """`message` as a peer's connection writes it: pickled, deflated, length-prefixed."""
    data = _deflate(pickle.dumps(message, PICKLE_PROTOCOL))
    return _LENGTH.pack(len(data)) + data
