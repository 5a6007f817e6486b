"""Network namespaces joined by a bridge: real, separately addressed hosts on one machine (needs root).

    reason = unavailable_reason()             # None, or why namespaces cannot be used here
    with Topology(hosts=4, root_access=True) as net:
        process = net.spawn(1, [sys.executable, "-m", "laminar", "node", ...])   # pid == the node's
        net.cut(1)                            # host 1 loses its link: a real, silent partition
        net.delay(2, 300)                     # every frame to and from host 2 waits 300 ms
        net.restore(1); net.restore(2)        # back to a plain link

Layout (P is our pid, T a per-process sequence letter, so that parallel runs and several
topologies in one process never share a name or a subnet):

    root namespace                                  namespace laminar-P-T-1 (lo up)
      bridge lmnPTbr  [10.A.B.254/24 if root_access]
        ├── lmnPTh1  ═════ veth pair ═════  lmnPTn1  10.A.B.1/24
        ├── lmnPTh2  ═════ veth pair ═════  lmnPTn2  10.A.B.2/24    (namespace laminar-P-T-2)
        └── ...

Why the bridge lives in the root namespace: the fault harness's workload clients run in the test
process, which is in the root namespace; giving the bridge an address on the hosts' subnet puts the
test process on the same Ethernet segment as every host, with no routing and no ip_forward. The
bridge has no uplink, so nothing beyond this machine can reach the hosts. The bridge-side end of
each veth is in the root namespace too, so a fault (link down, a delay) is applied there without
entering the host's namespace. Without `root_access` the bridge gets no address, and the hosts are
reachable only from each other (the integration test's clients then run in a namespace of their own).

Addresses: one /24 out of 10.192.0.0/10 or 172.16.0.0/12 (20,480 candidates), searched from a start derived from
our pid, skipping any /24 that overlaps an address or route already in the root namespace and any
that another live topology holds (an flock on /run/laminar-netns/<subnet>, released when we destroy
the topology or die). Only interfaces and namespaces this module created are ever changed or
deleted, always by their exact names. At most 26 topologies of one process may exist at once.

Cleanup: `Topology` is a context manager; `destroy()` is idempotent and runs even when creation
failed half way. It stops delay relays (by pid), deletes each namespace (which destroys the veth
pair inside it) and then the bridge. After a SIGKILL of the test process, `python tests/netns.py
cleanup PID` removes what that process left behind (names are derived from the pid).

Delays: `tc qdisc ... netem delay` on both ends of the host's veth where the kernel has sch_netem;
otherwise (minimal kernels build without it: the development VM's does) a small user-space relay:
the host's bridge-side veth leaves the bridge and a child process forwards raw frames between it
and a spare bridge port after the delay (AF_PACKET with virtio-net headers, so large TCP segments
pass unchanged). Either way the delay is a real property of the link: the processes are untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import ipaddress
import itertools
import json
import os
import select
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import laminar
from laminar.client import cluster_digests
from laminar.local_cluster import LocalCluster

IP_COMMAND_TIMEOUT_S = 10.0
EXEC_SETTLE_TIMEOUT_S = 5.0  # for `ip netns exec` to exec the real program
PROCESS_STOP_TIMEOUT_S = 5.0
SUBNET_POOLS = (ipaddress.IPv4Network("10.192.0.0/10"), ipaddress.IPv4Network("172.16.0.0/12"))  # private
SUBNET_PREFIX_LENGTH = 24
SUBNET_STRIDE = 7919  # a prime that does not divide the candidates' count: the search visits each once
SUBNET_LOCK_DIR = "/run/laminar-netns"  # a lock file per /24 in use, held (flock) by its user
BRIDGE_HOST_NUMBER = 254  # the root namespace's address on the bridge: 10.A.B.254
HOSTS_MAX = 200
NETNS_DIR = "/run/netns"
NAME_PREFIX = "lmn"  # interface names: lmn<pid><seq><role>, at most 15 characters (IFNAMSIZ - 1)
NAMESPACE_PREFIX = "laminar"  # namespace names: laminar-<pid>-<seq>-<host>
RELAY_DELAY_MS_MAX = 5_000
RELAY_FRAME_BYTES_MAX = 262_144  # a GSO super-frame is at most 64 KiB (256 KiB with BIG TCP)
RELAY_QUEUE_FRAMES_MAX = 100_000  # frames held back at once; past this the relay drops, like a full queue
RELAY_LIFETIME_S_MAX = 24 * 3600.0  # a relay whose parent vanished without killing it ends itself
RELAY_POLL_S = 0.5

_sequence = itertools.count()
_sequence_lock = threading.Lock()
_probe_result: list[str | None] = []


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here (not root, no `ip`, no kernel support)."""


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT_S, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _tc(*args: str, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["tc", *(["-n", namespace] if namespace else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT_S, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def unavailable_reason() -> str | None:
    """None when namespaces, veth pairs and bridges work here; otherwise why not (for a skip message).
    Probes once per process by creating and deleting a namespace and a veth pair of our own."""
    if not _probe_result:
        _probe_result.append(_probe())
    return _probe_result[0]


def _probe() -> str | None:
    if sys.platform != "linux":
        return f"network namespaces need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run the tests as root to include them"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    name = f"{NAMESPACE_PREFIX}-{os.getpid()}-probe"
    link, bridge = f"{NAME_PREFIX}{os.getpid()}pr", f"{NAME_PREFIX}{os.getpid()}pb"
    try:
        result = _ip("netns", "add", name, check=False)
        if result.returncode != 0:
            return f"`ip netns add` failed: {result.stderr.strip()}"
        result = _ip("netns", "exec", name, "true", check=False)
        if result.returncode != 0:
            return f"`ip netns exec` failed: {result.stderr.strip()}"
        result = _ip("link", "add", link, "type", "veth", "peer", "name", link + "x", check=False)
        if result.returncode != 0:
            return f"cannot create a veth pair: {result.stderr.strip()}"
        result = _ip("link", "set", link + "x", "netns", name, check=False)
        if result.returncode != 0:
            return f"cannot move a veth into a namespace: {result.stderr.strip()}"
        result = _ip("link", "add", bridge, "type", "bridge", check=False)
        if result.returncode != 0:
            return f"cannot create a bridge: {result.stderr.strip()}"
        return None
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot run `ip`: {e}"
    finally:
        _ip("link", "del", bridge, check=False)
        _ip("link", "del", link, check=False)
        _ip("netns", "del", name, check=False)


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace already has an address or a route in."""
    taken = []
    for command in (("-4", "-o", "addr", "show"), ("-4", "route", "show", "table", "all")):
        for token in _ip(*command).stdout.split():
            with contextlib.suppress(ValueError):
                if any(c.isdigit() for c in token) and token.count(".") == 3:
                    taken.append(ipaddress.IPv4Network(token, strict=False))
    return taken


def _reserve_subnet(seed: int) -> tuple[ipaddress.IPv4Network, int]:
    """A /24 that nothing in the root namespace uses and no other live topology holds, with the
    descriptor of its lock file: we hold an flock on it until destroy() (or our death) releases it,
    so parallel runs never pick the same subnet even before their bridges have addresses. The owner
    unlinks the file before releasing it, so a lock taken on an unlinked file does not count."""
    os.makedirs(SUBNET_LOCK_DIR, mode=0o700, exist_ok=True)
    candidates = [subnet for pool in SUBNET_POOLS for subnet in pool.subnets(new_prefix=SUBNET_PREFIX_LENGTH)]
    taken = _taken_networks()
    for attempt in range(len(candidates)):
        subnet = candidates[(seed + attempt * SUBNET_STRIDE) % len(candidates)]
        if any(subnet.overlaps(t) for t in taken):
            continue
        lock_path = os.path.join(SUBNET_LOCK_DIR, str(subnet.network_address))
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                return subnet, fd
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)
    pools = " or ".join(str(pool) for pool in SUBNET_POOLS)
    raise NetnsUnavailable(f"no /{SUBNET_PREFIX_LENGTH} in {pools} is free of this machine's addresses and routes")


@dataclass(frozen=True)
class Host:
    number: int  # 1-based
    namespace: str
    address: str  # its IPv4 address on the bridge's subnet
    bridge_link: str  # the veth end in the root namespace, a port of the bridge
    host_link: str  # the veth end inside the namespace, holding `address`


class Topology:
    """`hosts` namespaces on one bridge; see the module docstring. Use as a context manager."""

    def __init__(self, hosts: int, root_access: bool = False) -> None:
        assert 1 <= hosts <= HOSTS_MAX, hosts
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        with _sequence_lock:
            sequence = next(_sequence)
        letter = string.ascii_lowercase[sequence % 26]
        pid = os.getpid()
        self.root_access = root_access
        self.tag = f"{pid}{letter}"
        self.bridge = f"{NAME_PREFIX}{self.tag}br"
        self.subnet, self._subnet_lock = _reserve_subnet(pid * 26 + sequence)
        self.bridge_address = str(self.subnet.network_address + BRIDGE_HOST_NUMBER)
        self.hosts = [
            Host(
                number=n,
                namespace=f"{NAMESPACE_PREFIX}-{pid}-{letter}-{n}",
                address=str(self.subnet.network_address + n),
                bridge_link=f"{NAME_PREFIX}{self.tag}h{n}",
                host_link=f"{NAME_PREFIX}{self.tag}n{n}",
            )
            for n in range(1, hosts + 1)
        ]
        assert all(len(h.bridge_link) <= 15 and len(h.host_link) <= 15 for h in self.hosts), self.tag
        self._created_namespaces: list[str] = []
        self._bridge_created = False
        self._relays: dict[int, tuple[subprocess.Popen[bytes], str]] = {}  # host -> (relay, its spare link)
        self._netem: set[int] = set()
        self._netem_available: bool | None = None
        self._lock = threading.Lock()

    # ---- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def create(self) -> None:
        """Build the bridge and every host; on any failure, undo what was built and raise."""
        assert self._subnet_lock >= 0, "a destroyed topology is not created again"
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._bridge_created = True
            if self.root_access:
                _ip("addr", "add", f"{self.bridge_address}/{SUBNET_PREFIX_LENGTH}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for host in self.hosts:
                self._create_host(host)
        except BaseException:
            self.destroy()
            raise

    def _create_host(self, host: Host) -> None:
        _ip("netns", "add", host.namespace)
        self._created_namespaces.append(host.namespace)
        # Created directly with one end inside the namespace, so no unplaced end ever lingers in the
        # root namespace if we fail between two commands.
        _ip("link", "add", host.bridge_link, "type", "veth", "peer", "name", host.host_link, "netns", host.namespace)
        _ip("link", "set", host.bridge_link, "master", self.bridge)
        _ip("link", "set", host.bridge_link, "up")
        _ip("link", "set", "lo", "up", namespace=host.namespace)
        _ip("addr", "add", f"{host.address}/{SUBNET_PREFIX_LENGTH}", "dev", host.host_link, namespace=host.namespace)
        _ip("link", "set", host.host_link, "up", namespace=host.namespace)

    def destroy(self) -> None:
        """Remove everything this topology created, by exact name; safe to call more than once."""
        with self._lock:
            for number in list(self._relays):
                with contextlib.suppress(RuntimeError):  # tearing down: the link goes anyway
                    self._stop_relay(number)
            self._netem.clear()
            for namespace in reversed(self._created_namespaces):
                _ip("netns", "del", namespace, check=False)  # destroys the veth pair inside it
            self._created_namespaces.clear()
            if self._bridge_created:
                # Normally gone with the namespaces (a veth pair dies with either end); by name, to be sure.
                for host in self.hosts:
                    if os.path.exists(f"/sys/class/net/{host.bridge_link}"):
                        _ip("link", "del", host.bridge_link, check=False)
                _ip("link", "del", self.bridge, check=False)
                self._bridge_created = False
            if self._subnet_lock >= 0:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(SUBNET_LOCK_DIR, str(self.subnet.network_address)))
                os.close(self._subnet_lock)  # releases the subnet's flock
                self._subnet_lock = -1

    # ---- hosts and processes ------------------------------------------------------------------

    def host(self, number: int) -> Host:
        return self.hosts[number - 1]

    def spawn(self, number: int, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        """Start `argv` inside host `number`'s namespace. `ip netns exec` execs the program in its own
        process, so the returned Popen's pid is the program's pid: that is checked here (the program's
        command line and network namespace), so callers may signal that pid and nothing else."""
        host = self.host(number)
        process = subprocess.Popen(["ip", "netns", "exec", host.namespace, *argv], **popen_kwargs)
        try:
            self._check_exec(process, host, list(argv))
        except BaseException:
            if process.poll() is None:
                process.kill()
            process.wait()
            raise
        return process

    def _check_exec(self, process: subprocess.Popen[bytes], host: Host, argv: list[str]) -> None:
        expected_namespace = os.stat(os.path.join(NETNS_DIR, host.namespace)).st_ino
        deadline = time.monotonic() + EXEC_SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{process.pid}/cmdline", "rb") as f:
                    command_line = [part.decode() for part in f.read().split(b"\0")[:-1]]
                namespace_link = os.readlink(f"/proc/{process.pid}/ns/net")
            except OSError:
                command_line, namespace_link = [], ""
            if command_line == argv:
                assert namespace_link == f"net:[{expected_namespace}]", (namespace_link, expected_namespace)
                return
            if process.poll() is not None:
                raise RuntimeError(f"{argv[:4]} in {host.namespace} exited at once with {process.returncode}")
            time.sleep(0.01)
        raise RuntimeError(
            f"`ip netns exec {host.namespace}` did not become {argv[:4]} within {EXEC_SETTLE_TIMEOUT_S} s"
        )

    # ---- faults -------------------------------------------------------------------------------

    def cut(self, number: int) -> None:
        """Host `number` loses its link: nothing reaches it or leaves it (no RST, no ICMP), as when a
        cable is pulled. Connections stay open and resume after `restore` if they have not timed out."""
        _ip("link", "set", self.host(number).bridge_link, "down")

    def delay(self, number: int, delay_ms: int) -> None:
        """Every frame to and from host `number` waits `delay_ms` (each way: a round trip through this
        link gains 2 x `delay_ms`) until `restore`."""
        assert 0 < delay_ms <= RELAY_DELAY_MS_MAX, delay_ms
        with self._lock:
            assert number not in self._relays and number not in self._netem, f"host {number} is delayed already"
            host = self.host(number)
            if self.netem_available():
                self._netem.add(number)  # first, so that restore() removes a half-applied delay
                for link, namespace in self._link_ends(host):  # a qdisc delays what leaves its link
                    _tc("qdisc", "add", "dev", link, "root", "netem", "delay", f"{delay_ms}ms", namespace=namespace)
            else:
                self._start_relay(host, delay_ms)

    def restore(self, number: int) -> None:
        """Undo `cut` and `delay` on host `number` (a no-op for a plain link)."""
        with self._lock:
            host = self.host(number)
            if number in self._relays:
                self._stop_relay(number)
            if number in self._netem:
                for link, namespace in self._link_ends(host):
                    _tc("qdisc", "del", "dev", link, "root", namespace=namespace, check=False)
                self._netem.discard(number)
            _ip("link", "set", host.bridge_link, "up")

    @staticmethod
    def _link_ends(host: Host) -> list[tuple[str, str | None]]:
        """Both ends of a host's veth pair, each with the namespace it is in (None: the root one)."""
        return [(host.bridge_link, None), (host.host_link, host.namespace)]

    def restore_all(self) -> None:
        for host in self.hosts:
            self.restore(host.number)

    @property
    def delay_method(self) -> str:
        return (
            "tc netem" if self.netem_available() else "user-space frame relay (no tc, or no sch_netem in this kernel)"
        )

    def netem_available(self) -> bool:
        """Whether this kernel has the netem qdisc (tried once on our own bridge)."""
        assert self._bridge_created, "netem is probed on the topology's bridge: create() first"
        if self._netem_available is None and shutil.which("tc") is None:
            self._netem_available = False
        if self._netem_available is None:
            added = _tc("qdisc", "add", "dev", self.bridge, "root", "netem", "delay", "1ms", check=False)
            self._netem_available = added.returncode == 0
            if self._netem_available:
                _tc("qdisc", "del", "dev", self.bridge, "root", check=False)
        return self._netem_available

    def _start_relay(self, host: Host, delay_ms: int) -> None:
        spare = f"{NAME_PREFIX}{self.tag}d{host.number}"
        spare_port = f"{NAME_PREFIX}{self.tag}e{host.number}"
        _ip("link", "add", spare, "type", "veth", "peer", "name", spare_port)
        try:
            _ip("link", "set", spare_port, "master", self.bridge)
            for link in (spare, spare_port):
                _ip("link", "set", link, "up")
            _ip("link", "set", host.bridge_link, "nomaster")
            command = [sys.executable, os.path.abspath(__file__), "relay", host.bridge_link, spare, str(delay_ms)]
            relay = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        except BaseException:
            _ip("link", "del", spare, check=False)
            _ip("link", "set", host.bridge_link, "master", self.bridge, check=False)
            raise
        self._relays[host.number] = (relay, spare)

    def _stop_relay(self, number: int) -> None:
        """Kill the relay (by its pid), put the host's link back on the bridge; raises if the relay had
        died on its own, since the "delay" was then a partition."""
        relay, spare = self._relays.pop(number)
        exited = relay.poll()
        if exited is None:
            relay.kill()
        relay.wait(PROCESS_STOP_TIMEOUT_S)
        _ip("link", "set", self.host(number).bridge_link, "master", self.bridge, check=False)
        _ip("link", "del", spare, check=False)  # deletes its peer, the spare bridge port, too
        if exited is not None:
            raise RuntimeError(f"the delay relay of host {number} exited early ({exited}): it cut the link")


# ---- Laminar nodes and clients in namespaces -----------------------------------------------------

NODE_CLIENT_PORT = 7101  # every namespace has its own ports, so every node can use the usual ones
NODE_RAFT_PORT = 7201
AGENT_REPLY_TIMEOUT_S_MAX = 120.0
AGENT_COMMANDS_MAX = 10_000
AGENT_VALUES_PER_PUT_MAX = 10_000
AGENT_EVENTS_KEPT_MAX = 100_000
AGENT_REPLY_MARGIN_S = 10.0  # beyond a command's own timeout, for the child to write its reply
AGENT_HEARD_POLL_S = 0.05


def node_addresses(topology: Topology, node_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """Node N runs on host N: {N: (client address, Raft address)}."""
    return {
        n: (f"{topology.host(n).address}:{NODE_CLIENT_PORT}", f"{topology.host(n).address}:{NODE_RAFT_PORT}")
        for n in node_ids
    }


NETNS_RAFT_PASSWORD = "netns test cluster"  # the nodes run off loopback: secure by default asks for one
CLIENT_RISK_ACCEPTED = "accept_risk_client_without_tls = true"


def write_cluster_config(path: str, data_dir: str, nodes: dict[int, tuple[str, str]], extra: str = "") -> None:
    """A cluster TOML with a host of its own per node (laminar.local_cluster.write_config gives every
    node the same host and different ports). The addresses are off loopback, so the Raft port has a
    password and the client port (plaintext inside these private namespaces) says it accepts that."""
    lines = [f'data_dir = "{data_dir}"', f'raft_password = "{NETNS_RAFT_PASSWORD}"', CLIENT_RISK_ACCEPTED, extra, ""]
    for node_id, (client, raft) in sorted(nodes.items()):
        lines += ["[[nodes]]", f"id = {node_id}", f'client = "{client}"', f'raft = "{raft}"', ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


@dataclass
class NamespacedCluster(LocalCluster):
    """A LocalCluster whose node N runs in host N's namespace of `topology`. Every other method
    (kill, signal, stop_all ...) is LocalCluster's and acts on the pid `Topology.spawn` checked."""

    topology: Topology | None = None

    def start(self, node_id: int) -> None:
        assert self.topology is not None, "a NamespacedCluster needs its topology"
        assert not self.alive(node_id), f"node {node_id} runs"
        command = [sys.executable, "-m", "laminar", "node", "--config", self.config_path, "--id", str(node_id)]
        output: IO[bytes] | None = None
        if self.log_dir is not None:
            output = open(os.path.join(self.log_dir, f"node-{node_id}.log"), "ab")  # noqa: SIM115 - kept open
            self._logs[node_id] = output
        self.processes[node_id] = self.topology.spawn(
            node_id, [*command, *self.extra_args], stdout=output, stderr=subprocess.STDOUT if output else None
        )


class ClientAgent:
    """Laminar clients in host `number`'s namespace, driven from the test process: each `call` sends
    one JSON command to a child process (`netns.py client-agent`) and returns its JSON reply. The
    child keeps one Client (which follows the leader across calls) and any Listeners it was asked for.

    Commands (see _agent_command): status, digests, create_topic, put, listen, heard, read."""

    def __init__(self, topology: Topology, number: int, addresses: Sequence[str], log_path: str) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        command = [sys.executable, os.path.abspath(__file__), "client-agent", ",".join(addresses)]
        self.process = topology.spawn(number, command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._buffer = b""

    def call(self, op: str, timeout_s: float, **args: Any) -> Any:
        """Run `op` in the namespace; its reply, or RuntimeError with the child's error."""
        assert 0 < timeout_s <= AGENT_REPLY_TIMEOUT_S_MAX, timeout_s
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, "timeout_s": timeout_s, **args}).encode() + b"\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout_s + AGENT_REPLY_MARGIN_S
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self.process.stdout], [], [], max(0.0, remaining))
            if not readable:
                raise TimeoutError(f"client agent: no reply to {op} within {timeout_s + AGENT_REPLY_MARGIN_S} s")
            chunk = os.read(self.process.stdout.fileno(), 1 << 20)
            if not chunk:
                raise RuntimeError(f"client agent exited ({self.process.poll()}) during {op}; see {self._log.name}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"client agent: {op}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # by the pid Topology.spawn checked
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._log.close()


def _agent(addresses: list[str]) -> None:
    """The child side of ClientAgent: one command per stdin line, one JSON reply per stdout line."""
    state: dict[str, Any] = {"client": None, "listeners": [], "events": [], "lock": threading.Lock()}
    try:
        for _, line in zip(range(AGENT_COMMANDS_MAX), sys.stdin, strict=False):
            command = json.loads(line)
            try:
                reply = {"result": _agent_command(addresses, state, command)}
            except Exception as e:  # noqa: BLE001 - reported to the test, which decides
                reply = {"error": f"{type(e).__name__}: {e}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        for listener in state["listeners"]:
            listener.close()
        if state["client"] is not None:
            state["client"].close()


def _event_dict(event: laminar.Event) -> dict[str, Any]:
    return {
        "kind": str(event.kind.value),
        "key": event.key.decode(errors="replace"),
        "value": event.value.decode(errors="replace"),
        "intention_offset": event.intention_offset,
        "consequence_offset": event.consequence_offset,
    }


def _agent_command(addresses: list[str], state: dict[str, Any], command: dict[str, Any]) -> Any:
    op, timeout_s = command["op"], float(command["timeout_s"])
    if op == "status":
        return laminar.cluster_status(command.get("addresses", addresses), timeout_s=timeout_s)
    if op == "digests":
        return cluster_digests(command.get("addresses", addresses), timeout_s=timeout_s)
    if state["client"] is None and op in ("create_topic", "put"):
        state["client"] = laminar.Client(addresses)
    if op == "create_topic":
        commit = state["client"].create_topic(command["topic"]).committed(timeout=timeout_s)
        return {"ok": commit.ok, "offset": commit.intention_offset, "reason": commit.reason}
    if op == "put":  # pipelined: every put is sent before the first commit is awaited
        values = command["values"][:AGENT_VALUES_PER_PUT_MAX]
        pending = [state["client"].put(command["topic"], command["key"], value) for value in values]
        deadline = time.monotonic() + timeout_s
        results = []
        for value, p in zip(values, pending, strict=True):
            try:
                commit = p.committed(timeout=max(0.0, deadline - time.monotonic()))
                results.append({"value": value, "outcome": "ok" if commit.ok else "fail", "reason": commit.reason})
            except laminar.LaminarError as e:
                results.append({"value": value, "outcome": "info", "reason": f"{type(e).__name__}: {e}"})
        return results
    if op == "listen":  # follow a topic on the given node(s) in the background
        listener = laminar.Listener(command["addresses"], command["topic"])
        state["listeners"].append(listener)
        threading.Thread(target=_agent_follow, args=(listener, state), daemon=True).start()
        return len(state["listeners"])
    if op == "heard":  # what the listeners have delivered, once `count` events or the timeout
        deadline = time.monotonic() + timeout_s
        while len(state["events"]) < command["count"] and time.monotonic() < deadline:
            time.sleep(AGENT_HEARD_POLL_S)
        with state["lock"]:
            return list(state["events"])
    if op == "read":  # a node's whole stream of a topic, until it has been quiet for `idle_s`
        events = []
        with laminar.Listener(command["addresses"], command["topic"]) as listener:
            for _ in range(AGENT_EVENTS_KEPT_MAX):
                try:
                    events.append(_event_dict(listener.next_event(timeout=command["idle_s"])))
                except laminar.Timeout:
                    break
        return events
    raise ValueError(f"unknown command {op!r}")


def _agent_follow(listener: laminar.Listener, state: dict[str, Any]) -> None:
    for _ in range(AGENT_EVENTS_KEPT_MAX):
        try:
            event = listener.next_event(timeout=None)
        except laminar.LaminarError as e:
            with state["lock"]:
                state["events"].append({"error": f"{type(e).__name__}: {e}"})
            return
        with state["lock"]:
            state["events"].append(_event_dict(event))


# ---- the delay relay (runs as `python netns.py relay LINK_A LINK_B DELAY_MS`) ----------------------

_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_VNET_HDR = 15
_PACKET_OUTGOING = 4


def _relay(link_a: str, link_b: str, delay_ms: int) -> None:
    """Forward every frame arriving on one link out of the other `delay_ms` later, both ways, until
    killed (or the parent is gone). Frames keep their virtio-net header, so GSO super-frames and
    frames with a checksum still to compute cross unchanged."""
    delay_s = delay_ms / 1000.0
    sockets = {}
    for link in (link_a, link_b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        s.setsockopt(_SOL_PACKET, _PACKET_VNET_HDR, 1)
        s.bind((link, 0))
        s.setblocking(False)
        sockets[link] = s
    other = {sockets[link_a]: sockets[link_b], sockets[link_b]: sockets[link_a]}
    parent = os.getppid()
    held: list[tuple[float, int, socket.socket, bytes]] = []
    order = itertools.count()
    end = time.monotonic() + RELAY_LIFETIME_S_MAX
    while time.monotonic() < end and os.getppid() == parent:
        wait_s = RELAY_POLL_S if not held else max(0.0, min(RELAY_POLL_S, held[0][0] - time.monotonic()))
        readable, _, _ = select.select(list(other), [], [], wait_s)
        now = time.monotonic()
        for s in readable:
            for _ in range(RELAY_QUEUE_FRAMES_MAX):  # drain what is there, bounded
                try:
                    frame, address = s.recvfrom(RELAY_FRAME_BYTES_MAX)
                except BlockingIOError:
                    break
                if address[2] == _PACKET_OUTGOING:
                    continue  # a frame we sent ourselves, seen on the way out
                if len(held) < RELAY_QUEUE_FRAMES_MAX:
                    heapq.heappush(held, (now + delay_s, next(order), other[s], frame))
        while held and held[0][0] <= time.monotonic():
            _, _, out, frame = heapq.heappop(held)
            with contextlib.suppress(OSError):  # a link going away while we hold its frame
                out.send(frame)


# ---- leftovers of a killed run -----------------------------------------------------------------


def cleanup(pid: int) -> list[str]:
    """Delete the namespaces and links a test process `pid` created and could not remove (it was
    killed). Only names of our own pattern for that pid: laminar-PID-*, lmnPID*."""
    removed = []
    if os.path.isdir(NETNS_DIR):
        for name in sorted(os.listdir(NETNS_DIR)):
            if name.startswith(f"{NAMESPACE_PREFIX}-{pid}-"):
                _ip("netns", "del", name, check=False)
                removed.append(name)
    for name in sorted(os.listdir("/sys/class/net")):
        if name.startswith(f"{NAME_PREFIX}{pid}") and name[len(NAME_PREFIX) + len(str(pid))].isalpha():
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _main(argv: list[str]) -> int:
    if argv[:1] == ["relay"] and len(argv) == 4:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        _relay(argv[1], argv[2], int(argv[3]))
        return 0
    if argv[:1] == ["client-agent"] and len(argv) == 2:
        _agent(argv[1].split(","))
        return 0
    if argv[:1] == ["cleanup"] and len(argv) == 2:
        pid = int(argv[1])
        if pid != os.getpid() and os.path.exists(f"/proc/{pid}"):
            print(f"process {pid} still runs: it removes its own namespaces", file=sys.stderr)
            return 1
        print("\n".join(cleanup(pid)) or "nothing to remove")
        return 0
    print("usage: netns.py relay LINK_A LINK_B DELAY_MS | client-agent ADDRESSES | cleanup PID", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
