"""Fixed, versionless binary records for the store. Small and explicit: struct, no pickle."""

from __future__ import annotations

import bisect
import dataclasses
import struct
import sys
from array import array
from dataclasses import dataclass
from typing import Any

_APPLIED = struct.Struct(">QQQ")  # raft index, intention offset, log time in ms
_APPLIED_UNTIMED = struct.Struct(">QQ")  # the mark as stores written before log time hold it
_TOPIC_HEAD = struct.Struct(">BQQII")
# After the program and args: first retained offset, retained bytes, max events, max bytes, max age in ms.
# Records written before retention existed end at the args: they read as "nothing trimmed, no limits".
_TOPIC_RETENTION = struct.Struct(">QQQQQ")
_CLIENT = struct.Struct(">QQ")
_SEGMENT_HEAD = struct.Struct(">BQIH")  # effect, first intention offset, count, reason bytes
# After the segments: this byte, then a 4-byte big-endian contents digest per nonce. No effect has this
# value, so runs stored before digests existed (segments only) still decode; they compare nothing.
_DIGESTS_MARK = 0xFF
_DIGEST_ITEM = "I"  # array typecode of a 32-bit digest
assert array(_DIGEST_ITEM).itemsize == 4
VIEW_HEAD = struct.Struct(">QQ")  # ViewRecord: consequence offset, intention offset; then the value


@dataclass(frozen=True)
class AppliedMark:
    raft_index: int
    intention_offset: int
    time_ms: int = 0  # log time of the last applied entry (0: none yet): see state_machine/_time.py

    def encode(self) -> bytes:
        return _APPLIED.pack(self.raft_index, self.intention_offset, self.time_ms)

    @staticmethod
    def decode(data: bytes) -> AppliedMark:
        if len(data) == _APPLIED_UNTIMED.size:
            raft_index, intention_offset = _APPLIED_UNTIMED.unpack(data)
            return AppliedMark(raft_index, intention_offset)
        raft_index, intention_offset, time_ms = _APPLIED.unpack(data)
        return AppliedMark(raft_index, intention_offset, time_ms)


@dataclass(frozen=True)
class Retention:
    """How much of a topic's stream is kept (docs/protocol.md, "Retention"). 0: no limit of that kind."""

    max_events: int = 0
    max_bytes: int = 0  # serialized event bytes
    max_age_ms: int = 0  # by log time

    def __bool__(self) -> bool:
        return bool(self.max_events or self.max_bytes or self.max_age_ms)


NO_RETENTION = Retention()


@dataclass(frozen=True)
class TopicRecord:
    """A topic, live or destroyed. Kept after destroy so consequence offsets never reset."""

    live: bool
    next_offset: int  # consequence offset the next event of this topic gets
    created_at: int  # intention offset of the create that made the current incarnation
    program: str  # "" for a plain topic
    args: bytes
    retention: Retention = NO_RETENTION
    first_offset: int = 1  # consequence offset of the oldest event kept: older ones were trimmed
    retained_bytes: int = 0  # serialized bytes of the events kept (counted since retention existed)

    def with_counters(self, next_offset: int, first_offset: int, retained_bytes: int) -> TopicRecord:
        """`dataclasses.replace(self, next_offset=..., first_offset=..., retained_bytes=...)`, without replace's
        look-up of the fields at each call (4-5 us, in every entry that writes to a topic, on every node).
        tests/unit/test_records.py checks it against replace, field by field."""
        return TopicRecord(
            self.live,
            next_offset,
            self.created_at,
            self.program,
            self.args,
            self.retention,
            first_offset,
            retained_bytes,
        )

    def encode(self) -> bytes:
        program = self.program.encode()
        head = _TOPIC_HEAD.pack(self.live, self.next_offset, self.created_at, len(program), len(self.args))
        r = self.retention
        tail = _TOPIC_RETENTION.pack(self.first_offset, self.retained_bytes, r.max_events, r.max_bytes, r.max_age_ms)
        return head + program + self.args + tail

    @staticmethod
    def decode(data: bytes) -> TopicRecord:
        live, next_offset, created_at, program_len, args_len = _TOPIC_HEAD.unpack_from(data)
        start = _TOPIC_HEAD.size
        program = data[start : start + program_len].decode()
        end = start + program_len + args_len
        args = data[start + program_len : end]
        record = TopicRecord(bool(live), next_offset, created_at, program, bytes(args))
        if len(data) >= end + _TOPIC_RETENTION.size:
            first, retained, max_events, max_bytes, max_age_ms = _TOPIC_RETENTION.unpack_from(data, end)
            record = dataclasses.replace(
                record,
                retention=Retention(max_events, max_bytes, max_age_ms),
                first_offset=first,
                retained_bytes=retained,
            )
        return record


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


class ResultRun:
    """The outcomes of `count` consecutive nonces from `first_nonce`, in segments.

    A segment [effect, first offset, count, reason] covers consecutive nonces that got the same
    effect and reason at consecutive intention offsets, so a run of successful puts is one
    segment of 21 bytes however long it is (one record per nonce cost a write per message).
    """

    __slots__ = ("_starts", "count", "digests", "first_nonce", "segments")

    def __init__(self, first_nonce: int) -> None:
        self.first_nonce = first_nonce
        self.segments: list[list[Any]] = []
        self.count = 0
        self._starts: list[int] | None = None  # index of each segment's first nonce, built on lookup
        # The contents digest of each nonce (see state_machine's contents_digest), or None for a run
        # stored before digests were kept. A resend whose digest differs is not the original mutation.
        self.digests: array[int] | None = None

    def add(self, effect: int, intention_offset: int, reason: str, count: int = 1) -> None:
        """Append the outcomes of the next `count` nonces (from first_nonce + self.count), which
        got `effect` and `reason` at offsets intention_offset, intention_offset + 1, ..."""
        segments = self.segments
        self.count += count
        if segments:
            last = segments[-1]
            if last[0] == effect and last[1] + last[2] == intention_offset and last[3] == reason:
                last[2] += count
                return
        segments.append([effect, intention_offset, count, reason])
        self._starts = None

    def covers(self, nonce: int) -> bool:
        return self.first_nonce <= nonce < self.first_nonce + self.count

    def at(self, nonce: int) -> ResultRecord:
        """The outcome of `nonce` (which covers() must hold for)."""
        if self._starts is None:
            starts, total = [], 0
            for segment in self.segments:
                starts.append(total)
                total += segment[2]
            self._starts = starts
        index = nonce - self.first_nonce
        where = bisect.bisect_right(self._starts, index) - 1
        effect, first_offset, _, reason = self.segments[where]
        return ResultRecord(effect, first_offset + index - self._starts[where], reason)

    def digest_at(self, nonce: int) -> int | None:
        """The contents digest of `nonce` (covers() must hold), or None if this run kept none."""
        digests = self.digests
        return None if digests is None else digests[nonce - self.first_nonce]

    def encode(self) -> bytes:
        parts = []
        for effect, offset, count, reason in self.segments:
            data = reason.encode()
            parts.append(_SEGMENT_HEAD.pack(effect, offset, count, len(data)) + data)
        if self.digests is not None:
            assert len(self.digests) == self.count, "one digest per nonce of the run"
            digests = array(_DIGEST_ITEM, self.digests)
            if sys.byteorder == "little":
                digests.byteswap()
            parts.append(bytes((_DIGESTS_MARK,)) + digests.tobytes())
        return b"".join(parts)

    @staticmethod
    def decode(first_nonce: int, data: bytes) -> ResultRun:
        """The run stored under `first_nonce` (what encode() wrote)."""
        run = ResultRun(first_nonce)
        position = 0
        while position < len(data):
            if data[position] == _DIGESTS_MARK:
                digests = array(_DIGEST_ITEM, bytes(data[position + 1 :]))
                if sys.byteorder == "little":
                    digests.byteswap()
                run.digests = digests
                break
            effect, offset, count, reason_len = _SEGMENT_HEAD.unpack_from(data, position)
            position += _SEGMENT_HEAD.size
            run.add(effect, offset, data[position : position + reason_len].decode(), count)
            position += reason_len
        return run


@dataclass(frozen=True)
class ViewRecord:
    """The current value of one live key of a topic, and the event that set it."""

    consequence_offset: int
    intention_offset: int
    value: bytes

    def encode(self) -> bytes:
        return VIEW_HEAD.pack(self.consequence_offset, self.intention_offset) + self.value

    @staticmethod
    def decode(data: bytes) -> ViewRecord:
        consequence_offset, intention_offset = VIEW_HEAD.unpack_from(data)
        return ViewRecord(consequence_offset, intention_offset, bytes(data[VIEW_HEAD.size :]))
