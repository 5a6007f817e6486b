"""Long fault runs: `make torture SECONDS=600 SEED=...` (or `python tests/fault/torture.py`).

Writes the history and a summary under bench/results/torture-<seed>/ and exits non-zero if the
checker found any anomaly. The seed is printed first, so any run can be replayed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from jepsen import ROOT, Run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--nodes", type=int, default=3, choices=[3, 5])
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    print(f"torture: seed {seed}, {args.seconds:.0f} s, {args.nodes} nodes", flush=True)
    out = os.path.join(ROOT, "bench", "results", f"torture-{seed}")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="laminar-torture-") as root:
        summary = Run(seed=seed, seconds=args.seconds, root=root, nodes=args.nodes).execute()
        shutil.copy(os.path.join(root, "history.jsonl"), os.path.join(out, "history.jsonl"))
        for name in os.listdir(root):
            if name.endswith(".log"):
                shutil.copy(os.path.join(root, name), os.path.join(out, name))
    text = summary.as_text() + f"\ncommand: make torture SECONDS={args.seconds:.0f} SEED={seed}\n"
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(text)
    print(text)
    return 1 if summary.anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
