"""The committed generated code in laminar/v1 is exactly what `make proto` produces now."""

from __future__ import annotations

import pathlib
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATED = ("laminar_pb2.py", "laminar_pb2.pyi", "laminar_pb2_grpc.py")


def test_generated_protobuf_code_is_current(tmp_path: pathlib.Path) -> None:
    """Regenerating from proto/ with the pinned grpcio-tools changes nothing that is committed."""
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        str(ROOT / "proto/laminar/v1/laminar.proto"),
    ]
    assert protoc.main(args) == 0, "protoc failed"
    for name in GENERATED:
        fresh = (tmp_path / "laminar/v1" / name).read_text()
        committed = (ROOT / "laminar/v1" / name).read_text()
        assert fresh == committed, f"laminar/v1/{name} is stale: run `make proto` and commit ({sys.executable})"
