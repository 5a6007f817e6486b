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


def connections_answered_over_max(connections_max: int) -> int:
    """Connections past `connections_max` that gRPC still accepts, so that their calls are answered
    RESOURCE_EXHAUSTED with a retry hint (not closed unanswered): an eighth more, at least
    CONNECTIONS_OVER_MAX_ANSWERED_MIN."""
    return max(limits.CONNECTIONS_OVER_MAX_ANSWERED_MIN, connections_max // 8)


def connection_limits(connections_max: int, nofile: int) -> tuple[int, int]:
    """(connections whose calls this node serves, connections gRPC accepts at all), given the descriptor
    limit: calls on connections between the two get RESOURCE_EXHAUSTED with a retry hint."""
    over = connections_answered_over_max(connections_max)
    accepted = connection_budget(connections_max + over, nofile)
    return max(1, min(connections_max, accepted - over)), accepted
