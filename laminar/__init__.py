"""Laminar: a replicated, programmable event store.

import laminar
with laminar.Client(["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]) as c:
    commit = c.create_topic("chat").committed(timeout=10)
    c.put("chat", b"alice", b"hello").received()
for event in laminar.Listener(addresses, "chat", from_offset=0):
    print(event.kind, event.key, event.value, event.consequence_offset)
for call in laminar.Worker(addresses, service="payments", method="charge"):  # calls from programs: docs/pipelines.md
    call.complete(charge(call.request))
"""

from laminar.client import (
    TLS,
    Call,
    Client,
    Commit,
    ConsumerInfo,
    Effect,
    Event,
    GroupSettings,
    Kind,
    Listener,
    Pending,
    Retention,
    Value,
    Worker,
    cluster_status,
)
from laminar.errors import (
    ClientClosed,
    ConfigError,
    InvalidRequest,
    LaminarError,
    OffsetTrimmed,
    PermissionDenied,
    ProtocolError,
    SnapshotTooLarge,
    Timeout,
    Unacknowledged,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "TLS",
    "Call",
    "Client",
    "ClientClosed",
    "Commit",
    "ConfigError",
    "ConsumerInfo",
    "Effect",
    "Event",
    "GroupSettings",
    "InvalidRequest",
    "Kind",
    "LaminarError",
    "Listener",
    "OffsetTrimmed",
    "Pending",
    "PermissionDenied",
    "ProtocolError",
    "Retention",
    "SnapshotTooLarge",
    "Timeout",
    "Unacknowledged",
    "Unauthenticated",
    "Unavailable",
    "Value",
    "Worker",
    "cluster_status",
]
