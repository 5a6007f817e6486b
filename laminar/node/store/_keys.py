"""Key layout. Offsets are big-endian fixed width so that byte order is numeric order.

    m/applied                      -> AppliedMark (raft index, intention offset)
    t/<topic>                      -> TopicRecord (live flag, next consequence offset, program)
    e/<topic>\\x00<offset:8>        -> serialized laminar.v1.Event
    s/<topic>                      -> program state bytes
    c/<client_id:16>               -> ClientRecord (highest applied nonce, last intention offset)
    r/<client_id:16><nonce:8>      -> ResultRun: outcomes of consecutive nonces from <nonce>, in segments
    x/<offset:8><client_id:16>     -> b"" (expiry index: clients by last intention offset)
    n/<node_id>                    -> serialized laminar.v1.Peer (the cluster's address book)
    v/<topic>\\x00<key>            -> ViewRecord (current value of a live key, and the offsets that set it)
    k/, q/, l/                     -> consumers, group members and leases (see _consumer_records.py)
    p/, w/, j/, g/, m/calls        -> pipelines: calls, their leases, workers, counters (see _call_records.py)
    a/state                        -> the auth state: users, roles, enabled (a serialized laminar.v1.AuthResponse)
    o/<client_id:16>               -> the user that owns a client id (the first to use it with auth on)

Topic names never contain NUL (they match [A-Za-z0-9._-]), so `e/<topic>\\x00` is a prefix that
holds exactly one topic's events, in offset order; likewise `v/<topic>\\x00` holds its live keys.
"""

from __future__ import annotations

_U64 = 8


def u64(value: int) -> bytes:
    return value.to_bytes(_U64, "big")


def from_u64(data: bytes) -> int:
    return int.from_bytes(data, "big")


class Keys:
    APPLIED = b"m/applied"
    TOPIC_PREFIX = b"t/"
    EVENT_PREFIX = b"e/"
    STATE_PREFIX = b"s/"
    CLIENT_PREFIX = b"c/"
    RESULT_PREFIX = b"r/"
    EXPIRY_PREFIX = b"x/"
    PEER_PREFIX = b"n/"
    VIEW_PREFIX = b"v/"
    CONSUMER_PREFIX = b"k/"
    MEMBER_PREFIX = b"q/"
    LEASE_PREFIX = b"l/"
    AUTH = b"a/state"
    OWNER_PREFIX = b"o/"

    @staticmethod
    def consumers_of(topic: str) -> bytes:
        return Keys.CONSUMER_PREFIX + topic.encode() + b"\x00"

    @staticmethod
    def consumer(topic: str, name: str) -> bytes:
        return Keys.consumers_of(topic) + name.encode()

    @staticmethod
    def members_of(topic: str, group: str) -> bytes:
        return Keys.MEMBER_PREFIX + topic.encode() + b"\x00" + group.encode() + b"\x00"

    @staticmethod
    def leases_of(topic: str, group: str) -> bytes:
        return Keys.LEASE_PREFIX + topic.encode() + b"\x00" + group.encode() + b"\x00"

    @staticmethod
    def views_of(topic: str) -> bytes:
        return Keys.VIEW_PREFIX + topic.encode() + b"\x00"

    @staticmethod
    def views_end(topic: str) -> bytes:
        """The first key after every view key of `topic` (for a range delete)."""
        return Keys.VIEW_PREFIX + topic.encode() + b"\x01"

    @staticmethod
    def view(topic: str, key: bytes) -> bytes:
        return Keys.views_of(topic) + key

    @staticmethod
    def owner(client_id: bytes) -> bytes:
        return Keys.OWNER_PREFIX + client_id

    @staticmethod
    def peer(node_id: str) -> bytes:
        return Keys.PEER_PREFIX + node_id.encode()

    @staticmethod
    def topic(topic: str) -> bytes:
        return Keys.TOPIC_PREFIX + topic.encode()

    @staticmethod
    def events_of(topic: str) -> bytes:
        return Keys.EVENT_PREFIX + topic.encode() + b"\x00"

    @staticmethod
    def event(topic: str, offset: int) -> bytes:
        return Keys.events_of(topic) + u64(offset)

    @staticmethod
    def state(topic: str) -> bytes:
        return Keys.STATE_PREFIX + topic.encode()

    @staticmethod
    def client(client_id: bytes) -> bytes:
        return Keys.CLIENT_PREFIX + client_id

    @staticmethod
    def results_of(client_id: bytes) -> bytes:
        return Keys.RESULT_PREFIX + client_id

    @staticmethod
    def result(client_id: bytes, nonce: int) -> bytes:
        return Keys.RESULT_PREFIX + client_id + u64(nonce)

    @staticmethod
    def expiry(intention_offset: int, client_id: bytes) -> bytes:
        return Keys.EXPIRY_PREFIX + u64(intention_offset) + client_id
