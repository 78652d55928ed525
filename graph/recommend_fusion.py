r"""Score-level fusion at serving time: the pure parts (no Cypher, no driver; unit-tested).

The active model's publication stores what the offline ``fusion_both`` ranking needs
(see :mod:`gnn.fusion.serving`): per user the mean/std of their graph and content scores over the
whole catalogue and their training history size, per item ``log(1 + training count)``, on the
``(:ActiveModel)`` pointer the bucket bounds, the weights and the popularity mean/std. A candidate
item :math:`i` of user :math:`u` then gets

.. math::
    s_{ui} = w_g \frac{g_{ui} - \mu^g_u}{\sigma^g_u} + w_c \frac{c_{ui} - \mu^c_u}{\sigma^c_u}
    + w_p \frac{p_i - \mu^p}{\sigma^p}

(:math:`g` the dot product of the embeddings, :math:`c` the cosine of the user's content profile and
the item's text vector, :math:`p` the log popularity), the same number the offline evaluator computes
from full score rows, for any candidate set.

Candidates come from several sorted sources (the embedding index, the text index with the content
profile, the most popular items). Every weight is non-negative and each standardisation is
increasing, so an item none of the sources returned scores at most :func:`unseen_upper_bound`
(Fagin's threshold algorithm): when the ``k``-th best candidate reaches it, the top ``k`` is the
exact top ``k`` of the whole catalogue (up to the recall of the approximate vector indexes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

STD_FLOOR = 1e-12


class FusionParams(BaseModel):
    """Everything the fused score of one user needs besides the candidates' raw parts."""

    w_graph: float = Field(1.0, ge=0)
    w_content: float = Field(0.0, ge=0)
    w_popularity: float = Field(0.0, ge=0)
    graph_mean: float = 0.0
    graph_std: float = 1.0
    content_mean: float = 0.0
    content_std: float = 1.0
    pop_mean: float = 0.0
    pop_std: float = 1.0
    history_size: int | None = None
    fused: bool = Field(False, description="False: no score-fusion data (plain dot-product ranking).")


class ScoreParts(BaseModel):
    """The parts of a served item's score (``score = sum of weight * z``)."""

    graph: float = Field(description="Dot product of the user and item embeddings.")
    content: float | None = Field(None, description="Cosine of the user's content profile and the item's text vector.")
    popularity: float | None = Field(None, description="log(1 + training interactions of the item).")
    graph_z: float = Field(description="graph standardised with the user's mean/std over all items.")
    content_z: float = 0.0
    popularity_z: float = 0.0
    w_graph: float = 1.0
    w_content: float = 0.0
    w_popularity: float = 0.0


def bucket_of(history_size: int, bounds: Sequence[int]) -> int:
    """Activity bucket: the first ``b`` with ``history_size <= bounds[b]``, else ``len(bounds)``.

    Same as :meth:`gnn.fusion.scores.ScoreFusion.bucket_of` (``searchsorted(..., side='left')``).
    """
    return int(sum(1 for b in bounds if b < history_size))


def bucket_weights(history_size: int, bounds: Sequence[int], flat_weights: Sequence[float]) -> tuple[float, float, float]:
    """``(w_graph, w_content, w_popularity)`` of the user's bucket from the flat per-bucket list."""
    b = bucket_of(history_size, bounds)
    w = list(flat_weights)[3 * b : 3 * b + 3]
    if len(w) != 3:
        raise ValueError(f"weights for bucket {b} missing: {len(flat_weights)} values for {len(bounds) + 1} buckets")
    return float(w[0]), float(w[1]), float(w[2])


def safe_std(std: float | None) -> float:
    """A usable divisor (``1`` for missing or degenerate standard deviations)."""
    return float(std) if std is not None and np.isfinite(std) and std > STD_FLOOR else 1.0


def zscore(x: float | np.ndarray, mean: float, std: float) -> float | np.ndarray:
    """:math:`(x - \\mu) / \\sigma` with a degenerate :math:`\\sigma` replaced by 1."""
    return (x - mean) / safe_std(std)


def score_parts(graph: float, content: float | None, popularity: float | None, p: FusionParams) -> ScoreParts:
    """Standardise the raw parts of one candidate and weigh them (missing parts count as 0, like an empty profile)."""
    return ScoreParts(
        graph=float(graph), content=None if content is None else float(content), popularity=None if popularity is None else float(popularity),
        graph_z=float(zscore(graph, p.graph_mean, p.graph_std)),
        content_z=float(zscore(0.0 if content is None else content, p.content_mean, p.content_std)),
        popularity_z=float(zscore(0.0 if popularity is None else popularity, p.pop_mean, p.pop_std)),
        w_graph=p.w_graph, w_content=p.w_content, w_popularity=p.w_popularity,
    )


def fused_score(parts: ScoreParts) -> float:
    """:math:`w_g z_g + w_c z_c + w_p z_p`."""
    return parts.w_graph * parts.graph_z + parts.w_content * parts.content_z + parts.w_popularity * parts.popularity_z


def fused_scores(graph: np.ndarray, content: np.ndarray, popularity: np.ndarray, p: FusionParams) -> np.ndarray:
    """Vectorised :func:`fused_score` over candidates (raw ``graph``, ``content``, ``popularity`` arrays)."""
    return (p.w_graph * zscore(np.asarray(graph, np.float64), p.graph_mean, p.graph_std)
            + p.w_content * zscore(np.asarray(content, np.float64), p.content_mean, p.content_std)
            + p.w_popularity * zscore(np.asarray(popularity, np.float64), p.pop_mean, p.pop_std))


def unseen_upper_bound(
    p: FusionParams, graph_min: float | None, content_min: float | None, popularity_min: float | None,
    content_searched: bool, popularity_searched: bool,
) -> float:
    """Largest fused score an item that no candidate source returned can have.

    Args:
        p: The user's fusion parameters.
        graph_min: Lowest graph score (dot product) the embedding index returned.
        content_min: Lowest content cosine the text index returned.
        popularity_min: Lowest log popularity among the popular items taken.
        content_searched: Whether the text index was searched (content weight > 0 and a profile exists).
        popularity_searched: Whether the popular items were taken (popularity weight > 0).

    Returns:
        The bound; ``inf`` when a source with a positive weight returned nothing to bound it with.
    """
    if graph_min is None:
        return float("inf")
    bound = p.w_graph * float(zscore(graph_min, p.graph_mean, p.graph_std))
    if p.w_content > 0:
        if content_searched:
            if content_min is None:
                return float("inf")
            # max(., 0): an item without a text vector counts as content 0
            bound += p.w_content * float(zscore(max(content_min, 0.0), p.content_mean, p.content_std))
        else:  # no profile: every item's content part is 0
            bound += p.w_content * float(zscore(0.0, p.content_mean, p.content_std))
    if p.w_popularity > 0:
        if not popularity_searched or popularity_min is None:
            return float("inf")
        bound += p.w_popularity * float(zscore(popularity_min, p.pop_mean, p.pop_std))
    return bound


__all__ = [
    "FusionParams", "ScoreParts", "bucket_of", "bucket_weights", "fused_score", "fused_scores", "safe_std", "score_parts",
    "unseen_upper_bound", "zscore",
]
