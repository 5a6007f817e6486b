"""File descriptors: raise the soft limit at start, and keep client connections well under it.

A node that runs out of descriptors cannot open a store file, accept a Raft peer or write its
journal: it dies. Client connections are the only descriptors an outsider can make it open, so
they get a budget below the limit (gRPC closes connections past it as it accepts them), and
CONNECTION_FDS_RESERVED (or half the limit, if that is smaller) stays for the node itself.
"""

from __future__ import annotations

import logging
import resource

from laminar import limits

log = logging.getLogger("laminar.node")


def raise_nofile(wanted: int = limits.NOFILE_WANTED) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never past the hard limit); the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, target, e)
    return soft if soft != resource.RLIM_INFINITY else wanted


def connection_budget(connections_max: int, nofile: int) -> int:
    """Client connections this node accepts at once, given its descriptor limit."""
    reserved = min(limits.CONNECTION_FDS_RESERVED, nofile // 2)
    budget = max(1, min(connections_max, nofile - reserved))
    if budget < connections_max:
        log.warning(
            "client connections limited to %d (descriptor limit %d, %d kept for the node), not %d",
            budget,
            nofile,
            reserved,
            connections_max,
        )
    return budget
