r"""Top-K ranking metrics computed from hit matrices (vectorised over users).

For a user with relevant set :math:`T_u` (``n_rel`` items) and a ranked list whose position
:math:`j` (1-based) is a hit :math:`h_j \in \{0, 1\}`:

.. math::
    \mathrm{Recall@K} = \frac{\sum_{j \le K} h_j}{|T_u|}, \quad
    \mathrm{Precision@K} = \frac{\sum_{j \le K} h_j}{K}, \quad
    \mathrm{HitRate@K} = [\textstyle\sum_{j \le K} h_j > 0]

.. math::
    \mathrm{NDCG@K} = \frac{\sum_{j \le K} h_j / \log_2(j + 1)}{\sum_{j \le \min(K, |T_u|)} 1 / \log_2(j + 1)}
    \quad\text{(LightGCN's definition: ideal list = } \min(K, |T_u|) \text{ hits)}

.. math::
    \mathrm{MAP@K} = \frac{1}{\min(K, |T_u|)} \sum_{j \le K} h_j \, \mathrm{Precision@}j

Each is averaged over the evaluated users (users with at least one relevant item).
"""

from __future__ import annotations

import torch
from torch import Tensor

METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "hit_rate", "map")


def _discounts(k: int, device: torch.device) -> Tensor:
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=torch.float64))


def recall_at_k(hits: Tensor, n_rel: Tensor, k: int) -> Tensor:
    """Per-user Recall@k. ``hits``: (B, >=k) bool, ``n_rel``: (B,) > 0."""
    return hits[:, :k].sum(1).double() / n_rel.double()


def precision_at_k(hits: Tensor, n_rel: Tensor, k: int) -> Tensor:
    """Per-user Precision@k (denominator ``k`` even when fewer than ``k`` items could be ranked)."""
    return hits[:, :k].sum(1).double() / k


def hit_rate_at_k(hits: Tensor, n_rel: Tensor, k: int) -> Tensor:
    """Per-user HitRate@k."""
    return (hits[:, :k].sum(1) > 0).double()


def ndcg_at_k(hits: Tensor, n_rel: Tensor, k: int) -> Tensor:
    """Per-user NDCG@k with LightGCN's ideal DCG (``min(k, n_rel)`` hits at the top)."""
    h = hits[:, :k].double()
    disc = _discounts(k, hits.device)
    dcg = (h * disc[: h.size(1)]).sum(1)
    idcg = torch.cumsum(disc, 0)[(n_rel.clamp(max=k) - 1).long()]
    return dcg / idcg


def map_at_k(hits: Tensor, n_rel: Tensor, k: int) -> Tensor:
    """Per-user average precision at k, normalised by ``min(k, n_rel)``."""
    h = hits[:, :k].double()
    ranks = torch.arange(1, h.size(1) + 1, device=h.device, dtype=torch.float64)
    prec = torch.cumsum(h, 1) / ranks
    return (prec * h).sum(1) / n_rel.clamp(max=k).double()


METRIC_FUNCTIONS = {
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "precision": precision_at_k,
    "hit_rate": hit_rate_at_k,
    "map": map_at_k,
}
