"""Graph filters (GF-CF, Chebyshev, EASE): dense references, live forms, EASE refusal, carving, refits, selection."""

from __future__ import annotations

import math

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from graphrec.errors import InvalidArgumentError, ModelError
from gnn.checkpoint import load_checkpoint, save_checkpoint
from gnn.data import InteractionData, SplitPart
from gnn.evaluate import Evaluator
from gnn.filters import EASE, GFCF, ChebyshevFilter
from gnn.filters.chebyshev import chebyshev_coefficients, plateau
from gnn.filters.config import FILTER_CONFIGS, filter_config, load_filter_config
from gnn.filters.ease import check_ease_fits, ease_memory_bytes
from gnn.filters.selection import (
    SelectionConfig,
    auto_fit,
    evaluate_candidates,
    fit_filter,
    fit_for_serving,
    select_filter,
)
from gnn.holdout import carve_validation, merge_parts

from .conftest import random_data

SETTINGS = {
    "gfcf": dict(alpha=0.4, rank=6, power=0.5),
    "gfcf-sharpened": dict(alpha=0.4, rank=6, power=0.5, sharpen=0.8),
    "gfcf-rk4": dict(alpha=0.2, rank=6, power=0.5, sharpen=2.5, sharpen_order=4),
    "chebycf": dict(order=5, flatness=1.5, alpha=0.3, rank=6, power=0.3),
    "ease": dict(reg=20.0),
}
MODELS = ["gfcf", "gfcf-sharpened", "gfcf-rk4", "chebycf", "ease"]


def _config(name: str, **settings):
    """``filter_config`` of a test variant (``gfcf-sharpened`` / ``gfcf-rk4``: GF-CF with BSPM's Euler / Runge-Kutta sharpening step)."""
    return filter_config(name.split("-")[0], **settings)


def _dense(data: InteractionData, part: SplitPart | None = None) -> np.ndarray:
    part = part or data.train
    r = np.zeros((data.num_users, data.num_items), dtype=np.float64)
    r[part.users.numpy(), part.items.numpy()] = 1.0
    return r


def _pow(d: np.ndarray, p: float) -> np.ndarray:
    return np.where(d > 0, np.maximum(d, 1) ** p, 0.0)


def _top_subspace(r: np.ndarray, rank: int) -> np.ndarray:
    du, di = r.sum(1), r.sum(0)
    rn = _pow(du, -0.5)[:, None] * r * _pow(di, -0.5)[None, :]
    _, _, vt = np.linalg.svd(rn)
    return vt[:rank].T


def reference_scores(model: str, r: np.ndarray, s: dict) -> np.ndarray:
    """Textbook dense implementations (eigendecomposition for the Chebyshev filter, inverse for EASE)."""
    du, di = r.sum(1), r.sum(0)
    rn = _pow(du, -0.5)[:, None] * r * _pow(di, -0.5)[None, :]
    p = rn.T @ rn
    if model == "ease":
        g = r.T @ r + s["reg"] * np.eye(r.shape[1])
        inv = np.linalg.inv(g)
        b = np.eye(r.shape[1]) - inv / np.diag(inv)[None, :]
        return r @ b
    beta = s["power"]
    if model.startswith("gfcf"):
        lin = r @ p
    else:
        mu, q = np.linalg.eigh(p)
        x = np.clip(1 - 2 * mu, -1, 1)
        c = chebyshev_coefficients(s["order"], s["flatness"]).numpy()
        resp = sum(ck * np.cos(k * np.arccos(x)) for k, ck in enumerate(c))
        lin = ((r * _pow(di, -beta)[None, :]) @ (q * resp[None, :]) @ q.T) * _pow(di, beta)[None, :]
    v = _top_subspace(r, s["rank"])
    low = (r * _pow(di, -beta)[None, :]) @ v @ v.T * _pow(di, beta)[None, :]
    # the sharpening step: the order-m Taylor polynomial of exp(-T P), sum_k (-T P)^k / k!
    sharp = sum(np.linalg.matrix_power(-s.get("sharpen", 0.0) * p, k) / math.factorial(k) for k in range(s.get("sharpen_order", 1) + 1))
    return (lin + s["alpha"] * low) @ sharp


@pytest.fixture
def data() -> InteractionData:
    return random_data(num_users=40, num_items=30, seed=5)


@pytest.mark.parametrize("model", MODELS)
def test_exact_scores_equal_dense_reference(data: InteractionData, model: str) -> None:
    net = fit_filter(_config(model, neighbours_top_k=None, **SETTINGS[model]), data, device="cpu")
    got = net.scorer()(torch.arange(data.num_users)).numpy()
    r = _dense(data)
    expected = reference_scores(model, r, SETTINGS[model])
    unseen = r == 0  # self-votes of history items are never recommended (and not served)
    if model == "ease":
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(got[unseen], expected[unseen], rtol=1e-3, atol=1e-4)
    assert got.shape == (data.num_users, data.num_items) and np.isfinite(got).all()


def test_low_pass_basis_spans_the_top_singular_subspace(data: InteractionData) -> None:
    net = fit_filter(filter_config("gfcf", rank=6, neighbours_top_k=None), data, device="cpu")
    v = net.basis.double().numpy()
    ref = _top_subspace(_dense(data), 6)
    np.testing.assert_allclose(v @ v.T, ref @ ref.T, atol=1e-4)
    np.testing.assert_allclose(v.T @ v, np.eye(6), atol=1e-5)


def test_chebyshev_interpolates_the_target_at_its_nodes() -> None:
    order, flat = 6, 1.7
    c = chebyshev_coefficients(order, flat)
    nodes = torch.cos((torch.arange(order + 1, dtype=torch.float64) + 0.5) * torch.pi / (order + 1))
    value = sum(ck * torch.cos(k * torch.arccos(nodes)) for k, ck in enumerate(c))
    torch.testing.assert_close(value, plateau(nodes, flat))
    # flatness 1 is the linear filter: response mu, i.e. T(x) = 0.5 - 0.5 x
    torch.testing.assert_close(chebyshev_coefficients(3, 1.0), torch.tensor([0.5, -0.5, 0.0, 0.0], dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("top_k", [1, 4])
@pytest.mark.parametrize("correction", [0, 5])
def test_live_form_equals_the_truncated_scorer(data: InteractionData, model: str, top_k: int, correction: int) -> None:
    net = fit_filter(_config(model, neighbours_top_k=top_k, correction_rank=correction, **SETTINGS[model]), data, device="cpu")
    assert net.truncated and net.corrected == (correction > 0)
    live = net.live_form(top_k)
    assert live.top_k <= top_k and live.neighbours.diagonal().sum() == 0
    assert (live.rank > 0) == (model != "ease" or correction > 0)
    r = _dense(data)
    got = net.scorer()(torch.arange(data.num_users)).numpy()
    np.testing.assert_allclose(live.scores(r), got, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_live_form_with_every_neighbour_equals_the_exact_model(data: InteractionData, model: str) -> None:
    net = fit_filter(_config(model, neighbours_top_k=None, correction_rank=0, **SETTINGS[model]), data, device="cpu")
    r = _dense(data)
    live = net.live_form(data.num_items)
    exact = net.scorer()(torch.arange(data.num_users)).numpy()
    unseen = r == 0
    # negative weights are not served: compare with the exact model restricted to positive weights
    w = net.linear_rows(torch.arange(data.num_items)).numpy()
    np.fill_diagonal(w, 0.0)
    positive = r @ np.where(w > 0, w, 0.0) - r @ w
    np.testing.assert_allclose(live.scores(r)[unseen], (exact + positive)[unseen], rtol=1e-4, atol=1e-5)


def test_truncation_keeps_the_strongest_neighbours(data: InteractionData) -> None:
    net = fit_filter(filter_config("gfcf", neighbours_top_k=None, rank=4, correction_rank=0), data, device="cpu")
    full = net.linear_rows(torch.arange(data.num_items)).numpy()
    np.fill_diagonal(full, -np.inf)
    net.truncate(3)
    w = net.stored_neighbours().toarray()
    assert net.neighbours_top_k == 3 and net.init_kwargs["neighbours_top_k"] == 3
    for i in range(data.num_items):
        kept = np.flatnonzero(w[i])
        assert len(kept) <= 3
        if len(kept):
            assert w[i, kept].min() >= np.sort(full[i])[-3] - 1e-6
    with pytest.raises(ModelError, match="already truncated"):
        net.truncate(2)
    # a smaller live form cuts the stored rows further
    assert net.live_form(2).top_k <= 2
    # ... but not a corrected model's: its correction was fitted to the stored cut
    corrected = fit_filter(filter_config("gfcf", neighbours_top_k=3, rank=4, correction_rank=4), data, device="cpu")
    with pytest.raises(ModelError, match="serves its 3 neighbours"):
        corrected.live_form(2)


@pytest.mark.parametrize("model", MODELS)
def test_correction_equals_its_dense_reference(data: InteractionData, model: str) -> None:
    """Exact operator F (item-item plus low-pass part), cut W, E = F - W, training histories X, V the
    top-14 right singular vectors of X E: the served operator is W + E V V^T. (With 14 + 16 vectors
    for 30 items the randomized SVD spans every item: it must match the dense SVD.)"""
    net = fit_filter(_config(model, neighbours_top_k=None, correction_rank=14, factor_rank=14, **SETTINGS[model]), data, device="cpu")
    lin = net.linear_rows(torch.arange(data.num_items)).double().numpy()
    low = net.factors()
    f = lin + (net.alpha * low[0].double().numpy() @ low[1].double().numpy().T if low is not None else 0.0)
    net.truncate(3)
    assert net.corrected and net.corr_in.shape[1] == 14
    w = net.stored_neighbours().toarray().astype(np.float64)
    r = _dense(data)
    e = f - w
    _, sv, vt = np.linalg.svd(r @ e)
    assert sv[13] > 1.001 * sv[14]  # the top-14 space is unique
    v = vt[:14].T
    expected = r @ (w + e @ v @ v.T)
    got = net.scorer()(torch.arange(data.num_users)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(net.live_form(3).scores(r), got, rtol=1e-5, atol=1e-5)
    # the best rank-14 approximation of the missed scores: nearer the exact scores than the plain cut
    assert np.linalg.norm(got - r @ f) < np.linalg.norm(r @ w - r @ f)


@pytest.mark.parametrize("model", MODELS)
def test_full_rank_correction_gives_back_the_exact_model(data: InteractionData, model: str) -> None:
    exact = fit_filter(_config(model, neighbours_top_k=None, **SETTINGS[model]), data, device="cpu")
    cut = fit_filter(_config(model, neighbours_top_k=2, correction_rank=data.num_items, factor_rank=1000, **SETTINGS[model]), data, device="cpu")
    plain = fit_filter(_config(model, neighbours_top_k=2, correction_rank=0, **SETTINGS[model]), data, device="cpu")
    users = torch.arange(data.num_users)
    want = exact.scorer()(users).numpy()
    np.testing.assert_allclose(cut.scorer()(users).numpy(), want, rtol=1e-3, atol=1e-4)
    assert np.abs(plain.scorer()(users).numpy() - want).max() > 1e-2


def test_corrected_models_serve_factor_rank_dimensions() -> None:
    # a corrected model serves factor_rank dimensions, and its live form is its scorer
    data = random_data(num_users=40, num_items=30, seed=5)
    net = fit_filter(filter_config("gfcf", rank=6, neighbours_top_k=3, correction_rank=5, factor_rank=7), data, device="cpu")
    live = net.live_form(3)
    assert live.rank == 7
    # by default the served width is the larger of the low-pass rank and the correction rank
    auto = filter_config("gfcf", rank=6, neighbours_top_k=3, correction_rank=5)
    assert auto.model_kwargs()["factor_rank"] == 6 and fit_filter(auto, data, device="cpu").live_form(3).rank == 6
    assert filter_config("ease", correction_rank=4).model_kwargs()["factor_rank"] == 4
    np.testing.assert_allclose(live.scores(_dense(data)), net.scorer()(torch.arange(40)).numpy(), rtol=1e-5, atol=1e-5)


def test_ease_refuses_what_does_not_fit() -> None:
    assert ease_memory_bytes(10_000) == 1_200_000_000
    data = random_data(num_users=20, num_items=30, seed=2)
    with pytest.raises(ModelError, match=r"12 \* items\^2 bytes .* 30 items, over the limit"):
        fit_filter(filter_config("ease", max_bytes=1000), data, device="cpu")
    with pytest.raises(ModelError, match="GiB"):
        check_ease_fits(40_981, 4 * 1024**3)
    check_ease_fits(18_000, 4 * 1024**3)


def test_carve_validation_is_a_seeded_per_user_holdout_of_train() -> None:
    data = random_data(num_users=60, num_items=40, per_user=(5, 20), seed=1)
    data = dataclasses.replace(data, val=SplitPart(data.val.users[:0], data.val.items[:0]))
    carved = carve_validation(data, 0.25, seed=3)
    key = lambda p: set(zip(p.users.tolist(), p.items.tolist()))  # noqa: E731
    assert key(carved.train) | key(carved.val) == key(data.train)
    assert not key(carved.train) & key(carved.val)
    assert key(carved.test) == key(data.test)
    for u in range(data.num_users):
        n = int((data.train.users == u).sum())
        held = int((carved.val.users == u).sum())
        share = int(np.floor(n * 0.25 + 0.5))
        assert held == (share if share or n < 3 else 1)
        assert n == 0 or int((carved.train.users == u).sum()) >= 1
    assert key(carve_validation(data, 0.25, seed=3).val) == key(carved.val)
    assert key(carve_validation(data, 0.25, seed=4).val) != key(carved.val)
    with pytest.raises(InvalidArgumentError):
        carve_validation(data, 0.0)


def test_refit_for_serving_uses_every_part(data: InteractionData) -> None:
    config = filter_config("gfcf", rank=5, neighbours_top_k=4)
    served = fit_for_serving(data, config, device="cpu")
    assert served.fitted_parts == ("train", "val", "test")
    everything = merge_parts(data, ("train", "val", "test"))
    assert len(served.train_users) == len(everything) == len(data.train) + len(data.val) + len(data.test)
    pairs = set(zip(served.train_users.tolist(), served.train_items.tolist()))
    assert pairs == set(zip(everything.users.tolist(), everything.items.tolist()))
    # the same as fitting on data whose training part holds every interaction
    empty = SplitPart(data.val.users[:0], data.val.items[:0])
    merged = dataclasses.replace(data, train=everything, val=empty, test=empty)
    direct = fit_filter(config, merged, device="cpu")
    users = torch.arange(data.num_users)
    torch.testing.assert_close(served.scorer()(users), direct.scorer()(users))
    assert served.live_form(4).scores(_dense(data, everything)).shape == (data.num_users, data.num_items)


def test_auto_fit_selects_on_validation_then_refits_on_train_and_val() -> None:
    data = random_data(num_users=60, num_items=30, per_user=(4, 14), seed=7)
    no_val = dataclasses.replace(data, val=SplitPart(data.val.users[:0], data.val.items[:0]))
    cfg = SelectionConfig(ranks=[4, 8], orders=[1, 2], powers=[0.5], flatnesses=[1.0, 2.0], alphas=[0.0, 0.5], ease_regs=[10.0, 100.0], neighbours_top_k=5)
    fitted = auto_fit(no_val, cfg, device="cpu")
    assert fitted.carved and len(fitted.data.val) > 0
    assert fitted.model.fitted_parts == ("train", "val")
    assert len(fitted.model.train_users) == len(no_val.train)  # train + carved val = the original training part
    best = max(fitted.selection.candidates, key=lambda c: c["ndcg@20"])
    assert fitted.selection.val_metrics["ndcg@20"] == best["ndcg@20"]
    assert fitted.selection.config.model == best["config"]["model"] and fitted.selection.config.neighbours_top_k == 5
    models = {c["config"]["model"] for c in fitted.selection.candidates}
    assert models == {"gfcf", "chebycf", "ease"}


def test_selection_scores_match_the_evaluator(data: InteractionData) -> None:
    sel = select_filter(data, SelectionConfig(models=["gfcf"], ranks=[5], alphas=[0.3]), device="cpu")
    cand = next(c for c in sel.candidates if c["config"]["alpha"] == 0.3)
    net = fit_filter(filter_config("gfcf", rank=5, alpha=0.3, neighbours_top_k=None), data, device="cpu")
    ev = Evaluator(data, "val", ks=[20], device="cpu").evaluate(net)
    assert cand["ndcg@20"] == pytest.approx(ev["ndcg@20"], abs=1e-9)
    assert cand["recall@20"] == pytest.approx(ev["recall@20"], abs=1e-9)
    evaluator = Evaluator(data, "val", ks=[20], device="cpu")
    two = evaluate_candidates(evaluator, evaluator.users, lambda u: iter([net.score_rows(u), net.score_rows(u)]), 2)
    assert two[0] == two[1] and two[0]["ndcg@20"] == pytest.approx(ev["ndcg@20"], abs=1e-9)


def test_selection_scores_sharpened_candidates_like_the_model(data: InteractionData) -> None:
    exact = SelectionConfig(models=["gfcf"], ranks=[5], alphas=[0.3], neighbours_top_k=None)
    assert exact.sharpen_grid() == [0.0, 0.5, 1.0] and SelectionConfig(correction_rank=0).sharpen_grid() == [0.0]
    assert SelectionConfig().sharpen_grid() == [0.0, 0.5, 1.0]  # the correction gives the cut its sharpening back
    sel = select_filter(data, exact, device="cpu")
    euler = [c for c in sel.candidates if c["config"]["sharpen_order"] == 1]
    assert {c["config"]["sharpen"] for c in euler} == {0.0, 0.5, 1.0}
    cand = next(c for c in euler if c["config"]["sharpen"] == 1.0 and c["config"]["alpha"] == 0.3)
    net = fit_filter(filter_config("gfcf", rank=5, alpha=0.3, sharpen=1.0, neighbours_top_k=None), data, device="cpu")
    ev = Evaluator(data, "val", ks=[20], device="cpu").evaluate(net)
    assert cand["ndcg@20"] == pytest.approx(ev["ndcg@20"], abs=1e-6)
    assert cand["recall@20"] == pytest.approx(ev["recall@20"], abs=1e-6)


def test_selection_scores_runge_kutta_sharpened_candidates_like_the_model(data: InteractionData) -> None:
    exact = SelectionConfig(models=["gfcf"], ranks=[5], alphas=[0.2], sharpens=[0.0, 1.0], rk4_sharpens=[2.5], neighbours_top_k=None)
    sel = select_filter(data, exact, device="cpu")
    rk4 = [c for c in sel.candidates if c["config"]["sharpen_order"] == 4]
    assert {(c["config"]["sharpen"], c["config"]["alpha"], c["config"]["rank"]) for c in rk4} == {(2.5, 0.0, 5), (2.5, 0.2, 5)}
    cand = next(c for c in rk4 if c["config"]["alpha"] == 0.2)
    net = fit_filter(filter_config("gfcf", rank=5, alpha=0.2, sharpen=2.5, sharpen_order=4, neighbours_top_k=None), data, device="cpu")
    ev = Evaluator(data, "val", ks=[20], device="cpu").evaluate(net)
    assert cand["ndcg@20"] == pytest.approx(ev["ndcg@20"], abs=1e-6)
    assert cand["recall@20"] == pytest.approx(ev["recall@20"], abs=1e-6)
    plain = select_filter(data, exact.model_copy(update={"sharpens": [0.0]}), device="cpu")  # no sharpening tried: no Runge-Kutta pass
    assert all(c["config"]["sharpen"] == 0.0 for c in plain.candidates)


def test_selection_respects_the_time_budget_and_needs_validation(data: InteractionData) -> None:
    sel = select_filter(data, SelectionConfig(time_budget_s=1e-6, ranks=[4], orders=[2]), device="cpu")
    assert {c["config"]["model"] for c in sel.candidates} == {"gfcf"}
    assert any("time budget" in s for s in sel.skipped)
    # by default the Runge-Kutta pass runs even past the budget; the Euler pass does not
    assert {c["config"]["sharpen_order"] for c in sel.candidates} == {1, 4}
    assert {c["config"]["sharpen"] for c in sel.candidates if c["config"]["sharpen_order"] == 1} == {0.0}
    assert any("Euler" in s for s in sel.skipped) and not any("Runge-Kutta" in s for s in sel.skipped)
    strict = select_filter(data, SelectionConfig(time_budget_s=1e-6, ranks=[4], orders=[2], rk4_always=False), device="cpu")
    assert {c["config"]["sharpen"] for c in strict.candidates} == {0.0}
    assert any("Runge-Kutta" in s for s in strict.skipped)
    empty = dataclasses.replace(data, val=SplitPart(data.val.users[:0], data.val.items[:0]))
    with pytest.raises(InvalidArgumentError, match="validation part"):
        select_filter(empty)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("top_k", [None, 3])
def test_checkpoint_roundtrip_keeps_scores_and_live_form(tmp_path: Path, data: InteractionData, model: str, top_k: int | None) -> None:
    net = fit_filter(_config(model, neighbours_top_k=top_k, **SETTINGS[model]), data, device="cpu")
    path = save_checkpoint(tmp_path / model, net, users=data.users, items=data.items, dataset="tiny", snapshot_hash="h", extra={"fitted_on": ["train"]})
    ckpt = load_checkpoint(path)
    users = torch.arange(data.num_users)
    torch.testing.assert_close(ckpt.model.scorer()(users), net.scorer()(users), rtol=0, atol=0)
    assert ckpt.meta.extra["fitted_on"] == ["train"]
    if top_k is not None:
        a, b = ckpt.model.live_form(top_k), net.live_form(top_k)
        assert (a.neighbours != b.neighbours).nnz == 0 and a.alpha == b.alpha


@pytest.mark.parametrize("model", sorted(FILTER_CONFIGS))
def test_configs_are_documented_and_round_trip(model: str) -> None:
    config = filter_config(model, neighbours_top_k=7)
    assert load_filter_config(config.model_dump()) == config
    assert all(f.description for f in type(config).model_fields.values())
    assert all(f.description for f in SelectionConfig.model_fields.values())
    with pytest.raises(InvalidArgumentError):
        filter_config(model, neighbours_top_k=0)
    with pytest.raises(InvalidArgumentError):
        filter_config("nope")


def test_model_classes_validate_arguments() -> None:
    with pytest.raises(ModelError):
        GFCF(3, 4, neighbours_top_k=0)
    with pytest.raises(ModelError):
        ChebyshevFilter(3, 4, flatness=0.0)
    with pytest.raises(ModelError):
        EASE(3, 4, reg=0.0)
