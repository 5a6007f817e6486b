"""`laminar status`: every member the cluster names, a summary line, and an exit code for scripts."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from laminar._cli._data import tls_of
from laminar._cli._exits import CommandFailed, Exit
from laminar._cli._output import print_json, print_table
from laminar._cli._reach import HOW_TO_START, address_source
from laminar.client import cluster_status

STATUS_TIMEOUT_S = 2.0  # per call; the calls run in parallel

COLUMNS = (
    "node_id",
    "address",
    "role",
    "term",
    "commit_index",
    "applied_index",
    "lag",
    "health",
    "intention_offset",
    "topics",
)


def summarize(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Leader, quorum and lag of the cluster as these statuses show it; `degraded` if anything is off."""
    up = [n for n in nodes if "error" not in n]
    leaders = sorted({str(n["node_id"]) for n in up if n.get("role") == "leader"})
    believed = {str(n.get("leader_id", "")) for n in up}
    leader = next((n for n in up if n.get("role") == "leader"), None)
    quorum = len(nodes) // 2 + 1
    lags = [n["lag"] for n in up if n.get("lag") is not None]
    problems = []
    if len(up) < len(nodes):
        problems.append(f"{len(nodes) - len(up)} of {len(nodes)} members unreachable")
    if not leaders:
        problems.append("no leader")
    elif len(leaders) > 1 or believed != {leaders[0]}:
        problems.append("the nodes disagree on the leader")
    if len(up) < quorum:
        problems.append("no quorum")
    return {
        "leader_id": leader["node_id"] if leader else None,
        "leader_address": leader["address"] if leader else None,
        "term": int(leader["term"]) if leader else None,
        "members": len(nodes),
        "up": len(up),
        "quorum": quorum,
        "lag_max": max(lags) if lags else None,
        "degraded": bool(problems),
        "problems": problems,
    }


def summary_line(s: dict[str, Any]) -> str:
    leader = f"node {s['leader_id']} at {s['leader_address']} (term {s['term']})" if s["leader_id"] else "none"
    lag = "?" if s["lag_max"] is None else s["lag_max"]
    state = "DEGRADED: " + "; ".join(s["problems"]) if s["degraded"] else "healthy"
    return (
        f"leader: {leader}; quorum: {s['up']} of {s['members']} members up, {s['quorum']} needed; "
        f"lag: {lag} max; {state}"
    )


def cmd_status(args: argparse.Namespace) -> int:
    timeout_s = min(float(args.timeout), STATUS_TIMEOUT_S) if args.timeout else STATUS_TIMEOUT_S
    nodes = cluster_status(args.addresses, timeout_s, tls=tls_of(args), discover=True)
    if all("error" in n for n in nodes):
        lines = [f"no Laminar node answered (waited up to {timeout_s:g} s); tried {address_source(args.addresses)}:"]
        lines += [f"  {n['address']}: {n['error']}" for n in nodes]
        if args.output == "json":
            print_json({"nodes": nodes, "summary": summarize(nodes)}, indent=2)
        raise CommandFailed(Exit.UNAVAILABLE, "\n".join([*lines, HOW_TO_START]))
    summary = summarize(nodes)
    if args.output == "json":
        print_json({"nodes": nodes, "summary": summary}, indent=2)
    else:
        print_table(COLUMNS, [_row(n) for n in nodes])
        print(summary_line(summary))
    for n in nodes:
        if "error" in n:
            print(f"laminar: node {n.get('node_id', '?')} at {n['address']}: {n['error']}", file=sys.stderr)
    return Exit.DEGRADED if summary["degraded"] else Exit.OK


def _row(node: dict[str, Any]) -> list[str]:
    if "error" in node:
        return [str(node.get("node_id", "?")), node["address"], "unreachable", *[""] * (len(COLUMNS) - 3)]
    values = [node.get(c, "") for c in COLUMNS]
    values[COLUMNS.index("lag")] = "?" if node.get("lag") is None else node["lag"]
    values[COLUMNS.index("topics")] = ",".join(node.get("topics", [])) or "-"
    return [str(v) for v in values]
