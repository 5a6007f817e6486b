"""How fast this node applies topic creates and destroys: a running estimate that bounds them in flight by time.

The proposer bounds what is proposed and not yet applied, and entries apply in log order, so that is
what a write proposed now waits behind. In weighted intentions (a CREATE_TOPIC or DESTROY_TOPIC weighs
INTENTION_COST_TOPIC puts) that is a bound in time only while their apply time stays put, and it does not:
a create or destroy took 25-35 us of apply on a quiet machine and 90-190 us on a loaded one
(bench/results/hostile.md, topic_churn), so the 2,000 of them that 8,192 weighted intentions allow were
60 ms of wait one minute and 400 ms the next. So topic ops in flight are also bounded by time: the apply
thread's wall time per topic op is measured on every entry that is mostly topic ops and holds enough of
them for the entry's own cost not to count (APPLY_PACE_SAMPLE_INTENTIONS_MIN), as an exponentially
weighted moving average, and at most what that pace applies in ENTRIES_INFLIGHT_TOPIC_APPLY_MS_MAX may be
in flight (never fewer than ENTRIES_INFLIGHT_TOPIC_INTENTIONS_MIN); a run holds at most half of it, so two
fit in flight. Wall time, not CPU time: a loaded machine's apply thread waiting for a core is what a write
waiting behind it waits for.

Puts are not paced: the same bound in time on them (every kind at its measured pace, 50 ms in flight) halved
the pipelined throughput cell on a loaded machine (11-17k msgs/s against 23-32k, alternated), where a put's
apply is 30-50 us of wall time and 8,192 of them in flight keep two of the client's largest frames going.
Topic churn has no throughput worth that to keep. Pure: no clock, no threads, the caller's lock.
"""

from __future__ import annotations

from laminar import limits

# How far one entry's sample moves the estimate: a quarter, so a change in the machine's load shows within
# a handful of entries (tens of ms under a flood), and one entry stalled by a page fault or a GC pause moves
# the bound by a quarter of its excess, not all of it.
PACE_SAMPLE_WEIGHT = 0.25
# An entry is a sample of the topic ops' pace when they are at least this share of its intentions (the rest,
# puts, are then a small error, and on the side of caution: their apply is counted as the topic ops').
PACE_SAMPLE_TOPIC_SHARE_MIN = 0.9


class TopicPace:
    """Apply wall time per topic op (an EWMA), and the in-flight and run bounds on topic ops it sets."""

    def __init__(self) -> None:
        self._us_per_op: float | None = None  # None: no entry measured yet (only the weighted bound holds)

    def observe(self, topic_intentions: int, intentions: int, apply_s: float) -> None:
        """An entry of this many intentions, topic_intentions of them topic ops, took apply_s to apply and store
        (0: not measured)."""
        if (
            topic_intentions < limits.APPLY_PACE_SAMPLE_INTENTIONS_MIN
            or topic_intentions < intentions * PACE_SAMPLE_TOPIC_SHARE_MIN
            or apply_s <= 0
        ):
            return
        sample = apply_s * 1e6 / topic_intentions
        if self._us_per_op is None:
            self._us_per_op = sample
            return
        self._us_per_op += (sample - self._us_per_op) * PACE_SAMPLE_WEIGHT

    def us_per_op(self) -> float | None:
        return self._us_per_op

    def inflight_max(self) -> int:
        """Topic ops that may be in flight: what this pace applies in ENTRIES_INFLIGHT_TOPIC_APPLY_MS_MAX, within
        [ENTRIES_INFLIGHT_TOPIC_INTENTIONS_MIN, what ENTRIES_INFLIGHT_INTENTIONS_MAX holds of them]."""
        weighted_max = limits.ENTRIES_INFLIGHT_INTENTIONS_MAX // limits.INTENTION_COST_TOPIC
        if self._us_per_op is None:
            return weighted_max
        paced = int(limits.ENTRIES_INFLIGHT_TOPIC_APPLY_MS_MAX * 1000 / self._us_per_op)
        return max(limits.ENTRIES_INFLIGHT_TOPIC_INTENTIONS_MIN, min(weighted_max, paced))

    def run_max(self) -> int:
        """Topic ops one run (and one entry) may hold: half the in-flight bound, so two fit in flight at once."""
        return max(1, self.inflight_max() // 2)
