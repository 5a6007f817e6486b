"""The body of one benchmark client process (started with multiprocessing's "spawn").

Each client opens its session and prepares untimed, then waits at a barrier shared with the other
clients and the parent, so every client starts sending at the same moment. Timestamps are taken in
this process with one monotonic clock: `sent` just before `put`, `acked` when the ack thread sees
the commit. Commits of one client arrive in nonce order, so the ack thread waits for them in order.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import laminar
from bench.workloads import Workload, make_workload

BARRIER_TIMEOUT_S = 120.0  # spawning, importing and preparing every client


@dataclass(frozen=True)
class ClientJob:
    addresses: tuple[str, ...]
    topic: str
    topic_kind: str
    client_index: int
    client_count: int
    messages: int
    timeout_s: float  # for the timed part; the client gives up and reports an error past it
    sequential: bool = False  # send, wait for the commit, repeat
    balance_pairs: int = 1  # for the balance workload: account pairs per client


@dataclass
class ClientReport:
    client_index: int
    wall_s: float = 0.0  # barrier release to the last commit
    latencies_s: list[float] = field(default_factory=list)  # per message, send to committed ack
    cpu_s: float = 0.0  # this process's CPU time (user + system, every thread) over the timed part
    not_valid: int = 0  # commits whose effect was not VALID
    first_reason: str = ""  # the reason of the first one, to explain it
    error: str = ""  # non-empty when the client failed


def client_main(job: ClientJob, barrier: Any, results: Any) -> None:
    """Process entry point: always puts exactly one ClientReport on `results`."""
    report = ClientReport(job.client_index)
    try:
        with laminar.Client(list(job.addresses)) as client:
            workload = make_workload(job.topic_kind, job.topic, job.client_index, job.client_count, job.balance_pairs)
            workload.prepare(client)
            barrier.wait(BARRIER_TIMEOUT_S)
            run = _sequential if job.sequential else _pipelined
            cpu_start_s = time.process_time()
            run(client, workload, job, report)
            report.cpu_s = time.process_time() - cpu_start_s
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which decides
        report.error = f"client {job.client_index}: {error!r}\n{traceback.format_exc(limit=4)}"
    results.put(report)


def _record(report: ClientReport, commit: laminar.Commit) -> None:
    if not commit.ok:
        report.not_valid += 1
        report.first_reason = report.first_reason or f"{commit.effect}: {commit.reason}"


def _sequential(client: laminar.Client, workload: Workload, job: ClientJob, report: ClientReport) -> None:
    deadline = time.monotonic() + job.timeout_s
    start = time.perf_counter()
    for index in range(job.messages):
        key, value = workload.message(index)
        sent = time.perf_counter()
        commit = client.put(job.topic, key, value).committed(timeout=max(0.0, deadline - time.monotonic()))
        report.latencies_s.append(time.perf_counter() - sent)
        workload.committed(index, commit)
        _record(report, commit)
    report.wall_s = time.perf_counter() - start


def _pipelined(client: laminar.Client, workload: Workload, job: ClientJob, report: ClientReport) -> None:
    """Send every message without waiting, while a second thread collects the acks in order."""
    deadline = time.monotonic() + job.timeout_s
    in_flight: queue.SimpleQueue[tuple[float, laminar.Pending]] = queue.SimpleQueue()
    acker = _Acker(job.messages, in_flight, workload, report, deadline)
    acker.start()
    start = time.perf_counter()
    for index in range(job.messages):
        if acker.failure is not None or time.monotonic() > deadline:
            break  # the acker reports why
        key, value = workload.message(index)
        sent = time.perf_counter()
        in_flight.put((sent, client.put(job.topic, key, value)))
    acker.join(max(0.0, deadline - time.monotonic()) + 1.0)
    if acker.failure is not None:
        raise RuntimeError(f"acks failed after {time.perf_counter() - start:.1f} s: {acker.failure!r}")
    if acker.is_alive():
        raise RuntimeError(f"acks incomplete after {job.timeout_s} s")
    report.wall_s = acker.last_ack - start


class _Acker(threading.Thread):
    """Waits for each commit in nonce order and stamps it the moment it is seen."""

    def __init__(
        self,
        count: int,
        in_flight: queue.SimpleQueue[tuple[float, laminar.Pending]],
        workload: Workload,
        report: ClientReport,
        deadline: float,
    ) -> None:
        super().__init__(name="bench-acker", daemon=True)
        self.count = count
        self.in_flight = in_flight
        self.workload = workload
        self.report = report
        self.deadline = deadline
        self.failure: BaseException | None = None
        self.last_ack = 0.0

    def run(self) -> None:
        try:
            for index in range(self.count):
                remaining = max(0.0, self.deadline - time.monotonic())
                sent, pending = self.in_flight.get(timeout=remaining)
                commit = pending.committed(timeout=max(0.0, self.deadline - time.monotonic()))
                self.last_ack = time.perf_counter()
                self.report.latencies_s.append(self.last_ack - sent)
                self.workload.committed(index, commit)
                _record(self.report, commit)
        except BaseException as error:  # noqa: BLE001 - handed to the sending thread
            self.failure = error


SOAK_WINDOW = 4_000  # messages in flight per soak client: bounded, so the client's memory is too
SOAK_COUNT_EVERY = 500  # commits between updates of the shared counter


@dataclass(frozen=True)
class SoakJob:
    addresses: tuple[str, ...]
    topic: str
    topic_kind: str
    client_index: int
    messages: int
    seconds: float  # the client stops by itself after this long


def soak_client_main(job: SoakJob, stop: Any, committed: Any, results: Any) -> None:
    """Send until done, stopped, or out of time, adding commits to the shared `committed` counter."""
    report = ClientReport(job.client_index)
    try:
        with laminar.Client(list(job.addresses)) as client:
            workload = make_workload(job.topic_kind, job.topic, job.client_index, 1, 1)
            workload.prepare(client)
            _soak(client, workload, job, stop, committed, report)
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        report.error = f"soak client {job.client_index}: {error!r}\n{traceback.format_exc(limit=4)}"
    results.put(report)


def _soak(
    client: laminar.Client, workload: Workload, job: SoakJob, stop: Any, committed: Any, report: ClientReport
) -> None:
    deadline = time.monotonic() + job.seconds
    in_flight: collections.deque[laminar.Pending] = collections.deque()
    uncounted = 0

    def settle_oldest() -> None:
        nonlocal uncounted
        _record(report, in_flight.popleft().committed(timeout=max(0.0, deadline - time.monotonic())))
        uncounted += 1
        if uncounted >= SOAK_COUNT_EVERY:
            with committed.get_lock():
                committed.value += uncounted
            uncounted = 0

    for index in range(job.messages):
        if stop.is_set() or time.monotonic() > deadline:
            break
        key, value = workload.message(index)
        in_flight.append(client.put(job.topic, key, value))
        if len(in_flight) >= SOAK_WINDOW:
            settle_oldest()
    while in_flight and not stop.is_set() and time.monotonic() < deadline:
        settle_oldest()
    with committed.get_lock():
        committed.value += uncounted
