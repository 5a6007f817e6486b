"""Client process bodies for the etcd comparison (started by `bench.processes.run_clients`, "spawn").

Laminar's pipelined and sequential writes reuse `bench.client_proc.client_main` unchanged; this
module holds what that one has no counterpart for: every etcd workload, and reading a Laminar topic
back from the start with a listener. The shape is the same: connect and warm up untimed, wait at
the barrier shared with the other clients and the parent, then time the work on one monotonic
clock, and always put exactly one `ClientReport` on `results`.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import laminar
from bench.client_proc import BARRIER_TIMEOUT_S, ClientReport
from bench.etcd_client import EtcdClient
from bench.workloads import VALUE_BYTES

ETCD, LAMINAR = "etcd", "laminar"
# Requests one etcd client keeps in flight. etcd refuses new requests ("too many requests") once its
# applied index trails its committed index by 5,000 entries, so 5 clients x 1,000 stay below that.
ETCD_WINDOW_REQUESTS = 1_000
PIPELINED, SEQUENTIAL, READ_BACK = "pipelined", "sequential", "read_back"


@dataclass(frozen=True)
class CompareJob:
    system: str  # ETCD or LAMINAR (LAMINAR: READ_BACK only)
    mode: str  # PIPELINED, SEQUENTIAL or READ_BACK
    addresses: tuple[str, ...]  # etcd: the leader's client address first
    prefix: str  # etcd: key prefix of this run; Laminar: the topic
    client_index: int
    messages: int  # to write (per client), or to read back in all
    timeout_s: float
    txn_batch: int = 1  # etcd pipelined: puts per request (1: one Put each; more: one Txn of that many)


def etcd_key(prefix: str, client_index: int, index: int) -> bytes:
    """A distinct key per message, so reading the prefix back returns every message written."""
    return f"{prefix}/{client_index:03d}/{index:08d}".encode()


VALUE = b"v" * VALUE_BYTES  # the same 32-byte value Laminar's plain workload puts


def compare_client_main(job: CompareJob, barrier: Any, results: Any) -> None:
    report = ClientReport(job.client_index)
    try:
        if job.system == ETCD:
            _etcd(job, barrier, report)
        else:
            _laminar_read_back(job, barrier, report)
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which decides
        report.error = f"{job.system} {job.mode} client {job.client_index}: {error!r}\n{traceback.format_exc(limit=4)}"
    results.put(report)


def _etcd(job: CompareJob, barrier: Any, report: ClientReport) -> None:
    with EtcdClient(job.addresses[0], job.timeout_s) as client:
        client.put(f"{job.prefix}/warm-up/{job.client_index}".encode(), VALUE)  # connects, untimed
        barrier.wait(BARRIER_TIMEOUT_S)
        cpu_start_s = time.process_time()
        if job.mode == PIPELINED:
            _etcd_pipelined(client, job, report)
        elif job.mode == SEQUENTIAL:
            _etcd_sequential(client, job, report)
        else:
            _etcd_read_back(client, job, report)
        report.cpu_s = time.process_time() - cpu_start_s


def _etcd_sequential(client: EtcdClient, job: CompareJob, report: ClientReport) -> None:
    deadline = time.monotonic() + job.timeout_s
    start = time.perf_counter()
    for index in range(job.messages):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{index} of {job.messages} sequential puts in {job.timeout_s} s")
        sent = time.perf_counter()
        client.put(etcd_key(job.prefix, job.client_index, index), VALUE)
        report.latencies_s.append(time.perf_counter() - sent)
    report.wall_s = time.perf_counter() - start


def _etcd_pipelined(client: EtcdClient, job: CompareJob, report: ClientReport) -> None:
    """Send every put (or every Txn of `txn_batch` puts) without waiting; a thread collects the answers
    in order, stamping each message of a request with that request's answer time."""
    deadline = time.monotonic() + job.timeout_s
    in_flight: queue.SimpleQueue[tuple[float, int, Any]] = queue.SimpleQueue()
    requests = -(-job.messages // job.txn_batch)
    window = threading.BoundedSemaphore(ETCD_WINDOW_REQUESTS)
    acker = threading.Thread(target=_ack, args=(in_flight, requests, report, deadline, window), daemon=True)
    acker.start()
    start = time.perf_counter()
    for first in range(0, job.messages, job.txn_batch):
        if not window.acquire(timeout=max(0.0, deadline - time.monotonic())) or report.first_reason:
            break  # the acker failed or timed out, and says why
        keys = [
            etcd_key(job.prefix, job.client_index, i) for i in range(first, min(first + job.txn_batch, job.messages))
        ]
        sent = time.perf_counter()
        if job.txn_batch == 1:
            future = client.put_future(keys[0], VALUE)
        else:
            future = client.txn_future([(key, VALUE) for key in keys])
        in_flight.put((sent, len(keys), future))
    acker.join(max(0.0, deadline - time.monotonic()) + 1.0)
    if acker.is_alive() or len(report.latencies_s) < job.messages:
        raise RuntimeError(
            f"{len(report.latencies_s)} of {job.messages} puts answered within {job.timeout_s} s: {report.first_reason}"
        )
    report.wall_s = report.wall_s - start  # the acker left the time of the last answer there


def _ack(
    in_flight: queue.SimpleQueue[tuple[float, int, Any]],
    requests: int,
    report: ClientReport,
    deadline: float,
    window: threading.BoundedSemaphore,
) -> None:
    try:
        for _ in range(requests):
            sent, count, future = in_flight.get(timeout=max(0.0, deadline - time.monotonic()))
            future.result(timeout=max(0.0, deadline - time.monotonic()))
            acked = time.perf_counter()
            report.latencies_s.extend([acked - sent] * count)
            report.wall_s = acked
            window.release()
    except BaseException as error:  # noqa: BLE001 - the sender sees the missing answers and reports
        report.first_reason = repr(error)


def _etcd_read_back(client: EtcdClient, job: CompareJob, report: ClientReport) -> None:
    start = time.perf_counter()
    count = sum(1 for _ in client.read_prefix(f"{job.prefix}/".encode()))
    report.wall_s = time.perf_counter() - start
    if count < job.messages:
        raise RuntimeError(f"read back {count} keys under {job.prefix}/, expected at least {job.messages}")
    report.latencies_s.append(report.wall_s)


def _laminar_read_back(job: CompareJob, barrier: Any, report: ClientReport) -> None:
    """Every put event of the topic, from its first offset, through one listener on the leader's node."""
    barrier.wait(BARRIER_TIMEOUT_S)
    cpu_start_s = time.process_time()
    deadline = time.monotonic() + job.timeout_s
    start = time.perf_counter()
    puts = 0
    with laminar.Listener(list(job.addresses), job.prefix, from_offset=0) as listener:
        while puts < job.messages:
            event = listener.next_event(timeout=max(0.0, deadline - time.monotonic()))
            puts += event.kind == laminar.Kind.PUT
    report.wall_s = time.perf_counter() - start
    report.cpu_s = time.process_time() - cpu_start_s
    report.latencies_s.append(report.wall_s)
