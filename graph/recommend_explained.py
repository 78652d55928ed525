"""Explained recommendations in ONE round trip: the serving-list query and the materialised explanation
query composed into one Cypher statement (:func:`graph.explain.explained_query`).

What :func:`graph.recommend.recommend` followed by :func:`graph.explain.explain` return, for the
requests both fast paths cover (a user with a serving list of the active model whose first
``$fetch`` entries leave ``k`` items after the filters, and fresh materialised co-likes). Any other
request returns ``None`` and the caller runs the two calls; the answers are the same either way
(an integration test compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import neo4j

from graph.connection import read
from graph.explain import Explanation, _fast_rows, _present_attr_types, build_reasons, explained_query, explanation_dict
from graph.recommend import (
    DEFAULT_OVERSAMPLE,
    Q_RECOMMEND_LISTED,
    Filters,
    RecommendationList,
    _check_k,
    _fused_list,
    _fused_ranking,
    _params,
    list_fetch,
    validate_filters,
)

SCORED_COLUMNS: tuple[str, ...] = (
    "version", "tag", "max_norm", "n_items", "n", "unorm", "st", "w", "pop_mean", "pop_std", "g_min", "c_min", "c_used", "p_min", "p_used",
    "id", "title", "year", "g", "p", "fused", "c", "genres", "vector",
)
"""Columns of :data:`graph.recommend.Q_RECOMMEND_LISTED` (carried per item through the explanation)."""


def recommend_explained(
    driver: neo4j.Driver,
    user_id: str,
    k: int = 10,
    filters: Filters | dict[str, Any] | None = None,
    **options: Any,
) -> tuple[RecommendationList, dict[str, Explanation]] | None:
    """Top-``k`` items of a known user with their explanations, in one query, or ``None`` when the
    request needs the separate calls (see the module docstring).

    Args:
        options: The keyword options of :func:`fetch_explained` (``dataset`` is required;
            ``database``, ``max_reasons``, ``oversample``, ``max_anchors``, ``max_liked``,
            ``like_threshold``, ``n_witnesses``).

    Raises:
        InvalidArgumentError: Bad ``k`` or filters.
    """
    assemble = fetch_explained(driver, user_id, k, filters, **options)
    return None if assemble is None else assemble()


def fetch_explained(
    driver: neo4j.Driver,
    user_id: str,
    k: int = 10,
    filters: Filters | dict[str, Any] | None = None,
    *,
    dataset: str,
    database: str = "neo4j",
    max_reasons: int = 3,
    oversample: int = DEFAULT_OVERSAMPLE,
    max_anchors: int = 15,
    max_liked: int = 200,
    like_threshold: float = 4.0,
    n_witnesses: int = 3,
    as_dicts: bool = False,
) -> Callable[[], tuple[RecommendationList, dict[str, Any]]] | None:
    """:func:`recommend_explained` in two steps: this call runs the query (the only part that talks to
    Neo4j) and returns a function that builds the answer from its rows (pure Python), or ``None``
    when the request needs the separate calls. The API runs the first step in a worker thread under
    its admission limit and the second outside it, so Neo4j starts the next query meanwhile.

    Args:
        as_dicts: The explanations as plain dicts in the :class:`~graph.explain.Explanation` schema
            (:func:`~graph.explain.explanation_dict`, not validated) rather than models: the API writes
            them straight into its JSON answer (validating them cost ~12 % of its CPU per request).
    """
    _check_k(k)
    f = validate_filters(filters)
    if not f.exclude_seen or f.include_ids is not None or f.diversity > 0 or not 1 <= max_reasons <= 4:
        return None
    query = explained_query(Q_RECOMMEND_LISTED, SCORED_COLUMNS, _present_attr_types(driver, database))
    params = {**_params(dataset, f, k, list_fetch(k, f, oversample), False), "user_id": user_id, "like": like_threshold,
              "max_anchors": max_anchors, "max_liked": max_liked, "n_witnesses": n_witnesses}
    rows = read(driver, query, params, database)
    if len(rows) < k:
        return None

    def assemble() -> tuple[RecommendationList, dict[str, Explanation]]:
        recs = [dict(r["rrow"]) for r in rows]
        p, scored, _ = _fused_ranking(recs, k, complete=True)
        listed = _fused_list(scored, p, dataset, k, f, user_id, int(recs[0]["n"]), True, source="list")
        build = explanation_dict if as_dicts else build_reasons
        explanations = {r["id"]: build(r, user_id, max_reasons, "materialised") for r in _fast_rows(rows)}
        return listed, explanations

    return assemble


__all__ = ["SCORED_COLUMNS", "fetch_explained", "recommend_explained"]
