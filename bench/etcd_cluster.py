"""Three etcd members on loopback, as a reference beside a Laminar cluster (`python -m bench.etcd_compare`).

etcd comes from the Debian package `etcd-server`, installed with apt-get when `etcd` is not on PATH
(the machine's package manager only: no binary is downloaded any other way). The members run with
etcd's defaults, so each one fsyncs its write-ahead log before it acknowledges, like a Laminar node
at `--durability fsync`. Their data, and their logs, live in a temporary directory that disappears
with the cluster; every member is stopped by its pid in `close()`, however the run ended.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from types import TracebackType

import grpc

from bench.etcdv3 import rpc_pb2, rpc_pb2_grpc
from laminar.local_cluster import free_port_block

ETCD_PACKAGE = "etcd-server"  # Debian's package of the etcd server binary
INSTALL_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 30.0
STATUS_TIMEOUT_S = 1.0
STATUS_POLL_S = 0.1
STOP_TIMEOUT_S = 5.0
LOG_TAIL_BYTES = 3000
CLUSTER_TOKEN = "laminar-bench"


def etcd_binary() -> str:
    """The path of `etcd`, installing Debian's package first when it is missing (needs root)."""
    found = shutil.which("etcd")
    if found:
        return found
    print(f"etcd not found: installing Debian's {ETCD_PACKAGE} package with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", ETCD_PACKAGE]):
        subprocess.run(command, check=True, env=env, timeout=INSTALL_TIMEOUT_S)
    found = shutil.which("etcd")
    if not found:
        raise RuntimeError(f"{ETCD_PACKAGE} installed but no `etcd` on PATH")
    return found


def etcd_version(binary: str) -> str:
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    first = result.stdout.splitlines()[0] if result.stdout else "unknown"
    return first.replace("etcd Version:", "").strip()


class EtcdCluster:
    """`with EtcdCluster(3) as etcd:` starts the members and waits until they agree on a leader."""

    def __init__(self, member_count: int = 3) -> None:
        self.binary = etcd_binary()
        self.version = etcd_version(self.binary)
        self.member_count = member_count
        self._tmp = tempfile.TemporaryDirectory(prefix=f"etcd-bench-{member_count}m-")
        base = free_port_block(member_count)  # base+1..base+n: clients, base+n+1..base+2n: peers
        self.client_urls = [f"http://127.0.0.1:{base + n}" for n in range(1, member_count + 1)]
        self.peer_urls = [f"http://127.0.0.1:{base + member_count + n}" for n in range(1, member_count + 1)]
        self.addresses = [url.removeprefix("http://") for url in self.client_urls]
        self._processes: list[subprocess.Popen[bytes]] = []
        self.leader_address = ""

    def __enter__(self) -> EtcdCluster:
        try:
            for index in range(self.member_count):
                self._processes.append(self._start_member(index))
            self.leader_address = self.wait_for_leader()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _name(self, index: int) -> str:
        return f"m{index + 1}"

    def _start_member(self, index: int) -> subprocess.Popen[bytes]:
        root = self._tmp.name
        initial = ",".join(f"{self._name(i)}={url}" for i, url in enumerate(self.peer_urls))
        args = [
            self.binary,
            f"--name={self._name(index)}",
            f"--data-dir={os.path.join(root, self._name(index))}",
            f"--listen-client-urls={self.client_urls[index]}",
            f"--advertise-client-urls={self.client_urls[index]}",
            f"--listen-peer-urls={self.peer_urls[index]}",
            f"--initial-advertise-peer-urls={self.peer_urls[index]}",
            f"--initial-cluster={initial}",
            f"--initial-cluster-token={CLUSTER_TOKEN}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=warn",
        ]
        log = open(os.path.join(root, f"{self._name(index)}.log"), "wb")  # noqa: SIM115 - the child owns it
        try:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()

    @property
    def pids(self) -> dict[int, int]:
        return {index + 1: process.pid for index, process in enumerate(self._processes)}

    def wait_for_leader(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """The client address of the leader, once every member answers and names the same one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [self._name(i) for i, p in enumerate(self._processes) if p.poll() is not None]
            if dead:
                raise RuntimeError(f"etcd member(s) {dead} exited\n{self.log_tail()}")
            statuses = [_status(address) for address in self.addresses]
            leaders = {s.leader for s in statuses if s is not None}
            if None not in statuses and len(leaders) == 1 and 0 not in leaders:
                (leader,) = leaders
                for address, status in zip(self.addresses, statuses, strict=True):
                    if status is not None and status.header.member_id == leader:
                        return address
            time.sleep(STATUS_POLL_S)
        raise TimeoutError(f"etcd members agreed on no leader within {timeout_s} s\n{self.log_tail()}")

    def close(self) -> None:
        try:
            for process in self._processes:
                if process.poll() is None:
                    process.terminate()  # SIGTERM to this pid: etcd stops cleanly
            for process in self._processes:
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            self._tmp.cleanup()

    def log_tail(self) -> str:
        parts = []
        for index in range(len(self._processes)):
            path = os.path.join(self._tmp.name, f"{self._name(index)}.log")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    f.seek(max(0, os.path.getsize(path) - LOG_TAIL_BYTES))
                    parts.append(f"==== {self._name(index)}\n{f.read().decode(errors='replace')}")
        return "\n".join(parts)


def _status(address: str) -> rpc_pb2.StatusResponse | None:
    try:
        with grpc.insecure_channel(address) as channel:
            stub = rpc_pb2_grpc.MaintenanceStub(channel)
            return stub.Status(rpc_pb2.StatusRequest(), timeout=STATUS_TIMEOUT_S)
    except grpc.RpcError:
        return None
