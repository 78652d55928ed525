"""LightGCN in the live fusion: the inductive part, its fusion, and the training-part check, against dense references."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gnn.checkpoint import load_checkpoint, save_checkpoint
from gnn.data import InteractionData, SplitPart
from gnn.fusion.lightgcn_part import EmbeddingPart, check_trained_on, lightgcn_factors, lightgcn_part
from gnn.fusion.live import FusionGrid, FusionWeights, combine, fit_live_default, graph_scale, history_matrix, select_fusion
from gnn.live import LiveForm, top_k_rows
from gnn.models import LightGCNRecommender
from gnn.vocab import Vocabulary
from graphrec.errors import ModelError


def _data(seed: int = 0, users: int = 40, items: int = 40) -> InteractionData:
    """Two taste groups (even / odd users), 10 items each: 6 train, 2 val, 2 test."""
    rng = np.random.default_rng(seed)
    parts: dict[str, tuple[list[int], list[int]]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for u in range(users):
        block = np.arange(0, items // 2) if u % 2 else np.arange(items // 2, items)
        for k, i in enumerate(rng.permutation(block)[:10]):
            name = "test" if k < 2 else "val" if k < 4 else "train"
            parts[name][0].append(u)
            parts[name][1].append(int(i))
    sp_ = {k: SplitPart(torch.tensor(v[0]), torch.tensor(v[1])) for k, v in parts.items()}
    return InteractionData(dataset="toy", snapshot_hash="h", users=Vocabulary([f"u{i}" for i in range(users)], kind="user"),
                           items=Vocabulary([f"i{i}" for i in range(items)], kind="item"), **sp_)


def _lightgcn(data: InteractionData, tmp_path: Path, train: SplitPart | None = None, layers: int = 3) -> Path:
    torch.manual_seed(0)
    model = LightGCNRecommender(data.num_users, data.num_items, embedding_dim=8, num_layers=layers)
    part = train if train is not None else data.train
    model.set_interactions(part.users, part.items)
    return save_checkpoint(tmp_path / "lgcn", model, users=data.users, items=data.items, dataset="toy", snapshot_hash="h")


@pytest.mark.parametrize("layers", [1, 3])
def test_history_sum_of_in_factors_is_the_trained_user_vector_without_its_own_embedding(tmp_path: Path, layers: int) -> None:
    data = _data()
    ck = load_checkpoint(_lightgcn(data, tmp_path, layers=layers))
    p, q = lightgcn_factors(ck)
    users, items = ck.model.embeddings()
    alpha0 = float(ck.model.lightgcn.alpha[0])
    ego = ck.model.lightgcn.embedding.weight[: data.num_users].detach().numpy()
    h = history_matrix([data.train], data.num_users, data.num_items)
    d_u = np.asarray(h.sum(axis=1)).ravel()
    # e_u = alpha_0 x_u^(0) + (1 / sqrt(d_u)) sum_{j in h} p_j   (module docstring)
    want = users.detach().numpy() - alpha0 * ego
    got = np.asarray(h @ p) / np.sqrt(d_u)[:, None]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(q, items.detach().numpy(), rtol=1e-6)


def test_part_is_row_aligned_with_the_form_items(tmp_path: Path) -> None:
    data = _data()
    path = _lightgcn(data, tmp_path)
    p, q = lightgcn_factors(load_checkpoint(path))
    order = ["i3", "nope", "i0"]
    part = lightgcn_part(path, order, training=data)
    np.testing.assert_allclose(part.in_factors[[0, 2]], p[[3, 0]])
    np.testing.assert_allclose(part.out_factors[[0, 2]], q[[3, 0]])
    assert not part.in_factors[1].any() and part.meta["items_known"] == 2
    with pytest.raises(ModelError, match="knows none"):
        lightgcn_part(path, ["x", "y"])


def test_a_lightgcn_trained_on_other_interactions_is_refused(tmp_path: Path) -> None:
    data = _data()
    with_val = SplitPart(torch.cat([data.train.users, data.val.users]), torch.cat([data.train.items, data.val.items]))
    ck = load_checkpoint(_lightgcn(data, tmp_path, train=with_val))
    with pytest.raises(ModelError, match="never saw"):
        check_trained_on(ck, data)
    check_trained_on(ck, dataclasses.replace(data, train=with_val))  # its own training part passes


def _cooccurrence(data: InteractionData, parts: tuple[str, ...] | list[str], factors: bool) -> LiveForm:
    h = history_matrix([data.part(p) for p in parts], data.num_users, data.num_items)
    c = (h.T @ h).toarray().astype(np.float32)
    np.fill_diagonal(c, 0.0)
    rng = np.random.default_rng(3)
    if not factors:
        return LiveForm(top_k_rows(c, 8))
    return LiveForm(top_k_rows(c, 8), rng.normal(size=(data.num_items, 4)).astype(np.float32),
                    rng.normal(size=(data.num_items, 4)).astype(np.float32), 0.5)


@pytest.mark.parametrize("factors", [True, False])
def test_fused_form_equals_the_dense_sum_of_its_parts(factors: bool) -> None:
    data = _data()
    base = _cooccurrence(data, ("train",), factors)
    rng = np.random.default_rng(1)
    part = EmbeddingPart(rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32), "v", {})
    w = FusionWeights(gamma=0.3, pop_scale=0.5, lam=0.7, graph_scale=graph_scale(base, part))
    pop = rng.random(40).astype(np.float32)
    fused = combine(base, None, pop, w, part)
    h = (rng.random((6, 40)) < 0.2).astype(np.float32)
    want = base.scores(sp.csr_matrix(h)) + 0.3 * 0.5 * h.sum(1, keepdims=True) * pop[None, :] + 0.7 * w.graph_scale * part.scores(h)
    np.testing.assert_allclose(fused.scores(sp.csr_matrix(h)), want, rtol=1e-4, atol=1e-4)
    assert fused.rank == (4 + 8 if factors else 8)
    assert combine(base, None, pop, w.model_copy(update={"lam": 0.0}), part).rank == base.rank  # weight 0: no extra factors


def test_graph_scale_puts_the_strongest_lightgcn_weights_on_the_filter_scale() -> None:
    data = _data()
    base = _cooccurrence(data, ("train",), False)
    part = EmbeddingPart(np.eye(40, dtype=np.float32) * 2.0, np.ones((40, 40), np.float32), "v", {})  # every p_j . q_i = 2
    assert graph_scale(base, part) == pytest.approx(float(np.abs(base.neighbours.data).mean()) / 2.0)


def test_selection_tries_lightgcn_after_text_and_popularity_and_picks_the_best(tmp_path: Path) -> None:
    data = _data()
    base = _cooccurrence(data, ("train",), False)
    # a LightGCN-like part that knows the two taste groups
    groups = np.zeros((40, 2), np.float32)
    groups[np.arange(20), 0] = 1.0
    groups[np.arange(20, 40), 1] = 1.0
    part = EmbeddingPart(groups, groups, "v", {})
    grid = FusionGrid(betas=[0.0], gammas=[0.0, 0.3], lambdas=[0.0, 1.0, 3.0])
    w, best, trials = select_fusion(base, None, data, grid, part)
    assert [t["lam"] for t in trials[:2]] == [0.0, 0.0] and {t["lam"] for t in trials} == {0.0, 1.0, 3.0}
    top = max(trials, key=lambda t: t["ndcg@20"])
    assert best["ndcg@20"] == pytest.approx(top["ndcg@20"]) and (w.gamma, w.lam) == (top["gamma"], top["lam"])
    without, _, trials0 = select_fusion(base, None, data, grid)
    assert without.lam == 0.0 and all(t["lam"] == 0.0 for t in trials0) and len(trials0) == 2


def test_fit_live_default_serves_the_lightgcn_part(tmp_path: Path) -> None:
    data = _data(1)
    groups = np.zeros((40, 2), np.float32)
    groups[np.arange(20), 0] = 1.0
    groups[np.arange(20, 40), 1] = 1.0
    part = EmbeddingPart(groups, groups, "v", {})
    served, report = fit_live_default(data, lambda d, parts: _cooccurrence(d, parts, False), None,
                                      grid=FusionGrid(gammas=[0.0], lambdas=[0.0, 1.0]), graph=part)
    assert report.weights.lam == 1.0 and served is not None and served.rank == 2
    np.testing.assert_allclose(served.in_factors, groups) and np.testing.assert_allclose(served.out_factors, groups)


def test_fit_live_takes_a_lightgcn_checkpoint_of_its_training_part_and_refuses_others(tmp_path: Path, taste_snapshot: Any) -> None:
    from gnn.live_checkpoint import load_live_checkpoint
    from gnn.live_pipeline import LiveFitConfig, fit_live

    data = InteractionData.from_snapshot(taste_snapshot)
    good = _lightgcn(data, tmp_path / "good")
    cfg = LiveFitConfig(filter={"model": "gfcf", "rank": 4}, use_text=False, neighbours_top_k=5, lightgcn=str(good), lightgcn_refit=False,
                        grid=FusionGrid(betas=[0.0], gammas=[0.0], lambdas=[0.0, 1.0]))
    path, summary = fit_live(taste_snapshot, tmp_path / "ck", cfg)
    extra = load_live_checkpoint(path).meta.extra
    assert summary["lightgcn"] == extra["lightgcn"]["version"] and {t["lam"] for t in extra["fusion_grid"]} == {0.0, 1.0}
    seen_val = SplitPart(torch.cat([data.train.users, data.val.users]), torch.cat([data.train.items, data.val.items]))
    bad = _lightgcn(data, tmp_path / "bad", train=seen_val)
    with pytest.raises(ModelError, match="never saw"):
        fit_live(taste_snapshot, tmp_path / "ck2", cfg.model_copy(update={"lightgcn": str(bad)}))
