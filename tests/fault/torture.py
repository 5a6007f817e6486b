"""Long fault runs: `make torture SECONDS=600 SEED=...` (or `python tests/fault/torture.py`).

Writes the summary and the command that reproduces the run to bench/results/torture-<seed>/summary.txt
(kept in git), and the history and node logs, gzipped, under var/torture-<seed>/ (gitignored: a
ten-minute run leaves megabytes of them). Exits non-zero if the checker found any anomaly. The seed
is printed first, so any run can be replayed.

--network netns puts each node in its own network namespace (needs root) and partitions or delays
a node on its link; --network hook keeps the nodes on loopback and partitions them through their
in-process fault hook; auto (the default) uses netns where it can. SIGTERM and Ctrl-C stop the run
cleanly: nodes are stopped and namespaces deleted.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from jepsen import NETWORK_MODES, ROOT, Run


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so Run.execute's cleanup runs; a second
    SIGTERM is ignored so that it cannot cut that cleanup short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(128 + signum)


def _keep_artefacts(root: str, artefacts: str) -> None:
    """Compress the history and the node logs into var/: a ten-minute history is hundreds of thousands
    of operations, and run artefacts are not source (bench/results/ keeps only the summary)."""
    for name in os.listdir(root):
        if name == "history.jsonl" or name.endswith(".log"):
            source, target = os.path.join(root, name), os.path.join(artefacts, name + ".gz")
            with open(source, "rb") as src, gzip.open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--nodes", type=int, default=3, choices=[3, 5])
    parser.add_argument("--network", default="auto", choices=NETWORK_MODES, help="how to partition and delay nodes")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    print(f"torture: seed {seed}, {args.seconds:.0f} s, {args.nodes} nodes, {args.network} network", flush=True)
    out = os.path.join(ROOT, "bench", "results", f"torture-{seed}")
    artefacts = os.path.join(ROOT, "var", f"torture-{seed}")
    os.makedirs(out, exist_ok=True)
    os.makedirs(artefacts, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="laminar-torture-") as root:
        summary = Run(seed=seed, seconds=args.seconds, root=root, nodes=args.nodes, network=args.network).execute()
        _keep_artefacts(root, artefacts)
    command = f"make torture SECONDS={args.seconds:.0f} SEED={seed} NETWORK={args.network}"
    where = os.path.relpath(artefacts, ROOT)
    text = summary.as_text() + f"\ncommand: {command}\nhistory and node logs (not in git): {where}/\n"
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(text)
    print(text)
    return 1 if summary.anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
