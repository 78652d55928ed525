r"""The live candidate source: a user's scores computed from their history as it is in the graph now.

For a history :math:`h` (item ids read at request time, feedback included) the score of item
:math:`i` is the live form of the active publication (:mod:`gnn.live`):

.. math::
    s_i = \underbrace{\sum_{j \in h} W_{ji}}_{\text{NEIGHBOUR relationships}}
        + \alpha\, \Big(\sum_{j \in h} \mathbf{p}_j\Big)^{\top} \mathbf{q}_i
        + \gamma\, |h|\, p_i

Candidates come from three places in one query: the items the history's ``NEIGHBOUR``
relationships point to (best ``n_lin`` by their sum), the vector index searched with the
user's low-rank query vector (best ``n_vec``), and the ``n_pop`` most popular items. All pass the
business filters in Cypher. An item outside the three has a linear part at most the last
neighbour sum taken (0 when all were taken), a low-rank part at most the index's last score and a
popularity at most the last popular item's, so when the ``k``-th score reaches that bound the top
``k`` is exact; otherwise the three sizes grow and the query runs again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from graph.embeddings import ModelInfo
from graph.recommend import Filters, RecommendationList, RecommendedItem
from graph.serving.records import LiveScoreParts
from graph.serving.filters import filter_params, item_predicate
from graph.serving.store import GraphStore
from graph.serving.tables import TABLES, LiveTables
from graphrec.errors import ModelNotReadyError

MAX_ROUNDS = 6

Q_PLAN = """
MATCH (d:Dataset {name: $dataset})
OPTIONAL MATCH (m:ActiveModel {dataset: $dataset})
OPTIONAL MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})
RETURN m {.*} AS m, u IS NOT NULL AS user_ok,
       CASE WHEN u IS NULL THEN [] ELSE COLLECT { MATCH (u)-[:INTERACTED]->(j:Item) RETURN j.id } END AS history
"""
"""Round trip 1: the active model and the user's history (ids), read together."""

_ITEM_ROW = "{id: i.id, title: i.title, year: i.year, genres: [(i)-[:HAS_GENRE]->(x:Genre) | x.name], lin: lin}"

_LIN_OF_I = """reduce(s = 0.0, w IN COLLECT { MATCH (j:Item)-[n:NEIGHBOUR]->(i) WHERE n.tag = m.tag AND j.id IN $history
                                        RETURN n.w } | s + w)"""

Q_CANDIDATES = f"""
MATCH (d:Dataset {{name: $dataset}})
MATCH (m:ActiveModel {{dataset: $dataset}}) WHERE m.tag = $tag
OPTIONAL MATCH (u:User {{dataset: $dataset, gen: d.gen, id: $user_id}})
CALL (d, m, u) {{
  UNWIND $history AS hid
  MATCH (:Item {{dataset: $dataset, gen: d.gen, id: hid}})-[n:NEIGHBOUR]->(i:Item)
  WHERE n.tag = m.tag
  WITH d, u, i, sum(n.w) AS lin
  WHERE {item_predicate("i")}
  WITH i, lin ORDER BY lin DESC, i.id LIMIT $n_lin
  RETURN collect({_ITEM_ROW}) AS lin_hits
}}
CALL (d, m, u) {{
  WITH d, m, u WHERE $qvec IS NOT NULL AND m.item_index IS NOT NULL
  CALL db.index.vector.queryNodes(m.item_index, $n_vec, $qvec) YIELD node, score
  WITH d, m, u, collect({{i: node, s: score}}) AS hits
  CALL (d, m, u, hits) {{
    UNWIND hits AS h
    WITH d, m, u, h.i AS i
    WHERE {item_predicate("i")}
    WITH i, m, {_LIN_OF_I} AS lin
    RETURN collect({_ITEM_ROW}) AS ok
  }}
  RETURN size(hits) AS vec_n, reduce(x = 2.0, h IN hits | CASE WHEN h.s < x THEN h.s ELSE x END) AS vec_min, ok AS vec_hits
}}
CALL (d, m, u) {{
  UNWIND $pop_ids AS pid
  MATCH (i:Item {{dataset: $dataset, gen: d.gen, id: pid}})
  WHERE {item_predicate("i")}
  WITH i, m, {_LIN_OF_I} AS lin
  RETURN collect({_ITEM_ROW}) AS pop_hits
}}
RETURN lin_hits, vec_n, vec_min, vec_hits, pop_hits
"""
"""Round trip 2 (repeated with larger sizes until exact): the candidates with their linear part."""


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


def text_items(store: GraphStore, info: ModelInfo, vector: np.ndarray, n: int = TEXT_ANCHORS) -> list[str]:
    """Ids of the ``n`` items whose texts are closest to ``vector`` (empty without a text index)."""
    if not info.text_index:
        raise ModelNotReadyError("the active model has no text vectors; publish it with text vectors for free-text requests")
    rows = store.read(Q_TEXT_ITEMS, {"tag": info.tag, "n": n, "vec": [float(x) for x in vector]})
    return [r["id"] for r in rows]


@dataclass
class _Scored:
    score: float
    parts: LiveScoreParts
    row: dict


def plan(store: GraphStore, user_id: str | None) -> tuple[ModelInfo | None, bool, list[str]]:
    """The active model (``None``: none published), whether the user exists, and their history."""
    rows = store.read(Q_PLAN, {"user_id": user_id})
    if not rows:
        return None, False, []
    r = rows[0]
    info = ModelInfo.model_validate(r["m"]) if r["m"] else None
    return info, bool(r["user_ok"]), [str(x) for x in r["history"]]


def _bound(info: ModelInfo, t: LiveTables, r: dict, sizes: dict[str, int], use_vec: bool, qnorm: float, pop_weight: float) -> float:
    """Upper bound of the score of every eligible item that is not among the candidates."""
    lin_b = float(r["lin_hits"][-1]["lin"]) if len(r["lin_hits"]) >= sizes["n_lin"] > 0 else 0.0
    low_b = 0.0  # items without factors (not in the index) have a low-rank part of 0
    if use_vec and r["vec_n"] is not None and r["vec_n"] >= sizes["n_vec"]:
        low_b = max(low_b, (info.alpha or 0.0) * (2.0 * float(r["vec_min"]) - 1.0) * qnorm * info.max_norm)
    pop_b = pop_weight * float(t.pop_desc[sizes["n_pop"]]) if pop_weight > 0 and sizes["n_pop"] < len(t.pop_order) else 0.0
    return lin_b + low_b + pop_b


def live_ranking(
    store: GraphStore, info: ModelInfo, history: list[str], k: int, f: Filters, *, user_id: str | None = None,
    n_lin: int = 200, n_vec: int = 50, n_pop: int = 50,
) -> tuple[list[_Scored], bool, int]:
    """The exact top ``k`` (best first) of the live form for ``history``; ``(scored, exact, searched)``."""
    t = TABLES.get(store, info.tag)
    q = t.query_vector(history)
    qnorm = float(np.linalg.norm(q)) if q is not None else 0.0
    alpha = info.alpha or 0.0
    use_vec = q is not None and qnorm > 0 and info.item_index is not None and alpha > 0
    h = len(history)
    # an empty history has no linear or low-rank part: it is ranked by popularity alone
    pop_weight = (info.gamma or 0.0) * h if h else 1.0
    sizes = {"n_lin": max(n_lin, k) if h else 0, "n_vec": max(n_vec, k) if use_vec else 0, "n_pop": max(n_pop, k) if pop_weight > 0 else 0}
    n_items = max(info.n_items, 1)
    base = {**filter_params(f), "tag": info.tag, "user_id": user_id, "history": history,
            "qvec": [float(x) for x in q] + [0.0] if use_vec else None}
    scored: list[_Scored] = []
    for _ in range(MAX_ROUNDS):
        rows = store.read(Q_CANDIDATES, {**base, **sizes, "pop_ids": t.pop_order[: sizes["n_pop"]]})
        if not rows:
            raise ModelNotReadyError("the active model changed during the request; retry")
        r = dict(rows[0])
        cands: dict[str, dict] = {}
        for hit in [*r["lin_hits"], *(r["vec_hits"] or []), *r["pop_hits"]]:
            cands.setdefault(hit["id"], hit)
        ids = list(cands)
        dots, pops = t.dots(q, ids), t.pops(ids)
        scored = []
        for c, cid in enumerate(ids):
            parts = LiveScoreParts(neighbours=float(cands[cid]["lin"]), low_rank=float(alpha * dots[c]),
                                   popularity=float(pop_weight * pops[c]), history_size=h)
            scored.append(_Scored(parts.neighbours + parts.low_rank + parts.popularity, parts, cands[cid]))
        scored.sort(key=lambda s: (-s.score, s.row["id"]))
        bound = _bound(info, t, r, sizes, use_vec, qnorm, pop_weight)
        if len(scored) >= k and scored[k - 1].score >= bound - 1e-9:
            return scored, True, sum(sizes.values())
        if f.include_ids is not None and len(scored) >= len(set(f.include_ids)):
            return scored, True, sum(sizes.values())
        if all(v >= n_items for v in sizes.values() if v) or not any(sizes.values()):
            return scored, True, sum(sizes.values())
        sizes = {key: min(v * 4, n_items) for key, v in sizes.items()}
    return scored, False, sum(sizes.values())


def to_list(store: GraphStore, info: ModelInfo, scored: list[_Scored], k: int, exact: bool, searched: int, *,
            user_id: str | None = None, item_id: str | None = None) -> RecommendationList:
    """The answer record (the top ``k`` of ``scored``)."""
    items = [
        RecommendedItem(item_id=s.row["id"], title=s.row["title"], year=s.row["year"], genres=sorted(s.row["genres"] or []),
                        score=s.score, rank=pos + 1, score_parts=s.parts)
        for pos, s in enumerate(scored[:k])
    ]
    return RecommendationList(dataset=store.dataset, model_version=info.version, model_tag=info.tag, user_id=user_id, item_id=item_id,
                              items=items, candidates_searched=searched, ranking="live", exact=exact,
                              history_size=scored[0].parts.history_size if scored else None, candidates="live")


__all__ = ["LiveScoreParts", "Q_CANDIDATES", "Q_PLAN", "Q_TEXT_ITEMS", "live_ranking", "plan", "text_items", "to_list"]
