"""Log time: the one clock every node agrees on.

The leader stamps each entry it builds with its wall clock (IntentionBatch.time_ms, see
laminar/node/_entry.py). Applying an entry sets log time to the larger of that stamp and the log
time before it, so log time is the same on every node (it is a function of the log) and never goes
backwards, across leader changes and restarts included (it is kept in the applied mark, so
snapshots carry it too). An entry without a stamp (a journal written before log time existed, a
read barrier, a membership change) leaves it where it was.

What a leader's wrong clock does (docs/protocol.md, "Log time"):
- behind by D: log time stands still until that leader's clock passes the last log time (for up
  to D), so age-based retention trims late and leases last longer; nothing is lost or trimmed early.
- ahead by D: log time jumps D forward at once, so age-based retention trims up to D early and
  leases expire up to D early (a consumer group redelivers; at-least-once still holds). After that
  leader is replaced, log time stands still until the real clocks catch up, as above.
An idle cluster's leader proposes a time tick every LOG_TIME_TICK_MS (laminar/node/raft/_proposer.py),
so log time lags the leader's clock by at most about that much plus a commit.
"""

from __future__ import annotations


def next_log_time(previous_ms: int, stamped_ms: int) -> int:
    """Log time after applying an entry stamped `stamped_ms` (0: not stamped) at log time `previous_ms`."""
    return stamped_ms if stamped_ms > previous_ms else previous_ms
