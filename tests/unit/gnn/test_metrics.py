"""Metrics on hand-computed cases, and the evaluator's masking."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from graphrec.snapshot import SplitSpec, make_snapshot
from gnn.data import InteractionData
from gnn.evaluate import Evaluator
from gnn.metrics import hit_rate_at_k, map_at_k, ndcg_at_k, precision_at_k, recall_at_k

# user 0: 2 relevant items, hits at ranks 1 and 3; user 1: 4 relevant, hit at rank 2
HITS = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0]], dtype=torch.bool)
N_REL = torch.tensor([2, 4])
L2 = math.log2


@pytest.mark.parametrize(
    "fn,k,expected",
    [
        (recall_at_k, 3, [1.0, 0.25]),
        (recall_at_k, 1, [0.5, 0.0]),
        (precision_at_k, 3, [2 / 3, 1 / 3]),
        (hit_rate_at_k, 1, [1.0, 0.0]),
        (hit_rate_at_k, 2, [1.0, 1.0]),
        (ndcg_at_k, 3, [(1 + 1 / L2(4)) / (1 + 1 / L2(3)), (1 / L2(3)) / (1 + 1 / L2(3) + 1 / L2(4))]),
        (ndcg_at_k, 4, [(1 + 1 / L2(4)) / (1 + 1 / L2(3)), (1 / L2(3)) / (1 + 1 / L2(3) + 1 / L2(4) + 1 / L2(5))]),
        (map_at_k, 3, [(1 + 2 / 3) / 2, (1 / 2) / 3]),
    ],
)
def test_metric_values(fn, k: int, expected: list[float]) -> None:  # type: ignore[no-untyped-def]
    torch.testing.assert_close(fn(HITS, N_REL, k), torch.tensor(expected, dtype=torch.float64))


def _data() -> InteractionData:
    # 2 users, 5 items; user 0 trained on items 0, 1, val item 2, test item 3
    inter = pd.DataFrame(
        {
            "user_idx": [0, 0, 0, 0, 1, 1],
            "item_idx": [0, 1, 2, 3, 0, 4],
            "split": ["train", "train", "val", "test", "train", "test"],
        }
    )
    snap = make_snapshot(
        "t", "test", SplitSpec(name="fixed"), pd.DataFrame({"id": ["a", "b"]}), pd.DataFrame({"id": list("vwxyz")}), inter
    )
    return InteractionData.from_snapshot(snap)


def test_evaluator_masks_training_and_val_items() -> None:
    data = _data()
    # a scorer that loves the seen items most: if they were not masked the test item would rank low
    scores = torch.tensor([[10.0, 9.0, 8.0, 1.0, 0.0], [10.0, 0.0, 0.0, 0.0, 5.0]])
    res = Evaluator(data, "test", ks=[1, 2], device="cpu").evaluate(lambda users: scores[users].clone())
    assert res.num_users == 2
    assert res["recall@1"] == 1.0 and res["ndcg@1"] == 1.0
    assert res["precision@2"] == 0.5
    val = Evaluator(data, "val", ks=[1], device="cpu").evaluate(lambda users: scores[users].clone())
    assert val.num_users == 1 and val["recall@1"] == 1.0  # train masked, val item 2 ranks first


def test_k_larger_than_catalogue() -> None:
    data = _data()
    res = Evaluator(data, "test", ks=[50], device="cpu").evaluate(lambda users: torch.zeros(users.numel(), 5))
    assert res["recall@50"] == 1.0
    assert 0 < res["coverage@50"] <= 1.0
    assert res["precision@50"] == pytest.approx(1 / 50)


@pytest.mark.parametrize("batch_users", [7, 1024])
def test_evaluator_equals_textbook_full_ranking(batch_users: int) -> None:
    """The chunked, vectorised evaluator gives the numbers of a per-user loop written the reference way.

    The loop follows LightGCN's reference test code: a user's scores with the training and validation
    items set far below any score, the top K by a full sort, recall = hits / |test items|, precision =
    hits / K, NDCG with the ideal list of min(K, |test items|) hits; means over the users with a test item.
    """
    from .conftest import random_data

    data = random_data(num_users=60, num_items=45, per_user=(4, 20), seed=5)
    scores = torch.randn(data.num_users, data.num_items, generator=torch.Generator().manual_seed(9))
    ks = [1, 5, 20]
    res = Evaluator(data, "test", ks=ks, batch_users=batch_users, device="cpu").evaluate(lambda users: scores[users].clone())

    seen: dict[int, set[int]] = {}
    truth: dict[int, set[int]] = {}
    for part, target in ((data.train, seen), (data.val, seen), (data.test, truth)):
        for u, i in zip(part.users.tolist(), part.items.tolist()):
            target.setdefault(u, set()).add(i)
    expected = {f"{m}@{k}": 0.0 for m in ("recall", "precision", "ndcg") for k in ks}
    for u, test_items in truth.items():
        row = scores[u].clone()
        row[list(seen.get(u, ()))] = -(1 << 10)
        ranked = torch.argsort(row, descending=True).tolist()
        for k in ks:
            hits = [1.0 if i in test_items else 0.0 for i in ranked[:k]]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(test_items))))
            expected[f"recall@{k}"] += sum(hits) / len(test_items) / len(truth)
            expected[f"precision@{k}"] += sum(hits) / k / len(truth)
            expected[f"ndcg@{k}"] += dcg / idcg / len(truth)
    assert res.num_users == len(truth) > 40
    for name, value in expected.items():
        assert res[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert 0 < res["recall@5"] < res["recall@20"] < 1
