"""The benchmark's etcd client speaks etcd's v3 wire format (no etcd process: checked byte by byte)."""

from __future__ import annotations

import pathlib

import pytest
from grpc_tools import protoc

from bench.etcd_client import prefix_end, txn_of_puts
from bench.etcdv3 import rpc_pb2, rpc_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_put_request_encodes_with_etcds_field_numbers() -> None:
    """PutRequest: key is field 1 and value field 2, both length-delimited, as in etcd's rpc.proto."""
    encoded = rpc_pb2.PutRequest(key=b"k", value=b"vv").SerializeToString()
    assert encoded == b"\x0a\x01k\x12\x02vv"


def test_range_request_encodes_with_etcds_field_numbers() -> None:
    """RangeRequest: key 1, range_end 2, limit 3 and revision 4 (varints), serializable 7."""
    request = rpc_pb2.RangeRequest(key=b"a", range_end=b"b", limit=1000, revision=5, serializable=True)
    assert request.SerializeToString() == b"\x0a\x01a\x12\x01b\x18\xe8\x07\x20\x05\x38\x01"


def test_txn_of_puts_nests_put_in_request_op_field_2() -> None:
    """A Txn's success list is field 2, each RequestOp carrying its PutRequest as field 2 (request_put)."""
    encoded = txn_of_puts([(b"k", b"v")]).SerializeToString()
    put = b"\x0a\x01k\x12\x01v"
    op = b"\x12" + bytes([len(put)]) + put
    assert encoded == b"\x12" + bytes([len(op)]) + op


def test_range_response_decodes_header_revision_and_key_values() -> None:
    """A response as etcd sends it (header 1 with revision 3; kvs 2 with key 1 and value 5; more 3) decodes."""
    header = b"\x18\x07"  # revision = 7
    kv = b"\x0a\x01k\x2a\x01v"  # key = "k", value = "v"
    wire = b"\x0a" + bytes([len(header)]) + header + b"\x12" + bytes([len(kv)]) + kv + b"\x18\x01"
    response = rpc_pb2.RangeResponse.FromString(wire)
    assert response.header.revision == 7
    assert [(x.key, x.value) for x in response.kvs] == [(b"k", b"v")]
    assert response.more


def test_service_paths_are_etcds() -> None:
    """The stubs call /etcdserverpb.KV/Put and friends, the method paths an etcd server serves."""
    source = (ROOT / "bench/etcdv3/rpc_pb2_grpc.py").read_text()
    for path in (
        "/etcdserverpb.KV/Put",
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.Maintenance/Status",
    ):
        assert f"'{path}'" in source
    assert rpc_pb2_grpc.KVStub is not None


@pytest.mark.parametrize(
    ("prefix", "end"), [(b"r1/", b"r10"), (b"a\xff", b"b"), (b"a\xff\xff", b"b"), (b"\x00", b"\x01")]
)
def test_prefix_end_is_etcds_prefix_rule(prefix: bytes, end: bytes) -> None:
    """[prefix, prefix_end) holds exactly the keys starting with prefix: trailing 0xff bytes drop, the last byte +1."""
    assert prefix_end(prefix) == end


def test_generated_etcd_code_is_current(tmp_path: pathlib.Path) -> None:
    """Regenerating bench/etcdv3 from its rpc.proto (`make proto-etcd`) changes nothing committed."""
    proto = ROOT / "bench/etcdv3/rpc.proto"
    (tmp_path / "bench/etcdv3").mkdir(parents=True)
    (tmp_path / "bench/etcdv3/rpc.proto").write_bytes(proto.read_bytes())
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}", str(tmp_path / "bench/etcdv3/rpc.proto")]  # fmt: skip
    assert protoc.main(args) == 0, "protoc failed"
    for name in ("rpc_pb2.py", "rpc_pb2.pyi", "rpc_pb2_grpc.py"):
        fresh = (tmp_path / "bench/etcdv3" / name).read_text()
        assert fresh == (ROOT / "bench/etcdv3" / name).read_text(), f"bench/etcdv3/{name} is stale: make proto-etcd"
