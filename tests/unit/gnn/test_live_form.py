"""The live form, its fusion with text and popularity, and live checkpoints, against dense references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gnn.data import InteractionData, SplitPart
from gnn.fusion.live import (
    FusionGrid,
    FusionWeights,
    combine,
    fit_live_default,
    history_matrix,
    popularity,
    select_fusion,
    text_neighbours,
)
from gnn.live import LiveForm, top_k_rows
from gnn.live_checkpoint import is_live_checkpoint, live_checkpoint_dir, load_live_checkpoint, save_live_checkpoint
from gnn.vocab import Vocabulary
from graphrec.errors import ModelError


def _form(n: int = 12, r: int = 3, seed: int = 0, pop: bool = True) -> LiveForm:
    rng = np.random.default_rng(seed)
    w = top_k_rows(rng.random((n, n)).astype(np.float32), 4, drop_diagonal_offset=0)
    return LiveForm(w, rng.normal(size=(n, r)).astype(np.float32), rng.normal(size=(n, r)).astype(np.float32), 0.7,
                    rng.random(n).astype(np.float32) if pop else None, 0.2 if pop else 0.0)


@pytest.mark.parametrize("pop", [True, False])
def test_scores_equal_the_dense_formula(pop: bool) -> None:
    f = _form(pop=pop)
    h = (np.random.default_rng(1).random((5, 12)) < 0.3).astype(np.float32)
    dense = h @ f.neighbours.toarray() + f.alpha * (h @ f.in_factors) @ f.out_factors.T
    if pop:
        dense += f.gamma * h.sum(1, keepdims=True) * f.popularity[None, :]
    np.testing.assert_allclose(f.scores(sp.csr_matrix(h)), dense, rtol=1e-5, atol=1e-5)


def test_top_k_rows_keeps_the_largest_positive_entries_and_no_diagonal() -> None:
    block = np.array([[5.0, 1.0, 3.0, -1.0], [2.0, 9.0, 0.0, 4.0]], np.float32)
    w = top_k_rows(block, 2, drop_diagonal_offset=0).toarray()
    np.testing.assert_array_equal(w, [[0, 1.0, 3.0, 0], [2.0, 0, 0, 4.0]])


def test_bad_shapes_are_refused() -> None:
    w = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(ModelError):
        LiveForm(w, np.ones((3, 2), np.float32), None)
    with pytest.raises(ModelError):
        LiveForm(w, popularity=np.ones(4, np.float32))
    with pytest.raises(ModelError):
        LiveForm(w).scores(np.ones((1, 4), np.float32))


def test_text_neighbours_equal_dense_cosine_top_k() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 8)).astype(np.float32)
    x[4] = 0.0  # an item without text: no neighbours, nobody's neighbour
    got = text_neighbours(x, 5, chunk=7).toarray()
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    for i in range(30):
        want = {j for j in np.argsort(-cos[i])[:5] if cos[i, j] > 0}
        assert set(np.flatnonzero(got[i])) == want
        np.testing.assert_allclose(got[i, list(want)], cos[i, list(want)], rtol=1e-5)
    assert not got[4].any() and not got[:, 4].any()


def test_combine_is_linear_in_the_weights() -> None:
    f = _form(pop=False)
    t = top_k_rows(np.random.default_rng(2).random((12, 12)).astype(np.float32), 3, drop_diagonal_offset=0)
    pop = np.linspace(0, 1, 12).astype(np.float32)
    w = FusionWeights(beta=0.5, gamma=2.0, text_scale=0.3, pop_scale=0.1)
    h = sp.csr_matrix((np.random.default_rng(4).random((3, 12)) < 0.4).astype(np.float32))
    got = combine(f, t, pop, w).scores(h)
    want = f.scores(h) + 0.5 * 0.3 * (h @ t).toarray() + 2.0 * 0.1 * np.asarray(h.sum(1)) * pop[None, :]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert combine(f, t, pop, FusionWeights()).popularity is None  # gamma 0: no popularity term


def test_popularity_and_history() -> None:
    part = SplitPart(torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 2, 0, 0, 1]))
    h = history_matrix([part], 3, 4)
    np.testing.assert_array_equal(h.toarray(), [[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(popularity(h), np.log1p([2, 1, 1, 0]) / np.log1p(2))


def _data(seed: int = 0) -> InteractionData:
    """Users who like one of two item blocks; val / test drawn from the same block."""
    rng = np.random.default_rng(seed)
    parts: dict[str, tuple[list[int], list[int]]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for u in range(40):
        block = np.arange(0, 20) if u % 2 else np.arange(20, 40)
        items = rng.permutation(block)[:10]
        for k, i in enumerate(items):
            name = "test" if k < 2 else "val" if k < 4 else "train"
            parts[name][0].append(u)
            parts[name][1].append(int(i))
    sp_ = {k: SplitPart(torch.tensor(v[0]), torch.tensor(v[1])) for k, v in parts.items()}
    return InteractionData(dataset="toy", snapshot_hash="h", users=Vocabulary([f"u{i}" for i in range(40)], kind="user"),
                           items=Vocabulary([f"i{i}" for i in range(40)], kind="item"), **sp_)


def _cooccurrence_fit(data: InteractionData, parts: tuple[str, ...] | list[str]) -> LiveForm:
    h = history_matrix([data.part(p) for p in parts], data.num_users, data.num_items)
    c = (h.T @ h).toarray().astype(np.float32)
    np.fill_diagonal(c, 0.0)
    return LiveForm(top_k_rows(c, 8))


def test_select_fusion_returns_the_best_grid_point() -> None:
    data = _data()
    grid = FusionGrid(betas=[0.0, 1.0], gammas=[0.0, 0.5])
    text = top_k_rows(np.random.default_rng(0).random((40, 40)).astype(np.float32), 3, drop_diagonal_offset=0)
    w, best, trials = select_fusion(_cooccurrence_fit(data, ("train",)), text, data, grid)
    assert len(trials) == 4
    top = max(trials, key=lambda t: t["ndcg@20"])
    assert best["ndcg@20"] == pytest.approx(top["ndcg@20"]) and (w.beta, w.gamma) == (top["beta"], top["gamma"])


def test_fit_live_default_serves_a_form_fitted_on_every_part() -> None:
    data = _data(1)
    seen: list[tuple[str, ...]] = []

    def fit(d: InteractionData, parts: tuple[str, ...]) -> LiveForm:
        seen.append(tuple(parts))
        return _cooccurrence_fit(d, parts)

    served, report = fit_live_default(data, fit, None, grid=FusionGrid(gammas=[0.0, 0.1]))
    assert seen == [("train",), ("train", "val"), ("train", "val", "test")]
    assert report.served_on == ["train", "val", "test"] and set(report.test_metrics) == {"recall@20", "ndcg@20"}
    want = _cooccurrence_fit(data, ("train", "val", "test"))
    np.testing.assert_allclose(served.neighbours.toarray(), want.neighbours.toarray())


def test_no_validation_part_is_refused() -> None:
    data = _data()
    empty = SplitPart(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    import dataclasses

    with pytest.raises(ModelError, match="validation"):
        select_fusion(_cooccurrence_fit(data, ("train",)), None, dataclasses.replace(data, val=empty))


@pytest.mark.parametrize("pop", [True, False])
def test_live_checkpoint_round_trips(tmp_path: Path, pop: bool) -> None:
    f = _form(pop=pop)
    ids = [f"i{i}" for i in range(12)]
    path = save_live_checkpoint(tmp_path / "ck", f, ids, dataset="toy", snapshot_hash="abc", val_metrics={"ndcg@20": 0.1},
                                extra={"served_on": ["train", "val", "test"]})
    assert is_live_checkpoint(path) and not is_live_checkpoint(tmp_path)
    assert live_checkpoint_dir(path) == live_checkpoint_dir(path / "live.npz") == path and live_checkpoint_dir(tmp_path) is None
    ck = load_live_checkpoint(path)
    assert ck.item_ids == ids and ck.meta.dataset == "toy" and ck.meta.extra["served_on"] == ["train", "val", "test"]
    h = sp.csr_matrix(np.eye(12, dtype=np.float32)[:4])
    np.testing.assert_allclose(ck.form.scores(h), f.scores(h), rtol=1e-6)
    with pytest.raises(ModelError):
        save_live_checkpoint(tmp_path / "bad", f, ids[:3], dataset="toy", snapshot_hash="abc")
    with pytest.raises(ModelError):
        load_live_checkpoint(tmp_path / "missing")
