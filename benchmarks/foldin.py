"""Feedback under an embedding model: how much of a refit's gain the request-time fold-in gives.

The bundled MovieLens (ml-latest-small), per-user temporal split (oldest 70% train, next 10%
validation, newest 20% test). LightGCN (default recipe) is trained on the training part with early
stopping on the validation part. Each user's validation items are then treated as feedback written
after the fit, and Recall@20 / NDCG@20 on the test part (train and validation items excluded) are
reported for three variants:

- ``static``: the trained user vectors, feedback ignored;
- ``folded``: the liked validation items (rating of at least 4) folded into the user vectors by
  :func:`gnn.embeddings.fold_in`, the rule serving applies at request time (``graph.recommend.USER_VECTOR``);
- ``refit``: LightGCN trained on train + validation for the same number of epochs.

    .venv/bin/python benchmarks/foldin.py --out benchmarks/results/movielens-foldin-lightgcn-cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

SPLIT = {"test_fraction": 0.2, "val_fraction": 0.1}
LIKE = 4.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/movielens-foldin-lightgcn-cpu.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=400)
    args = parser.parse_args()

    import torch

    from gnn.config import default_recipe
    from gnn.data import InteractionData, SplitPart, snapshot_from_frames
    from gnn.embeddings import fold_in
    from gnn.evaluate import Evaluator
    from gnn.train import create_model, train_model
    from graphrec.snapshot import SplitSpec
    from loaders.movielens import read_movielens

    snap = snapshot_from_frames(read_movielens(), SplitSpec(name="per_user_temporal", params=SPLIT), seed=args.seed)
    data = InteractionData.from_snapshot(snap)
    inter = snap.interactions
    train, val = inter[inter["split"] == "train"], inter[inter["split"] == "val"]
    liked = lambda f: f["rating"].isna() | (f["rating"] >= LIKE)  # noqa: E731
    n_before = train[liked(train)].groupby("user_idx").size().reindex(range(data.num_users), fill_value=0).to_numpy()
    new_likes: dict[int, list[int]] = {}
    val_liked = val[liked(val)]
    for u, i in zip(val_liked["user_idx"], val_liked["item_idx"]):
        new_likes.setdefault(int(u), []).append(int(i))
    evaluator = Evaluator(data, "test", ks=(20,), metrics=("recall", "ndcg"), device="cpu")  # train + val items masked

    def recall_ndcg(users: np.ndarray, items: np.ndarray) -> tuple[float, float]:
        res = evaluator.evaluate(lambda u: torch.from_numpy(users[u.numpy()] @ items.T))
        return res["recall@20"], res["ndcg@20"]

    def fit(d: InteractionData, epochs: int | None) -> tuple[np.ndarray, np.ndarray, int | None, float]:
        cfg = (default_recipe(epochs=args.max_epochs, seed=args.seed) if epochs is None
               else default_recipe(epochs=epochs, eval_every=epochs, patience=0, seed=args.seed))
        t0 = time.perf_counter()
        res = train_model(create_model(cfg, d), d, cfg, progress=False)
        with torch.no_grad():
            users, items = (x.cpu().numpy().astype(np.float64) for x in res.model.embeddings())
        return users, items, res.best_epoch, time.perf_counter() - t0

    users, items, best, fit_s = fit(data, None)
    print(f"trained on train: best epoch {best} ({fit_s:.0f} s)", flush=True)
    static = recall_ndcg(users, items)
    folded_users = users.copy()
    for u, js in new_likes.items():
        folded_users[u] = fold_in(users[u], items[js], int(n_before[u]))
    folded = recall_ndcg(folded_users, items)
    both = SplitPart(torch.cat([data.train.users, data.val.users]), torch.cat([data.train.items, data.val.items]))
    users2, items2, _, refit_s = fit(dataclasses.replace(data, train=both), best)
    refit = recall_ndcg(users2, items2)
    gap = [(f - s) / (r - s) if r != s else None for s, f, r in zip(static, folded, refit)]
    record = {
        "benchmark": "foldin", "dataset": "movielens (ml-latest-small, per_user_temporal test 0.2 val 0.1)", "model": "lightgcn (default recipe)",
        "seed": args.seed, "metrics": ["recall@20", "ndcg@20"], "static": static, "folded": folded, "refit": refit, "gap_closed": gap,
        "users_with_new_likes": len(new_likes), "best_epoch": best, "fit_seconds": fit_s, "refit_seconds": refit_s,
        "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
    }
    print(json.dumps(record))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
