r"""The live candidate source: a user's scores computed from their history as it is in the graph now.

For a history :math:`h` (item ids read at request time, feedback written a moment ago included)
the score of item :math:`i` is the live form of the active publication (:mod:`gnn.live`):

.. math::
    s_i = \underbrace{\sum_{j \in h} W_{ji}}_{\text{NEIGHBOUR relationships}}
        + \alpha\, \Big(\sum_{j \in h} \mathbf{p}_j\Big)^{\top} \mathbf{q}_i
        + \gamma\, |h|\, p_i

A request reads the active model and the user's history in one query, scores every item of the
publication with its tables (:mod:`graph.serving.tables`: the NEIGHBOUR weights, factors and
popularity the publication wrote, read once per process), so the top ``k`` is exact, and asks the
graph which of the best items pass the business filters (only when attribute filters are set). What
to show of the top ``k`` comes from the loaded catalogue (:mod:`graph.serving.catalogue`). Seen items, include and exclude lists are applied to the scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from graph.embeddings import ModelInfo
from graph.recommend import MAX_K, Filters, RecommendationList, RecommendedItem, mmr
from graph.serving.catalogue import CATALOGUES
from graph.serving.filters import filter_params, item_predicate
from graph.serving.records import LiveScoreParts
from graph.serving.store import GraphStore
from graph.serving.tables import TABLES
from graphrec.errors import ModelNotReadyError

FILTER_CHUNK = 512
"""Best-first items sent per filter query when attribute filters are set (doubling while too few pass)."""

Q_PLAN = """
MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
OPTIONAL MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
RETURN m {.*} AS m, d.gen AS gen, toString(d.loaded_at) AS loaded_at, u IS NOT NULL AS user_ok,
       CASE WHEN u IS NULL THEN [] ELSE COLLECT { MATCH (u)-[:INTERACTED]->(j:Item) RETURN j.id } END AS history
"""
"""The one round trip of a request: the active model, the active generation (and when it was loaded) and the
user's history (ids), read together. Everything else a request needs is immutable per publication
(:mod:`graph.serving.tables`) or per loaded catalogue (:mod:`graph.serving.catalogue`)."""

Q_PASSING = f"""
MATCH (d:Dataset {{name: $dataset}})
WITH d, null AS u
UNWIND range(0, size($ids) - 1) AS r
MATCH (i:Item {{dataset: $dataset, gen: d.gen, id: $ids[r]}})
WHERE {item_predicate("i", check_seen=False)}
RETURN i.id AS id ORDER BY r
"""
"""Which of ``$ids`` (best first) pass the attribute filters, in the same order."""

Q_TEXT_ITEMS = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset}) WHERE m.tag = $tag AND m.text_index IS NOT NULL
CALL db.index.vector.queryNodes(m.text_index, $n, $vec) YIELD node, score
WITH d, node, score WHERE node.gen = d.gen
RETURN node.id AS id ORDER BY score DESC, id
"""
"""The items whose texts are closest to a text vector (free-text cold start of live models)."""

TEXT_ANCHORS = 10
"""Items whose texts stand in for the history of a free-text request."""


@dataclass
class Plan:
    """What round trip 1 read."""

    info: ModelInfo | None
    gen: int
    user_ok: bool
    history: list[str] = field(default_factory=list)
    loaded_at: str | None = None


@dataclass
class _Scored:
    score: float
    parts: LiveScoreParts
    row: dict


def plan(store: GraphStore, user_id: str | None) -> Plan:
    """The active model (``None``: none published), the active generation, whether the user exists, their history."""
    rows = store.read(Q_PLAN, {"user_id": user_id})
    if not rows:
        return Plan(None, -1, False)
    r = rows[0]
    info = ModelInfo.model_validate(r["m"]) if r["m"] else None
    return Plan(info, int(r["gen"]), bool(r["user_ok"]), [str(x) for x in r["history"]], r["loaded_at"])


def text_items(store: GraphStore, info: ModelInfo, vector: np.ndarray, n: int = TEXT_ANCHORS) -> list[str]:
    """Ids of the ``n`` items whose texts are closest to ``vector``."""
    if not info.text_index:
        raise ModelNotReadyError("the active model has no text vectors; publish it with text vectors for free-text requests")
    rows = store.read(Q_TEXT_ITEMS, {"tag": info.tag, "n": n, "vec": [float(x) for x in vector]})
    return [r["id"] for r in rows]


def _has_attribute_filters(f: Filters) -> bool:
    return f.genres is not None or f.year_min is not None or f.year_max is not None


def live_ranking(
    store: GraphStore, info: ModelInfo, gen: int, history: list[str], k: int, f: Filters, *, user_id: str | None = None,
    loaded_at: str | None = None,
) -> tuple[list[_Scored], bool, int]:
    """The exact top ``k`` of the live form for ``history``; ``(scored best first, exact, items scored)``.

    Items in ``history`` are left out when ``f.exclude_seen`` and the history is a user's (``user_id``).
    ``gen`` and ``loaded_at`` (from :func:`plan`) name the catalogue the items' details come from.
    """
    t = TABLES.get(store, info.tag, gen)
    n = len(t.ids)
    if n == 0:
        raise ModelNotReadyError(f"the active model of {store.dataset!r} covers no item of the active generation; publish again")
    alpha, h = info.alpha or 0.0, len(history)
    hist_rows = t.rows_of(history)
    q = t.query_vector(history, hist_rows)
    lin = t.neighbour_sums(history, hist_rows)
    # einsum: one thread (a threaded BLAS product competes with the other requests for the same cores)
    low = alpha * np.einsum("ij,j->i", t.out_factors, q).astype(np.float64) if q is not None and t.out_factors is not None else None
    # an empty history has no neighbour or low-rank part: it is ranked by popularity alone
    pop_weight = (info.gamma or 0.0) * h if h else 1.0
    scores = lin + pop_weight * t.popularity64 if pop_weight else lin.copy()
    if low is not None:
        scores += low
    # with MMR diversity, a pool of the best items is re-ranked by relevance and novelty (out-factor cosines;
    # without factors, the cosines of the items' neighbour rows)
    pool = k if f.diversity <= 0 or (t.out_factors is None and not t.neighbours.nnz) else min(MAX_K * 3, k * 4)
    if f.include_ids is None and not _has_attribute_filters(f):  # the common request: few whole-catalogue passes
        neg = -scores
        if f.exclude_seen and user_id is not None:
            neg[hist_rows] = np.inf
        if f.exclude_ids:
            neg[t.rows_of(list(f.exclude_ids))] = np.inf
        top_rows = _top_of(neg, t.id_rank, pool)
    else:
        eligible = np.ones(n, dtype=bool)
        if f.exclude_seen and user_id is not None:
            eligible[hist_rows] = False
        if f.include_ids is not None:
            keep = np.zeros(n, dtype=bool)
            keep[t.rows_of(list(f.include_ids))] = True
            eligible &= keep
        if f.exclude_ids:
            eligible[t.rows_of(list(f.exclude_ids))] = False
        rows = np.flatnonzero(eligible)
        if _has_attribute_filters(f):
            order = rows[np.lexsort((t.id_rank[rows], -scores[rows]))]
            top_rows = [t.row[i] for i in _passing(store, f, [t.ids[r] for r in order], pool)]
        else:
            top_rows = _top_rows(scores, rows, t.id_rank, pool)
    if pool > k and len(top_rows) > 1:
        if t.out_factors is not None:
            picked = mmr(scores[top_rows], t.out_factors[top_rows].astype(np.float64), k, f.diversity)
        else:
            picked = mmr(scores[top_rows], None, k, f.diversity, similarity=neighbour_cosines(t.neighbours, top_rows))
        top_rows = [top_rows[i] for i in picked]
    top_rows = top_rows[:k]
    top = [(float(scores[r]), t.ids[r], float(lin[r]), float(low[r]) if low is not None else 0.0, pop_weight * float(t.popularity64[r]))
           for r in top_rows]
    out = _with_details(store, gen, loaded_at, top, h)
    return out, True, n


def neighbour_cosines(neighbours: sp.csr_matrix, rows: list[int]) -> np.ndarray:
    """Pairwise cosines of the given items' neighbour rows, each with the item itself added (weight 1),
    so two items are alike when they vote for the same items or for each other. Dense ``(n, n)``."""
    w = sp.csr_matrix(neighbours[rows], dtype=np.float64)
    w = w + sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)), shape=w.shape)
    norms = np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel())
    w = sp.diags(1.0 / np.clip(norms, 1e-12, None)) @ w
    return np.asarray((w @ w.T).todense())


def _top_rows(scores: np.ndarray, rows: np.ndarray, id_rank: np.ndarray, k: int) -> list[int]:
    """The ``k`` best of ``rows`` by score, ties broken by id (everything tied with the k-th is sorted)."""
    if len(rows) > k:
        kth = np.partition(-scores[rows], k - 1)[k - 1]
        rows = rows[-scores[rows] <= kth]
    return rows[np.lexsort((id_rank[rows], -scores[rows]))][:k].tolist()


def _top_of(neg: np.ndarray, id_rank: np.ndarray, k: int) -> list[int]:
    """The ``k`` rows with the lowest ``neg`` (minus the score; ``inf``: not eligible), ties broken by id
    (everything tied with the k-th is sorted); the same answer as :func:`_top_rows` over the eligible rows."""
    if len(neg) > k:
        kth = np.partition(neg, k - 1)[k - 1]
        rows = np.flatnonzero(neg <= kth)
    else:
        rows = np.arange(len(neg))
    rows = rows[np.isfinite(neg[rows])]
    return rows[np.lexsort((id_rank[rows], neg[rows]))][:k].tolist()


def _passing(store: GraphStore, f: Filters, ranked: list[str], k: int) -> list[str]:
    """The first ``k`` of ``ranked`` (best first) that pass the attribute filters."""
    params = filter_params(f)
    found: list[str] = []
    start, size = 0, FILTER_CHUNK
    while start < len(ranked) and len(found) < k:
        chunk = ranked[start : start + size]
        found += [r["id"] for r in store.read(Q_PASSING, {**params, "ids": chunk})]
        start += size
        size *= 2
    return found[:k]


def _with_details(store: GraphStore, gen: int, loaded_at: str | None, top: list[tuple[float, str, float, float, float]],
                  h: int) -> list[_Scored]:
    ids = [i for _, i, _, _, _ in top]
    details = CATALOGUES.get(store, gen, loaded_at).details(store, ids) if ids else {}
    return [  # built from values of the right types: no validation needed
        _Scored(score, LiveScoreParts.model_construct(neighbours=lin, low_rank=low, popularity=pop, history_size=h),
                details.get(i, {"id": i, "title": None, "year": None, "genres": []}))
        for score, i, lin, low, pop in top
    ]


def to_list(store: GraphStore, info: ModelInfo, scored: list[_Scored], k: int, exact: bool, searched: int, *,
            user_id: str | None = None, item_id: str | None = None) -> RecommendationList:
    """The answer record (the top ``k`` of ``scored``)."""
    items = [  # values of the right types (tables, catalogue): constructed without validation
        RecommendedItem.model_construct(item_id=s.row["id"], title=s.row["title"], year=s.row["year"], genres=list(s.row["genres"]),
                                        score=s.score, rank=pos + 1, score_parts=s.parts)
        for pos, s in enumerate(scored[:k])
    ]
    return RecommendationList(dataset=store.dataset, model_version=info.version, model_tag=info.tag, user_id=user_id, item_id=item_id,
                              items=items, candidates_searched=searched, ranking="live", exact=exact,
                              history_size=scored[0].parts.history_size if scored else None, candidates="live")


__all__ = ["LiveScoreParts", "Plan", "Q_PASSING", "Q_PLAN", "Q_TEXT_ITEMS", "live_ranking", "plan", "text_items", "to_list"]
