r"""Score-level fusion: a weighted sum of per-user standardised graph, content and popularity scores.

.. math::
    s_{ui} = w_g\, z_u(\mathbf{e}_u^\top \mathbf{e}_i) + w_c\, z_u(\mathbf{p}_u^\top \mathbf{t}_i)
    + w_p\, z_u(\log(1 + n_i))

where :math:`z_u` standardises a user's scores over the candidate items (zero mean, unit std),
:math:`\mathbf{t}_i` is the item's unit text vector, :math:`\mathbf{p}_u` the unit mean of the
text vectors of the user's history (the content profile) and :math:`n_i` the item's training
interaction count. Weights are fitted on the validation split by a grid over the simplex,
separately per user-activity bucket (users with few interactions lean on content).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import BaseModel, Field

from graphrec.errors import InvalidArgumentError

if TYPE_CHECKING:
    from gnn.data import InteractionData


def content_profiles(history: Sequence[np.ndarray], item_vectors: np.ndarray) -> np.ndarray:
    """Unit mean text vector of each user's history items (zero vector for an empty history).

    Args:
        history: Per user, item indices (into ``item_vectors``).
        item_vectors: ``(n_items, D)`` unit text vectors.

    Returns:
        ``(n_users, D)`` float32.
    """
    out = np.zeros((len(history), item_vectors.shape[1]), dtype=np.float32)
    for u, items in enumerate(history):
        if len(items):
            v = item_vectors[items].sum(0)
            n = np.linalg.norm(v)
            if n > 0:
                out[u] = v / n
    return out


def content_scores(profiles: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    r"""Content-only kNN scores :math:`\mathbf{p}_u^\top \mathbf{t}_i` (cosine of profile and item text)."""
    return profiles @ item_vectors.T


def popularity_scores(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """``log(1 + count)`` of each item in the training interactions."""
    return np.log1p(np.bincount(train_items, minlength=num_items).astype(np.float32))


def standardise(scores: np.ndarray | torch.Tensor, candidates: np.ndarray | None = None) -> torch.Tensor:
    """Per-row z-score over the candidate columns (constant rows become zeros)."""
    s = torch.as_tensor(scores, dtype=torch.float32)
    ref = s if candidates is None else s[:, torch.as_tensor(candidates, dtype=torch.long)]
    mean = ref.mean(1, keepdim=True)
    std = ref.std(1, keepdim=True)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return (s - mean) / std


class FusionWeights(BaseModel):
    """Weights of one activity bucket."""

    graph: float = Field(ge=0)
    content: float = Field(ge=0)
    popularity: float = Field(ge=0)


class ScoreFusion(BaseModel):
    """Fitted score-level fusion: weights per user-activity bucket.

    ``buckets[b]`` applies to users whose training history has at most ``bounds[b]`` items;
    the last bucket has no bound (``bounds`` has one element fewer than ``buckets``).
    """

    bounds: list[int] = Field(default_factory=lambda: [5])
    buckets: list[FusionWeights] = Field(default_factory=lambda: [FusionWeights(graph=0.5, content=0.5, popularity=0.0)] * 2)
    validation: list[dict[str, float]] = Field(default_factory=list, description="Validation NDCG of each bucket's best weights.")

    def bucket_of(self, history_sizes: np.ndarray) -> np.ndarray:
        """Bucket index of each user from its training history size."""
        return np.searchsorted(np.asarray(self.bounds), np.asarray(history_sizes), side="left")

    def combine(self, parts: dict[str, torch.Tensor], history_sizes: np.ndarray) -> torch.Tensor:
        """Fused scores from standardised parts (``graph``, ``content``, ``popularity``; each ``(n, I)``)."""
        b = torch.as_tensor(self.bucket_of(history_sizes))
        w = torch.tensor([[x.graph, x.content, x.popularity] for x in self.buckets], dtype=torch.float32)[b]
        return w[:, 0:1] * parts["graph"] + w[:, 1:2] * parts["content"] + w[:, 2:3] * parts["popularity"]


def weight_grid(step: float = 0.1) -> list[FusionWeights]:
    """All weight triples on the simplex with the given step."""
    n = round(1 / step)
    out = []
    for g, c in itertools.product(range(n + 1), repeat=2):
        if g + c <= n:
            out.append(FusionWeights(graph=g / n, content=c / n, popularity=(n - g - c) / n))
    return out


def fit_score_fusion(
    parts: dict[str, torch.Tensor],
    history_sizes: np.ndarray,
    evaluate: Callable[[torch.Tensor, np.ndarray], float],
    bounds: Sequence[int] = (5,),
    step: float = 0.1,
) -> ScoreFusion:
    """Grid-search the weights of each activity bucket on the validation split.

    Args:
        parts: Standardised ``graph`` / ``content`` / ``popularity`` scores of the validation users.
        history_sizes: Training history size of each of those users.
        evaluate: ``evaluate(scores, rows) -> ndcg`` for the subset of user rows ``rows``.
        bounds: Bucket upper bounds (default: users with <= 5 interactions get their own weights).
        step: Grid step.

    Raises:
        InvalidArgumentError: If ``parts`` misses a component.
    """
    missing = {"graph", "content", "popularity"} - set(parts)
    if missing:
        raise InvalidArgumentError(f"score fusion needs parts {sorted(missing)}")
    fusion = ScoreFusion(bounds=list(bounds), buckets=[])
    bucket = fusion.bucket_of(history_sizes)
    grid = weight_grid(step)
    for b in range(len(bounds) + 1):
        rows = np.flatnonzero(bucket == b)
        best, best_w = -1.0, FusionWeights(graph=1.0, content=0.0, popularity=0.0)
        if len(rows):
            sub = {k: v[torch.as_tensor(rows)] for k, v in parts.items()}
            for w in grid:
                s = w.graph * sub["graph"] + w.content * sub["content"] + w.popularity * sub["popularity"]
                val = float(evaluate(s, rows))
                if val > best + 1e-12:
                    best, best_w = val, w
        fusion.buckets.append(best_w)
        fusion.validation.append({"bucket": b, "users": int(len(rows)), "ndcg": max(best, 0.0)})
    return fusion


def restrict_part(data: "InteractionData", part: str, user_mask: np.ndarray) -> "InteractionData":
    """Copy of ``data`` whose ``part`` keeps only the users in ``user_mask`` (for per-group evaluation)."""
    from gnn.data import InteractionData, SplitPart

    p = data.part(part)
    m = torch.from_numpy(np.asarray(user_mask, bool))[p.users]
    parts = {n: data.part(n) for n in ("train", "val", "test")}
    parts[part] = SplitPart(p.users[m], p.items[m])
    return InteractionData(data.dataset, data.snapshot_hash, data.users, data.items, **parts)


def fit_on_validation(
    data: "InteractionData",
    parts: dict[str, "Callable[[torch.Tensor], torch.Tensor]"],
    history_sizes: np.ndarray,
    bounds: Sequence[int] = (5,),
    k: int = 20,
    step: float = 0.1,
    max_cached_scores: float = 5e7,
    seed: int = 0,
) -> ScoreFusion:
    """Fit :class:`ScoreFusion` weights on ``data.val`` with the project's :class:`gnn.evaluate.Evaluator`.

    Args:
        data: Interactions (train masked, val targets).
        parts: Scorers ``users -> (B, I)`` for ``graph``, ``content`` and ``popularity``.
        history_sizes: Training history size per user.
        bounds: Activity bucket bounds.
        k: NDCG cut-off.
        step: Weight grid step.
        max_cached_scores: At most this many standardised scores per part are held in memory (the
            validation users are subsampled, seeded, beyond it).
        seed: Seed of that subsample.
    """
    from gnn.evaluate import Evaluator

    nU, nI = data.num_users, data.num_items
    val_users = torch.unique(data.val.users)
    max_rows = max(1, int(max_cached_scores // max(nI, 1)))
    if len(val_users) > max_rows:
        gen = torch.Generator().manual_seed(seed)
        val_users = val_users[torch.randperm(len(val_users), generator=gen)[:max_rows]].sort().values
    pos = torch.full((nU,), -1, dtype=torch.long)
    pos[val_users] = torch.arange(len(val_users))
    with torch.no_grad():
        Z = {n: standardise(f(val_users)) for n, f in parts.items()}
    bucket_of_row = ScoreFusion(bounds=list(bounds), buckets=[]).bucket_of(history_sizes[val_users.numpy()])
    evaluators: dict[int, Evaluator] = {}

    def evaluate(scores: torch.Tensor, rows: np.ndarray) -> float:
        b = int(bucket_of_row[rows[0]])
        if b not in evaluators:
            mask = np.zeros(nU, bool)
            mask[val_users.numpy()[rows]] = True
            evaluators[b] = Evaluator(restrict_part(data, "val", mask), "val", ks=[k], metrics=["ndcg"], device="cpu")
        local = torch.full((nU,), -1, dtype=torch.long)
        local[val_users[torch.as_tensor(rows)]] = torch.arange(len(rows))
        return evaluators[b].evaluate(lambda users: scores[local[users]]).metrics[f"ndcg@{k}"]

    return fit_score_fusion(Z, history_sizes[val_users.numpy()], evaluate, bounds=bounds, step=step)
