"""A fresh local cluster for one benchmark cell, and a sampler of its nodes' memory.

The cluster lives in a temporary directory (config, data, logs) that disappears with it. Nodes are
stopped by pid in `__exit__`, however the cell ended, so a benchmark never leaves a node behind.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Sequence
from types import TracebackType

import psutil

import laminar
from laminar.local_cluster import LocalCluster, free_port_block, write_config

CLUSTER_READY_TIMEOUT_S = 30.0
STATUS_POLL_S = 0.1
LOG_TAIL_BYTES = 4000
RSS_SAMPLE_PERIOD_S = 0.25

# Extra `laminar node` arguments per durability mode: the dimension a run can vary (--durability).
# "default" passes nothing, so it measures whatever the node does out of the box.
DURABILITY_NODE_ARGS: dict[str, tuple[str, ...]] = {
    "default": (),
    "fsync": ("--durability", "fsync"),
    "none": ("--durability", "none"),
}


class BenchCluster:
    """`with BenchCluster(3) as cluster:` starts 3 nodes and waits until they agree on a leader."""

    def __init__(self, node_count: int, durability: str = "default") -> None:
        if durability not in DURABILITY_NODE_ARGS:
            raise ValueError(f"unknown durability {durability!r}; known: {sorted(DURABILITY_NODE_ARGS)}")
        self.node_count = node_count
        self.durability = durability
        self._tmp = tempfile.TemporaryDirectory(prefix=f"laminar-bench-{node_count}n-")
        root = self._tmp.name
        self.log_dir = os.path.join(root, "logs")
        os.mkdir(self.log_dir)
        base_port = free_port_block(node_count)
        config_path = os.path.join(root, "cluster.toml")
        write_config(config_path, node_count, base_port, os.path.join(root, "data"))
        self.addresses = [f"127.0.0.1:{base_port + n}" for n in range(1, node_count + 1)]
        self.node_durability = ""  # as the leader's status reports it
        self.local = LocalCluster(
            config_path,
            list(range(1, node_count + 1)),
            log_dir=self.log_dir,
            extra_args=DURABILITY_NODE_ARGS[durability],
        )

    def __enter__(self) -> BenchCluster:
        try:
            self.local.start_all()
            self.node_durability = str(self.wait_for_leader().get("durability", ""))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.local.stop_all()
        finally:
            self._tmp.cleanup()

    @property
    def pids(self) -> dict[int, int]:
        return {node_id: self.local.pid(node_id) for node_id in self.local.node_ids}

    def wait_for_leader(self, timeout_s: float = CLUSTER_READY_TIMEOUT_S) -> dict[str, object]:
        """The leader's status once every node answers and names the same leader."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            statuses = laminar.cluster_status(self.addresses, timeout_s=1.0)
            leaders = [s for s in statuses if s.get("role") == "leader"]
            named = {s.get("leader_id") for s in statuses}
            if len(leaders) == 1 and named == {leaders[0]["node_id"]}:
                return leaders[0]
            time.sleep(STATUS_POLL_S)
        raise TimeoutError(f"no agreed leader within {timeout_s} s\n{self.log_tail()}")

    def _check_alive(self) -> None:
        dead = [n for n in self.local.node_ids if not self.local.alive(n)]
        if dead:
            raise RuntimeError(f"node(s) {dead} exited\n{self.log_tail()}")

    def log_tail(self) -> str:
        """The end of every node's log, to explain a failed cell."""
        parts = []
        for name in sorted(os.listdir(self.log_dir)):
            with open(os.path.join(self.log_dir, name), "rb") as f:
                f.seek(max(0, os.path.getsize(f.name) - LOG_TAIL_BYTES))
                parts.append(f"==== {name}\n{f.read().decode(errors='replace')}")
        return "\n".join(parts)


class RssSampler:
    """Samples the resident memory of some processes in a thread; keeps each one's peak and last."""

    def __init__(self, pids: dict[int, int], period_s: float = RSS_SAMPLE_PERIOD_S) -> None:
        self._processes = {key: psutil.Process(pid) for key, pid in pids.items()}
        self._period_s = period_s
        self.peak_bytes: dict[int, int] = dict.fromkeys(pids, 0)
        self.last_bytes: dict[int, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            self.sample()

    def sample(self) -> dict[int, int]:
        for key, process in self._processes.items():
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue  # the process has exited; keep what we saw
            self.last_bytes[key] = rss
            self.peak_bytes[key] = max(self.peak_bytes[key], rss)
        return dict(self.last_bytes)


class CpuMeter:
    """CPU time (user + system) some processes spend between `start()` and `stop()`, in seconds, per process."""

    def __init__(self, pids: dict[int, int]) -> None:
        self._processes = {key: psutil.Process(pid) for key, pid in pids.items()}
        self._start_s: dict[int, float] = {}
        self.spent_s: dict[int, float] = {}

    def _now_s(self) -> dict[int, float]:
        times = {}
        for key, process in self._processes.items():
            try:
                cpu = process.cpu_times()
            except psutil.Error:
                continue  # the process has exited: its figure stays missing rather than wrong
            times[key] = cpu.user + cpu.system
        return times

    def start(self) -> None:
        self._start_s = self._now_s()

    def stop(self) -> None:
        end_s = self._now_s()
        self.spent_s = {key: end_s[key] - self._start_s[key] for key in end_s if key in self._start_s}


def mib(values: Sequence[int]) -> list[float]:
    return [round(v / 2**20, 1) for v in values]
