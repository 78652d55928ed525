"""The ``neighbour`` explanation kind of live models: "because you liked X (weight w)".

Each reason is a path that exists in the graph (its weight read from the publication's tables, which
hold the relationships' weights; :func:`verify_neighbour` re-checks one with Cypher) and that the
Browser can show::

    (:User {id})-[:INTERACTED]->(:Item {id: X})-[:NEIGHBOUR {tag, w}]->(:Item {id: recommended})

Its weight is the share of the recommended item's score that ``w`` accounts for. The low-rank and
popularity parts of a live score get a reason each when they carry a noticeable share of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graph.explain import Explanation, _node, _reason, _rel
from graph.recommend import RecommendationList
from graph.serving.records import LiveScoreParts
from graph.serving.catalogue import CATALOGUES
from graph.serving.live import plan
from graph.serving.store import GraphStore
from graph.serving.tables import TABLES, LiveTables, csr_slices

Q_VERIFY_NEIGHBOUR = """
MATCH (d:Dataset {name: $dataset})
MATCH (u:User {dataset: $dataset, gen: d.gen, id: $user_id})-[:INTERACTED]->(j:Item {dataset: $dataset, gen: d.gen, id: $anchor_id})
MATCH (j)-[n:NEIGHBOUR]->(i:Item {dataset: $dataset, gen: d.gen, id: $item_id})
WHERE n.tag = $tag
RETURN n.w AS w
"""
"""Re-check one neighbour reason: the path exists in the active generation with this publication's weight."""

SHARE_MIN = 0.15
"""Low-rank and popularity parts get a reason when they make at least this share of the score."""


def _share(part: float, total: float) -> float:
    """``part`` as a share of ``total`` (the sum of the absolute parts of a score), in [0, 1]."""
    return 0.0 if total <= 0 else max(0.0, min(1.0, part / total))


def strongest_anchors(tables: LiveTables, history: list[str], item_ids: list[str], n: int,
                      rows: np.ndarray | None = None) -> dict[str, list[tuple[str, float]]]:
    """For each item, the ``n`` history items with the heaviest NEIGHBOUR weight to it (ties by id), from
    the publication's tables (the same weights as the graph's relationships); ``rows``: the history's
    :meth:`LiveTables.rows_of` when the caller has them."""
    rows = tables.rows_of(history) if rows is None else rows
    known = [i for i in dict.fromkeys(item_ids) if i in tables.row]
    if not len(rows) or not known:
        return {}
    in_history = np.zeros(len(tables.ids), dtype=bool)
    in_history[rows] = True
    inc = tables.incoming  # W^T: row c holds the weights into item c
    cols = np.array([tables.row[i] for i in known], dtype=np.int64)
    at = csr_slices(inc.indptr, cols)
    item = np.repeat(np.arange(len(cols)), np.diff(inc.indptr)[cols])
    src, w = inc.indices[at], inc.data[at]
    keep = in_history[src] & (w > 0)
    item, src, w = item[keep], src[keep], w[keep]
    order = np.lexsort((tables.id_rank[src], -w, item))  # by item, heaviest first, ties by id
    item, src, w = item[order], src[order], w[order]
    first = np.searchsorted(item, item)  # where each item's run starts
    top = np.arange(len(item)) - first < n
    out: dict[str, list[tuple[str, float]]] = {i: [] for i in known}
    for k, j, x in zip(item[top].tolist(), src[top].tolist(), w[top].tolist()):
        out[known[k]].append((tables.ids[j], x))
    return out


def explain_live(
    store: GraphStore, recs: RecommendationList, history: list[str], *, user_id: str | None = None, max_reasons: int = 3,
    gen: int | None = None, loaded_at: str | None = None, as_dicts: bool = False,
) -> dict[str, Explanation] | dict[str, dict[str, Any]]:
    """Explanations of a live answer: the strongest neighbour paths from the history, then the other parts.

    ``gen`` and ``loaded_at`` name the catalogue the answer was made from (read again when ``gen`` is
    ``None``). With ``as_dicts`` the explanations are plain dicts with every field of
    :class:`graph.explain.Explanation` in its order (the serving path writes them into the response as
    they are), else validated models.
    """
    if not recs.items:
        return {}
    if gen is None:
        p = plan(store, None)
        gen, loaded_at = p.gen, p.loaded_at
    tables = TABLES.get(store, recs.model_tag, gen)
    anchors = strongest_anchors(tables, history, [i.item_id for i in recs.items], max_reasons)
    anchor_ids = sorted({a for v in anchors.values() for a, _ in v})
    titles = {i: d["title"] for i, d in CATALOGUES.get(store, gen, loaded_at).details(store, anchor_ids).items()} if anchor_ids else {}
    out: dict[str, dict[str, Any]] = {}
    tag = recs.model_tag
    user_node = _node("User", user_id) if user_id else None
    for item in recs.items:
        parts = item.score_parts if isinstance(item.score_parts, LiveScoreParts) else None
        total = abs(parts.neighbours) + abs(parts.low_rank) + abs(parts.popularity) if parts is not None else 0.0
        reasons: list[dict[str, Any]] = []
        rec_node = _node("Item", item.item_id, item.title)
        for a, w in anchors.get(item.item_id, [])[:max_reasons]:
            title = titles.get(a)
            path = [_node("Item", a, title), rec_node]
            rels = [_rel("NEIGHBOUR", 0, 1, {"w": w, "tag": tag})]
            if user_node is not None:
                path.insert(0, user_node)
                rels = [_rel("INTERACTED", 0, 1), _rel("NEIGHBOUR", 1, 2, {"w": w, "tag": tag})]
            reasons.append(_reason("neighbour", _share(w, total), f"because you liked {title or a} (weight {w:.3g})", path, rels, anchor=a))
        if parts is not None and len(reasons) < max_reasons:
            low, pop = _share(parts.low_rank, total), _share(parts.popularity, total)
            if low >= SHARE_MIN:
                reasons.append(_reason("collaborative", low, f"fits the overall taste of your {parts.history_size} items (low-rank graph filter)",
                                       [], []))
            if pop >= SHARE_MIN:
                reasons.append(_reason("popularity", pop, "popular with many users", [], []))
        reasons = reasons[:max_reasons]
        sentence = "; ".join(r["text"] for r in reasons) if reasons else "recommended by the live graph model"
        out[item.item_id] = {"item_id": item.item_id, "title": item.title, "reasons": reasons,
                             "sentence": sentence[:1].upper() + sentence[1:] + ".", "method": "live"}
    if as_dicts:
        return out
    return {k: Explanation.model_validate(v) for k, v in out.items()}


def verify_neighbour(store: GraphStore, user_id: str, anchor_id: str, item_id: str, tag: str) -> float | None:
    """The weight of the path user -> anchor -> item under publication ``tag`` (``None``: no such path)."""
    rows = store.read(Q_VERIFY_NEIGHBOUR, {"user_id": user_id, "anchor_id": anchor_id, "item_id": item_id, "tag": tag})
    return float(rows[0]["w"]) if rows else None


__all__ = ["Q_VERIFY_NEIGHBOUR", "explain_live", "strongest_anchors", "verify_neighbour"]
