"""A minimal etcd v3 client over gRPC: the puts, transactions, paged range reads and watches the comparison needs.

It speaks to one member (the leader, so no request is forwarded) through generated stubs of the
subset of etcd's rpc.proto in bench/etcdv3. `put` waits for the commit; `put_future` returns at
once, so a client can keep many puts in flight on one HTTP/2 connection, as Laminar's client does
with its session stream.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc

from bench.etcdv3 import rpc_pb2, rpc_pb2_grpc

RANGE_PAGE_KEYS = 1_000  # keys per range request when reading back, as etcd's own mirror reads
RECEIVE_BYTES_MAX = 64 * 2**20  # a page of 1,000 small keys is far below; gRPC's default of 4 MiB could bite
RANGE_PAGES_MAX = 100_000  # a bound on the paging loop: 100 M keys, far above any run


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that makes [prefix, range_end) every key starting with `prefix` (etcd's rule)."""
    assert prefix, "an empty prefix would be the whole keyspace"
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    assert end, "a prefix of only 0xff bytes has no end"
    end[-1] += 1
    return bytes(end)


def put_request(key: bytes, value: bytes) -> rpc_pb2.PutRequest:
    return rpc_pb2.PutRequest(key=key, value=value)


def txn_of_puts(pairs: Sequence[tuple[bytes, bytes]]) -> rpc_pb2.TxnRequest:
    """One transaction putting every pair: one Raft entry, one fsync, for all of them."""
    return rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=put_request(k, v)) for k, v in pairs])


class EtcdClient:
    def __init__(self, address: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", RECEIVE_BYTES_MAX)])
        self._kv = rpc_pb2_grpc.KVStub(self._channel)
        self._watch = rpc_pb2_grpc.WatchStub(self._channel)

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def put(self, key: bytes, value: bytes) -> int:
        """Put and wait for the commit; the store's revision after it."""
        response = self._kv.Put(put_request(key, value), timeout=self.timeout_s)
        return int(response.header.revision)

    def get_local(self, key: bytes) -> int:
        """A serializable get (answered by this member from its own store, no Raft round): its count of keys."""
        response = self._kv.Range(rpc_pb2.RangeRequest(key=key, serializable=True), timeout=self.timeout_s)
        return int(response.count)

    def put_future(self, key: bytes, value: bytes) -> Any:
        """Send a put without waiting; `.result()` on the answer waits for its commit."""
        return self._kv.Put.future(put_request(key, value), timeout=self.timeout_s)

    def txn_future(self, pairs: Sequence[tuple[bytes, bytes]]) -> Any:
        return self._kv.Txn.future(txn_of_puts(pairs), timeout=self.timeout_s)

    def watch_prefix(self, prefix: bytes) -> Any:
        """A watch on every key under `prefix`, from the next revision: an iterator of WatchResponse, the first
        of which says `created` (etcd's clients wait for it too). `.cancel()` on it ends the stream."""
        ended = threading.Event()
        create = rpc_pb2.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix))

        def requests() -> Iterator[rpc_pb2.WatchRequest]:
            yield rpc_pb2.WatchRequest(create_request=create)
            ended.wait()  # keep our half of the stream open until the call ends

        responses = self._watch.Watch(requests())
        responses.add_done_callback(lambda _call: ended.set())
        return responses

    def read_prefix(self, prefix: bytes, page_keys: int = RANGE_PAGE_KEYS) -> Iterator[rpc_pb2.KeyValue]:
        """Every key under `prefix` in key order, a page at a time, all pages at the first page's revision
        (one consistent snapshot). The first page is a linearizable read (etcd's default)."""
        end = prefix_end(prefix)
        start, revision = prefix, 0
        for _ in range(RANGE_PAGES_MAX):
            request = rpc_pb2.RangeRequest(key=start, range_end=end, limit=page_keys, revision=revision)
            response = self._kv.Range(request, timeout=self.timeout_s)
            revision = revision or int(response.header.revision)
            yield from response.kvs
            if not response.more or not response.kvs:
                return
            start = response.kvs[-1].key + b"\x00"  # the smallest key after the last one read
        raise RuntimeError(f"more than {RANGE_PAGES_MAX} pages under {prefix!r}")
