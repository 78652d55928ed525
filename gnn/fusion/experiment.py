"""The fusion benchmark protocol behind ``graphrec bench fusion``.

From one snapshot (per-user temporal split by default):

1. **Cold items**: a fraction of the items that have interactions is held out of training
   entirely (every interaction with them is removed from train and validation); all their
   interactions form the cold-item test set, ranked among the cold items only.
2. **Sparse users**: a fraction of the users keep only their ``sparse_history`` most recent
   training interactions (the others are dropped), simulating users with <= 5 interactions
   (MovieLens users all have >= 20 ratings, so the group would otherwise be empty).
3. Models are trained on what is left (warm items only) with the LightGCN engineer's
   :func:`gnn.train.train_model` and evaluated with :class:`gnn.evaluate.Evaluator` on the test
   part, for warm users and sparse users separately (candidates: warm items, train and validation
   items masked), and on the cold-item test set.

Methods: popularity, content-only kNN (cosine of the item's text vector to the user's history
profile), pure LightGCN, score-level fusion (graph + content + popularity, weights fitted on
validation per activity bucket), feature-level fusion (:class:`~gnn.fusion.feature.FusedLightGCN`),
and both together. Cold items get collaborative vectors from the cold-start head
(:func:`~gnn.fusion.coldstart.fit_cold_head`); pure LightGCN cannot rank them (random order).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, Field
from torch import Tensor

from graphrec.errors import DataError
from graphrec.snapshot import Snapshot, SplitSpec, make_snapshot, read_snapshot
from gnn.config import TrainConfig
from gnn.data import InteractionData, SplitPart
from gnn.evaluate import Evaluator
from gnn.fusion.coldstart import HeadConfig, fit_cold_head
from gnn.fusion.feature import FusedLightGCN
from gnn.fusion.scores import ScoreFusion, content_profiles, fit_on_validation, popularity_scores, restrict_part, standardise
from gnn.models import RecModel, build_model
from gnn.text.cache import EncodeStats, encode_with_cache
from gnn.text.encoder import EncoderConfig, TextEncoder
from gnn.text.recipe import TextRecipe, build_item_texts

log = logging.getLogger(__name__)

Scorer = Callable[[Tensor], Tensor]


class BenchConfig(BaseModel):
    """Settings of :func:`run_fusion_bench`."""

    split: SplitSpec = Field(
        default_factory=lambda: SplitSpec(name="per_user_temporal", params={"test_fraction": 0.2, "val_fraction": 0.1}),
        description="Split applied when the data comes without one (MovieLens folder).",
    )
    cold_item_fraction: float = Field(0.1, ge=0, lt=1, description="Share of interacted items held out as cold items.")
    sparse_user_fraction: float = Field(0.2, ge=0, lt=1, description="Share of users truncated to a short history.")
    sparse_history: int = Field(5, gt=0, description="Training interactions kept for truncated users (most recent).")
    seed: int = Field(2020, description="Seed of the cold-item and sparse-user draws, and of training.")
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(
            embedding_dim=64, num_layers=3, lr=1e-2, reg=1e-4, batch_size=8192, num_negatives=8,
            loss="softmax", temperature=0.2, epochs=40, eval_every=5, patience=2,
        ),
        description="Training hyperparameters, shared by pure and fused LightGCN.",
    )
    id_dropout: float = Field(0.0, ge=0, lt=1, description="FusedLightGCN id_dropout.")
    head: HeadConfig = Field(default_factory=HeadConfig)
    k: int = Field(20, gt=0, description="Cut-off of Recall/NDCG.")
    recipe: TextRecipe = Field(default_factory=TextRecipe)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)


@dataclass
class BenchData:
    """The prepared protocol data."""

    snapshot: Snapshot
    data: InteractionData  # training view: warm items only (reindexed)
    warm_items: np.ndarray  # snapshot item index of each training-view item
    cold_items: np.ndarray  # snapshot item index of each cold item
    sparse_users: np.ndarray  # bool per user
    cold_test: SplitPart  # (user, cold-item local index) pairs
    text_vectors: np.ndarray  # (snapshot items, D)
    extra_features: list[np.ndarray]
    extra_names: list[str]
    encode_stats: EncodeStats | None = None


@dataclass
class BenchResult:
    """Metrics per method and user group, plus run information."""

    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    default_method: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "validation_ndcg": self.validation, "default": self.default_method, "info": self.info}


def load_bench_snapshot(dataset: str, path: str | os.PathLike[str] | None, split: SplitSpec, seed: int) -> Snapshot:
    """A snapshot from a snapshot folder (``manifest.json``), or a MovieLens folder (split applied).

    Raises:
        DataError: Unknown dataset or unreadable folder.
    """
    if path is not None and (Path(path) / "manifest.json").is_file():
        return read_snapshot(path)
    if dataset != "movielens":
        raise DataError(f"unknown dataset {dataset!r}: pass --path to a snapshot folder, or --dataset movielens")
    from gnn.data import snapshot_from_frames
    from loaders.movielens import read_movielens

    frames = read_movielens(path)
    return snapshot_from_frames(frames, split, seed=seed)


def _extra_feature_blocks(items: pd.DataFrame) -> tuple[list[np.ndarray], list[str]]:
    blocks, names = [], []
    for col in sorted(c for c in items.columns if c.startswith("feat_")):
        try:
            arr = np.stack([np.asarray(v, dtype=np.float32) for v in items[col]])
        except ValueError as e:
            raise DataError(f"item column {col} must hold equal-length float lists: {e}") from e
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        blocks.append(arr / np.where(norms > 0, norms, 1.0))
        names.append(col)
    return blocks, names


def prepare(snapshot: Snapshot, cfg: BenchConfig, cache_dir: str | os.PathLike[str] | None, progress: bool = True) -> BenchData:
    """Encode item texts, draw cold items and sparse users, and build the training view."""
    rng = np.random.default_rng(cfg.seed)
    encoder = TextEncoder(cfg.encoder)
    texts = build_item_texts(snapshot.items, cfg.recipe)
    vectors, stats = encode_with_cache(encoder, texts, cache_dir, progress=progress)
    extra, extra_names = _extra_feature_blocks(snapshot.items)

    inter = snapshot.interactions
    n_items, n_users = len(snapshot.items), len(snapshot.users)
    interacted = np.unique(inter["item_idx"].to_numpy())
    n_cold = int(round(len(interacted) * cfg.cold_item_fraction))
    cold = np.sort(rng.choice(interacted, size=n_cold, replace=False)) if n_cold else np.zeros(0, np.int64)
    is_cold = np.zeros(n_items, bool)
    is_cold[cold] = True
    warm = np.flatnonzero(~is_cold)

    sparse = np.zeros(n_users, bool)
    n_sparse = int(round(n_users * cfg.sparse_user_fraction))
    if n_sparse:
        sparse[rng.choice(n_users, size=n_sparse, replace=False)] = True

    item_is_cold = is_cold[inter["item_idx"].to_numpy()]
    cold_rows = inter[item_is_cold]
    keep = inter[~item_is_cold].copy()
    # truncate sparse users' training history to their most recent interactions
    tr = keep[(keep["split"] == "train") & sparse[keep["user_idx"].to_numpy()]]
    tr = tr.sort_values(["user_idx", "timestamp"], kind="stable")
    rank_from_end = tr.groupby("user_idx").cumcount(ascending=False)
    drop = tr.index[rank_from_end.to_numpy() >= cfg.sparse_history]
    keep = keep.drop(index=drop)

    local = np.full(n_items, -1, np.int64)
    local[warm] = np.arange(len(warm))
    keep["item_idx"] = local[keep["item_idx"].to_numpy()]
    view = make_snapshot(snapshot.manifest.dataset, "fusion-bench", snapshot.manifest.split, snapshot.users,
                         snapshot.items.iloc[warm].reset_index(drop=True), keep)
    data = InteractionData.from_snapshot(view)
    cold_local = np.full(n_items, -1, np.int64)
    cold_local[cold] = np.arange(len(cold))
    key = np.unique(cold_rows["user_idx"].to_numpy(np.int64) * max(len(cold), 1) + cold_local[cold_rows["item_idx"].to_numpy()])
    cold_test = SplitPart(torch.from_numpy(key // max(len(cold), 1)), torch.from_numpy(key % max(len(cold), 1)))
    return BenchData(snapshot, data, warm, cold, sparse, cold_test, vectors, extra, extra_names, stats)


def _cold_data(bd: BenchData) -> InteractionData:
    from gnn.vocab import Vocabulary

    empty = SplitPart(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    ids = bd.snapshot.items["id"].iloc[bd.cold_items].tolist()
    return InteractionData(bd.data.dataset, bd.data.snapshot_hash, bd.data.users, Vocabulary(ids, kind="item"),
                           train=empty, val=empty, test=bd.cold_test)


def _matrix_scorer(user_emb: Tensor, item_emb: Tensor) -> Scorer:
    it = item_emb.t().contiguous()
    return lambda users: user_emb[users] @ it


def _fused_scorer(fusion: ScoreFusion, parts: dict[str, Scorer], history: np.ndarray) -> Scorer:
    def score(users: Tensor) -> Tensor:
        z = {k: standardise(f(users)) for k, f in parts.items()}
        return fusion.combine(z, history[users.cpu().numpy()])

    return score


def run_fusion_bench(
    snapshot: Snapshot, cfg: BenchConfig, cache_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> BenchResult:
    """Run the whole protocol (see module docstring) and return the metrics table."""
    from gnn.train import train_model

    t_start = time.perf_counter()
    bd = prepare(snapshot, cfg, cache_dir, progress)
    data = bd.data
    res = BenchResult()
    k = cfg.k
    nU, nI = data.num_users, data.num_items
    train_u, train_i = data.train.users.numpy(), data.train.items.numpy()
    history_sizes = np.bincount(np.unique(train_u * nI + train_i) // nI, minlength=nU)
    T_warm = torch.from_numpy(bd.text_vectors[bd.warm_items])
    T_cold = torch.from_numpy(bd.text_vectors[bd.cold_items])
    extra_warm = [b[bd.warm_items] for b in bd.extra_features]
    extra_cold = [b[bd.cold_items] for b in bd.extra_features]
    feats_warm = np.concatenate([T_warm.numpy(), *extra_warm], 1)
    feats_cold = np.concatenate([T_cold.numpy(), *extra_cold], 1) if len(bd.cold_items) else np.zeros((0, feats_warm.shape[1]), np.float32)

    # content profiles from the (training-view) history
    hist_lists = [[] for _ in range(nU)]
    for u, i in zip(train_u, train_i):
        hist_lists[u].append(i)
    profiles = torch.from_numpy(content_profiles([np.asarray(h, np.int64) for h in hist_lists], T_warm.numpy()))
    pop = torch.from_numpy(popularity_scores(train_i, nI))
    gen = torch.Generator().manual_seed(cfg.seed)
    noise_cold = torch.rand(nU, len(bd.cold_items), generator=gen) * 1e-6

    def zeros_cold(users: Tensor) -> Tensor:  # cold items have no popularity: the term drops out of the fusion
        return torch.zeros(len(users), len(bd.cold_items))

    scorers_warm: dict[str, Scorer] = {
        "popularity": lambda users: pop.unsqueeze(0).repeat(len(users), 1),  # a copy: the evaluator masks in place
        "content_knn": _matrix_scorer(profiles, T_warm),
    }
    scorers_cold: dict[str, Scorer] = {
        "popularity": lambda users: noise_cold[users],  # no interactions: random order
        "content_knn": _matrix_scorer(profiles, T_cold),
    }

    # --- train pure and feature-fused LightGCN with the shared trainer ---
    trained: dict[str, RecModel] = {}
    tcfg = cfg.train
    for name in ("lightgcn", "fusion_feature"):
        torch.manual_seed(tcfg.seed)
        if name == "lightgcn":
            model: RecModel = build_model(
                "lightgcn", num_users=nU, num_items=nI, embedding_dim=tcfg.embedding_dim, num_layers=tcfg.num_layers, init_std=tcfg.init_std)
        else:
            dims = [T_warm.shape[1], *[b.shape[1] for b in extra_warm]]
            model = FusedLightGCN(nU, nI, dims, ["text", *bd.extra_names], embedding_dim=tcfg.embedding_dim,
                                  num_layers=tcfg.num_layers, init_std=tcfg.init_std, id_dropout=cfg.id_dropout)
            model.set_features([T_warm, *[torch.from_numpy(b) for b in extra_warm]])
        model.set_interactions(data.train.users, data.train.items)
        t0 = time.perf_counter()
        tr = train_model(model, data, tcfg.model_copy(update={"model": name if name == "lightgcn" else "lightgcn_fused"}), progress=progress)
        res.info[f"{name}_train"] = {"best_epoch": tr.best_epoch, "epochs": len(tr.history), "seconds": round(time.perf_counter() - t0, 1),
                                     "sec_per_epoch": round(float(np.mean([h.seconds for h in tr.history])), 2)}
        trained[name] = model.cpu().eval()

    for name, model in trained.items():
        with torch.no_grad():
            ue, ie = (x.detach() for x in model.embeddings())
        scorers_warm[name] = _matrix_scorer(ue, ie)
        head = fit_cold_head(feats_warm, ie.numpy(), ue.numpy(), train_u, train_i, cfg.head)
        with torch.no_grad():
            cold_vecs = head(torch.from_numpy(feats_cold))
        if name == "lightgcn":
            scorers_cold[name] = lambda users: noise_cold[users]  # cannot rank items it never saw
            scorers_cold["lightgcn+cold_head"] = _matrix_scorer(ue, cold_vecs)
            graph_cold = _matrix_scorer(ue, cold_vecs)
        else:
            scorers_cold[name] = _matrix_scorer(ue, cold_vecs)
            graph_cold_f = _matrix_scorer(ue, cold_vecs)

    # --- score-level fusion: weights fitted on validation, per activity bucket ---
    for graph_name, fused_name in (("lightgcn", "fusion_score"), ("fusion_feature", "fusion_both")):
        parts = {"graph": scorers_warm[graph_name], "content": scorers_warm["content_knn"], "popularity": scorers_warm["popularity"]}
        fusion = fit_on_validation(data, parts, history_sizes, bounds=(cfg.sparse_history,), k=k, seed=cfg.seed)
        res.info[f"{fused_name}_weights"] = fusion.model_dump()
        scorers_warm[fused_name] = _fused_scorer(fusion, parts, history_sizes)
        gc = graph_cold if graph_name == "lightgcn" else graph_cold_f
        scorers_cold[fused_name] = _fused_scorer(
            fusion, {"graph": gc, "content": scorers_cold["content_knn"], "popularity": zeros_cold}, history_sizes)

    # --- evaluation ---
    all_users = np.ones(nU, bool)
    groups = {"warm_users": ~bd.sparse_users & (history_sizes > cfg.sparse_history),
              "sparse_users": history_sizes <= cfg.sparse_history}
    evaluators = {g: Evaluator(restrict_part(data, "test", m), "test", ks=[k], metrics=["recall", "ndcg"], device="cpu") for g, m in groups.items()}
    val_all = Evaluator(restrict_part(data, "val", all_users), "val", ks=[k], metrics=["ndcg"], device="cpu")
    cold_eval = Evaluator(_cold_data(bd), "test", ks=[k], metrics=["recall", "ndcg"], device="cpu") if len(bd.cold_items) else None
    for name, scorer in scorers_warm.items():
        row: dict[str, dict[str, float]] = {}
        for g, ev in evaluators.items():
            r = ev.evaluate(scorer)
            row[g] = {f"recall@{k}": r.metrics[f"recall@{k}"], f"ndcg@{k}": r.metrics[f"ndcg@{k}"], "users": r.num_users}
        res.validation[name] = val_all.evaluate(scorer).metrics[f"ndcg@{k}"]
        res.metrics[name] = row
    if cold_eval is not None:
        for name, scorer in scorers_cold.items():
            r = cold_eval.evaluate(scorer)
            res.metrics.setdefault(name, {})["cold_items"] = {
                f"recall@{k}": r.metrics[f"recall@{k}"], f"ndcg@{k}": r.metrics[f"ndcg@{k}"], "users": r.num_users}
    fusions = [m for m in ("fusion_score", "fusion_feature", "fusion_both") if m in res.validation]
    res.default_method = max(fusions, key=lambda m: res.validation[m])
    res.info.update(
        dataset=snapshot.manifest.dataset, snapshot_hash=snapshot.manifest.hash, split=snapshot.manifest.split.model_dump(),
        users=nU, warm_items=int(nI), cold_items=int(len(bd.cold_items)), sparse_users=int(groups["sparse_users"].sum()),
        train_interactions=len(data.train), cold_test_interactions=len(bd.cold_test),
        encode=bd.encode_stats.model_dump() if bd.encode_stats else None, text_model=TextEncoder(cfg.encoder).identity,
        seconds=round(time.perf_counter() - t_start, 1), config=cfg.model_dump(mode="json"),
    )
    return res
