"""The Cypher-plus-vector query layer: recommendations, similar items, cold start, feedback.

Every read is ONE parameterised query that reads the ``(:ActiveModel)`` pointer, searches the
model's vector index and applies the business filters in Cypher, so a request always sees exactly
one model version. The index holds MIPS-augmented item vectors (see :mod:`graph.embeddings`), so its
cosine ranking is the model's dot-product ranking; scores returned here are the dot products.

The index is searched with an oversampled ``k`` (``k * oversample`` plus the number of items the
user already interacted with when those are excluded); when the filters leave fewer than ``k``
items the search is repeated with a 4x larger ``k`` until the whole catalogue was searched.

When the active publication has serving lists (:mod:`graph.serving_lists`), a request they cover is
answered from the user's list instead: its first entries are filtered in list order and re-scored
with the same Cypher, which is provably the same top ``k`` (``RecommendationList.candidates`` says
``list`` or ``index``).

When the active publication carries score-fusion data (a fusion checkpoint, see
:mod:`graph.recommend_fusion`), :func:`recommend` ranks by the fused score the offline evaluation
picked (graph + content + popularity, standardised per user, weights per activity bucket):
candidates come from the embedding index, the text index (with the user's content profile, when the
content weight is positive) and the most popular items (when the popularity weight is positive),
all in the same query that reads the pointer; the search grows until the ``k``-th fused score reaches
the threshold-algorithm bound, so the served top ``k`` is the offline top ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import neo4j
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graph.connection import read
from graph.embeddings import active_model, require_active_model
from graph.feedback import Interaction, InteractionResult, record_interaction
from graph.recommend_fusion import FusionParams, ScoreParts, fused_score, score_parts, unseen_upper_bound
from graph.serving.filters import item_predicate
from graph.serving.records import LiveScoreParts
from graphrec.errors import (
    InvalidArgumentError,
    ModelNotReadyError,
    NotFoundError,
    UnknownItemError,
    UnknownUserError,
)

MAX_K = 200
DEFAULT_OVERSAMPLE = 4
DEFAULT_LIKE = 4.0
"""Ratings at or above it (or none) are likes: what the fold-in of fresh feedback counts."""


class Filters(BaseModel):
    """Business filters of a recommendation request (validated before any Cypher runs)."""

    model_config = ConfigDict(extra="forbid")

    exclude_seen: bool = Field(True, description="Drop items the user already interacted with (including feedback written a moment ago).")
    genres: list[str] | None = Field(None, description="Keep only items with at least one of these genres.")
    year_min: int | None = Field(None, ge=0, le=3000, description="Keep items released in or after this year.")
    year_max: int | None = Field(None, ge=0, le=3000, description="Keep items released in or before this year.")
    include_ids: list[str] | None = Field(None, description="Recommend only among these item ids.")
    exclude_ids: list[str] = Field(default_factory=list, description="Never recommend these item ids.")
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="MMR trade-off: 0 = pure relevance, 1 = pure novelty.")

    @field_validator("genres", "include_ids")
    @classmethod
    def _none_if_empty(cls, v: list[str] | None) -> list[str] | None:
        return v or None

    @model_validator(mode="after")
    def _years(self) -> Filters:
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise ValueError("year_min must not exceed year_max")
        return self


class RecommendedItem(BaseModel):
    """One recommended item."""

    item_id: str
    title: str | None = None
    year: int | None = None
    genres: list[str] = Field(default_factory=list)
    score: float = Field(description="Ranking score: the dot product of user and item embeddings, or, when the model serves "
                         "score-level fusion, the fused score (sum of weight * standardised part, see score_parts).")
    rank: int
    score_parts: ScoreParts | LiveScoreParts | None = Field(
        None, description="Parts of the score: graph / content / popularity of a fused score (raw, standardised, weights), or "
                          "neighbours / low-rank / popularity of a live score.")


class RecommendationList(BaseModel):
    """The answer of :func:`recommend`, :func:`similar_items` and :func:`recommend_cold_start`."""

    dataset: str
    model_version: str
    model_tag: str
    user_id: str | None = None
    item_id: str | None = None
    items: list[RecommendedItem]
    candidates_searched: int = Field(0, description="k passed to the vector index on the last attempt.")
    ranking: str = Field("graph", description="'fusion' (score-level fusion of the published model) or 'graph' (dot product).")
    exact: bool | None = Field(None, description="Fusion only: the candidate pool provably holds the catalogue's top k "
                               "(threshold bound reached or whole catalogue searched; up to the vector indexes' recall).")
    history_size: int | None = Field(None, description="Fusion only: the user's training history size (selects the weights).")
    candidates: str = Field("index", description="'list': the user's serving list of the model, filtered (exact top k; "
                            "candidates_searched is the list's length); 'index': vector-index search.")


# ---------------------------------------------------------------------------------------------
# Cypher (constants; values are always $params)
# ---------------------------------------------------------------------------------------------

_FILTERS = """
WHERE i.dataset = $dataset AND i.gen = d.gen
  AND ($exclude_seen = false OR u IS NULL OR NOT EXISTS { (u)-[:INTERACTED]->(i) })
  AND ($genres IS NULL OR EXISTS { (i)-[:HAS_GENRE]->(g:Genre) WHERE g.name IN $genres })
  AND ($year_min IS NULL OR i.year >= $year_min)
  AND ($year_max IS NULL OR i.year <= $year_max)
  AND ($include_ids IS NULL OR i.id IN $include_ids)
  AND NOT i.id IN $exclude_ids
WITH m, uvec, n, i, score ORDER BY score DESC LIMIT $limit
RETURN m.version AS version, m.tag AS tag, m.max_norm AS max_norm, n,
       sqrt(reduce(s = 0.0, x IN uvec | s + x * x)) AS unorm,
       i.id AS id, i.title AS title, i.year AS year, score,
       [(i)-[:HAS_GENRE]->(g:Genre) | g.name] AS genres,
       CASE WHEN $with_vectors THEN i[m.item_prop] ELSE null END AS vector
"""

# The user's vector under the active embedding model, with the items they liked since it was fitted
# folded in, so feedback moves the ranking on the next request. Feedback relationships carry the tag
# of the publication active when they were written (graph.feedback); those with the active tag are
# the model's "fresh" items, every other interaction was there when it was fitted. The stored vector
# u stands for the n items the user liked then, each fresh item v_j for one more:
#     direction  n u/|u| + sum_j v_j/|v_j|,    length |u|
# (raw parts: the stored vectors are MIPS-augmented, see graph.embeddings). The length is kept, so the
# fused score's per-user statistics still apply. A user with no fresh item keeps u exactly; ``$vec``
# (a user without a model vector) replaces it.
USER_VECTOR = """
WITH d, m, u, u[m.user_prop] AS u0,
     [v IN [(u)-[r:INTERACTED]->(j) WHERE r.model_tag = m.tag AND (r.rating IS NULL OR r.rating >= $like) | j[m.item_prop]]
      WHERE v IS NOT NULL | v[0..-1]] AS fresh  // item vectors read for the fresh likes only
WITH d, m, u, u0, fresh,
     CASE WHEN size(fresh) = 0 THEN 0  // the common case: nothing to fold in, no second pass over the history
          ELSE COUNT { (u)-[r:INTERACTED]->() WHERE coalesce(r.model_tag, '') <> m.tag AND (r.rating IS NULL OR r.rating >= $like) } END AS n0
WITH d, m, u, u0, n0, sqrt(reduce(s = 0.0, x IN coalesce(u0, []) | s + x * x)) AS u0n,
     [e IN [v IN fresh | {v: v, n: sqrt(reduce(s = 0.0, x IN v | s + x * x))}] WHERE e.n > 0.0] AS fresh_n
WITH d, m, u, u0, u0n,
     CASE WHEN $vec IS NOT NULL OR u0 IS NULL OR u0n = 0.0 OR size(fresh_n) = 0 THEN null
          ELSE [k IN range(0, size(u0) - 2) | n0 * u0[k] / u0n + reduce(s = 0.0, e IN fresh_n | s + e.v[k] / e.n)] END AS dir
WITH d, m, u, u0, u0n, dir, sqrt(reduce(s = 0.0, x IN coalesce(dir, []) | s + x * x)) AS dn
WITH d, m, u, CASE WHEN $vec IS NOT NULL THEN $vec WHEN dir IS NULL OR dn = 0.0 THEN u0
                   ELSE [x IN dir | x * u0n / dn] + [0.0] END AS uvec
"""

Q_RECOMMEND_USER = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
""" + USER_VECTOR + """
WITH d, m, u, uvec WHERE uvec IS NOT NULL AND ($tag IS NULL OR m.tag = $tag)
WITH d, m, u, uvec,
     $fetch + CASE WHEN $exclude_seen THEN COUNT { (u)-[:INTERACTED]->() } ELSE 0 END AS n
CALL db.index.vector.queryNodes(m.item_index, n, uvec) YIELD node AS i, score
""" + _FILTERS

# Business filters of one candidate item ``i`` of user ``u`` (``d`` the dataset): graph.serving.filters.
def item_filters(check_seen: bool = True) -> str:
    """The filters of candidate ``i``; ``check_seen=False`` leaves out the seen-item test (callers that
    already removed the user's items)."""
    return "\n" + item_predicate("i", check_seen) + "\n"


_ITEM_FILTERS = item_filters()

# Score-level fusion (graph + content + popularity), in ONE query with the pointer read. A model
# without fusion data (or a user without statistics) falls back to weights (1, 0, 0) and mean 0 /
# std 1: the plain dot-product ranking. Candidate sources, each returning its lowest score for the
# threshold-algorithm bound:
#   - the embedding index (always; $fetch + the user's seen items),
#   - the text index with the user's content profile (content weight > 0; $fetch + at most $fetch
#     seen items, since 384-d searches are the costly part),
#   - the first $fetch items of the popularity list that pass the filters (popularity weight > 0; the
#     list is sorted, so every other eligible item is at most as popular as the last one taken;
#     those items are not filtered twice).
# With an include list, its items are the candidates (exact at once) and no source is searched.
# Index scores are reused; a vector is read only for candidates a source did not score, and the
# content cosine only when it has a weight (otherwise for the returned rows).
_Q_FUSED_SOURCES = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
""" + USER_VECTOR + """
WITH d, m, u, uvec, CASE WHEN $vec IS NULL AND m.fusion_prop IS NOT NULL THEN u[m.fusion_prop] END AS st
WHERE uvec IS NOT NULL AND ($tag IS NULL OR m.tag = $tag)
WITH d, m, u, uvec, st,
     CASE WHEN st IS NULL THEN 0 ELSE 3 * size([x IN m.fusion_bounds WHERE x < st[4]]) END AS b,
     CASE WHEN $exclude_seen THEN COUNT { (u)-[:INTERACTED]->() } ELSE 0 END AS seen_n,
     sqrt(reduce(s = 0.0, x IN uvec | s + x * x)) AS unorm
WITH d, m, u, uvec, st, $fetch + seen_n AS n, $fetch + CASE WHEN seen_n < $fetch THEN seen_n ELSE $fetch END AS n_text, unorm,
     CASE WHEN st IS NULL THEN [1.0, 0.0, 0.0] ELSE m.fusion_weights[b..b + 3] END AS w
WITH d, m, u, uvec, st, n, n_text, unorm, w,
     CASE WHEN w[1] > 0 AND m.profile_prop IS NOT NULL AND m.text_prop IS NOT NULL THEN u[m.profile_prop] END AS prof
CALL (m, uvec, n) {
  WITH m, uvec, n WHERE $include_ids IS NULL
  CALL db.index.vector.queryNodes(m.item_index, n, uvec) YIELD node, score
  RETURN collect({i: node, g: score}) AS g_hits, min(score) AS g_min
}
CALL (m, prof, w, n_text) {
  WITH m, prof, w, n_text WHERE $include_ids IS NULL AND w[1] > 0 AND prof IS NOT NULL AND m.text_index IS NOT NULL
  CALL db.index.vector.queryNodes(m.text_index, n_text, prof) YIELD node, score
  RETURN collect({i: node, c: score}) AS c_hits, min(score) AS c_min, count(node) > 0 AS c_used
}
CALL (d, m, u, w) {
  WITH d, m, u, w WHERE $include_ids IS NULL AND w[2] > 0 AND m.pop_prop IS NOT NULL
  WITH d, m, CASE WHEN $exclude_seen THEN COLLECT { MATCH (u)-[:INTERACTED]->(x) RETURN x.id } ELSE [] END AS seen
  UNWIND m.fusion_popular AS pid
  WITH d, m, pid WHERE NOT pid IN seen
  MATCH (i:Item {dataset: $dataset, gen: d.gen, id: pid})
  WHERE """ + item_filters(check_seen=False) + """
  WITH m, i LIMIT $fetch
  RETURN collect({i: i, ok: true}) AS p_hits, min(coalesce(i[m.pop_prop], 0.0)) AS p_taken_min, count(i) AS p_taken
}
// the popularity list ran out: every eligible item not taken is outside it, at most as popular as its last one
WITH d, m, u, uvec, st, n, unorm, w, prof, g_hits, g_min, c_hits, c_min, c_used, p_hits,
     $include_ids IS NULL AND w[2] > 0 AND m.pop_prop IS NOT NULL AS p_used,
     CASE WHEN p_taken < $fetch THEN coalesce(m.pop_floor, 0.0) ELSE p_taken_min END AS p_min
CALL (d) {  // an include list is the whole candidate set
  UNWIND coalesce($include_ids, []) AS iid
  MATCH (i:Item {dataset: $dataset, gen: d.gen, id: iid})
  RETURN collect({i: i}) AS i_hits
}
CALL (g_hits, c_hits, p_hits, i_hits) {
  UNWIND g_hits + c_hits + p_hits + i_hits AS h
  WITH h.i AS i, max(h.g) AS gs, max(h.c) AS cs, max(h.ok) IS NOT NULL AS checked
  RETURN i, gs, cs, checked
}
"""

# Scoring of the candidates ``i`` (``gs`` / ``cs``: index scores already known, ``checked``: filters
# already applied), shared by the index search above and the serving-list path below.
def fused_scoring(candidate_filter: str) -> str:
    """The scoring of candidates ``i`` that pass ``candidate_filter`` (a Cypher predicate)."""
    return """
WITH d, m, u, uvec, st, prof, n, unorm, w, g_min, c_min, c_used, p_min, p_used, i, gs, cs, checked
WHERE """ + candidate_filter + """
WITH m, u, uvec, st, prof, n, unorm, w, g_min, c_min, c_used, p_min, p_used, i, cs,
     CASE WHEN gs IS NULL THEN vector.similarity.cosine(uvec, i[m.item_prop]) ELSE gs END AS gcos
WHERE gcos IS NOT NULL
WITH m, u, st, prof, n, unorm, w, g_min, c_min, c_used, p_min, p_used, i, cs,
     (2.0 * gcos - 1.0) * unorm * m.max_norm AS g,
     CASE WHEN w[1] > 0 AND prof IS NOT NULL
          THEN 2.0 * (CASE WHEN cs IS NULL THEN vector.similarity.cosine(prof, i[m.text_prop]) ELSE cs END) - 1.0 END AS c0,
     CASE WHEN st IS NULL OR m.pop_prop IS NULL THEN null ELSE coalesce(i[m.pop_prop], 0.0) END AS p
WITH m, u, st, n, unorm, w, g_min, c_min, c_used, p_min, p_used, i, g, c0, p,
     w[0] * (g - coalesce(st[0], 0.0)) / coalesce(st[1], 1.0)
     + w[1] * (coalesce(c0, 0.0) - coalesce(st[2], 0.0)) / coalesce(st[3], 1.0)
     + w[2] * (coalesce(p, 0.0) - coalesce(m.pop_mean, 0.0)) / coalesce(m.pop_std, 1.0) AS fused
ORDER BY fused DESC, i.id LIMIT $limit
RETURN m.version AS version, m.tag AS tag, m.max_norm AS max_norm, m.n_items AS n_items, n, unorm, st, w,
       m.pop_mean AS pop_mean, m.pop_std AS pop_std,
       (2.0 * g_min - 1.0) * unorm * m.max_norm AS g_min, 2.0 * c_min - 1.0 AS c_min, coalesce(c_used, false) AS c_used,
       p_min, coalesce(p_used, false) AS p_used,
       i.id AS id, i.title AS title, i.year AS year, g, p, fused,
       CASE WHEN c0 IS NOT NULL OR st IS NULL OR m.profile_prop IS NULL OR m.text_prop IS NULL THEN c0
            ELSE 2.0 * vector.similarity.cosine(u[m.profile_prop], i[m.text_prop]) - 1.0 END AS c,
       [(i)-[:HAS_GENRE]->(x:Genre) | x.name] AS genres,
       CASE WHEN $with_vectors THEN i[m.item_prop] ELSE null END AS vector
"""


Q_RECOMMEND_FUSED = _Q_FUSED_SOURCES + fused_scoring("checked OR (" + _ITEM_FILTERS + ")")

# The serving-list path (graph.serving_lists): the first $fetch entries of the user's list of the
# active model, filtered, the first $limit survivors in list order; then the same scoring. ``n`` is
# the list's length (fewer than $limit rows and a list longer than $fetch: the caller grows $fetch).
# The user's items are collected once (one expansion) instead of an Expand(Into) per candidate.
Q_RECOMMEND_LISTED = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
WITH d, m, u, u[m.user_prop] AS uvec, CASE WHEN m.top_prop IS NOT NULL THEN u[m.top_prop] END AS top,
     CASE WHEN m.fusion_prop IS NOT NULL THEN u[m.fusion_prop] END AS st
WHERE uvec IS NOT NULL AND top IS NOT NULL
  AND NOT EXISTS { (u)-[r:INTERACTED]->() WHERE r.model_tag = m.tag }  // rated since the fit: the list is stale (index path)
WITH d, m, u, uvec, top, st, size(top) AS n,
     CASE WHEN st IS NULL THEN 0 ELSE 3 * size([x IN m.fusion_bounds WHERE x < st[4]]) END AS b,
     sqrt(reduce(s = 0.0, x IN uvec | s + x * x)) AS unorm
WITH d, m, u, uvec, top, st, n, unorm, CASE WHEN st IS NULL THEN [1.0, 0.0, 0.0] ELSE m.fusion_weights[b..b + 3] END AS w
WITH d, m, u, uvec, top, st, n, unorm, w,
     CASE WHEN w[1] > 0 AND m.profile_prop IS NOT NULL AND m.text_prop IS NOT NULL THEN u[m.profile_prop] END AS prof
WITH d, m, u, uvec, top, st, n, unorm, w, prof,
     CASE WHEN $exclude_seen THEN COLLECT { MATCH (u)-[:INTERACTED]->(x) RETURN x } ELSE [] END AS seen
UNWIND range(0, CASE WHEN $fetch < n THEN $fetch ELSE n END - 1) AS r
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: top[r]})
WHERE NOT i IN seen AND """ + item_filters(check_seen=False) + """
WITH d, m, u, uvec, st, prof, n, unorm, w, i, r ORDER BY r LIMIT $limit
WITH d, m, u, uvec, st, prof, n, unorm, w, null AS g_min, null AS c_min, false AS c_used, null AS p_min, false AS p_used, i,
     null AS gs, null AS cs, true AS checked
""" + fused_scoring("checked")


Q_RECOMMEND_VECTOR = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
WHERE $tag IS NULL OR m.tag = $tag
WITH d, m, null AS u, $vec AS uvec, $fetch AS n
CALL db.index.vector.queryNodes(m.item_index, n, uvec) YIELD node AS i, score
""" + _FILTERS

Q_SIMILAR = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (s:Item {dataset: $dataset, gen: d.gen, id: $item_id})
WITH d, m, s, s[m.item_prop] AS sv
WHERE sv IS NOT NULL
WITH d, m, s, sv[0..size(sv) - 1] + [0.0] AS uvec, $fetch AS n, null AS u
CALL db.index.vector.queryNodes(m.item_index, n, uvec) YIELD node AS i, score
""" + _FILTERS

Q_DIAGNOSE_USER = """
OPTIONAL MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
OPTIONAL MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
RETURN d IS NOT NULL AS dataset_ok, m IS NOT NULL AS model_ok, u IS NOT NULL AS user_ok,
       CASE WHEN u IS NULL OR m IS NULL THEN false ELSE u[m.user_prop] IS NOT NULL END AS vector_ok,
       m.n_items AS n_items, m.tag AS tag
"""

Q_DIAGNOSE_ITEM = """
OPTIONAL MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
OPTIONAL MATCH (i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
RETURN d IS NOT NULL AS dataset_ok, m IS NOT NULL AS model_ok, i IS NOT NULL AS item_ok,
       CASE WHEN i IS NULL OR m IS NULL THEN false ELSE i[m.item_prop] IS NOT NULL END AS vector_ok,
       m.n_items AS n_items, m.tag AS tag
"""

Q_USER_PROFILE_VECTOR = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})-[r:INTERACTED]->(i:Item)
WHERE (r.rating IS NULL OR r.rating >= $like) AND i[m.item_prop] IS NOT NULL
RETURN m.tag AS tag, collect(i[m.item_prop]) AS vectors
"""

Q_ITEM_VECTORS = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
UNWIND $item_ids AS iid
OPTIONAL MATCH (i:Item {dataset: $dataset, gen: d.gen, id: iid})
RETURN iid AS id, m.tag AS tag, i IS NOT NULL AS exists, CASE WHEN i IS NULL THEN null ELSE i[m.item_prop] END AS vector
"""

def validate_filters(filters: Filters | dict[str, Any] | None) -> Filters:
    """Coerce ``filters`` to :class:`Filters`; validation problems become :class:`InvalidArgumentError`."""
    if filters is None:
        return Filters()
    if isinstance(filters, Filters):
        return filters
    try:
        return Filters.model_validate(filters)
    except ValidationError as e:
        raise InvalidArgumentError(f"invalid filters: {e.error_count()} problem(s)", e.errors(include_url=False, include_context=False)) from e


def _check_k(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidArgumentError(f"k must be an integer in 1..{MAX_K}, got {k!r}")
    return k


def _params(dataset: str, f: Filters, limit: int, fetch: int, with_vectors: bool) -> dict[str, Any]:
    return {
        "dataset": dataset, "exclude_seen": f.exclude_seen, "genres": f.genres, "year_min": f.year_min,
        "year_max": f.year_max, "include_ids": f.include_ids, "exclude_ids": list(f.exclude_ids),
        "limit": limit, "fetch": fetch, "with_vectors": with_vectors, "tag": None, "vec": None, "like": DEFAULT_LIKE,
    }


def mmr(relevance: np.ndarray, vectors: np.ndarray | None, k: int, diversity: float, *, similarity: np.ndarray | None = None) -> list[int]:
    """Maximal marginal relevance re-ranking (Carbonell & Goldstein, 1998).

    .. math::
        \\arg\\max_{i \\notin S} (1 - \\lambda) \\hat r_i - \\lambda \\max_{j \\in S} \\cos(v_i, v_j)

    Args:
        relevance (np.ndarray): Scores of the candidates, shape ``[n]`` (min-max normalised inside).
        vectors (np.ndarray): Candidate vectors, shape ``[n, d]`` (ignored when ``similarity`` is given).
        k (int): How many to select.
        diversity (float): :math:`\\lambda` in ``[0, 1]``.
        similarity (np.ndarray, optional): The candidates' pairwise cosines ``[n, n]``, used instead of
            the vectors' cosines.

    Returns:
        Indices of the selected candidates in selection order.
    """
    n = len(relevance)
    if n == 0:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    if similarity is not None:
        sim = np.asarray(similarity, dtype=np.float64)
    else:
        v = np.asarray(vectors, dtype=np.float64)
        v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
        sim = v @ v.T
    selected: list[int] = []
    max_sim = np.full(n, -np.inf)
    remaining = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        obj = (1 - diversity) * rel - diversity * penalty
        obj[~remaining] = -np.inf
        best = int(np.argmax(obj))
        selected.append(best)
        remaining[best] = False
        max_sim = np.maximum(max_sim, sim[best])
    return selected


def _run_search(
    driver: neo4j.Driver, query: str, params: dict[str, Any], k: int, f: Filters, n_items: int | None,
    database: str, oversample: int,
) -> tuple[list[neo4j.Record], int]:
    """Run a vector query, growing the oversampling until ``k`` items survive or the catalogue is exhausted."""
    fetch = max(k * oversample, 10)
    pool = k if f.diversity <= 0 else min(MAX_K * 3, k * 4)
    while True:
        params = {**params, "fetch": fetch, "limit": pool}
        rows = read(driver, query, params, database)
        searched = rows[0]["n"] if rows else fetch
        if len(rows) >= pool or n_items is None or searched >= n_items:
            return rows, int(searched)
        fetch = min(fetch * 4, max(n_items, 1))


def _to_list(
    rows: list[neo4j.Record], dataset: str, k: int, f: Filters, *, user_id: str | None = None, item_id: str | None = None, searched: int = 0,
) -> RecommendationList:
    if f.diversity > 0 and len(rows) > 1:
        vecs = np.array([r["vector"][:-1] for r in rows], dtype=np.float64)
        order = mmr(np.array([r["score"] for r in rows]), vecs, k, f.diversity)
        rows = [rows[i] for i in order]
    rows = rows[:k]
    items = [
        RecommendedItem(
            item_id=r["id"], title=r["title"], year=r["year"], genres=sorted(r["genres"] or []),
            score=(2.0 * r["score"] - 1.0) * r["unorm"] * r["max_norm"], rank=pos + 1,
        )
        for pos, r in enumerate(rows)
    ]
    version = rows[0]["version"] if rows else ""
    tag = rows[0]["tag"] if rows else ""
    return RecommendationList(dataset=dataset, model_version=version, model_tag=tag, user_id=user_id, item_id=item_id, items=items, candidates_searched=searched)


def recommend(
    driver: neo4j.Driver,
    user_id: str,
    k: int = 10,
    filters: Filters | dict[str, Any] | None = None,
    *,
    dataset: str,
    database: str = "neo4j",
    oversample: int = DEFAULT_OVERSAMPLE,
    like_threshold: float = DEFAULT_LIKE,
) -> RecommendationList:
    """Top-``k`` items for a known user of an embedding model, filtered in Cypher.

    Answers from the user's serving list when it covers the request (:func:`recommend_listed`), else
    from the vector indexes (:func:`recommend_indexed`); both rank by the published score-level fusion
    (fusion checkpoint; ``RecommendedItem.score_parts`` holds its parts) or, without one, by the dot
    product, and give the same top ``k``. Items the user liked since the model was fitted (feedback
    written under the active publication) are folded into their vector at once (:data:`USER_VECTOR`;
    such users skip the stale serving list). A user who has no model vector yet (created through
    feedback after training) is served from the mean of the vectors of the items they liked, by dot product.

    Raises:
        UnknownUserError: No such user in the dataset's active generation.
        ModelNotReadyError: No model published, or the user has no vector and no liked item.
        InvalidArgumentError: Bad ``k`` or filters.
    """
    _check_k(k)
    f = validate_filters(filters)
    listed = recommend_listed(driver, user_id, k, f, dataset=dataset, database=database, oversample=oversample)
    if listed is not None:
        return listed
    return recommend_indexed(driver, user_id, k, f, dataset=dataset, database=database, oversample=oversample, like_threshold=like_threshold)


def recommend_dot(
    driver: neo4j.Driver, user_id: str, k: int = 10, filters: Filters | dict[str, Any] | None = None, *, dataset: str,
    database: str = "neo4j", oversample: int = DEFAULT_OVERSAMPLE, like_threshold: float = 4.0,
) -> RecommendationList:
    """The dot-product candidate source: the embedding index searched with the user's vector, ranked by
    :math:`u^\\top i` alone (no score-level fusion)."""
    _check_k(k)
    f = validate_filters(filters)
    params = {**_params(dataset, f, k, k, f.diversity > 0), "user_id": user_id, "like": like_threshold}
    pool = k if f.diversity <= 0 else min(MAX_K * 3, k * 4)
    rows = read(driver, Q_RECOMMEND_USER, {**params, "fetch": max(k * oversample, 10), "limit": pool}, database)
    if len(rows) >= pool:
        return _to_list(rows, dataset, k, f, user_id=user_id, searched=rows[0]["n"])
    diag = read(driver, Q_DIAGNOSE_USER, {"dataset": dataset, "user_id": user_id}, database)[0]
    _raise_for(diag, "user", user_id, dataset)
    if not diag["vector_ok"]:
        vec, tag = _profile_vector(driver, dataset, user_id, database, like_threshold)
        params.update(vec=vec, tag=tag)
    rows, searched = _run_search(driver, Q_RECOMMEND_USER, params, k, f, diag["n_items"], database, oversample)
    return _to_list(rows, dataset, k, f, user_id=user_id, searched=searched)


def _fusion_params(row: neo4j.Record | dict[str, Any]) -> FusionParams:
    st, w = row["st"], row["w"]
    if st is None:
        return FusionParams()
    return FusionParams(w_graph=w[0], w_content=w[1], w_popularity=w[2], graph_mean=st[0], graph_std=st[1], content_mean=st[2],
                        content_std=st[3], pop_mean=row["pop_mean"] or 0.0, pop_std=row["pop_std"] or 1.0,
                        history_size=int(st[4]), fused=True)


def _fused_ranking(
    rows: list[neo4j.Record], k: int, complete: bool = False,
) -> tuple[FusionParams, list[tuple[float, ScoreParts, Any]], bool]:
    """Score parts and fused scores of the returned candidates (best first) and whether the top ``k`` is exact
    (``complete``: the candidates were every eligible item, e.g. an include list)."""
    p = _fusion_params(rows[0])
    scored = []
    for r in rows:
        parts = score_parts(r["g"], r["c"], r["p"], p)
        scored.append((fused_score(parts), parts, r))
    scored.sort(key=lambda t: (-t[0], t[2]["id"]))
    r0 = rows[0]
    exhausted = complete or (r0["n_items"] is not None and r0["n"] >= r0["n_items"])
    if len(scored) < k:
        return p, scored, exhausted
    bound = unseen_upper_bound(p, r0["g_min"], r0["c_min"], r0["p_min"], bool(r0["c_used"]), bool(r0["p_used"]))
    return p, scored, exhausted or scored[k - 1][0] >= bound - 1e-9


def recommend_indexed(
    driver: neo4j.Driver, user_id: str, k: int = 10, filters: Filters | dict[str, Any] | None = None, *, dataset: str,
    database: str = "neo4j", oversample: int = DEFAULT_OVERSAMPLE, like_threshold: float = 4.0,
) -> RecommendationList:
    """The vector-index candidate source with the fused score (see the module docstring): the embedding,
    text and popularity sources grow until the top ``k`` is exact."""
    _check_k(k)
    f = validate_filters(filters)
    pool = k if f.diversity <= 0 else min(MAX_K * 3, k * 4)
    params = {**_params(dataset, f, pool, max(k * oversample, 10), f.diversity > 0), "user_id": user_id, "like": like_threshold}
    n_items: int | None = None
    diagnosed = False
    while True:
        rows = read(driver, Q_RECOMMEND_FUSED, params, database)
        if rows:
            p, scored, exact = _fused_ranking(rows, k, complete=f.include_ids is not None)
            n_items = rows[0]["n_items"]
            if exact or n_items is None or params["fetch"] >= n_items:
                return _fused_list(scored, p, dataset, k, f, user_id, int(rows[0]["n"]), exact)
        elif not diagnosed:
            diag = read(driver, Q_DIAGNOSE_USER, {"dataset": dataset, "user_id": user_id}, database)[0]
            _raise_for(diag, "user", user_id, dataset)
            diagnosed, n_items = True, diag["n_items"]
            if not diag["vector_ok"]:
                vec, tag = _profile_vector(driver, dataset, user_id, database, like_threshold)
                params.update(vec=vec, tag=tag)
                continue
        if n_items is None or params["fetch"] >= n_items or (diagnosed and f.include_ids is not None):
            return _fused_list([], FusionParams(), dataset, k, f, user_id, params["fetch"], True)
        params["fetch"] = min(params["fetch"] * 4, max(n_items, 1))


def list_fetch(k: int, f: Filters, oversample: int = DEFAULT_OVERSAMPLE) -> int:
    """How many serving-list entries the first list query reads: the list already leaves out what the
    user had seen at publication, so without attribute filters ``2k`` (plus the excluded ids) almost
    always leaves ``k``; attribute filters take ``k * oversample``."""
    if f.genres is not None or f.year_min is not None or f.year_max is not None:
        return max(k * oversample, 10)
    return 2 * k + len(f.exclude_ids)


def recommend_listed(
    driver: neo4j.Driver, user_id: str, k: int, f: Filters, *, dataset: str, database: str = "neo4j", oversample: int = DEFAULT_OVERSAMPLE,
) -> RecommendationList | None:
    """The user's serving list of the active model, filtered (:mod:`graph.serving_lists`); ``None`` when
    the request needs the index search: no list (unknown user, user newer than the model, lists not
    published), fewer than ``k`` survivors in the whole list, or a request the list does not cover
    (seen items kept, an include list, diversity re-ranking)."""
    if not f.exclude_seen or f.include_ids is not None or f.diversity > 0:
        return None
    params = {**_params(dataset, f, k, list_fetch(k, f, oversample), False), "user_id": user_id}
    while True:
        rows = read(driver, Q_RECOMMEND_LISTED, params, database)
        if len(rows) >= k:
            p, scored, _ = _fused_ranking(rows, k, complete=True)
            return _fused_list(scored, p, dataset, k, f, user_id, int(rows[0]["n"]), True, source="list")
        if not rows or params["fetch"] >= int(rows[0]["n"]):
            return None
        params["fetch"] = min(params["fetch"] * 4, int(rows[0]["n"]))


def _fused_list(
    scored: list[tuple[float, ScoreParts, Any]], p: FusionParams, dataset: str, k: int, f: Filters, user_id: str, searched: int, exact: bool,
    source: str = "index",
) -> RecommendationList:
    if f.diversity > 0 and len(scored) > 1:
        vecs = np.array([r["vector"][:-1] for _, _, r in scored], dtype=np.float64)
        order = mmr(np.array([s for s, _, _ in scored]), vecs, k, f.diversity)
        scored = [scored[i] for i in order]
    scored = scored[:k]
    items = [
        RecommendedItem(item_id=r["id"], title=r["title"], year=r["year"], genres=sorted(r["genres"] or []), score=s, rank=pos + 1,
                        score_parts=parts if p.fused else None)
        for pos, (s, parts, r) in enumerate(scored)
    ]
    version = scored[0][2]["version"] if scored else ""
    tag = scored[0][2]["tag"] if scored else ""
    return RecommendationList(dataset=dataset, model_version=version, model_tag=tag, user_id=user_id, items=items, candidates_searched=searched,
                              ranking="fusion" if p.fused else "graph", exact=exact if p.fused else None,
                              history_size=p.history_size, candidates=source)


def _raise_for(diag: neo4j.Record | dict[str, Any], what: str, ident: str, dataset: str) -> None:
    if not diag["dataset_ok"]:
        raise NotFoundError(f"dataset {dataset!r} is not loaded")
    if not diag[f"{what}_ok"]:
        err = UnknownUserError if what == "user" else UnknownItemError
        raise err(f"unknown {what} {ident!r} in dataset {dataset!r}")
    if not diag["model_ok"]:
        raise ModelNotReadyError(f"no model is published for dataset {dataset!r} (run `graphrec publish --checkpoint PATH`)")


def _profile_vector(driver: neo4j.Driver, dataset: str, user_id: str, database: str, like: float) -> tuple[list[float], str]:
    rows = read(driver, Q_USER_PROFILE_VECTOR, {"dataset": dataset, "user_id": user_id, "like": like}, database)
    if not rows or not rows[0]["vectors"]:
        raise ModelNotReadyError(f"user {user_id!r} has no embedding and no liked item yet; send feedback first or use cold start")
    return query_vector_from_items(rows[0]["vectors"]), rows[0]["tag"]


def query_vector_from_items(item_vectors: Sequence[Sequence[float]]) -> list[float]:
    """A query vector from stored (augmented) item vectors: mean of the raw parts, then a 0 appended."""
    raw = np.asarray([v[:-1] for v in item_vectors], dtype=np.float64).mean(axis=0)
    return [float(x) for x in raw] + [0.0]


def similar_items(
    driver: neo4j.Driver, item_id: str, k: int = 10, filters: Filters | dict[str, Any] | None = None, *, dataset: str, database: str = "neo4j",
    oversample: int = DEFAULT_OVERSAMPLE,
) -> RecommendationList:
    """Items a user whose taste is exactly ``item_id`` would get: ranking by :math:`s^\\top i`.

    Raises:
        UnknownItemError: No such item (or the item has no vector in the active model).
    """
    _check_k(k)
    f = validate_filters(filters)
    f = f.model_copy(update={"exclude_seen": False, "exclude_ids": [*f.exclude_ids, item_id]})
    params = {**_params(dataset, f, k, k, f.diversity > 0), "item_id": item_id}
    pool = k if f.diversity <= 0 else min(MAX_K * 3, k * 4)
    rows = read(driver, Q_SIMILAR, {**params, "fetch": max(k * oversample, 10), "limit": pool}, database)
    if len(rows) < pool:
        diag = read(driver, Q_DIAGNOSE_ITEM, {"dataset": dataset, "item_id": item_id}, database)[0]
        _raise_for(diag, "item", item_id, dataset)
        if not diag["vector_ok"]:
            raise ModelNotReadyError(f"item {item_id!r} has no embedding in the active model (publish again to embed new items)")
        rows, searched = _run_search(driver, Q_SIMILAR, params, k, f, diag["n_items"], database, oversample)
        return _to_list(rows, dataset, k, f, item_id=item_id, searched=searched)
    return _to_list(rows, dataset, k, f, item_id=item_id, searched=rows[0]["n"])


def item_vectors(driver: neo4j.Driver, item_ids: Sequence[str], *, dataset: str, database: str = "neo4j") -> tuple[str | None, dict[str, list[float] | None]]:
    """Stored (augmented) vectors of ``item_ids`` in the active model.

    Raises:
        UnknownItemError: One of the ids is not an item of the dataset.
    """
    rows = read(driver, Q_ITEM_VECTORS, {"dataset": dataset, "item_ids": list(item_ids)}, database)
    if not rows and item_ids:
        require_active_model(driver, dataset, database)
        raise NotFoundError(f"dataset {dataset!r} is not loaded")
    missing = [r["id"] for r in rows if not r["exists"]]
    if missing:
        raise UnknownItemError(f"unknown item(s) in dataset {dataset!r}: {', '.join(map(repr, missing[:10]))}")
    tag = rows[0]["tag"] if rows else None
    return tag, {r["id"]: r["vector"] for r in rows}


def recommend_for_vector(
    driver: neo4j.Driver, vector: Sequence[float], k: int = 10, filters: Filters | dict[str, Any] | None = None, *, dataset: str,
    tag: str | None = None, database: str = "neo4j", oversample: int = DEFAULT_OVERSAMPLE,
) -> RecommendationList:
    """Top-``k`` items for a query vector already in the index's (augmented) space.

    ``tag`` pins the model publication the vector was computed with; when the active model changed
    in between, :class:`ModelNotReadyError` is raised (callers retry with the new model).
    """
    _check_k(k)
    f = validate_filters(filters)
    info = require_active_model(driver, dataset, database)
    if len(vector) != info.dim:
        raise InvalidArgumentError(f"query vector has dimension {len(vector)}, the active model has {info.dim}")
    params = {**_params(dataset, f, k, k, f.diversity > 0), "vec": [float(x) for x in vector], "tag": tag}
    rows, searched = _run_search(driver, Q_RECOMMEND_VECTOR, params, k, f, info.n_items, database, oversample)
    if not rows and tag is not None and (active_model(driver, dataset, database) or info).tag != tag:
        raise ModelNotReadyError("the active model changed during the request; retry")
    return _to_list(rows, dataset, k, f, searched=searched)


def recommend_cold_start(
    driver: neo4j.Driver,
    liked_item_ids: Sequence[str] = (),
    text: str | None = None,
    k: int = 10,
    filters: Filters | dict[str, Any] | None = None,
    *,
    dataset: str,
    database: str = "neo4j",
    user_vector: Callable[[list[str], str | None], Any] | None = None,
    model_tag: str | None = None,
) -> RecommendationList:
    """Recommendations for someone with no history: liked item ids and/or a free-text wish.

    Args:
        user_vector (callable, optional): ``(liked_item_ids, text) -> vector`` in the model's raw
            space (``ColdStart.user_vector`` of the active model's checkpoint). Required for text;
            without it liked items are averaged in the graph.
        model_tag (str, optional): Tag of the publication ``user_vector`` belongs to.

    Raises:
        InvalidArgumentError: Neither liked items nor text.
        UnknownItemError: A liked id is not an item.
        ModelNotReadyError: Text was given but no text model is available.
    """
    liked = [str(i) for i in liked_item_ids]
    if not liked and not (text and text.strip()):
        raise InvalidArgumentError("give liked_item_ids and/or text")
    f = validate_filters(filters)
    f = f.model_copy(update={"exclude_ids": list(dict.fromkeys([*f.exclude_ids, *liked])), "exclude_seen": False})
    tag: str | None
    if liked:
        tag, vecs = item_vectors(driver, liked, dataset=dataset, database=database)
    if user_vector is not None:
        raw = np.asarray(user_vector(liked, text if text and text.strip() else None), dtype=np.float64).reshape(-1)
        vec = [float(x) for x in raw] + [0.0]
        tag = model_tag
    elif text and text.strip():
        raise ModelNotReadyError("free-text cold start needs the text model of the active checkpoint, which is not available")
    else:
        have = [v for v in vecs.values() if v is not None]
        if not have:
            raise ModelNotReadyError("none of the liked items has an embedding in the active model")
        vec = query_vector_from_items(have)
    return recommend_for_vector(driver, vec, k, f, dataset=dataset, tag=tag, database=database)


def health(driver: neo4j.Driver, *, dataset: str, database: str = "neo4j") -> dict[str, Any]:
    """Neo4j reachability and the active model (raises :class:`Neo4jUnavailableError` when down)."""
    m = active_model(driver, dataset, database)
    return {"neo4j": "ok", "model_version": m.version if m else None, "model_tag": m.tag if m else None,
            "published_at": m.published_at if m else None}


__all__ = [
    "Filters", "Interaction", "InteractionResult", "RecommendationList", "RecommendedItem", "health", "item_vectors", "mmr",
    "recommend", "recommend_cold_start", "recommend_for_vector", "record_interaction", "similar_items", "validate_filters",
]
