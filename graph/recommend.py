"""The Cypher-plus-vector query layer: recommendations, similar items, cold start, feedback.

Every read is ONE parameterised query that reads the ``(:ActiveModel)`` pointer, searches the
model's vector index and applies the business filters in Cypher, so a request always sees exactly
one model version. The index holds MIPS-augmented item vectors (see :mod:`graph.embeddings`), so its
cosine ranking is the model's dot-product ranking; scores returned here are the dot products.

The index is searched with an oversampled ``k`` (``k * oversample`` plus the number of items the
user already interacted with when those are excluded); when the filters leave fewer than ``k``
items the search is repeated with a 4x larger ``k`` until the whole catalogue was searched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import neo4j
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graph.connection import read, write
from graph.embeddings import active_model, require_active_model
from graphrec.errors import (
    InvalidArgumentError,
    ModelNotReadyError,
    NotFoundError,
    UnknownItemError,
    UnknownUserError,
)

MAX_K = 200
DEFAULT_OVERSAMPLE = 4


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
    score: float = Field(description="Model score (dot product of user and item embeddings).")
    rank: int


class RecommendationList(BaseModel):
    """The answer of :func:`recommend`, :func:`similar_items` and :func:`recommend_cold_start`."""

    dataset: str
    model_version: str
    model_tag: str
    user_id: str | None = None
    item_id: str | None = None
    items: list[RecommendedItem]
    candidates_searched: int = Field(0, description="k passed to the vector index on the last attempt.")


class Interaction(BaseModel):
    """A piece of feedback to write into the graph."""

    user_id: str = Field(min_length=1, max_length=200)
    item_id: str = Field(min_length=1, max_length=200)
    rating: float | None = Field(None, ge=0.0, le=10.0)
    ts: int | None = Field(None, ge=0)
    create_user: bool = False


class InteractionResult(BaseModel):
    """What :func:`record_interaction` wrote."""

    user_id: str
    item_id: str
    rating: float | None
    ts: int | None
    created_user: bool
    created_relationship: bool


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

Q_RECOMMEND_USER = """
MATCH (d:Dataset {name: $dataset})
MATCH (m:ActiveModel {dataset: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
WITH d, m, u, coalesce($vec, u[m.user_prop]) AS uvec
WHERE uvec IS NOT NULL AND ($tag IS NULL OR m.tag = $tag)
WITH d, m, u, uvec,
     $fetch + CASE WHEN $exclude_seen THEN COUNT { (u)-[:INTERACTED]->() } ELSE 0 END AS n
CALL db.index.vector.queryNodes(m.item_index, n, uvec) YIELD node AS i, score
""" + _FILTERS

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

Q_RECORD_INTERACTION = """
MATCH (d:Dataset {name: $dataset})
MATCH (i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
OPTIONAL MATCH (existing:User {dataset: $dataset, gen: d.gen, id: $user_id})
WITH d, i, existing
WHERE existing IS NOT NULL OR $create_user
MERGE (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
WITH i, u, existing IS NULL AS created_user
OPTIONAL MATCH (u)-[old:INTERACTED]->(i)
WITH i, u, created_user, old IS NULL AS created_rel
MERGE (u)-[r:INTERACTED]->(i)
  ON CREATE SET r.source = 'feedback', r.split = null
SET r.rating = $rating, r.ts = $ts
RETURN created_user, created_rel
"""

Q_ITEM_EXISTS = """
MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
OPTIONAL MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
RETURN i IS NOT NULL AS item_ok, u IS NOT NULL AS user_ok
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
        "limit": limit, "fetch": fetch, "with_vectors": with_vectors, "tag": None, "vec": None,
    }


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> list[int]:
    """Maximal marginal relevance re-ranking (Carbonell & Goldstein, 1998).

    .. math::
        \\arg\\max_{i \\notin S} (1 - \\lambda) \\hat r_i - \\lambda \\max_{j \\in S} \\cos(v_i, v_j)

    Args:
        relevance (np.ndarray): Scores of the candidates, shape ``[n]`` (min-max normalised inside).
        vectors (np.ndarray): Candidate vectors, shape ``[n, d]``.
        k (int): How many to select.
        diversity (float): :math:`\\lambda` in ``[0, 1]``.

    Returns:
        Indices of the selected candidates in selection order.
    """
    n = len(relevance)
    if n == 0:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
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
    like_threshold: float = 4.0,
) -> RecommendationList:
    """Top-``k`` items for a known user, filtered in Cypher.

    A user who has no model vector yet (created through feedback after training) is served from the
    mean of the vectors of the items they liked.

    Raises:
        UnknownUserError: No such user in the dataset's active generation.
        ModelNotReadyError: No model published, or the user has no vector and no liked item.
        InvalidArgumentError: Bad ``k`` or filters.
    """
    _check_k(k)
    f = validate_filters(filters)
    params = {**_params(dataset, f, k, k, f.diversity > 0), "user_id": user_id}
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


def record_interaction(driver: neo4j.Driver, interaction: Interaction, *, dataset: str, database: str = "neo4j") -> InteractionResult:
    """Write feedback ``(:User)-[:INTERACTED {source: 'feedback'}]->(:Item)`` into the active generation.

    An existing relationship gets the new rating and timestamp. The write commits before this
    returns, and later reads through the same driver see it (the driver's bookmark manager).

    Raises:
        UnknownItemError / UnknownUserError: Unknown item, or unknown user without ``create_user``.
    """
    p = {"dataset": dataset, "user_id": interaction.user_id, "item_id": interaction.item_id, "rating": interaction.rating,
         "ts": interaction.ts, "create_user": interaction.create_user}
    from graph.embeddings import _execute_write

    rows, _, _ = _execute_write(driver, Q_RECORD_INTERACTION, p, database)
    if not rows:
        chk = read(driver, Q_ITEM_EXISTS, p, database)
        if not chk:
            raise NotFoundError(f"dataset {dataset!r} is not loaded")
        if not chk[0]["item_ok"]:
            raise UnknownItemError(f"unknown item {interaction.item_id!r} in dataset {dataset!r}")
        raise UnknownUserError(f"unknown user {interaction.user_id!r} in dataset {dataset!r} (set create_user to add a new user)")
    return InteractionResult(
        user_id=interaction.user_id, item_id=interaction.item_id, rating=interaction.rating, ts=interaction.ts,
        created_user=bool(rows[0]["created_user"]), created_relationship=bool(rows[0]["created_rel"]),
    )


def health(driver: neo4j.Driver, *, dataset: str, database: str = "neo4j") -> dict[str, Any]:
    """Neo4j reachability and the active model (raises :class:`Neo4jUnavailableError` when down)."""
    m = active_model(driver, dataset, database)
    return {"neo4j": "ok", "model_version": m.version if m else None, "model_tag": m.tag if m else None,
            "published_at": m.published_at if m else None}


__all__ = [
    "Filters", "Interaction", "InteractionResult", "RecommendationList", "RecommendedItem", "health", "item_vectors", "mmr",
    "recommend", "recommend_cold_start", "recommend_for_vector", "record_interaction", "similar_items", "validate_filters",
]
