"""Open-loop load: writes offered at a fixed rate, latency from the intended send time (no coordinated omission).

A closed-loop client (send, wait, send) slows down when the system does, so a stall delays the
requests that would have measured it and the percentiles look better than what users would see.
Here each sender process has a schedule: message i is due at `start + i / rate`, whatever happened
to the earlier ones. When the sender is behind it sends at once, and every latency is counted from
the due time, so time spent queued in the generator counts against the system too (the report
gives the generator's own worst lag so a slow generator can be told apart).

Each message's value carries its due time (CLOCK_MONOTONIC, which every process on the machine
shares), its sender and its index, so a listener in another process measures put-to-delivery
latency from the same due time: a Laminar Listener on the topic, or an etcd Watch on the key prefix.
Messages not committed (or not delivered) by the end of the drain
period count as infinitely late: they stay in the percentiles rather than dropping out of them.
"""

from __future__ import annotations

import math
import queue
import struct
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

import laminar
from bench.client_proc import BARRIER_TIMEOUT_S, ClientReport
from bench.etcd_client import EtcdClient
from bench.workloads import VALUE_BYTES

ETCD, LAMINAR = "etcd", "laminar"
SENDER, LISTENER = "sender", "listener"
START_DELAY_S = 0.05  # after the barrier, before the first due time: every sender is awake by then
DRAIN_S = 10.0  # after the last due time: how long answers may still arrive before the rest count as lost
MESSAGES_PER_SENDER_MAX = 500_000
VALUE_LAYOUT = struct.Struct("<dII")  # due time (monotonic s), sender, index; padded to VALUE_BYTES
WARM_UP_DUE_S = 0.0  # the due time in a warm-up put's value: the listener skips it


@dataclass(frozen=True)
class OpenLoopJob:
    system: str  # ETCD or LAMINAR
    role: str  # SENDER or LISTENER (Laminar: a Listener; etcd: a Watch)
    addresses: tuple[str, ...]
    topic: str  # Laminar topic, or etcd key prefix
    client_index: int  # the sender's number (listener: after the senders)
    rate_per_s: float  # this sender's rate
    messages: int  # this sender's messages; a listener's: every sender's
    seconds: float  # the schedule's length
    timeout_s: float  # for the whole timed part, drain included

    def __post_init__(self) -> None:
        assert 0 < self.messages <= MESSAGES_PER_SENDER_MAX * 100, self.messages


@dataclass
class OpenLoopReport(ClientReport):
    """`latencies_s`: commit latency per message (sender) or delivery latency (listener), inf when lost."""

    send_lag_s_max: float = 0.0  # the sender's worst lateness against its own schedule
    lost: int = 0  # messages with no answer (or no delivery) by the end of the drain
    extra: dict[str, float] = field(default_factory=dict)


def encode_value(due_s: float, sender: int, index: int) -> bytes:
    return VALUE_LAYOUT.pack(due_s, sender, index).ljust(VALUE_BYTES, b"v")


def decode_value(value: bytes) -> tuple[float, int, int]:
    due_s, sender, index = VALUE_LAYOUT.unpack_from(value)
    return due_s, sender, index


def open_loop_main(job: OpenLoopJob, barrier: Any, results: Any) -> None:
    report = OpenLoopReport(job.client_index)
    try:
        if job.role == LISTENER:
            (_etcd_watch if job.system == ETCD else _listen)(job, barrier, report)
        elif job.system == ETCD:
            _etcd_sender(job, barrier, report)
        else:
            _laminar_sender(job, barrier, report)
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which decides
        report.error = (
            f"open loop {job.system} {job.role} {job.client_index}: {error!r}\n{traceback.format_exc(limit=4)}"
        )
    results.put(report)


def _schedule(job: OpenLoopJob, report: OpenLoopReport, send: Any) -> float:
    """Call `send(index, due_s)` for each message at (or as soon as possible after) its due time."""
    start = time.monotonic() + START_DELAY_S
    give_up = start + job.seconds + DRAIN_S
    for index in range(job.messages):
        due = start + index / job.rate_per_s
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
            now = time.monotonic()
        if now > give_up:
            break  # the unsent count as lost: the acker never sees them
        report.send_lag_s_max = max(report.send_lag_s_max, now - due)
        send(index, due)
    return give_up


def _laminar_sender(job: OpenLoopJob, barrier: Any, report: OpenLoopReport) -> None:
    key = f"sender-{job.client_index}".encode()
    client = laminar.Client(list(job.addresses))
    try:
        client.put(job.topic, key, encode_value(WARM_UP_DUE_S, job.client_index, 0)).committed(timeout=job.timeout_s)
        barrier.wait(BARRIER_TIMEOUT_S)
        cpu_start_s = time.process_time()
        in_flight: queue.SimpleQueue[tuple[float, laminar.Pending]] = queue.SimpleQueue()
        give_up = [time.monotonic() + START_DELAY_S + job.seconds + DRAIN_S]
        acker = threading.Thread(target=_laminar_acks, args=(job, in_flight, report, give_up), daemon=True)
        acker.start()

        def send(index: int, due: float) -> None:
            value = encode_value(due, job.client_index, index)
            in_flight.put((due, client.put(job.topic, key, value)))

        _schedule(job, report, send)
        acker.join(max(0.0, give_up[0] - time.monotonic()) + 1.0)
        report.cpu_s = time.process_time() - cpu_start_s
        _finish(report, job.messages)
    finally:
        try:
            client.close(timeout=0)  # whatever is still in flight is counted as lost already
        except laminar.Unacknowledged:
            pass


def _laminar_acks(
    job: OpenLoopJob,
    in_flight: queue.SimpleQueue[tuple[float, laminar.Pending]],
    report: OpenLoopReport,
    give_up: list[float],
) -> None:
    """Commits of one session arrive in nonce order, so waiting for them in order stamps each on arrival."""
    try:
        for _ in range(job.messages):
            due, pending = in_flight.get(timeout=max(0.0, give_up[0] - time.monotonic()))
            pending.committed(timeout=max(0.0, give_up[0] - time.monotonic()))
            report.latencies_s.append(time.monotonic() - due)
    except BaseException as error:  # noqa: BLE001 - the rest count as lost
        report.first_reason = repr(error)


def _etcd_sender(job: OpenLoopJob, barrier: Any, report: OpenLoopReport) -> None:
    lock = threading.Lock()
    with EtcdClient(job.addresses[0], job.timeout_s) as client:
        client.put(f"{job.topic}/warm-up/{job.client_index}".encode(), b"w")
        barrier.wait(BARRIER_TIMEOUT_S)
        cpu_start_s = time.process_time()

        def send(index: int, due: float) -> None:
            key = f"{job.topic}/{job.client_index:03d}/{index:08d}".encode()
            future = client.put_future(key, encode_value(due, job.client_index, index))
            future.add_done_callback(lambda f, due=due: _etcd_done(f, due, report, lock))

        give_up = _schedule(job, report, send)
        while time.monotonic() < give_up:
            with lock:
                if len(report.latencies_s) >= job.messages:
                    break
            time.sleep(0.01)
        report.cpu_s = time.process_time() - cpu_start_s
        with lock:
            _finish(report, job.messages)


def _etcd_done(future: Any, due: float, report: OpenLoopReport, lock: threading.Lock) -> None:
    """Runs on a gRPC thread as each answer arrives, in whatever order they come."""
    arrived = time.monotonic()
    if future.exception() is None:
        with lock:
            report.latencies_s.append(arrived - due)


def _listen(job: OpenLoopJob, barrier: Any, report: OpenLoopReport) -> None:
    """Every put of the topic, from its start: put-to-delivery latency from each message's due time."""
    with laminar.Listener(list(job.addresses), job.topic, from_offset=0) as listener:
        barrier.wait(BARRIER_TIMEOUT_S)
        cpu_start_s = time.process_time()
        give_up = time.monotonic() + START_DELAY_S + job.seconds + DRAIN_S
        try:
            while len(report.latencies_s) < job.messages:
                event = listener.next_event(timeout=max(0.0, give_up - time.monotonic()))
                arrived = time.monotonic()
                if event.kind == laminar.Kind.PUT:
                    due, _, _ = decode_value(event.value)
                    if due != WARM_UP_DUE_S:
                        report.latencies_s.append(arrived - due)
        except laminar.Timeout as timeout:
            report.first_reason = repr(timeout)
        report.cpu_s = time.process_time() - cpu_start_s
    _finish(report, job.messages)


def _etcd_watch(job: OpenLoopJob, barrier: Any, report: OpenLoopReport) -> None:
    """Every put under the prefix from the watch's creation (before the barrier): delivery from each due time."""
    with EtcdClient(job.addresses[0], job.timeout_s) as client:
        responses = client.watch_prefix(f"{job.topic}/".encode())
        if not next(responses).created:
            raise RuntimeError("etcd did not create the watch")
        barrier.wait(BARRIER_TIMEOUT_S)
        cpu_start_s = time.process_time()
        give_up = time.monotonic() + START_DELAY_S + job.seconds + DRAIN_S
        stopper = threading.Timer(max(0.0, give_up - time.monotonic()), responses.cancel)
        stopper.start()
        try:
            _take_watch_events(responses, job.messages, report)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:  # cancelled: the drain period ended
                report.first_reason = repr(error)
        finally:
            stopper.cancel()
            responses.cancel()
        report.cpu_s = time.process_time() - cpu_start_s
    _finish(report, job.messages)


def _take_watch_events(responses: Iterable[Any], expected: int, report: OpenLoopReport) -> None:
    for response in responses:
        arrived = time.monotonic()
        for event in response.events:
            value = event.kv.value
            if event.type == 0 and len(value) >= VALUE_LAYOUT.size:  # PUT; a warm-up put's value is shorter
                due, _, _ = decode_value(value)
                report.latencies_s.append(arrived - due)
        if response.canceled or len(report.latencies_s) >= expected:
            return


def _finish(report: OpenLoopReport, expected: int) -> None:
    """Lost messages stay in the percentiles, as infinitely late."""
    report.lost = max(0, expected - len(report.latencies_s))
    report.latencies_s.extend([math.inf] * report.lost)
