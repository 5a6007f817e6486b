"""Run a cluster's nodes as child processes on this machine: `make cluster`, tests and benchmarks.

Each node is a real `python -m laminar node` process. We only ever signal processes we started,
by their process id, and `stop_all` is safe to call from a test's cleanup however the test ended.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

import laminar

_CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(laminar.__file__)))  # the tree `laminar` came from

NODE_STOP_TIMEOUT_S = 10.0
PORT_SEARCH_ATTEMPTS_MAX = 200


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """A base port B such that B+1 .. B+2*count are free now on `host` (client then Raft ports)."""
    import random

    for _ in range(PORT_SEARCH_ATTEMPTS_MAX):
        base = random.randrange(20000, 60000, 100)
        sockets = []
        try:
            for port in range(base + 1, base + 2 * count + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports found")


def write_config(
    path: str,
    node_count: int,
    base_port: int,
    data_dir: str,
    host: str = "127.0.0.1",
    extra: str = "",
    metrics_base_port: int | None = None,
) -> None:
    """A cluster TOML: node N has client port base+N and Raft port base+count+N; `extra` is
    appended to the top-level settings (e.g. 'raft_log_entries_max = 50'). With
    `metrics_base_port`, node N serves Prometheus metrics on metrics_base_port+N."""
    lines = [f'data_dir = "{os.path.abspath(data_dir)}"', extra, ""]
    for n in range(1, node_count + 1):
        client, raft = base_port + n, base_port + node_count + n
        lines += ["[[nodes]]", f"id = {n}", f'client = "{host}:{client}"', f'raft = "{host}:{raft}"']
        if metrics_base_port is not None:
            lines.append(f'metrics = "{host}:{metrics_base_port + n}"')
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


@dataclass
class LocalCluster:
    config_path: str
    node_ids: Sequence[int]
    log_dir: str | None = None  # None: nodes inherit our stdout/stderr (or pipe it, with capture)
    capture: bool = False  # without log_dir: pipe each node's output to processes[id].stdout
    extra_args: Sequence[str] = ()
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: dict[int, IO[bytes]] = field(default_factory=dict)

    def start(self, node_id: int) -> None:
        assert node_id not in self.processes or self.processes[node_id].poll() is not None, f"node {node_id} runs"
        # The nodes run the code this process imported, wherever it runs from: `python -m` puts the working
        # directory first on sys.path, so a harness started in one checkout with another on PYTHONPATH (an A/B of
        # two revisions) ran its nodes on the checkout it stood in. -P drops that entry; PYTHONPATH names the tree.
        command = [sys.executable, "-P", "-m", "laminar", "node", "--config", self.config_path, "--id", str(node_id)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_CODE_ROOT, os.environ.get("PYTHONPATH")]))}
        output: IO[bytes] | int | None = subprocess.PIPE if self.capture else None
        if self.log_dir is not None:
            output = open(os.path.join(self.log_dir, f"node-{node_id}.log"), "ab")  # noqa: SIM115 - kept open
            self._logs[node_id] = output
        self.processes[node_id] = subprocess.Popen(
            [*command, *self.extra_args],
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            env=env,
        )

    def start_all(self) -> None:
        for node_id in self.node_ids:
            self.start(node_id)

    def pid(self, node_id: int) -> int:
        return self.processes[node_id].pid

    def alive(self, node_id: int) -> bool:
        process = self.processes.get(node_id)
        return process is not None and process.poll() is None

    def signal(self, node_id: int, sig: int) -> None:
        process = self.processes[node_id]
        if process.poll() is None:
            os.kill(process.pid, sig)

    def kill(self, node_id: int) -> None:
        """kill -9, and wait for the process to be gone."""
        self.signal(node_id, signal.SIGKILL)
        self.processes[node_id].wait()

    def stop(self, node_id: int, timeout_s: float = NODE_STOP_TIMEOUT_S) -> None:
        process = self.processes[node_id]
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for process in list(self.processes.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)  # a paused node cannot handle SIGTERM
                process.terminate()
        deadline = time.monotonic() + NODE_STOP_TIMEOUT_S
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def wait(self) -> None:
        """Block until every node exits (the foreground `laminar cluster run`)."""
        for process in self.processes.values():
            process.wait()
