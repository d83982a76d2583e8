"""What a token budget and a cap per group cost the selection walk: the same pool walked without limits, with
limits that never bind (the per-candidate bookkeeping alone), and with limits that bind (budget and caps skip
records and the walk goes on further), for the Repr Filter and for a plain ranking (`--strategy score`).

    python benchmarks/budget.py                      # 200K x 64, size 20K, on CPU
    python benchmarks/budget.py --pool 1000000 --device cuda

Prints seconds and the ratio to the walk without limits, measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from deita.selection import deita_filter
from deita.selection.baselines import score_select
from deita.selection.quota import Quota, quota_walk


def best_of(runs: int, call: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((args.pool, args.dim)).astype(np.float32)
    scores = rng.random(args.pool)
    costs = (rng.pareto(1.5, args.pool) * 300 + 20).astype(np.int64)  # a long tail, as real conversations have
    groups = np.minimum(rng.geometric(0.3, args.pool) - 1, args.groups - 1).astype(np.int64)  # skewed sources
    order = np.argsort(-scores, kind="stable")
    typical = int(costs[order[: args.size]].sum())
    cases = {
        "no limits": None,
        "limits that never bind": Quota(costs, 10**15, groups, args.size),
        "budget binds (half the size's tokens)": Quota(costs, typical // 2),
        "budget and caps bind (max-share 0.1)": Quota(costs, typical // 2, groups, args.size // 10),
    }
    print(f"pool {args.pool:,} x {args.dim}, size {args.size:,}, device {args.device}, best of {args.runs}")
    for name, walk in ((f"deita (Repr Filter, threshold {args.threshold})", "deita"), ("score (a plain ranking)", "score")):
        print(f"\n{name}")
        base = None
        for case, quota in cases.items():
            if walk == "deita":
                seconds, result = best_of(args.runs, lambda q=quota: deita_filter(
                    scores, embeddings, args.size, args.threshold, device=args.device, quota=q))
                selected, examined = len(result.indices), result.n_examined
            elif quota is None:
                seconds, indices = best_of(args.runs, lambda: score_select(scores, args.size))
                selected, examined = len(indices), len(indices)
            else:
                seconds, (indices, examined, _) = best_of(args.runs, lambda q=quota: quota_walk(
                    score_select(scores, -1), args.size, q))
                selected = len(indices)
            base = base or seconds
            print(f"  {case:42s} {seconds:8.3f} s  x{seconds / base:5.2f}  selected {selected:,} "
                  f"examined {examined:,}")


if __name__ == "__main__":
    main()
