"""Run the simulator over many seeds: `python -m tests.sim --seeds 100` (or `make sim SEEDS=100`).

Prints every violation with its seed and trace, then: seeds explored, simulated seconds, simulated
seconds per real second, and the seeds that violated an invariant. Exits 1 if any did.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from tests.sim._net import NETWORKS
from tests.sim._sim import SimConfig, run_seed
from tests.sim._wiring import REVERTIBLE_FIXES

# --consumers-every N picks the seeds s with s % N == 3 % N: another residue than --pipelines-every's 0, and not
# 2, so the seeds README.md replays with `make sim SEED=...` (2 and 42) keep their runs.
CONSUMERS_RESIDUE = 3


def consumers_in(seed: int, every: int) -> bool:
    return every > 0 and seed % every == CONSUMERS_RESIDUE % every


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds to run")
    parser.add_argument("--first-seed", type=int, default=1, help="run seeds first-seed .. first-seed+seeds-1")
    parser.add_argument("--seed", type=int, help="run this one seed (and print its trace even if it passes)")
    parser.add_argument("--nodes", default="3,5", help="cluster sizes, taken in turn: 3, 5 or 3,5")
    parser.add_argument("--network", choices=NETWORKS, default="tcp")
    parser.add_argument("--fault-seconds", type=float, default=SimConfig.fault_seconds)
    parser.add_argument("--log-entries-max", type=int, help="compaction past this many entries (default: per seed)")
    parser.add_argument(
        "--revert", default="", help=f"fixes to take back, comma-separated: {', '.join(REVERTIBLE_FIXES)}"
    )
    parser.add_argument("--proposals-per-s", type=float, help="client load (default: per seed)")
    parser.add_argument("--membership", action="store_true", help="also remove members and add them back")
    parser.add_argument(
        "--tail-loss",
        action="store_true",
        help="the mix aimed at 6354a97: bursts, pauses, leaders losing power with unsynced entries sent",
    )
    parser.add_argument("--pipelines", action="store_true", help="also drive pipeline calls, workers and results")
    parser.add_argument(
        "--pipelines-every",
        type=int,
        default=0,
        help="drive pipelines in the seeds that are multiples of this (0: only with --pipelines; `make sim`: 5)",
    )
    parser.add_argument(
        "--consumers", action="store_true", help="also drive durable consumers and groups on a topic with retention"
    )
    parser.add_argument(
        "--consumers-every",
        type=int,
        default=0,
        help="drive consumers in the seeds s with s %% N == 3 %% N (0: only with --consumers; `make sim`: 5)",
    )
    parser.add_argument("--stop-at-first", action="store_true", help="stop at the first violation")
    parser.add_argument("--work-dir", default=os.path.join("var", "sim"))
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.nodes.split(",")]
    seeds = [args.seed] if args.seed is not None else list(range(args.first_seed, args.first_seed + args.seeds))
    os.makedirs(args.work_dir, exist_ok=True)
    started = time.perf_counter()
    simulated_s = 0.0
    failed: list[int] = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work_root:
        for i, seed in enumerate(seeds):
            config = SimConfig(
                nodes=sizes[seed % len(sizes)] if args.seed is None else sizes[0],
                fault_seconds=args.fault_seconds,
                network=args.network,
                log_entries_max=args.log_entries_max,
                revert=frozenset(f for f in args.revert.split(",") if f),
                membership=args.membership,
                pipelines=args.pipelines or (args.pipelines_every > 0 and seed % args.pipelines_every == 0),
                consumers=args.consumers or consumers_in(seed, args.consumers_every),
                proposals_per_s=args.proposals_per_s,
                tail_loss=args.tail_loss,
            )
            result = run_seed(seed, config, work_root)
            simulated_s += result.simulated_s
            if not result.ok:
                failed.append(seed)
                print(result.report(), flush=True)
            elif args.seed is not None:
                print(result.report())
                print("\n".join(result.trace))
            else:
                print(result.summary(), flush=True)
            if failed and args.stop_at_first:
                seeds = seeds[: i + 1]
                break
    wall_s = time.perf_counter() - started
    every = args.pipelines_every
    pipelines = "every seed" if args.pipelines else f"seeds divisible by {every}" if every > 0 else "none"
    every = args.consumers_every
    consumers = (
        "every seed"
        if args.consumers
        else f"seeds s with s % {every} == {CONSUMERS_RESIDUE % every}"
        if every
        else "none"
    )
    print(
        f"\nseeds explored: {len(seeds)}, network {args.network}, nodes {args.nodes}, pipelines: {pipelines}, "
        f"consumers: {consumers}"
        f"{', reverted: ' + args.revert if args.revert else ''}\n"
        f"simulated: {simulated_s:.0f} s ({simulated_s / 3600:.2f} h) in {wall_s:.0f} s real, "
        f"{simulated_s / wall_s:.1f} simulated s per real s\n"
        f"violations: {len(failed)}{' (seeds ' + ' '.join(map(str, failed)) + ')' if failed else ''}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
