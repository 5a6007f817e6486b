"""Laminar's exceptions: one tree, so `except laminar.LaminarError` catches everything we raise.

    LaminarError
    ├── ConfigError            a node or cluster configuration is unusable
    ├── InvalidRequest         the request breaks a rule (bad topic name, value too large, ...);
    │                          raised before anything is sent, or mapped from INVALID_ARGUMENT
    ├── Unavailable            no node answered, or no leader could be found in time
    ├── OffsetTrimmed          a listener asked for events its topic's retention trimmed; `.first_offset`
    │                          is the oldest one kept
    ├── SnapshotTooLarge       a snapshot Listener's snapshot is larger than it may hold (`snapshot_bytes_max`)
    ├── Timeout                an ack or event did not arrive within the given timeout
    │   └── Unacknowledged     close() gave up on mutations that never committed; `.nonces` names them
    ├── ClientClosed           the client was closed while the call waited
    ├── Unauthenticated        authorization is on and the caller's certificate or token is missing or wrong
    ├── PermissionDenied       the caller lacks the permission (named in the message); nothing changed
    └── ProtocolError          a node answered something this library does not understand

gRPC errors (`grpc.RpcError`) never escape the public API: they are mapped to this tree at the
boundary. A committed intention whose effect is INVALID or ERROR is not an exception: it is a
`Commit` with that effect and a reason.
"""

from __future__ import annotations

import re


class LaminarError(Exception):
    """Base of every exception Laminar raises."""


class ConfigError(LaminarError):
    pass


class InvalidRequest(LaminarError):
    pass


class Unavailable(LaminarError):
    pass


class Timeout(LaminarError):
    pass


class OffsetTrimmed(LaminarError):
    """A Listener asked for (or fell behind to) events that retention trimmed. Listen again from
    `first_offset - 1`, or from 0 for the oldest event kept."""

    def __init__(self, message: str, first_offset: int) -> None:
        super().__init__(message)
        self.first_offset = first_offset

    @staticmethod
    def from_message(message: str) -> OffsetTrimmed:
        """From a node's OUT_OF_RANGE answer, which says "the first available offset is N"."""
        found = re.search(r"the first available offset is (\d+)", message)
        return OffsetTrimmed(message, int(found.group(1)) if found else 0)


class SnapshotTooLarge(LaminarError):
    """A `Listener(snapshot=True)` holds the topic's snapshot until it is complete, and it was larger
    than the listener's `snapshot_bytes_max`. Nothing of it was delivered. Listen with a larger bound,
    or from offset 0 (the whole history, streamed)."""


class Unacknowledged(Timeout):
    """`Client.close()` (or leaving `with`) ended with mutations that had not committed.

    They may still commit (the cluster may have them in its log) or may never: the client cannot
    tell. `nonces` lists them in order, so a caller can log, compare or resend them."""

    def __init__(self, message: str, nonces: list[int]) -> None:
        super().__init__(message)
        self.nonces = nonces


class ClientClosed(LaminarError):
    pass


class Unauthenticated(LaminarError):
    pass


class PermissionDenied(LaminarError):
    pass


class ProtocolError(LaminarError):
    pass
