from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_UNSPECIFIED: _ClassVar[Kind]
    CREATE_TOPIC: _ClassVar[Kind]
    DESTROY_TOPIC: _ClassVar[Kind]
    PUT: _ClassVar[Kind]
    DELETE: _ClassVar[Kind]
    CONFIGURE_TOPIC: _ClassVar[Kind]
    CONSUMER_ACK: _ClassVar[Kind]
    CONSUMER_RESET: _ClassVar[Kind]
    CONSUMER_DELETE: _ClassVar[Kind]
    GROUP_JOIN: _ClassVar[Kind]
    GROUP_ACK: _ClassVar[Kind]
    GROUP_LEAVE: _ClassVar[Kind]
    CALL_COMPLETE: _ClassVar[Kind]
    CALL_FAIL: _ClassVar[Kind]
    WORKER_JOIN: _ClassVar[Kind]
    WORKER_LEAVE: _ClassVar[Kind]

class Effect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EFFECT_UNSPECIFIED: _ClassVar[Effect]
    VALID: _ClassVar[Effect]
    INVALID: _ClassVar[Effect]
    ERROR: _ClassVar[Effect]

class Permission(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERMISSION_UNSPECIFIED: _ClassVar[Permission]
    PERMISSION_READ: _ClassVar[Permission]
    PERMISSION_WRITE: _ClassVar[Permission]
    PERMISSION_ADMIN: _ClassVar[Permission]
KIND_UNSPECIFIED: Kind
CREATE_TOPIC: Kind
DESTROY_TOPIC: Kind
PUT: Kind
DELETE: Kind
CONFIGURE_TOPIC: Kind
CONSUMER_ACK: Kind
CONSUMER_RESET: Kind
CONSUMER_DELETE: Kind
GROUP_JOIN: Kind
GROUP_ACK: Kind
GROUP_LEAVE: Kind
CALL_COMPLETE: Kind
CALL_FAIL: Kind
WORKER_JOIN: Kind
WORKER_LEAVE: Kind
EFFECT_UNSPECIFIED: Effect
VALID: Effect
INVALID: Effect
ERROR: Effect
PERMISSION_UNSPECIFIED: Permission
PERMISSION_READ: Permission
PERMISSION_WRITE: Permission
PERMISSION_ADMIN: Permission

class Hello(_message.Message):
    __slots__ = ("client_id", "next_nonce", "commits_only")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_NONCE_FIELD_NUMBER: _ClassVar[int]
    COMMITS_ONLY_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    next_nonce: int
    commits_only: bool
    def __init__(self, client_id: _Optional[bytes] = ..., next_nonce: _Optional[int] = ..., commits_only: _Optional[bool] = ...) -> None: ...

class Mutation(_message.Message):
    __slots__ = ("nonce", "kind", "topic", "key", "value", "program", "args", "retention", "consumer", "result", "worker")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    kind: Kind
    topic: str
    key: bytes
    value: bytes
    program: str
    args: bytes
    retention: Retention
    consumer: ConsumerOp
    result: CallResult
    worker: WorkerOp
    def __init__(self, nonce: _Optional[int] = ..., kind: _Optional[_Union[Kind, str]] = ..., topic: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., program: _Optional[str] = ..., args: _Optional[bytes] = ..., retention: _Optional[_Union[Retention, _Mapping]] = ..., consumer: _Optional[_Union[ConsumerOp, _Mapping]] = ..., result: _Optional[_Union[CallResult, _Mapping]] = ..., worker: _Optional[_Union[WorkerOp, _Mapping]] = ...) -> None: ...

class CallResult(_message.Message):
    __slots__ = ("call_id", "response", "failure", "worker")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    response: bytes
    failure: str
    worker: str
    def __init__(self, call_id: _Optional[int] = ..., response: _Optional[bytes] = ..., failure: _Optional[str] = ..., worker: _Optional[str] = ...) -> None: ...

class WorkerOp(_message.Message):
    __slots__ = ("worker", "method", "calls_max", "lease_ms")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CALLS_MAX_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    worker: str
    method: str
    calls_max: int
    lease_ms: int
    def __init__(self, worker: _Optional[str] = ..., method: _Optional[str] = ..., calls_max: _Optional[int] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class ConsumerOp(_message.Message):
    __slots__ = ("name", "offset", "member", "offsets", "settings", "unacked_max")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UNACKED_MAX_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    member: str
    offsets: _containers.RepeatedScalarFieldContainer[int]
    settings: GroupSettings
    unacked_max: int
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., member: _Optional[str] = ..., offsets: _Optional[_Iterable[int]] = ..., settings: _Optional[_Union[GroupSettings, _Mapping]] = ..., unacked_max: _Optional[int] = ...) -> None: ...

class GroupSettings(_message.Message):
    __slots__ = ("lease_ms", "unacked_max", "deliveries_max", "dead_letter_topic")
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    UNACKED_MAX_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_MAX_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_TOPIC_FIELD_NUMBER: _ClassVar[int]
    lease_ms: int
    unacked_max: int
    deliveries_max: int
    dead_letter_topic: str
    def __init__(self, lease_ms: _Optional[int] = ..., unacked_max: _Optional[int] = ..., deliveries_max: _Optional[int] = ..., dead_letter_topic: _Optional[str] = ...) -> None: ...

class Retention(_message.Message):
    __slots__ = ("max_events", "max_bytes", "max_age_ms")
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    max_events: int
    max_bytes: int
    max_age_ms: int
    def __init__(self, max_events: _Optional[int] = ..., max_bytes: _Optional[int] = ..., max_age_ms: _Optional[int] = ...) -> None: ...

class MutationFrame(_message.Message):
    __slots__ = ("mutations", "principal")
    MUTATIONS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    mutations: _containers.RepeatedCompositeFieldContainer[Mutation]
    principal: str
    def __init__(self, mutations: _Optional[_Iterable[_Union[Mutation, _Mapping]]] = ..., principal: _Optional[str] = ...) -> None: ...

class ClientFrame(_message.Message):
    __slots__ = ("hello", "mutations")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    MUTATIONS_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    mutations: MutationFrame
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., mutations: _Optional[_Union[MutationFrame, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("node_id", "term", "peers")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    term: int
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    def __init__(self, node_id: _Optional[str] = ..., term: _Optional[int] = ..., peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ...) -> None: ...

class Commit(_message.Message):
    __slots__ = ("nonce", "effect", "intention_offset", "reason", "count")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    INTENTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    effect: Effect
    intention_offset: int
    reason: str
    count: int
    def __init__(self, nonce: _Optional[int] = ..., effect: _Optional[_Union[Effect, str]] = ..., intention_offset: _Optional[int] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Acks(_message.Message):
    __slots__ = ("received_through", "commits")
    RECEIVED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    received_through: int
    commits: _containers.RepeatedCompositeFieldContainer[Commit]
    def __init__(self, received_through: _Optional[int] = ..., commits: _Optional[_Iterable[_Union[Commit, _Mapping]]] = ...) -> None: ...

class ServerFrame(_message.Message):
    __slots__ = ("welcome", "acks")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    acks: Acks
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., acks: _Optional[_Union[Acks, _Mapping]] = ...) -> None: ...

class ListenRequest(_message.Message):
    __slots__ = ("topic", "from_offset", "snapshot", "consumer", "member")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    topic: str
    from_offset: int
    snapshot: bool
    consumer: str
    member: str
    def __init__(self, topic: _Optional[str] = ..., from_offset: _Optional[int] = ..., snapshot: _Optional[bool] = ..., consumer: _Optional[str] = ..., member: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("kind", "key", "value", "intention_offset", "consequence_offset", "time_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    INTENTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    CONSEQUENCE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    kind: Kind
    key: bytes
    value: bytes
    intention_offset: int
    consequence_offset: int
    time_ms: int
    def __init__(self, kind: _Optional[_Union[Kind, str]] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., intention_offset: _Optional[int] = ..., consequence_offset: _Optional[int] = ..., time_ms: _Optional[int] = ...) -> None: ...

class ListenFrame(_message.Message):
    __slots__ = ("events", "snapshot", "snapshot_offset", "snapshot_end")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_END_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    snapshot: _containers.RepeatedCompositeFieldContainer[Event]
    snapshot_offset: int
    snapshot_end: bool
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., snapshot: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., snapshot_offset: _Optional[int] = ..., snapshot_end: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("topic", "key", "stale_ok")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STALE_OK_FIELD_NUMBER: _ClassVar[int]
    topic: str
    key: bytes
    stale_ok: bool
    def __init__(self, topic: _Optional[str] = ..., key: _Optional[bytes] = ..., stale_ok: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("found", "value", "value_offset", "topic_offset", "intention_offset", "topic_exists")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOPIC_OFFSET_FIELD_NUMBER: _ClassVar[int]
    INTENTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOPIC_EXISTS_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    value_offset: int
    topic_offset: int
    intention_offset: int
    topic_exists: bool
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., value_offset: _Optional[int] = ..., topic_offset: _Optional[int] = ..., intention_offset: _Optional[int] = ..., topic_exists: _Optional[bool] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "role", "term", "commit_index", "applied_index", "intention_offset", "leader_id", "leader_address", "topics", "durability", "peers", "log_time_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    INTENTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    LOG_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: str
    term: int
    commit_index: int
    applied_index: int
    intention_offset: int
    leader_id: str
    leader_address: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    durability: str
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    log_time_ms: int
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., intention_offset: _Optional[int] = ..., leader_id: _Optional[str] = ..., leader_address: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., durability: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., log_time_ms: _Optional[int] = ...) -> None: ...

class DescribeTopicRequest(_message.Message):
    __slots__ = ("topic",)
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    topic: str
    def __init__(self, topic: _Optional[str] = ...) -> None: ...

class DescribeTopicResponse(_message.Message):
    __slots__ = ("exists", "program", "args", "created_at", "last_offset", "keys", "value_bytes", "keys_capped", "intention_offset", "retention", "first_offset", "retained_bytes", "consumers")
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUE_BYTES_FIELD_NUMBER: _ClassVar[int]
    KEYS_CAPPED_FIELD_NUMBER: _ClassVar[int]
    INTENTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    RETAINED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    program: str
    args: bytes
    created_at: int
    last_offset: int
    keys: int
    value_bytes: int
    keys_capped: bool
    intention_offset: int
    retention: Retention
    first_offset: int
    retained_bytes: int
    consumers: _containers.RepeatedCompositeFieldContainer[ConsumerInfo]
    def __init__(self, exists: _Optional[bool] = ..., program: _Optional[str] = ..., args: _Optional[bytes] = ..., created_at: _Optional[int] = ..., last_offset: _Optional[int] = ..., keys: _Optional[int] = ..., value_bytes: _Optional[int] = ..., keys_capped: _Optional[bool] = ..., intention_offset: _Optional[int] = ..., retention: _Optional[_Union[Retention, _Mapping]] = ..., first_offset: _Optional[int] = ..., retained_bytes: _Optional[int] = ..., consumers: _Optional[_Iterable[_Union[ConsumerInfo, _Mapping]]] = ...) -> None: ...

class ConsumerInfo(_message.Message):
    __slots__ = ("name", "group", "acked_offset", "updated_at", "delivered_offset", "members", "leases", "acked", "redeliveries", "dead_lettered", "settings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ACKED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    REDELIVERIES_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    group: bool
    acked_offset: int
    updated_at: int
    delivered_offset: int
    members: _containers.RepeatedScalarFieldContainer[str]
    leases: int
    acked: int
    redeliveries: int
    dead_lettered: int
    settings: GroupSettings
    def __init__(self, name: _Optional[str] = ..., group: _Optional[bool] = ..., acked_offset: _Optional[int] = ..., updated_at: _Optional[int] = ..., delivered_offset: _Optional[int] = ..., members: _Optional[_Iterable[str]] = ..., leases: _Optional[int] = ..., acked: _Optional[int] = ..., redeliveries: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., settings: _Optional[_Union[GroupSettings, _Mapping]] = ...) -> None: ...

class DigestRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DigestResponse(_message.Message):
    __slots__ = ("intention_offset", "sha256", "keys")
    INTENTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    intention_offset: int
    sha256: str
    keys: int
    def __init__(self, intention_offset: _Optional[int] = ..., sha256: _Optional[str] = ..., keys: _Optional[int] = ...) -> None: ...

class MembershipChange(_message.Message):
    __slots__ = ("action", "node_id", "raft_address", "client_address")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[MembershipChange.Action]
        ADD: _ClassVar[MembershipChange.Action]
        REMOVE: _ClassVar[MembershipChange.Action]
    ACTION_UNSPECIFIED: MembershipChange.Action
    ADD: MembershipChange.Action
    REMOVE: MembershipChange.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    action: MembershipChange.Action
    node_id: str
    raft_address: str
    client_address: str
    def __init__(self, action: _Optional[_Union[MembershipChange.Action, str]] = ..., node_id: _Optional[str] = ..., raft_address: _Optional[str] = ..., client_address: _Optional[str] = ...) -> None: ...

class MembershipResult(_message.Message):
    __slots__ = ("peers",)
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    def __init__(self, peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ...) -> None: ...

class FaultRequest(_message.Message):
    __slots__ = ("partitioned_from",)
    PARTITIONED_FROM_FIELD_NUMBER: _ClassVar[int]
    partitioned_from: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, partitioned_from: _Optional[_Iterable[str]] = ...) -> None: ...

class FaultResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Peer(_message.Message):
    __slots__ = ("node_id", "client_address", "raft_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    client_address: str
    raft_address: str
    def __init__(self, node_id: _Optional[str] = ..., client_address: _Optional[str] = ..., raft_address: _Optional[str] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("permission", "pattern", "cluster")
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    permission: Permission
    pattern: str
    cluster: bool
    def __init__(self, permission: _Optional[_Union[Permission, str]] = ..., pattern: _Optional[str] = ..., cluster: _Optional[bool] = ...) -> None: ...

class AuthUser(_message.Message):
    __slots__ = ("name", "roles", "token_salt", "token_hash")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SALT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    token_salt: bytes
    token_hash: bytes
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., token_salt: _Optional[bytes] = ..., token_hash: _Optional[bytes] = ...) -> None: ...

class AuthRole(_message.Message):
    __slots__ = ("name", "grants")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    def __init__(self, name: _Optional[str] = ..., grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ...) -> None: ...

class AuthRequest(_message.Message):
    __slots__ = ("action", "user", "role", "token", "grant")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[AuthRequest.Action]
        LIST: _ClassVar[AuthRequest.Action]
        ENABLE: _ClassVar[AuthRequest.Action]
        DISABLE: _ClassVar[AuthRequest.Action]
        USER_ADD: _ClassVar[AuthRequest.Action]
        USER_REMOVE: _ClassVar[AuthRequest.Action]
        USER_GRANT: _ClassVar[AuthRequest.Action]
        USER_REVOKE: _ClassVar[AuthRequest.Action]
        ROLE_ADD: _ClassVar[AuthRequest.Action]
        ROLE_REMOVE: _ClassVar[AuthRequest.Action]
        ROLE_GRANT: _ClassVar[AuthRequest.Action]
        ROLE_REVOKE: _ClassVar[AuthRequest.Action]
    ACTION_UNSPECIFIED: AuthRequest.Action
    LIST: AuthRequest.Action
    ENABLE: AuthRequest.Action
    DISABLE: AuthRequest.Action
    USER_ADD: AuthRequest.Action
    USER_REMOVE: AuthRequest.Action
    USER_GRANT: AuthRequest.Action
    USER_REVOKE: AuthRequest.Action
    ROLE_ADD: AuthRequest.Action
    ROLE_REMOVE: AuthRequest.Action
    ROLE_GRANT: AuthRequest.Action
    ROLE_REVOKE: AuthRequest.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    action: AuthRequest.Action
    user: str
    role: str
    token: str
    grant: Grant
    def __init__(self, action: _Optional[_Union[AuthRequest.Action, str]] = ..., user: _Optional[str] = ..., role: _Optional[str] = ..., token: _Optional[str] = ..., grant: _Optional[_Union[Grant, _Mapping]] = ...) -> None: ...

class AuthResponse(_message.Message):
    __slots__ = ("enabled", "users", "roles")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    users: _containers.RepeatedCompositeFieldContainer[AuthUser]
    roles: _containers.RepeatedCompositeFieldContainer[AuthRole]
    def __init__(self, enabled: _Optional[bool] = ..., users: _Optional[_Iterable[_Union[AuthUser, _Mapping]]] = ..., roles: _Optional[_Iterable[_Union[AuthRole, _Mapping]]] = ...) -> None: ...

class AuthChange(_message.Message):
    __slots__ = ("action", "user", "role", "token_salt", "token_hash", "grant")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SALT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_HASH_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    action: AuthRequest.Action
    user: str
    role: str
    token_salt: bytes
    token_hash: bytes
    grant: Grant
    def __init__(self, action: _Optional[_Union[AuthRequest.Action, str]] = ..., user: _Optional[str] = ..., role: _Optional[str] = ..., token_salt: _Optional[bytes] = ..., token_hash: _Optional[bytes] = ..., grant: _Optional[_Union[Grant, _Mapping]] = ...) -> None: ...

class WorkRequest(_message.Message):
    __slots__ = ("service", "worker")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    service: str
    worker: str
    def __init__(self, service: _Optional[str] = ..., worker: _Optional[str] = ...) -> None: ...

class WorkFrame(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    def __init__(self, calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class Call(_message.Message):
    __slots__ = ("id", "topic", "service", "method", "request", "context", "issued_ms", "deadline_ms", "intention_offset", "deliveries", "worker", "lease_deadline_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ISSUED_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    INTENTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    LEASE_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    topic: str
    service: str
    method: str
    request: bytes
    context: bytes
    issued_ms: int
    deadline_ms: int
    intention_offset: int
    deliveries: int
    worker: str
    lease_deadline_ms: int
    def __init__(self, id: _Optional[int] = ..., topic: _Optional[str] = ..., service: _Optional[str] = ..., method: _Optional[str] = ..., request: _Optional[bytes] = ..., context: _Optional[bytes] = ..., issued_ms: _Optional[int] = ..., deadline_ms: _Optional[int] = ..., intention_offset: _Optional[int] = ..., deliveries: _Optional[int] = ..., worker: _Optional[str] = ..., lease_deadline_ms: _Optional[int] = ...) -> None: ...

class DescribeCallsRequest(_message.Message):
    __slots__ = ("topic", "after_id", "limit", "call_id")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    topic: str
    after_id: int
    limit: int
    call_id: int
    def __init__(self, topic: _Optional[str] = ..., after_id: _Optional[int] = ..., limit: _Optional[int] = ..., call_id: _Optional[int] = ...) -> None: ...

class CallStats(_message.Message):
    __slots__ = ("in_flight", "issued", "completed", "failed", "timed_out", "redeliveries", "gave_up", "on_result_errors")
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    REDELIVERIES_FIELD_NUMBER: _ClassVar[int]
    GAVE_UP_FIELD_NUMBER: _ClassVar[int]
    ON_RESULT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    issued: int
    completed: int
    failed: int
    timed_out: int
    redeliveries: int
    gave_up: int
    on_result_errors: int
    def __init__(self, in_flight: _Optional[int] = ..., issued: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., timed_out: _Optional[int] = ..., redeliveries: _Optional[int] = ..., gave_up: _Optional[int] = ..., on_result_errors: _Optional[int] = ...) -> None: ...

class DescribeCallsResponse(_message.Message):
    __slots__ = ("topic_exists", "intention_offset", "log_time_ms", "stats", "calls")
    TOPIC_EXISTS_FIELD_NUMBER: _ClassVar[int]
    INTENTION_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LOG_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    topic_exists: bool
    intention_offset: int
    log_time_ms: int
    stats: CallStats
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    def __init__(self, topic_exists: _Optional[bool] = ..., intention_offset: _Optional[int] = ..., log_time_ms: _Optional[int] = ..., stats: _Optional[_Union[CallStats, _Mapping]] = ..., calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class ClientRun(_message.Message):
    __slots__ = ("mutations", "client_id", "session", "principal")
    MUTATIONS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    mutations: _containers.RepeatedCompositeFieldContainer[Mutation]
    client_id: bytes
    session: int
    principal: str
    def __init__(self, mutations: _Optional[_Iterable[_Union[Mutation, _Mapping]]] = ..., client_id: _Optional[bytes] = ..., session: _Optional[int] = ..., principal: _Optional[str] = ...) -> None: ...

class IntentionBatch(_message.Message):
    __slots__ = ("runs", "peer_upserts", "peer_removals", "auth_changes", "time_ms")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    PEER_UPSERTS_FIELD_NUMBER: _ClassVar[int]
    PEER_REMOVALS_FIELD_NUMBER: _ClassVar[int]
    AUTH_CHANGES_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[ClientRun]
    peer_upserts: _containers.RepeatedCompositeFieldContainer[Peer]
    peer_removals: _containers.RepeatedScalarFieldContainer[str]
    auth_changes: _containers.RepeatedCompositeFieldContainer[AuthChange]
    time_ms: int
    def __init__(self, runs: _Optional[_Iterable[_Union[ClientRun, _Mapping]]] = ..., peer_upserts: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., peer_removals: _Optional[_Iterable[str]] = ..., auth_changes: _Optional[_Iterable[_Union[AuthChange, _Mapping]]] = ..., time_ms: _Optional[int] = ...) -> None: ...
