"""RocksDB layout: events, topics, program state, dedupe table and the applied index.

The store is the only module that touches rocksdict. Everything a node applies for one Raft entry
is written in one atomic write batch together with the applied index, so a restart neither loses
nor re-applies an entry.
"""

from laminar.node.store._call_records import CallKeys, CallLease, CallSeq, WorkerRecord
from laminar.node.store._consumer_records import DURABLE, GROUP, ConsumerRecord, LeaseRecord, MemberRecord
from laminar.node.store._keys import Keys, from_u64, u64
from laminar.node.store._pins import StoreClosed, StoreReplaced
from laminar.node.store._records import (
    NO_RETENTION,
    VIEW_HEAD,
    AppliedMark,
    ClientRecord,
    ResultRecord,
    ResultRun,
    Retention,
    TopicRecord,
    ViewRecord,
)
from laminar.node.store._store import ConsumerRow, Store, WriteSet

__all__ = [
    "DURABLE",
    "GROUP",
    "NO_RETENTION",
    "VIEW_HEAD",
    "AppliedMark",
    "CallKeys",
    "CallLease",
    "CallSeq",
    "ClientRecord",
    "ConsumerRecord",
    "ConsumerRow",
    "Keys",
    "LeaseRecord",
    "MemberRecord",
    "ResultRecord",
    "ResultRun",
    "Retention",
    "Store",
    "StoreClosed",
    "StoreReplaced",
    "TopicRecord",
    "ViewRecord",
    "WorkerRecord",
    "WriteSet",
    "from_u64",
    "u64",
]
