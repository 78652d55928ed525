"""Fit the default served model from a snapshot: select on validation, report test, refit on everything.

Steps of :func:`fit_live`:

1. Read the snapshot's parts; when it has no validation part, carve one out of the training part
   (:func:`gnn.holdout.carve_validation`).
2. Choose the graph filter and its settings on the validation part (:mod:`gnn.filters.selection`,
   within a time budget), unless a filter config is given.
3. Encode the item texts (the offline BERT model, cached) when the items have any.
4. Choose the fusion weights of text neighbours and popularity on the validation part, refit on
   train + validation and evaluate on test (the numbers a user quotes), then refit on *every*
   interaction (the form that is served): :func:`gnn.fusion.live.fit_live_default`. A LightGCN
   given as a checkpoint joins the fusion; when it gets a weight, it is retrained on every
   interaction for its best epoch count (:mod:`gnn.fusion.lightgcn_refit`).
5. Save a live checkpoint whose metadata keeps the evaluation numbers and the served form apart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from gnn.data import InteractionData
from gnn.filters.base import DEFAULT_CORRECTION_RANK
from gnn.checkpoint import load_checkpoint
from gnn.fusion.lightgcn_part import EmbeddingPart, lightgcn_part
from gnn.fusion.lightgcn_refit import refit_lightgcn
from gnn.fusion.live import FusionGrid, fit_live_default
from gnn.holdout import carve_validation, merge_parts
from gnn.live import LiveForm
from gnn.live_checkpoint import save_live_checkpoint
from graphrec.snapshot import Snapshot


class LiveFitConfig(BaseModel):
    """Settings of :func:`fit_live` (the defaults are the product's default model)."""

    filter: dict[str, Any] | None = Field(None, description="A fixed filter config (gnn.filters.config); None: chosen on validation.")
    select_budget_s: float = Field(120.0, gt=0, description="Time budget of the filter selection on validation.")
    neighbours_top_k: int = Field(100, gt=0, description="Filter neighbours kept per item (NEIGHBOUR relationships).")
    correction_rank: int = Field(DEFAULT_CORRECTION_RANK, ge=0, description="Rank of the low-rank correction of the cut neighbours "
                                 "(gnn.filters.base): better rankings at a factor product per request; 0: none, the cheapest to serve "
                                 "(docs/models.md).")
    text_top_k: int = Field(20, ge=0, description="Text neighbours per item (0: no content term).")
    use_text: bool = Field(True, description="Fuse BERT text neighbours when the items have text.")
    grid: FusionGrid = Field(default_factory=FusionGrid)
    lightgcn: str | None = Field(None, description="LightGCN checkpoint trained on this snapshot (graphrec train): its part joins the "
                                 "fusion with a weight chosen on validation (gnn.fusion.lightgcn_part); None: no LightGCN.")
    lightgcn_refit: bool = Field(True, description="When LightGCN gets a weight, retrain it on every interaction for the checkpoint's "
                                 "best epoch count (gnn.fusion.lightgcn_refit), so the served part is fitted on all the data like "
                                 "the filter; False: serve the checkpoint's training-part model.")
    device: str = Field("auto", description="Where the LightGCN refit trains: auto (a GPU when present), cpu or cuda.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Share of each user's training part carved for validation when the split has none.")
    seed: int = 0


def filter_fitter(config: Any) -> Any:
    """``(data, parts) -> LiveForm`` for a fixed filter config (the :data:`gnn.fusion.live.FilterFit` protocol)."""

    def fit(data: InteractionData, parts: Sequence[str]) -> LiveForm:
        part = merge_parts(data, tuple(parts))
        model = config.build(data.num_users, data.num_items)
        model.set_interactions(part.users, part.items)
        model.fit()
        form = model.live_form(config.neighbours_top_k)
        model.release_linear()
        return form

    return fit


def choose_filter(data: InteractionData, cfg: LiveFitConfig) -> tuple[Any, dict[str, Any]]:
    """The filter config to use and what its selection measured."""
    from gnn.filters.config import load_filter_config

    if cfg.filter is not None:
        fc = load_filter_config({"correction_rank": cfg.correction_rank, **cfg.filter, "neighbours_top_k": cfg.neighbours_top_k})
        return fc, {"chosen": "given", "config": fc.model_dump()}
    from gnn.filters.selection import SelectionConfig, select_filter

    result = select_filter(data, SelectionConfig(time_budget_s=cfg.select_budget_s, neighbours_top_k=cfg.neighbours_top_k,
                                                       correction_rank=cfg.correction_rank, seed=cfg.seed),
                           device="cpu")
    return result.config, result.to_json()


def item_text_vectors(snapshot: Snapshot, cache_dir: str | os.PathLike[str] | None, progress: bool = False) -> tuple[np.ndarray | None, str | None]:
    """BERT vectors of the items' texts (``None`` when no item has a text or a title), and the encoder identity."""
    from gnn.text.cache import encode_with_cache
    from gnn.text.encoder import TextEncoder
    from gnn.text.recipe import build_item_texts

    items = snapshot.items
    if not any(c in items.columns for c in ("text", "title")):
        return None, None
    texts = build_item_texts(items)
    if not any(t.strip() for t in texts):
        return None, None
    encoder = TextEncoder()
    vectors, _ = encode_with_cache(encoder, texts, cache_dir, progress=progress)
    empty = np.array([not t.strip() for t in texts])
    vectors = np.asarray(vectors, np.float32)
    vectors[empty] = 0.0
    return vectors, encoder.identity


def with_validation(data: InteractionData, cfg: LiveFitConfig) -> tuple[InteractionData, bool]:
    """``data`` with a validation part: its own, or one carved out of the training part (``True``)."""
    if len(data.val):
        return data, False
    return carve_validation(data, cfg.val_fraction, seed=cfg.seed), True


def fit_live(
    snapshot: Snapshot,
    out_dir: str | os.PathLike[str],
    config: LiveFitConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Fit the default live model on ``snapshot`` and save it to ``out_dir`` (see the module docstring).

    Returns:
        ``(checkpoint folder, summary)``.
    """
    cfg = config or LiveFitConfig()
    t0 = time.perf_counter()
    data, carved = with_validation(InteractionData.from_snapshot(snapshot), cfg)
    fc, selection = choose_filter(data, cfg)
    t_sel = time.perf_counter()
    vectors, identity = item_text_vectors(snapshot, cache_dir, progress) if cfg.use_text and cfg.text_top_k > 0 else (None, None)
    t_text = time.perf_counter()
    ckpt = load_checkpoint(cfg.lightgcn) if cfg.lightgcn else None
    graph = lightgcn_part(ckpt, list(data.items.ids), training=data) if ckpt is not None else None
    refitted: list[EmbeddingPart] = []

    def refit_graph(parts: Sequence[str]) -> EmbeddingPart:
        assert ckpt is not None
        refitted.append(refit_lightgcn(ckpt, data, parts, device=cfg.device, progress=progress))
        return refitted[-1]

    form, report = fit_live_default(data, filter_fitter(fc), vectors, text_top_k=max(cfg.text_top_k, 1), grid=cfg.grid, graph=graph,
                                    refit_graph=refit_graph if cfg.lightgcn_refit else None)
    assert form is not None
    lightgcn = None
    if graph is not None:
        lightgcn = {**graph.meta, "served_on": report.graph_served_on if report.weights.lam > 0 else [],
                    "served": (f"retrained on {report.graph_served_on} for {refitted[-1].meta['epochs']} epochs" if refitted
                               else "the checkpoint's model (trained on the training part)" if report.weights.lam > 0
                               else "not served (weight 0 chosen on validation)"),
                    "refit": refitted[-1].meta if refitted else None}
    extra = {
        "kind": "live", "served_on": report.served_on, "validation_carved": carved, "filter": fc.model_dump(),
        "filter_selection": selection, "fusion": report.weights.model_dump(), "fusion_grid": report.grid,
        "text_encoder": identity, "text_top_k": cfg.text_top_k if vectors is not None else 0,
        "lightgcn": lightgcn,
        "evaluation": {"val": "filter and weights fitted on train, scored on val",
                       "test": "refitted on train + val with the chosen settings, scored on test"},
        "config": cfg.model_dump(),
    }
    path = save_live_checkpoint(out_dir, form, list(data.items.ids), dataset=data.dataset, snapshot_hash=data.snapshot_hash,
                                val_metrics=report.val_metrics, test_metrics=report.test_metrics, extra=extra)
    summary = {
        "checkpoint": str(path), "filter": fc.model_dump(), "fusion": report.weights.model_dump(), "val": report.val_metrics,
        "test": report.test_metrics, "served_on": report.served_on, "validation_carved": carved,
        "neighbours": int(form.neighbours.nnz), "rank": form.rank, "lightgcn": None if graph is None else graph.source,
        "lightgcn_served": None if lightgcn is None else lightgcn["served"],
        "seconds": {"select_filter": round(t_sel - t0, 1), "encode_text": round(t_text - t_sel, 1), **report.seconds,
                    "total": round(time.perf_counter() - t0, 1)},
    }
    return path, summary


__all__ = ["LiveFitConfig", "choose_filter", "filter_fitter", "fit_live", "item_text_vectors", "with_validation"]
