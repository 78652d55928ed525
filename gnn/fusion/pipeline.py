"""Train a feature-level fusion model on a whole snapshot and save it with its cold-start head.

This is what serving uses (:class:`gnn.fusion.coldstart.ColdStart`); the benchmark protocol lives
in :mod:`gnn.fusion.experiment`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from graphrec.snapshot import Snapshot
from gnn.config import TrainConfig
from gnn.data import InteractionData
from gnn.fusion.coldstart import FusionCheckpoint, HeadConfig, fit_cold_head, save_fusion_checkpoint
from gnn.fusion.feature import FusedLightGCN
from gnn.text.cache import encode_with_cache
from gnn.text.encoder import EncoderConfig, TextEncoder
from gnn.text.recipe import TextRecipe, build_item_texts


class FuseConfig(BaseModel):
    """Settings of :func:`fit_fusion`."""

    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(
            model="lightgcn_fused", embedding_dim=64, num_layers=3, lr=5e-3, reg=1e-4, batch_size=4096,
            num_negatives=16, loss="softmax", temperature=0.2, epochs=60, eval_every=5, patience=3,
        )
    )
    id_dropout: float = Field(0.0, ge=0, lt=1)
    head: HeadConfig = Field(default_factory=HeadConfig)
    recipe: TextRecipe = Field(default_factory=TextRecipe)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)


def item_feature_blocks(snapshot: Snapshot, text_vectors: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    """Text vectors plus every ``feat_*`` item column (rows L2-normalised), as blocks."""
    from gnn.fusion.experiment import _extra_feature_blocks

    extra, names = _extra_feature_blocks(snapshot.items)
    return [np.asarray(text_vectors, np.float32), *extra], ["text", *names]


def fit_fusion(
    snapshot: Snapshot,
    out_dir: str | os.PathLike[str],
    config: FuseConfig | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> tuple[Path, dict[str, object]]:
    """Encode item texts, train :class:`FusedLightGCN`, fit the cold-start head, save a checkpoint.

    Returns:
        ``(checkpoint file, summary)``.
    """
    from gnn.train import train_model

    cfg = config or FuseConfig()
    t0 = time.perf_counter()
    encoder = TextEncoder(cfg.encoder)
    vectors, stats = encode_with_cache(encoder, build_item_texts(snapshot.items, cfg.recipe), cache_dir, progress=progress)
    blocks, names = item_feature_blocks(snapshot, vectors)
    data = InteractionData.from_snapshot(snapshot)
    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = FusedLightGCN(data.num_users, data.num_items, [b.shape[1] for b in blocks], names, embedding_dim=tc.embedding_dim,
                          num_layers=tc.num_layers, init_std=tc.init_std, id_dropout=cfg.id_dropout)
    model.set_features(blocks)
    model.set_interactions(data.train.users, data.train.items)
    result = train_model(model, data, tc, progress=progress)
    model = model.cpu().eval()
    with torch.no_grad():
        ue, ie = (x.detach().numpy() for x in model.embeddings())
    # score-level weights on top of the fused model (graph + content + popularity), fitted on validation
    from gnn.fusion.scores import content_profiles, fit_on_validation, popularity_scores

    tu, ti = data.train.users.numpy(), data.train.items.numpy()
    order = np.argsort(tu, kind="stable")
    bounds_ = np.searchsorted(tu[order], np.arange(data.num_users + 1))
    hist = [ti[order][bounds_[u] : bounds_[u + 1]] for u in range(data.num_users)]
    T = torch.from_numpy(np.asarray(vectors, np.float32))
    profiles = torch.from_numpy(content_profiles(hist, T.numpy()))
    pop = torch.from_numpy(popularity_scores(ti, data.num_items))
    U_, I_ = torch.from_numpy(ue), torch.from_numpy(ie)
    score_fusion = None
    if len(data.val):
        score_fusion = fit_on_validation(
            data,
            {"graph": lambda u: U_[u] @ I_.T, "content": lambda u: profiles[u] @ T.T, "popularity": lambda u: pop.unsqueeze(0).repeat(len(u), 1)},
            np.array([len(h) for h in hist]), k=20, seed=tc.seed,
        )
    head = fit_cold_head(np.concatenate(blocks, 1), ie, ue, data.train.users.numpy(), data.train.items.numpy(), cfg.head)
    meta = FusionCheckpoint(
        model_type=model.model_type, init_kwargs=model.init_kwargs, encoder=cfg.encoder, encoder_identity=encoder.identity,
        recipe=cfg.recipe, feature_columns=names[1:], item_ids=data.items.ids, user_ids=data.users.ids,
        metrics={"best_epoch": result.best_epoch, "val": result.best_metrics, "snapshot_hash": data.snapshot_hash},
        score_fusion=score_fusion,
    )
    path = save_fusion_checkpoint(out_dir, model, head, meta)
    summary = {"checkpoint": str(path), "best_epoch": result.best_epoch, "val": result.best_metrics,
               "score_fusion": score_fusion.model_dump() if score_fusion else None,
               "encode": stats.model_dump(), "seconds": round(time.perf_counter() - t0, 1)}
    return path, summary
