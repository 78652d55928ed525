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
