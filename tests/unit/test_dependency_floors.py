"""The dependency floors in pyproject.toml admit only runtimes the generated code in laminar/v1 loads with."""

from __future__ import annotations

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATED = ROOT / "laminar" / "v1"


def _requirement(name: str) -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    found = [d for d in dependencies if re.match(rf"{re.escape(name)}\s*[<>=!~]", d)]
    assert len(found) == 1, f"{name} is not listed once in [project].dependencies: {dependencies}"
    return found[0]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _floor(requirement: str) -> tuple[int, ...]:
    match = re.search(r"(?:>=|==)\s*([0-9][0-9.]*)", requirement)
    assert match, f"no lower bound (>= or ==) in {requirement!r}"
    return _version(match.group(1))


def test_protobuf_floor_is_what_the_generated_code_validates() -> None:
    """Every *_pb2.py calls ValidateProtobufRuntimeVersion(major, minor, patch); pyproject's floor is that version."""
    needed = set()
    for path in GENERATED.glob("*_pb2.py"):
        text = path.read_text()
        match = re.search(
            r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", text
        )
        assert match, f"{path.name}: no runtime version check found (did protoc's output change shape?)"
        needed.add(tuple(int(g) for g in match.groups()))
    assert needed, "no generated *_pb2.py found"
    assert _floor(_requirement("protobuf")) == max(needed)


def test_grpcio_floor_is_what_the_generated_stubs_require() -> None:
    """laminar_pb2_grpc.py refuses a grpcio older than GRPC_GENERATED_VERSION; pyproject's floor matches it."""
    text = (GENERATED / "laminar_pb2_grpc.py").read_text()
    match = re.search(r"GRPC_GENERATED_VERSION = '([0-9.]+)'", text)
    assert match, "no GRPC_GENERATED_VERSION in laminar_pb2_grpc.py"
    assert _floor(_requirement("grpcio")) == _version(match.group(1))
