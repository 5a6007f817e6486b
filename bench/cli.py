"""The bench command line: `run` (the full matrix), `quick` (a reduced one), `soak` (memory over time).

Ctrl-C or SIGTERM stops a run cleanly: every node and client process it started is stopped by pid
on the way out (context managers and try/finally), and nothing is written for an interrupted run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from collections.abc import Callable
from typing import Any

from bench.cluster import DURABILITY_NODE_ARGS
from bench.plan import Plan, run_plan
from bench.soak import SoakPlan, run_soak
from bench.workloads import REPO_ROOT, TOPIC_KINDS

RESULTS_DIR = os.path.join(REPO_ROOT, "bench", "results")
FULL = Plan(name="latest", out_dir=RESULTS_DIR, command="")
QUICK = Plan(
    name="quick",
    out_dir=RESULTS_DIR,
    command="",
    topic_kinds=("plain", "passthrough"),
    nodes=(1, 3),
    clients=(1, 3),
    messages=2_000,
    sequential_commits=300,
    raft_commands=5_000,
    raft_settings=("laminar",),
)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def _names(choices: Any) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part for part in text.split(",") if part)
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {sorted(choices)}")
        return names

    return parse


def _matrix_parser(sub: Any, name: str, defaults: Plan, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--out-dir", default=defaults.out_dir, help="where <name>.csv/.md/.png go")
    parser.add_argument("--name", default=defaults.name, help="file stem of the results")
    parser.add_argument("--topics", type=_names(TOPIC_KINDS), default=defaults.topic_kinds, help="e.g. plain,balance")
    parser.add_argument("--nodes", type=_ints, default=defaults.nodes, help="cluster sizes, e.g. 1,3,5")
    parser.add_argument("--clients", type=_ints, default=defaults.clients, help="client counts, e.g. 1,3,5")
    parser.add_argument("--messages", type=int, default=defaults.messages, help="messages per client")
    parser.add_argument("--durability", type=_names(DURABILITY_NODE_ARGS), default=defaults.durabilities)
    parser.add_argument("--sequential", type=int, default=defaults.sequential_commits, help="commits; 0 skips")
    parser.add_argument("--sequential-nodes", type=_ints, default=defaults.sequential_nodes)
    parser.add_argument("--raft-commands", type=int, default=defaults.raft_commands, help="0 skips the ceiling")
    parser.add_argument("--raft-settings", type=_names({"laminar", "defaults"}), default=defaults.raft_settings)
    parser.add_argument(
        "--balance-pairs",
        type=int,
        default=defaults.balance_pairs,
        help="account pairs per balance client (1: a cache of 2 x clients, as the benchmark defines it)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _matrix_parser(sub, "run", FULL, "the full matrix, sequential commits and the raw Raft ceiling")
    _matrix_parser(sub, "quick", QUICK, "a reduced matrix (under two minutes)")
    soak = sub.add_parser("soak", help="many messages through one cluster; throughput and RSS over time")
    soak.add_argument("--out-dir", default=RESULTS_DIR)
    soak.add_argument("--name", default="soak")
    soak.add_argument("--messages", type=int, default=SoakPlan.messages)
    soak.add_argument("--seconds", type=float, default=SoakPlan.seconds, help="stop after this long, done or not")
    soak.add_argument("--nodes", type=int, default=SoakPlan.nodes)
    soak.add_argument("--clients", type=int, default=SoakPlan.clients)
    soak.add_argument("--sample-seconds", type=float, default=SoakPlan.sample_s)
    soak.add_argument("--topic", choices=["plain", "passthrough"], default=SoakPlan.topic_kind)
    soak.add_argument("--durability", choices=sorted(DURABILITY_NODE_ARGS), default=SoakPlan.durability)
    return parser


def _raise_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every finally block runs and stops what it started."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    _raise_on_sigterm()
    try:
        if args.command == "soak":
            run_soak(_soak_plan(args, command))
        else:
            rows = run_plan(_matrix_plan(args, command))
            return 0 if all(r.ok or r.status.startswith("skipped") for r in rows) else 1
    except KeyboardInterrupt:
        print("interrupted: every process this run started has been stopped", file=sys.stderr)
        return 130
    return 0


def _matrix_plan(args: argparse.Namespace, command: str) -> Plan:
    return Plan(
        name=args.name,
        out_dir=args.out_dir,
        command=command,
        topic_kinds=args.topics,
        nodes=args.nodes,
        clients=args.clients,
        messages=args.messages,
        durabilities=args.durability,
        sequential_nodes=args.sequential_nodes,
        sequential_commits=args.sequential,
        raft_commands=args.raft_commands,
        raft_settings=args.raft_settings,
        balance_pairs=args.balance_pairs,
    )


def _soak_plan(args: argparse.Namespace, command: str) -> SoakPlan:
    return SoakPlan(
        out_dir=args.out_dir,
        command=command,
        messages=args.messages,
        seconds=args.seconds,
        nodes=args.nodes,
        clients=args.clients,
        sample_s=args.sample_seconds,
        topic_kind=args.topic,
        durability=args.durability,
        name=args.name,
    )
