"""The fusion benchmark protocol on the tiny two-taste snapshot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphrec.snapshot import Snapshot, SplitSpec, make_snapshot
from gnn.config import TrainConfig
from gnn.fusion.experiment import BenchConfig, prepare, run_fusion_bench
from gnn.fusion.coldstart import HeadConfig
from benchmarks.fusion import format_table


@pytest.fixture(scope="module")
def bigger_snapshot(taste_snapshot: Snapshot) -> Snapshot:
    """Tastes with 40 items (20 per kind) and 60 users, 10 interactions each."""
    rng = np.random.default_rng(3)
    space = [f"space film {k}: astronauts, rockets and aliens" for k in range(20)]
    romance = [f"romance film {k}: love, weddings and kisses" for k in range(20)]
    items = pd.DataFrame({"id": [f"i{k}" for k in range(40)], "title": space + romance})
    users = pd.DataFrame({"id": [f"u{k}" for k in range(60)]})
    rows = []
    for u in range(60):
        pool = np.arange(20) if u % 2 == 0 else np.arange(20, 40)
        for t, i in enumerate(rng.choice(pool, size=10, replace=False)):
            rows.append((u, int(i), t))
    inter = pd.DataFrame(rows, columns=["user_idx", "item_idx", "timestamp"])
    from graphrec.splits import per_user_temporal

    inter = per_user_temporal(inter, test_fraction=0.2, val_fraction=0.2)
    return make_snapshot("tastes40", "test", SplitSpec(name="per_user_temporal"), users, items, inter)


def _cfg() -> BenchConfig:
    return BenchConfig(
        cold_item_fraction=0.2, sparse_user_fraction=0.25, sparse_history=3, seed=1,
        train=TrainConfig(embedding_dim=8, num_layers=2, lr=0.05, batch_size=256, epochs=4, eval_every=2, patience=0,
                          num_negatives=2, device="cpu"),
        head=HeadConfig(epochs=3), k=3,  # 8 cold items: a cut-off below the candidate count
    )


def test_prepare_holds_out_cold_items_and_truncates_sparse_users(bigger_snapshot: Snapshot, tmp_path) -> None:
    bd = prepare(bigger_snapshot, _cfg(), tmp_path, progress=False)
    assert len(bd.cold_items) == 8 and len(bd.warm_items) == 32
    assert not set(bd.cold_items) & set(bd.warm_items)
    # no cold item is anywhere in the training view
    assert bd.data.num_items == 32
    assert len(bd.cold_test) > 0 and int(bd.cold_test.items.max()) < 8
    hist = np.bincount(bd.data.train.users.numpy(), minlength=60)
    assert (hist[bd.sparse_users] <= 3).all()
    assert bd.sparse_users.sum() == 15


def test_bench_runs_end_to_end(bigger_snapshot: Snapshot, tmp_path) -> None:
    res = run_fusion_bench(bigger_snapshot, _cfg(), cache_dir=tmp_path, progress=False).to_json()
    for method in ("popularity", "content_knn", "lightgcn", "fusion_score", "fusion_feature", "fusion_both"):
        for group in ("warm_users", "sparse_users", "cold_items"):
            m = res["metrics"][method][group]
            assert 0.0 <= m["recall@3"] <= 1.0 and 0.0 <= m["ndcg@3"] <= 1.0
    # text separates the tastes perfectly: content ranks cold items far better than chance (popularity)
    cold = {k: v["cold_items"]["recall@3"] for k, v in res["metrics"].items()}
    assert cold["content_knn"] > cold["popularity"]
    assert res["default"] in ("fusion_score", "fusion_feature", "fusion_both")
    assert "fusion_feature" in format_table(res, k=3)
