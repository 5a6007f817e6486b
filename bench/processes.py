"""Start benchmark client processes together and always stop them, by pid.

Clients are started with multiprocessing's "spawn" method: a forked child would inherit the
parent's gRPC threads, which gRPC does not support. The parent joins the clients' barrier, so the
timed part starts only once every client is connected and prepared.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from bench.client_proc import BARRIER_TIMEOUT_S, ClientJob, ClientReport, client_main

PROCESS_STOP_TIMEOUT_S = 5.0
REPORT_GRACE_S = 30.0  # beyond a job's own timeout, for its report to arrive


class ClientsFailed(RuntimeError):
    pass


def run_clients(
    jobs: Sequence[ClientJob] | Sequence[Any],
    started: Callable[[], None] = lambda: None,
    target: Callable[[Any, Any, Any], None] = client_main,
) -> list[ClientReport]:
    """Run one process per job, started together; their reports, in job order. `started` is called as the
    timed part begins (when the barrier releases the clients). `target(job, barrier, results)` is the body
    of each process (Laminar's client by default); a job needs `client_index` and `timeout_s`."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs) + 1)
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(job, barrier, results), name=f"bench-client-{job.client_index}")
        for job in jobs
    ]
    try:
        for process in processes:
            process.start()
        try:
            barrier.wait(BARRIER_TIMEOUT_S)
        except threading.BrokenBarrierError:
            pass  # a client failed before the start; its report says why
        started()
        reports = _collect(results, len(jobs), max(job.timeout_s for job in jobs) + REPORT_GRACE_S)
    finally:
        stop_processes(processes)
    errors = [r.error for r in reports if r.error]
    if errors:
        raise ClientsFailed(errors[0])
    return sorted(reports, key=lambda r: r.client_index)


def _collect(results: multiprocessing.queues.Queue[ClientReport], count: int, timeout_s: float) -> list[ClientReport]:
    # Read reports before joining: a child does not exit until its queued report has been read.
    deadline = time.monotonic() + timeout_s
    reports: list[ClientReport] = []
    try:
        while len(reports) < count:
            reports.append(results.get(timeout=max(0.0, deadline - time.monotonic())))
    except queue.Empty:
        missing = count - len(reports)
        reports.append(ClientReport(-1, error=f"{missing} client(s) sent no report within {timeout_s:.0f} s"))
    return reports


def stop_processes(processes: Sequence[BaseProcess]) -> None:
    """Terminate (SIGTERM to its pid), then kill, every process still running; reap them all."""
    for process in processes:
        if process.pid is not None and process.is_alive():
            process.terminate()
    for process in processes:
        if process.pid is None:
            continue  # never started
        process.join(PROCESS_STOP_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()


def stop_popens(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """`stop_processes` for processes started with subprocess: terminate every one still running, wait for each,
    and kill one that outlives PROCESS_STOP_TIMEOUT_S."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(PROCESS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
