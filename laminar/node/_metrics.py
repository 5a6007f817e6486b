"""Prometheus metrics of one node, on their own registry (never the process-global one).

Counters and histograms are updated where things happen (apply thread, sessions); gauges that
mirror state (role, term, indexes, queue depths, listeners) are sampled at scrape time by a
collector, so they cost nothing between scrapes. Served over HTTP at the node's `metrics` address.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ROLES = ("leader", "follower", "candidate")
# A reason that names a budget is a budget exhaustion (see laminar/node/sandbox/_meter.py).
BUDGET_EXHAUSTED_MARK = "budget exhausted"
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# Pipelines: a call's latency from issue to result, in log time (ms): the same figure on every node.
CALL_LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000)
BATCH_BUCKETS_INTENTIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


@dataclass
class Sample:
    """What the node reports at scrape time."""

    node_id: str
    role: str
    term: int
    commit_index: int
    applied_index: int
    intention_offset: int
    sessions: int
    listeners: int
    listener_lag_events_max: int
    proposal_queue_intentions: int
    apply_queue_entries: int
    journal_syncs: int
    leader_known: bool
    extra: dict[str, int] = field(default_factory=dict)
    calls_in_flight: int = 0  # pipelines: calls issued and without a result, over the cluster (as applied here)


class _Sampled(Collector):
    def __init__(self, sample: Callable[[], Sample]) -> None:
        self._sample = sample

    def collect(self) -> Iterator[Metric]:
        s = self._sample()
        role = GaugeMetricFamily("laminar_role", "1 for this node's current Raft role", labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1.0 if s.role == name else 0.0)
        yield role
        gauges: list[tuple[str, str, float]] = [
            ("laminar_term", "current Raft term", s.term),
            ("laminar_commit_index", "Raft commit index", s.commit_index),
            ("laminar_applied_index", "Raft index applied to the state machine", s.applied_index),
            ("laminar_intention_offset", "last applied intention offset", s.intention_offset),
            ("laminar_leader_known", "1 when this node knows a leader", 1.0 if s.leader_known else 0.0),
            ("laminar_sessions", "open client sessions on this node", s.sessions),
            ("laminar_listeners", "open listener streams on this node", s.listeners),
            (
                "laminar_listener_lag_events_max",
                "the furthest-behind listener: events not yet sent",
                s.listener_lag_events_max,
            ),
            (
                "laminar_proposal_queue_intentions",
                "intentions validated and waiting to be proposed",
                s.proposal_queue_intentions,
            ),
            ("laminar_apply_queue_entries", "committed entries waiting for the apply thread", s.apply_queue_entries),
            ("laminar_calls_in_flight", "pipelines: calls issued by programs and without a result", s.calls_in_flight),
        ]
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(name, help_text, value=value)
        yield CounterMetricFamily("laminar_journal_syncs", "fsyncs of the Raft journal", value=s.journal_syncs)
        yield GaugeMetricFamily(
            "laminar_gc_frozen_objects",
            "objects the node held once started, exempt from the cyclic collector's full passes",
            value=gc.get_freeze_count(),
        )


class NodeMetrics:
    def __init__(self, sample: Callable[[], Sample]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)  # collect() runs at scrape time only
        r = self.registry
        self.intentions = Counter("laminar_intentions", "intentions applied (rate: intentions per second)", registry=r)
        self.events = Counter(
            "laminar_events", "events appended to topic streams (rate: events per second)", registry=r
        )
        self.commit_latency = Histogram(
            "laminar_commit_latency_seconds",
            "leader only: from a client frame's proposal to its intentions being applied",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.apply_latency = Histogram(
            "laminar_apply_seconds", "time to apply and store one Raft entry", buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.batch_intentions = Histogram(
            "laminar_batch_intentions", "intentions per Raft entry", buckets=BATCH_BUCKETS_INTENTIONS, registry=r
        )
        self.program_errors = Counter(
            "laminar_program_errors", "ERROR effects of programmable topics", ["topic"], registry=r
        )
        self.budget_exhaustions = Counter(
            "laminar_program_budget_exhaustions", "program calls stopped by a budget", ["topic"], registry=r
        )
        self.session_failures = Counter(
            "laminar_session_failures", "client sessions ended by an error, by gRPC status", ["code"], registry=r
        )
        self.auth_refusals = Counter(
            "laminar_auth_refusals",
            "calls refused by authorization: bad_credential, throttled, no_credential, denied",
            ["reason"],
            registry=r,
        )
        self.calls_issued = Counter("laminar_calls_issued", "pipelines: calls recorded by ctx.call", registry=r)
        self.call_results = Counter(
            "laminar_call_results",
            "pipelines: calls finished, by outcome: completed, failed, timed_out, gave_up",
            ["outcome"],
            registry=r,
        )
        self.call_redeliveries = Counter(
            "laminar_call_redeliveries", "pipelines: leases granted after a call's first (a lease expired)", registry=r
        )
        self.call_latency = Histogram(
            "laminar_call_latency_log_ms",
            "pipelines: log time from a call's issue to its result, ms",
            buckets=CALL_LATENCY_BUCKETS_MS,
            registry=r,
        )
        r.register(_Sampled(sample))
        self._server: Any = None

    def observe_calls(self, issued: int, redeliveries: int, results: list[tuple[str, int]]) -> None:
        """What one applied entry did with calls: issued, redelivered, and (outcome, log-time latency ms) results."""
        if issued:
            self.calls_issued.inc(issued)
        if redeliveries:
            self.call_redeliveries.inc(redeliveries)
        for how, latency_ms in results:
            self.call_results.labels(how).inc()
            self.call_latency.observe(latency_ms)

    def observe_program_errors(self, errors: list[tuple[str, str]]) -> None:
        for topic, reason in errors:
            self.program_errors.labels(topic).inc()
            if BUDGET_EXHAUSTED_MARK in reason:
                self.budget_exhaustions.labels(topic).inc()

    def serve(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self._server, _ = start_http_server(int(port), addr=host, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
