"""Shared fixtures: real node processes on loopback, cleaned up however a test ends."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config

CLUSTER_READY_TIMEOUT_S = 20.0


@dataclass
class TestCluster:
    cluster: LocalCluster
    addresses: list[str]
    data_dir: str
    log_dir: str
    metrics_addresses: list[str] | None = None

    def address_of(self, node_id: int) -> str:
        return self.addresses[node_id - 1]

    def statuses(self) -> list[dict]:
        return laminar.cluster_status(self.addresses, timeout_s=1.0)

    def leader_id(self, timeout_s: float = CLUSTER_READY_TIMEOUT_S, exclude: int | None = None) -> int:
        """The id of the node that says it leads, once the live nodes agree on one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            live = [s for s in self.statuses() if "error" not in s]
            leaders = {s["node_id"] for s in live if s["role"] == "leader"}
            known = {s.get("leader_id") for s in live}
            if len(leaders) == 1 and known == leaders and int(next(iter(leaders))) != exclude:
                return int(next(iter(leaders)))
            time.sleep(0.1)
        raise AssertionError(f"no agreed leader within {timeout_s} s: {self.statuses()}")

    def wait_applied(self, intention_offset: int, node_ids: list[int] | None = None, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        wanted = {self.address_of(n) for n in (node_ids or list(self.cluster.node_ids))}
        while time.monotonic() < deadline:
            done = {
                s["address"]
                for s in self.statuses()
                if "error" not in s and int(s["intention_offset"]) >= intention_offset
            }
            if wanted <= done:
                return
            time.sleep(0.1)
        raise AssertionError(f"nodes did not apply offset {intention_offset}: {self.statuses()}")

    def assert_replicas_identical(self, timeout_s: float = 30.0) -> dict:
        """Once every live node has applied the same offset, their state digests are identical."""
        from laminar.client import cluster_digests

        deadline = time.monotonic() + timeout_s
        while True:
            digests = [d for d in cluster_digests(self.addresses) if "error" not in d]
            offsets = {d["intention_offset"] for d in digests}
            if len(offsets) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(offsets) == 1, f"nodes did not converge: {digests}"
        assert len({d["sha256"] for d in digests}) == 1, f"replicas differ: {digests}"
        return digests[0]

    def logs(self) -> str:
        parts = []
        for name in sorted(os.listdir(self.log_dir)):
            with open(os.path.join(self.log_dir, name), errors="replace") as f:
                parts.append(f"==== {name}\n{f.read()[-20000:]}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory, request) -> Iterator[tuple[LocalCluster, list[str]]]:  # type: ignore[no-untyped-def]
    """One 3-node cluster shared by the tests of a module, up once a leader has committed a topic: (nodes,
    client addresses). A module asks for it through its own `cluster` fixture, which says what it is for."""
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    base = free_port_block(3)
    write_config(str(root / "c.toml"), 3, base, str(root / "data"))
    nodes = LocalCluster(str(root / "c.toml"), [1, 2, 3], log_dir=str(root))
    addresses = [f"127.0.0.1:{base + n}" for n in (1, 2, 3)]
    nodes.start_all()
    try:
        with laminar.Client(addresses) as client:  # waits for a leader
            client.create_topic("ready").committed(timeout=30)
        yield nodes, addresses
    finally:
        nodes.stop_all()


@pytest.fixture
def make_cluster(tmp_path, request) -> Iterator[Callable[..., TestCluster]]:  # type: ignore[no-untyped-def]
    """Start a cluster of real nodes: make_cluster(nodes=3). Stopped at the end of the test."""
    started: list[TestCluster] = []

    def start(
        nodes: int = 3, extra_config: str = "", extra_args: tuple[str, ...] = (), metrics: bool = False
    ) -> TestCluster:
        root = tmp_path / f"cluster-{len(started)}"
        root.mkdir()
        (root / "logs").mkdir()
        base = free_port_block(nodes)
        config = root / "cluster.toml"
        metrics_base = free_port_block((nodes + 1) // 2) if metrics else None
        write_config(str(config), nodes, base, str(root / "data"), extra=extra_config, metrics_base_port=metrics_base)
        cluster = LocalCluster(
            str(config), list(range(1, nodes + 1)), log_dir=str(root / "logs"), extra_args=extra_args
        )
        addresses = [f"127.0.0.1:{base + n}" for n in range(1, nodes + 1)]
        test_cluster = TestCluster(cluster, addresses, str(root / "data"), str(root / "logs"))
        if metrics_base is not None:
            test_cluster.metrics_addresses = [f"127.0.0.1:{metrics_base + n}" for n in range(1, nodes + 1)]
        started.append(test_cluster)
        cluster.start_all()
        test_cluster.leader_id()
        return test_cluster

    yield start
    for test_cluster in started:
        test_cluster.cluster.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for test_cluster in started:
            print(test_cluster.logs())  # shown by pytest under "Captured stdout teardown"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report
