r"""Per-user serving lists: each user's exact top ``N`` unseen items, computed when a model is published.

A published model's ranking of a known user never changes until the next publication: the user's
vector, score-fusion statistics and content profile are fixed, and so are the items' vectors,
text vectors and popularity. :func:`compute_serving_lists` therefore ranks the whole catalogue for
every user once, with exactly the score the query layer computes online
(:mod:`graph.recommend_fusion`; the dot product when no fusion is published), drops the items the
user had interacted with at publication time, and keeps the best ``N`` ids, best first.

At request time (:func:`graph.recommend.recommend`) the list replaces the vector-index searches:
the business filters (items seen since, genres, years, id lists) run over the list in order and
the first ``k`` survivors are the answer. That answer is the exact top ``k`` of the live ranking:
every eligible item is unseen now, hence unseen at publication; an eligible item outside the list
scores at most the list's last entry, and one further down the list at most the ``k``-th survivor.
When fewer than ``k`` survive (a rare genre, a long exclude list) the request falls back to the
live vector search.

The lists are one ``top_<tag>`` string-list property per user, versioned with the publication like
every other property, so a reader sees the list of the model it reads the pointer of.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import neo4j
import numpy as np

from graph.connection import read

DEFAULT_LIST_SIZE = 200
"""Items kept per user (``graphrec publish --serving-list-size``; 0 turns the lists off)."""

MAX_CELLS = 4_000_000
"""At most this many scores (users x items) are held at once while ranking."""

Q_SEEN_OF_GEN = """
MATCH (u:User {dataset: $dataset, gen: $gen})-[:INTERACTED]->(i:Item)
RETURN u.id AS user, collect(i.id) AS items
"""


class FusionTables(Protocol):
    """What the fused ranking needs (``gnn.fusion.serving.ServingFusion``)."""

    user_ids: Sequence[str]
    item_ids: Sequence[str]
    bounds: Sequence[int]
    weights: Any
    history_sizes: Any
    profiles: Any
    user_stats: Any
    popularity: Any
    pop_mean: float
    pop_std: float


def seen_items(driver: neo4j.Driver, dataset: str, gen: int, database: str = "neo4j") -> dict[str, list[str]]:
    """Every user's interacted item ids in generation ``gen`` (what the lists leave out)."""
    rows = read(driver, Q_SEEN_OF_GEN, {"dataset": dataset, "gen": gen}, database)
    return {r["user"]: list(r["items"]) for r in rows}


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as Neo4j's cosine sees them."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def _safe_std(std: np.ndarray) -> np.ndarray:
    std = np.asarray(std, dtype=np.float64)
    return np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)


class _FusedScorer:
    """Fused score rows of batches of users, the vectorised form of :func:`graph.recommend_fusion.fused_scores`."""

    def __init__(self, user_ids: Sequence[str], item_ids: Sequence[str], f: FusionTables,
                 text_ids: Sequence[str], text_vectors: np.ndarray) -> None:
        nU, nI = len(user_ids), len(item_ids)
        row_of = {str(u): j for j, u in enumerate(f.user_ids)}
        rows = np.array([row_of.get(str(u), -1) for u in user_ids], dtype=np.int64)
        self.has = rows >= 0
        stats = np.asarray(f.user_stats, dtype=np.float64)
        sizes = np.asarray(f.history_sizes, dtype=np.float64)
        weights = np.asarray(f.weights, dtype=np.float64)
        bounds = np.asarray(list(f.bounds), dtype=np.float64)
        # users without statistics rank by the plain dot product: weights (1, 0, 0), mean 0, std 1
        self.w = np.tile(np.array([1.0, 0.0, 0.0]), (nU, 1))
        self.st = np.tile(np.array([0.0, 1.0, 0.0, 1.0]), (nU, 1))
        r = rows[self.has]
        buckets = (bounds[None, :] < sizes[r][:, None]).sum(1)
        self.w[self.has] = weights[buckets]
        self.st[self.has] = stats[r]
        self.st[:, 1] = _safe_std(self.st[:, 1])
        self.st[:, 3] = _safe_std(self.st[:, 3])
        prof = np.zeros((nU, np.asarray(f.profiles).shape[1]), dtype=np.float32)
        prof[self.has] = np.asarray(f.profiles, dtype=np.float32)[r]
        self.profiles = _unit_rows(prof)
        item_pos = {str(i): j for j, i in enumerate(item_ids)}
        text = np.zeros((nI, np.asarray(text_vectors).shape[1]), dtype=np.float32)
        for tid, vec in zip(text_ids, np.asarray(text_vectors, dtype=np.float32)):
            j = item_pos.get(str(tid))
            if j is not None:
                text[j] = vec
        self.text_t = np.ascontiguousarray(_unit_rows(text).T)
        pop = np.zeros(nI, dtype=np.float64)
        for iid, p in zip(f.item_ids, np.asarray(f.popularity, dtype=np.float64)):
            j = item_pos.get(str(iid))
            if j is not None:
                pop[j] = p
        self.pop_z = (pop - float(f.pop_mean)) / float(_safe_std(np.array([f.pop_std]))[0])

    def __call__(self, batch: slice, graph: np.ndarray) -> np.ndarray:
        w, st = self.w[batch], self.st[batch]
        content = self.profiles[batch] @ self.text_t
        return (w[:, :1] * (graph - st[:, :1]) / st[:, 1:2]
                + w[:, 1:2] * (content - st[:, 2:3]) / st[:, 3:4]
                + w[:, 2:3] * self.pop_z[None, :])


def compute_serving_lists(
    user_ids: Sequence[str],
    user_vectors: np.ndarray,
    item_ids: Sequence[str],
    item_vectors: np.ndarray,
    seen: Mapping[str, Sequence[str]],
    size: int = DEFAULT_LIST_SIZE,
    *,
    fusion: FusionTables | None = None,
    text_ids: Sequence[str] = (),
    text_vectors: np.ndarray | None = None,
    max_cells: int = MAX_CELLS,
    progress: Callable[[int], None] | None = None,
) -> dict[str, list[str]]:
    r"""Every user's ``size`` best unseen items under the served ranking.

    .. math::
        L_u = \operatorname{top}_{N}\{\, i \notin S_u : s_{ui} \,\}

    with :math:`s_{ui}` the fused score of :mod:`graph.recommend_fusion` when ``fusion`` is given
    (users it has no statistics for get the dot product, as online) and
    :math:`\mathbf{e}_u^\top\mathbf{e}_i` otherwise; :math:`S_u` the items in ``seen[u]``.

    Args:
        user_ids: External ids of ``user_vectors``' rows.
        user_vectors: ``(U, d)`` raw (not augmented) user embeddings.
        item_ids: External ids of ``item_vectors``' rows (every item that has a vector).
        item_vectors: ``(I, d)`` raw item embeddings.
        seen: User id -> interacted item ids at publication time.
        size: ``N``.
        fusion: Score-fusion tables of the publication, or ``None``.
        text_ids / text_vectors: Items' text vectors (needed with ``fusion``).
        max_cells: Scores held at once.
        progress: Called with the number of users of each finished batch.

    Returns:
        User id -> item ids, best first (ties by item id), at most ``size`` each.
    """
    U = np.asarray(user_vectors, dtype=np.float32)
    It = np.ascontiguousarray(np.asarray(item_vectors, dtype=np.float32).T)
    nU, nI = U.shape[0], It.shape[1]
    ids = [str(i) for i in item_ids]
    pos = {i: j for j, i in enumerate(ids)}
    id_rank = np.empty(nI, dtype=np.int64)
    id_rank[np.argsort(np.array(ids, dtype=object), kind="stable")] = np.arange(nI)
    scorer = None
    if fusion is not None:
        if text_vectors is None:
            raise ValueError("the fused ranking needs the items' text vectors")
        scorer = _FusedScorer(user_ids, ids, fusion, text_ids, text_vectors)
    out: dict[str, list[str]] = {}
    if size <= 0 or nI == 0:
        return out
    batch = max(1, max_cells // nI)
    for start in range(0, nU, batch):
        sl = slice(start, min(start + batch, nU))
        scores = (U[sl] @ It).astype(np.float64)
        if scorer is not None:
            scores = scorer(sl, scores)
        for row, uid in enumerate(user_ids[sl]):
            s = scores[row]
            cols = [pos[i] for i in seen.get(str(uid), ()) if i in pos]
            if cols:
                s[cols] = -np.inf
            take = min(size, nI - len(set(cols)))
            if take <= 0:
                out[str(uid)] = []
                continue
            part = np.argpartition(-s, take - 1)[:take] if take < nI else np.arange(nI)
            part = part[np.isfinite(s[part])]
            order = part[np.lexsort((id_rank[part], -s[part]))]
            out[str(uid)] = [ids[j] for j in order]
        if progress:
            progress(sl.stop - sl.start)
    return out


__all__ = ["DEFAULT_LIST_SIZE", "FusionTables", "compute_serving_lists", "seen_items"]
