"""The served LightGCN part is retrained on every interaction with the settings chosen on validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from gnn.config import TrainConfig
from gnn.data import InteractionData
from gnn.fusion import live as fusion_live
from gnn.fusion.lightgcn_part import EmbeddingPart, lightgcn_factors
from gnn.fusion.lightgcn_refit import refit_data, refit_lightgcn
from gnn.fusion.live import FusionGrid, fit_live_default
from gnn.holdout import merge_parts
from gnn.train import create_model, train_model
from graphrec.errors import ModelError

from .test_lightgcn_part import _cooccurrence, _data, _lightgcn

ALL = ("train", "val", "test")


def _trained(data: InteractionData, tmp_path: Path) -> Checkpoint:
    """A LightGCN trained by train_model on the training part, early-stopped on validation (config and best epoch recorded)."""
    cfg = TrainConfig(embedding_dim=8, num_layers=2, epochs=6, eval_every=2, patience=0, batch_size=64, lr=0.01, device="cpu", seed=7)
    result = train_model(create_model(cfg, data), data, cfg, progress=False)
    path = save_checkpoint(tmp_path / "lgcn", result.model, users=data.users, items=data.items, dataset=data.dataset,
                           snapshot_hash=data.snapshot_hash, config=cfg, best_epoch=result.best_epoch)
    return load_checkpoint(path)


def _reference(ckpt: Checkpoint, data: InteractionData, epochs: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """The same recipe trained by hand on every interaction for ``epochs``."""
    everything = refit_data(data, ALL)
    assert ckpt.config is not None
    cfg = ckpt.config.model_copy(update={"epochs": epochs, "patience": 0, "device": "cpu"})
    model = train_model(create_model(cfg, everything), everything, cfg, progress=False).model
    p, q = lightgcn_factors(model)
    return p, q, model


def test_refit_trains_the_checkpoint_recipe_on_every_interaction_for_its_best_epoch_count(tmp_path: Path) -> None:
    data = _data(2)
    ckpt = _trained(data, tmp_path)
    part = refit_lightgcn(ckpt, data, ALL, device="cpu")
    everything = merge_parts(data, ALL)
    assert part.meta["interactions"] == len(everything) == len(data.train) + len(data.val) + len(data.test)
    assert part.meta["epochs"] == ckpt.meta.best_epoch and part.meta["trained_on"] == list(ALL)
    p, q, model = _reference(ckpt, data, int(ckpt.meta.best_epoch or 0))
    assert int(model.train_users.numel()) == len(everything)  # the served model saw every interaction
    np.testing.assert_allclose(part.in_factors, p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(part.out_factors, q, rtol=1e-5, atol=1e-6)
    p0, _ = lightgcn_factors(ckpt)
    assert not np.allclose(part.in_factors, p0)  # not the training-part model


def test_refit_needs_the_training_config(tmp_path: Path) -> None:
    data = _data()
    bare = load_checkpoint(_lightgcn(data, tmp_path))  # saved without its config / best epoch
    with pytest.raises(ModelError, match="cannot be retrained"):
        refit_lightgcn(bare, data, ALL, device="cpu")


def test_the_served_form_gets_the_refitted_part_only_when_lightgcn_has_a_weight(tmp_path: Path) -> None:
    data = _data(1)
    ckpt = _trained(data, tmp_path)
    groups = np.zeros((40, 2), np.float32)
    groups[np.arange(20), 0] = 1.0
    groups[np.arange(20, 40), 1] = 1.0
    chosen_on_val = EmbeddingPart(groups, groups, "v", {})  # a part that knows the two taste groups: weight 1 is chosen
    calls: list[tuple[str, ...]] = []

    def refit(parts: Any) -> EmbeddingPart:
        calls.append(tuple(parts))
        return refit_lightgcn(ckpt, data, parts, device="cpu")

    served, report = fit_live_default(data, lambda d, parts: _cooccurrence(d, parts, False), None,
                                      grid=FusionGrid(gammas=[0.0], lambdas=[0.0, 1.0]), graph=chosen_on_val, refit_graph=refit)
    assert report.weights.lam == 1.0 and calls == [ALL] and report.graph_served_on == list(ALL)
    p, q, _ = _reference(ckpt, data, int(ckpt.meta.best_epoch or 0))
    assert served is not None and served.rank == p.shape[1]
    lam = report.weights.lam * report.weights.graph_scale
    np.testing.assert_allclose(served.out_factors, q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served.in_factors, p, rtol=1e-5, atol=1e-6)
    assert served.alpha == pytest.approx(lam)

    calls.clear()
    _, report0 = fit_live_default(data, lambda d, parts: _cooccurrence(d, parts, False), None,
                                  grid=FusionGrid(gammas=[0.0], lambdas=[0.0]), graph=chosen_on_val, refit_graph=refit)
    assert report0.weights.lam == 0.0 and calls == [] and report0.graph_served_on == ["train"]


def test_fit_live_publishes_lightgcn_retrained_on_every_interaction(tmp_path: Path, taste_snapshot: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from gnn.live_checkpoint import load_live_checkpoint
    from gnn.live_pipeline import LiveFitConfig, fit_live

    data = InteractionData.from_snapshot(taste_snapshot)
    ckpt = _trained(data, tmp_path)
    select = fusion_live.select_fusion

    def with_lightgcn(*args: Any, **kwargs: Any) -> Any:  # whatever validation says, give LightGCN a weight
        w, metrics, trials = select(*args, **kwargs)
        return w.model_copy(update={"lam": 1.0}), metrics, trials

    monkeypatch.setattr(fusion_live, "select_fusion", with_lightgcn)
    cfg = LiveFitConfig(filter={"model": "gfcf", "rank": 4}, use_text=False, neighbours_top_k=5, lightgcn=str(ckpt.path),
                        grid=FusionGrid(betas=[0.0], gammas=[0.0], lambdas=[0.0]), device="cpu")
    path, summary = fit_live(taste_snapshot, tmp_path / "ck", cfg)
    extra = load_live_checkpoint(path).meta.extra["lightgcn"]
    assert extra["served_on"] == ["train", "val", "test"] == summary["served_on"]
    assert extra["refit"]["interactions"] == len(merge_parts(data, ALL)) and extra["refit"]["epochs"] == ckpt.meta.best_epoch
    assert summary["lightgcn_served"].startswith("retrained on")
    form = load_live_checkpoint(path).form
    _, q, _ = _reference(ckpt, data, int(ckpt.meta.best_epoch or 0))
    np.testing.assert_allclose(form.out_factors[:, -q.shape[1]:], q, rtol=1e-4, atol=1e-5)  # the served LightGCN columns

    _, kept = fit_live(taste_snapshot, tmp_path / "ck2", cfg.model_copy(update={"lightgcn_refit": False}))
    assert kept["lightgcn_served"] == "the checkpoint's model (trained on the training part)"
