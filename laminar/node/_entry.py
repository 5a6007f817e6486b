"""The log-entry format: how intentions become one Raft entry and how an entry is read back.

The only module that builds or parses entry payloads. A payload is a serialized `IntentionBatch`
(proto/laminar/v1/laminar.proto): client runs (each a client id and one client frame's mutations,
in nonce order), address-book changes, or nothing at all (a read barrier). The proposer splices
runs from bytes it already holds (a client frame as received), so the hot path never re-encodes a
mutation; protobuf concatenation of repeated fields makes the splice a valid message.

Every entry the proposer builds carries the leader's wall-clock time (`time_ms`, field 15, a varint
appended after the runs): the state machine turns it into log time (state_machine/_time.py). An
entry of that field alone is a time tick, which a leader proposes when it has been idle so that
log time still moves. Entries without it (written before log time existed) apply as before.

Layer: a leaf (it imports only the generated protobuf code and the splice helper), so the Raft
port that builds entries and the state machine that parses them both sit above it.
"""

from __future__ import annotations

from laminar._wire import length_delimited, varint
from laminar.v1 import laminar_pb2 as pb

_RUN_TAG = b"\x0a"  # IntentionBatch.runs, field 1, length-delimited
_CLIENT_ID_TAG = b"\x12"  # ClientRun.client_id, field 2, length-delimited
_SESSION_TAG = b"\x19"  # ClientRun.session, field 3, fixed64 (little-endian)
_TIME_TAG = b"\x78"  # IntentionBatch.time_ms, field 15, varint

READ_BARRIER = b""  # an entry with no intentions: once applied, every write committed before it is too


def encode_run(client_id: bytes, frame_bytes: bytes | memoryview, session: int = 0) -> bytes:
    """An IntentionBatch field holding one ClientRun, built from a serialized MutationFrame, from the
    session `session` (0: none named; its outcomes then go to whichever session the client has)."""
    tail = length_delimited(_CLIENT_ID_TAG, client_id)
    if session:
        tail += _SESSION_TAG + session.to_bytes(8, "little")
    # One copy of the frame's bytes (a 3 MiB frame copied is ~1 ms of the event loop here), not one per concatenation.
    return b"".join((_RUN_TAG, varint(len(frame_bytes) + len(tail)), frame_bytes, tail))


def encode_entry(runs: list[bytes], time_ms: int) -> bytes:
    """One entry from runs made by encode_run (they apply in this order), stamped with the leader's
    wall-clock time in ms since the Unix epoch."""
    return b"".join(runs) + encode_time(time_ms)


def encode_time(time_ms: int) -> bytes:
    """The time stamp alone: an entry by itself (a time tick), or the tail of any entry. Time 0 is
    no stamp (proto3 leaves a zero field out)."""
    assert time_ms >= 0, time_ms
    return _TIME_TAG + varint(time_ms) if time_ms else b""


def encode_peer_upsert(peer: pb.Peer) -> bytes:
    """An entry that records (or updates) one node's addresses in the replicated address book."""
    return pb.IntentionBatch(peer_upserts=[peer]).SerializeToString()


def encode_peer_removal(node_id: str) -> bytes:
    """An entry that drops one node from the replicated address book."""
    return pb.IntentionBatch(peer_removals=[node_id]).SerializeToString()


def decode_entry(payload: bytes) -> pb.IntentionBatch:
    """The batch an entry carries; a corrupt payload reads as an empty batch, the same on every node
    (apply must never raise: pysyncobj would retry the entry forever)."""
    try:
        return pb.IntentionBatch.FromString(payload)
    except Exception:  # noqa: BLE001 - protobuf raises DecodeError, and others on odd input
        return pb.IntentionBatch()


def one_intention_at_most(payload: bytes, bytes_max: int) -> pb.IntentionBatch | None:
    """The entry decoded, if it is at most bytes_max bytes and holds no more than one intention; else None
    (larger entries without being parsed, and a corrupt one). The decoded entry goes on to the state machine,
    which then does not parse it again: a lone put's entry parsed twice cost 12-15 us more of each node's
    apply."""
    if len(payload) > bytes_max:
        return None
    try:
        entry = pb.IntentionBatch.FromString(payload)
    except Exception:  # noqa: BLE001 - the state machine decides what a corrupt entry does, in the apply thread
        return None
    return entry if sum(len(run.mutations) for run in entry.runs) <= 1 else None
