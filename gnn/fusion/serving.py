r"""What serving needs to apply the score-level fusion online exactly as it was evaluated offline.

The default ranking picked on validation (``fusion_both``) is

.. math::
    s_{ui} = w_g^{(b_u)}\, z_u^g(\mathbf{e}_u^\top \mathbf{e}_i) + w_c^{(b_u)}\, z_u^c(\mathbf{p}_u^\top \mathbf{t}_i)
    + w_p^{(b_u)}\, z^p(\log(1 + n_i)),
    \qquad z_u^x(v) = \frac{v - \mu_u^x}{\sigma_u^x}

with :math:`\mu_u^x, \sigma_u^x` the mean and (unbiased) standard deviation of user :math:`u`'s
scores of kind :math:`x` over the model's whole item catalogue (:func:`gnn.fusion.scores.standardise`
with no candidate restriction), :math:`b_u` the activity bucket of the user's training history size.
Offline those statistics come from full score rows; online only a few candidates are scored, so the
statistics are precomputed here, in batches of users, and stored in the graph by ``graph.embeddings.publish``.

Nothing here imports ``neo4j``; ``api/cli/publish_cmd.py`` glues this to the graph writer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gnn.fusion.scores import ScoreFusion, content_profiles, popularity_scores

STD_FLOOR = 1e-12
"""Standard deviations at or below this become 1 (as :func:`gnn.fusion.scores.standardise`)."""


@dataclass
class ServingFusion:
    """Per-user and per-item tables of the score-level fusion, aligned with the checkpoint's ids.

    Attributes:
        user_ids: External user ids (rows of ``history_sizes``, ``profiles``, ``user_stats``).
        item_ids: External item ids (rows of ``popularity``).
        bounds: Activity bucket upper bounds (history size ``<= bounds[b]`` -> bucket ``b``).
        weights: ``(len(bounds) + 1, 3)`` weights (graph, content, popularity) per bucket.
        history_sizes: ``(U,)`` training interactions per user.
        profiles: ``(U, D)`` unit content profiles (zero rows for an empty history).
        user_stats: ``(U, 4)`` ``[graph mean, graph std, content mean, content std]`` over all items.
        popularity: ``(I,)`` ``log(1 + training count)``.
        pop_mean: Mean of ``popularity`` over all items.
        pop_std: Unbiased std of ``popularity`` (1 when degenerate).
    """

    user_ids: list[str]
    item_ids: list[str]
    bounds: list[int]
    weights: np.ndarray
    history_sizes: np.ndarray
    profiles: np.ndarray
    user_stats: np.ndarray
    popularity: np.ndarray
    pop_mean: float
    pop_std: float
    validation: list[dict[str, float]] = field(default_factory=list)

    def popular_ids(self, n: int = 1000) -> list[str]:
        """Ids of the ``n`` most popular items, most popular first (ties by catalogue order)."""
        order = np.argsort(-self.popularity, kind="stable")[:n]
        return [self.item_ids[j] for j in order]

    def uses_content(self) -> bool:
        """Whether any bucket gives the content score a positive weight."""
        return bool((self.weights[:, 1] > 0).any())


def row_stats(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and unbiased std (``ddof=1``), std floored like :func:`gnn.fusion.scores.standardise`.

    Args:
        scores: ``(n, I)`` score rows.

    Returns:
        ``(mean, std)``, each ``(n,)`` float64.
    """
    s = np.asarray(scores, dtype=np.float64)
    mean = s.mean(1)
    std = s.std(1, ddof=1) if s.shape[1] > 1 else np.full(len(s), np.nan)
    std = np.where(std > STD_FLOOR, std, 1.0)
    return mean, std


def user_score_stats(
    user_vectors: np.ndarray, item_vectors: np.ndarray, max_cells: int = 4_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of every user's scores ``user_vectors @ item_vectors.T`` over all items, in batches.

    Args:
        user_vectors: ``(U, d)``.
        item_vectors: ``(I, d)``.
        max_cells: At most this many scores are held at once (``batch * I``).

    Returns:
        ``(mean, std)``, each ``(U,)`` float64.
    """
    U = np.asarray(user_vectors, dtype=np.float32)
    It = np.ascontiguousarray(np.asarray(item_vectors, dtype=np.float32).T)
    batch = max(1, int(max_cells // max(It.shape[1], 1)))
    mean = np.empty(len(U), np.float64)
    std = np.empty(len(U), np.float64)
    for start in range(0, len(U), batch):
        mean[start : start + batch], std[start : start + batch] = row_stats(U[start : start + batch] @ It)
    return mean, std


def serving_fusion(
    fusion: ScoreFusion,
    user_ids: list[str],
    item_ids: list[str],
    user_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    text_vectors: np.ndarray,
    train_users: np.ndarray,
    train_items: np.ndarray,
    max_cells: int = 4_000_000,
) -> ServingFusion:
    """Precompute the tables of :class:`ServingFusion` the way :mod:`gnn.fusion.pipeline` scores offline.

    History, content profiles (:func:`~gnn.fusion.scores.content_profiles`, duplicates counted),
    popularity (:func:`~gnn.fusion.scores.popularity_scores`) and history sizes come from the
    training interactions stored in the checkpoint; the per-user statistics are over every item
    of the model's catalogue.

    Args:
        fusion: Validation-fitted weights (``meta.score_fusion`` of a fusion checkpoint).
        user_ids: External user ids (``U``).
        item_ids: External item ids (``I``).
        user_embeddings: ``(U, d)`` final user embeddings.
        item_embeddings: ``(I, d)`` final item embeddings.
        text_vectors: ``(I, D)`` unit text vectors (the model's ``features_0`` block).
        train_users: User index of each training interaction.
        train_items: Item index of each training interaction.
        max_cells: Batch size bound of the statistics (scores held at once).
    """
    nU, nI = len(user_ids), len(item_ids)
    tu = np.asarray(train_users, dtype=np.int64)
    ti = np.asarray(train_items, dtype=np.int64)
    order = np.argsort(tu, kind="stable")
    starts = np.searchsorted(tu[order], np.arange(nU + 1))
    hist = [ti[order][starts[u] : starts[u + 1]] for u in range(nU)]
    T = np.asarray(text_vectors, dtype=np.float32)
    profiles = content_profiles(hist, T)
    pop = popularity_scores(ti, nI).astype(np.float64)
    g_mean, g_std = user_score_stats(user_embeddings, item_embeddings, max_cells)
    c_mean, c_std = user_score_stats(profiles, T, max_cells)
    p_mean, p_std = row_stats(pop[None, :])
    weights = np.array([[w.graph, w.content, w.popularity] for w in fusion.buckets], dtype=np.float64)
    return ServingFusion(
        user_ids=list(user_ids), item_ids=list(item_ids), bounds=[int(b) for b in fusion.bounds], weights=weights,
        history_sizes=np.diff(starts).astype(np.int64), profiles=profiles,
        user_stats=np.stack([g_mean, g_std, c_mean, c_std], 1), popularity=pop,
        pop_mean=float(p_mean[0]), pop_std=float(p_std[0]), validation=list(fusion.validation),
    )


def serving_fusion_from_checkpoint(path: str | os.PathLike[str], max_cells: int = 4_000_000) -> ServingFusion | None:
    """:class:`ServingFusion` of a fusion checkpoint (``fusion.pt`` or its folder).

    Returns:
        ``None`` when the checkpoint carries no score-fusion weights (trained without a validation split).

    Raises:
        ModelError: The checkpoint cannot be read or lacks its training interactions / text block.
    """
    import torch

    from graphrec.errors import ModelError
    from gnn.fusion.coldstart import CHECKPOINT_FILE, FusionCheckpoint

    p = Path(path).expanduser()
    f = p / CHECKPOINT_FILE if p.is_dir() else p
    try:
        payload = torch.load(f, map_location="cpu", weights_only=False)
        meta = FusionCheckpoint.model_validate(payload["meta"])
        state = payload["state_dict"]
        text, tu, ti = state["features_0"], state["train_users"], state["train_items"]
        ue, ie = payload["user_embeddings"], payload["item_embeddings"]
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise ModelError(f"cannot read the score-fusion inputs of {f}: {e}") from e
    if meta.score_fusion is None:
        return None
    return serving_fusion(meta.score_fusion, list(meta.user_ids), list(meta.item_ids), ue.numpy(), ie.numpy(), text.numpy(),
                          tu.numpy(), ti.numpy(), max_cells)


__all__ = ["ServingFusion", "row_stats", "serving_fusion", "serving_fusion_from_checkpoint", "user_score_stats"]
