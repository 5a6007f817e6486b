"""Fixed, versionless binary records for the store. Small and explicit: struct, no pickle."""

from __future__ import annotations

import struct
from dataclasses import dataclass

_APPLIED = struct.Struct(">QQ")
_TOPIC_HEAD = struct.Struct(">BQQII")
_CLIENT = struct.Struct(">QQ")
_RESULT_HEAD = struct.Struct(">BQH")
_VIEW_HEAD = struct.Struct(">QQ")


@dataclass(frozen=True)
class AppliedMark:
    raft_index: int
    intention_offset: int

    def encode(self) -> bytes:
        return _APPLIED.pack(self.raft_index, self.intention_offset)

    @staticmethod
    def decode(data: bytes) -> AppliedMark:
        raft_index, intention_offset = _APPLIED.unpack(data)
        return AppliedMark(raft_index, intention_offset)


@dataclass(frozen=True)
class TopicRecord:
    """A topic, live or destroyed. Kept after destroy so consequence offsets never reset."""

    live: bool
    next_offset: int  # consequence offset the next event of this topic gets
    created_at: int  # intention offset of the create that made the current incarnation
    program: str  # "" for a plain topic
    args: bytes

    def encode(self) -> bytes:
        program = self.program.encode()
        head = _TOPIC_HEAD.pack(self.live, self.next_offset, self.created_at, len(program), len(self.args))
        return head + program + self.args

    @staticmethod
    def decode(data: bytes) -> TopicRecord:
        live, next_offset, created_at, program_len, args_len = _TOPIC_HEAD.unpack_from(data)
        start = _TOPIC_HEAD.size
        program = data[start : start + program_len].decode()
        args = data[start + program_len : start + program_len + args_len]
        return TopicRecord(bool(live), next_offset, created_at, program, bytes(args))


@dataclass(frozen=True)
class ClientRecord:
    nonce_max: int  # highest nonce applied for this client
    last_offset: int  # intention offset of its latest applied intention (for expiry)

    def encode(self) -> bytes:
        return _CLIENT.pack(self.nonce_max, self.last_offset)

    @staticmethod
    def decode(data: bytes) -> ClientRecord:
        nonce_max, last_offset = _CLIENT.unpack(data)
        return ClientRecord(nonce_max, last_offset)


@dataclass(frozen=True)
class ResultRecord:
    """The outcome of one intention, kept to answer a resend with the original result."""

    effect: int  # laminar.v1.Effect value
    intention_offset: int  # 0 for a duplicate that has no offset of its own
    reason: str

    @staticmethod
    def encode_run(results: list[ResultRecord]) -> bytes:
        parts = []
        for result in results:
            reason = result.reason.encode()
            parts.append(_RESULT_HEAD.pack(result.effect, result.intention_offset, len(reason)) + reason)
        return b"".join(parts)

    @staticmethod
    def decode_run(data: bytes) -> list[ResultRecord]:
        results = []
        position = 0
        while position < len(data):
            effect, offset, reason_len = _RESULT_HEAD.unpack_from(data, position)
            position += _RESULT_HEAD.size
            reason = data[position : position + reason_len].decode()
            position += reason_len
            results.append(ResultRecord(effect, offset, reason))
        return results


@dataclass(frozen=True)
class ViewRecord:
    """The current value of one live key of a topic, and the event that set it."""

    consequence_offset: int
    intention_offset: int
    value: bytes

    def encode(self) -> bytes:
        return _VIEW_HEAD.pack(self.consequence_offset, self.intention_offset) + self.value

    @staticmethod
    def decode(data: bytes) -> ViewRecord:
        consequence_offset, intention_offset = _VIEW_HEAD.unpack_from(data)
        return ViewRecord(consequence_offset, intention_offset, bytes(data[_VIEW_HEAD.size :]))
