"""Imports point down only (DESIGN.md, "Layers"): every import in laminar/ is parsed with ast and checked.

Rules:
- the client never imports node code;
- only laminar/node/raft imports pysyncobj;
- a node layer imports only lower layers (service -> raft / applier -> state machine -> sandbox / store);
- a private module (`_name`) is imported only from inside its own package: other packages go
  through the package's `__init__`;
- no pysyncobj attribute (`raftCurrentTerm`, `_isLeader()`, `getStatus()`, ...) and no getStatus()
  key is used outside laminar/node/raft: the rest of the node sees the port's own types only.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pysyncobj.syncobj

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE_DIR = os.path.join(ROOT, "laminar")

# Rank of each part of the node, by module prefix (the longest prefix wins). A module may import a
# module of another part only if that part's rank is lower. Modules not listed are not ranked
# (shared leaves such as laminar.limits and laminar.errors, and the command-line entry points).
NODE_LAYERS: dict[str, int] = {
    "laminar.node": 9,  # the composition root (_node.py) and the package's public face
    "laminar.node._backend": 8,  # the node's side of the service's NodeApi
    "laminar.node._access": 8,  # the Auth RPC
    "laminar.node.service": 7,
    "laminar.node._membership": 6,
    "laminar.node.raft": 5,
    "laminar.node._applier": 5,
    "laminar.node.state_machine": 4,
    "laminar.node.sandbox": 3,
    "laminar.node.store": 3,
    "laminar.node.auth": 2,  # the permission model and the gate: protobuf and grpc only
    "laminar.node._entry": 2,  # the log-entry format: a leaf that the port and the state machine share
    "laminar.node._fail_stop": 1,  # ending the process when going on could be wrong: raft and the applier
    "laminar.node._metrics": 2,
    "laminar.node.config": 2,
}
PYSYNCOBJ_HOME = "laminar.node.raft"
# Keys of pysyncobj's getStatus() dict that only its callers would spell ("leader" and "state" are
# too common a word to flag).
PYSYNCOBJ_STATUS_KEYS = frozenset(
    {"raft_term", "commit_idx", "last_applied", "leader_commit_idx", "log_len", "has_quorum"}
)
CLIENT = "laminar.client"
NODE = "laminar.node"


@dataclass(frozen=True)
class Import:
    importer: str  # dotted name of the module that imports
    target: str  # dotted name of what it imports (a module, or a name inside one)
    line: int


def module_name(path: str) -> str:
    relative = os.path.relpath(path, ROOT)[: -len(".py")]
    parts = relative.split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(path: str) -> bool:
    return os.path.basename(path) == "__init__.py"


def imports_of(name: str, source: str, package: bool) -> Iterator[Import]:
    """Every import in a module's source, relative ones resolved, including those inside functions
    and under TYPE_CHECKING (they state a dependency too)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                yield Import(name, f"{base}.{alias.name}", node.lineno)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> str | None:
    matches = [prefix for prefix in NODE_LAYERS if within(name, prefix)]
    return max(matches, key=len) if matches else None


def private_package(target: str) -> str | None:
    """The package a private module (or a private name) in `target` belongs to, or None if public."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def violations(imp: Import) -> list[str]:
    where = f"{imp.importer}:{imp.line} imports {imp.target}"
    found = []
    if within(imp.importer, CLIENT) and within(imp.target, NODE):
        found.append(f"{where}: the client must not import node code")
    if within(imp.target, "pysyncobj") and not within(imp.importer, PYSYNCOBJ_HOME):
        found.append(f"{where}: only {PYSYNCOBJ_HOME} may import pysyncobj")
    if within(imp.target, "laminar"):
        found.extend(_layer_violation(imp, where))
        owner = private_package(imp.target)
        if owner is not None and not within(imp.importer, owner):
            found.append(f"{where}: a private module of {owner}, from outside it (import it from {owner})")
    return found


def _layer_violation(imp: Import, where: str) -> list[str]:
    mine, theirs = layer_of(imp.importer), layer_of(imp.target)
    if mine is None or theirs is None or mine == theirs:
        return []
    if NODE_LAYERS[theirs] >= NODE_LAYERS[mine]:
        return [f"{where}: {mine} (layer {NODE_LAYERS[mine]}) may not import {theirs} (layer {NODE_LAYERS[theirs]})"]
    return []


@functools.cache
def package_sources() -> tuple[tuple[str, str, bool], ...]:
    return tuple(_walk())


def _walk() -> Iterator[tuple[str, str, bool]]:
    for directory, _dirs, files in os.walk(PACKAGE_DIR):
        for file in sorted(files):
            if file.endswith(".py") and not file.endswith("_pb2.py") and not file.endswith("_pb2_grpc.py"):
                path = os.path.join(directory, file)
                with open(path) as f:
                    yield module_name(path), f.read(), is_package(path)


def check(imports: list[Import]) -> list[str]:
    return [v for imp in imports for v in violations(imp)]


def all_imports(sources: tuple[tuple[str, str, bool], ...]) -> list[Import]:
    return [imp for name, source, package in sources for imp in imports_of(name, source, package)]


@functools.cache
def pysyncobj_names() -> frozenset[str]:
    """SyncObj's methods and attributes, in pysyncobj's camelCase (ours are snake_case, so a camelCase
    name that SyncObj has is one of its names), with private ones as their mangled spelling too."""
    source = inspect.getsource(pysyncobj.syncobj.SyncObj)
    names = {n for n in dir(pysyncobj.syncobj.SyncObj) if not n.startswith("__")}
    for name in re.findall(r"self\.(\w+)\s*=", source):
        names.add("_SyncObj" + name if name.startswith("__") else name)
    return frozenset(n for n in names if re.search("[A-Z]", n.removeprefix("_SyncObj__")))


def pysyncobj_uses(name: str, source: str) -> Iterator[str]:
    """Uses of pysyncobj's attributes or status keys in a module outside laminar/node/raft."""
    if within(name, PYSYNCOBJ_HOME):
        return
    names = pysyncobj_names()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in names:
            yield f"{name}:{node.lineno} uses pysyncobj's .{node.attr}: ask the Raft port"
        elif isinstance(node, ast.Constant) and node.value in PYSYNCOBJ_STATUS_KEYS:
            yield f"{name}:{node.lineno} reads pysyncobj's status key {node.value!r}: use RaftStatus"


def test_no_pysyncobj_attribute_or_status_key_outside_the_raft_package() -> None:
    """Outside laminar/node/raft nothing reads a SyncObj attribute or a getStatus() key; planted uses are caught."""
    names = pysyncobj_names()
    assert {"raftCurrentTerm", "_isLeader", "getStatus", "_SyncObj__raftLog"} <= names, "pysyncobj's names are read"
    assert [u for name, source, _ in package_sources() for u in pysyncobj_uses(name, source)] == []
    for planted in ("term = engine.raftCurrentTerm\n", "ok = engine._isLeader()\n", 'n = raw["commit_idx"]\n'):
        assert len(list(pysyncobj_uses("laminar.node._node", planted))) == 1, planted
    assert list(pysyncobj_uses("laminar.node.raft._adapter", "ok = engine._isLeader()\n")) == []


def test_every_import_in_the_package_points_down() -> None:
    """No module in laminar/ imports against the layering: client -> node, pysyncobj outside node/raft,
    a lower layer importing a higher one, or another package's private module."""
    sources = package_sources()
    assert len(sources) > 40, "the walk found the package"
    assert check(all_imports(sources)) == []


def test_a_planted_bad_import_is_caught() -> None:
    """Each rule fires on one planted import added to the real sources, and only that rule."""
    real = package_sources()
    planted = {
        "client imports node": ("laminar.client._client", "from laminar.node import Node\n", "must not import node"),
        "pysyncobj outside raft": ("laminar.node._applier", "import pysyncobj\n", "may import pysyncobj"),
        "store imports the state machine": (
            "laminar.node.store._store",
            "from laminar.node.state_machine import StateMachine\n",
            "may not import laminar.node.state_machine",
        ),
        "raft imports the service": (
            "laminar.node.raft._proposer",
            "from laminar.node import service\n",
            "may not import laminar.node.service",
        ),
        "private module across packages": (
            "laminar.node.service._sessions",
            "from laminar.node.raft._proposer import Proposer\n",
            "a private module of laminar.node.raft",
        ),
        "relative private import across packages": (
            "laminar.node.state_machine._machine",
            "from ..store._keys import Keys\n",
            "a private module of laminar.node.store",
        ),
    }
    real_imports = all_imports(real)
    packages = {name: package for name, _, package in real}
    for label, (module, line, message) in planted.items():
        assert module in packages, f"{label}: {module} exists"
        found = check([*real_imports, *imports_of(module, line, packages[module])])
        assert len(found) == 1 and message in found[0], f"{label}: {found}"
