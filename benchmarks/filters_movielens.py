"""Graph filters on the bundled MovieLens (ml-latest-small), per-user random 75/25 split, no validation part.

Runs the same benchmark as ``graphrec bench train --model M`` (:func:`gnn.filters.bench.run_filter_bench`)
for each model given, on MovieLens instead of LightGCN files, and writes one JSON record per model:

    .venv/bin/python benchmarks/filters_movielens.py --out benchmarks/results gfcf ease auto
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="+", help="gfcf, chebycf, ease, auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=300.0)
    args = parser.parse_args()

    from graphrec.snapshot import SplitSpec
    from gnn.data import InteractionData, snapshot_from_frames
    from gnn.filters.bench import run_filter_bench
    from gnn.filters.selection import SelectionConfig
    from loaders.movielens import read_movielens

    split = SplitSpec(name="per_user_random", params={"test_fraction": 0.25, "val_fraction": 0.0})
    data = InteractionData.from_snapshot(snapshot_from_frames(read_movielens(None), split, seed=args.seed))
    print(f"movielens: {data.num_users} users, {data.num_items} items, train {len(data.train)}, test {len(data.test)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        rec = run_filter_bench(data, model, selection=SelectionConfig(time_budget_s=args.budget, seed=args.seed), device="cpu")
        rec = {"dataset": "movielens (ml-latest-small, per_user_random test 0.25, seed %d)" % args.seed, **rec}
        path = args.out / f"movielens-{model}-cpu.json"
        path.write_text(json.dumps(rec, indent=2))
        print(json.dumps({k: rec[k] for k in ("model", "best", "truncated", "fit_seconds", "eval_seconds")}))


if __name__ == "__main__":
    main()
